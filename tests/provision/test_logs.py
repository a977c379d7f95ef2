"""provision.logs: logfmt and JSON lines with the same keys; a hostile value forges no line or key."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sys
from types import MappingProxyType

import pytest

from provision.logs import (
    JsonFormatter,
    LogfmtFormatter,
    _logfmt_line,
    _sole_logfmt_handler,
    _write_all_waiting,
    logfmt_value,
    write_fields,
)
from tests.support.cli import run_cli

# A logfmt line as a parser reads it: key=bare or key="quoted with \" and \\ escapes".
PAIR = re.compile(r'([A-Za-z0-9_.\-]+)=("(?:[^"\\]|\\.)*"|[^ "=]*)(?: |$)')


def parse_logfmt(line: str) -> dict[str, str]:
    pairs = PAIR.findall(line)
    assert " ".join(f"{k}={v}" for k, v in pairs) == line, f"not logfmt: {line!r}"
    out: dict[str, str] = {}
    for key, value in pairs:
        assert key not in out, f"duplicate key {key} in {line!r}"
        if value.startswith('"'):
            # Python's unicode_escape undoes \\, \", \n, \xNN, \uNNNN (the escapes used here).
            value = value[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
        out[key] = value
    return out


def record(msg: str, *args: object, fields=None, level=logging.INFO, exc_info=None) -> logging.LogRecord:
    rec = logging.LogRecord("pxe.dhcp", level, __file__, 1, msg, args, exc_info)
    rec.created = 1796442600.123  # 2026-12-05T03:50:00.123Z
    if fields is not None:
        rec.fields = fields
    return rec


def test_logfmt_shape_of_the_convention():
    rec = record("lease acked", fields={"mac": "52:54:00:12:34:56", "ip": "198.18.0.10", "lease_time": 3600})
    line = LogfmtFormatter().format(rec)
    assert line == (
        'ts=2026-12-05T03:50:00.123Z level=info logger=pxe.dhcp msg="lease acked" '
        "mac=52:54:00:12:34:56 ip=198.18.0.10 lease_time=3600"
    )


def test_json_has_the_same_keys_and_values():
    rec = record("lease acked", fields={"mac": "52:54:00:12:34:56", "ok": True, "n": 3, "none": None})
    doc = json.loads(JsonFormatter().format(rec))
    assert doc == {
        "ts": "2026-12-05T03:50:00.123Z", "level": "info", "logger": "pxe.dhcp", "msg": "lease acked",
        "mac": "52:54:00:12:34:56", "ok": True, "n": 3, "none": None,
    }  # fmt: skip
    text = parse_logfmt(LogfmtFormatter().format(rec))
    assert list(text) == list(doc)
    assert text["ok"] == "true" and text["n"] == "3" and text["none"] == ""


def test_record_without_fields_renders_its_message():
    rec = record("serving %s on %s", "dhcp", "sv0 (198.18.20.1)", level=logging.WARNING)
    parsed = parse_logfmt(LogfmtFormatter().format(rec))
    assert parsed["msg"] == "serving dhcp on sv0 (198.18.20.1)" and parsed["level"] == "warning"
    assert json.loads(JsonFormatter().format(rec))["msg"] == "serving dhcp on sv0 (198.18.20.1)"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("pxelinux.0", "pxelinux.0"),
        ("", '""'),
        ("two words", '"two words"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("a=b", '"a=b"'),
        ("back\\slash", '"back\\\\slash"'),
        ("line\nlevel=error", '"line\\nlevel=error"'),
        ("\x1b[2J", '"\\x1b[2J"'),
        ("café", '"café"'),
        ({"a": 1}, '"{\\"a\\":1}"'),
    ],
)
def test_logfmt_quoting(value, shown):
    assert logfmt_value(value) == shown


HOSTILE = [
    'evil\n2026-12-05T00:00:00.000Z level=error logger=pxe.dhcp msg="forged"',
    'x" level=critical msg="forged',
    "x level=critical",
    "bidi\u202etxt.exe\u2028next line\x85nel",
    "nul\x00 del\x7f bell\x07 \\x41",
    "nbsp\u00a0level=error",
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_values_stay_one_line_and_one_key(hostile):
    rec = record("lease acked", fields={"hostname": hostile, "mac": "52:54:00:12:34:56"})
    line = LogfmtFormatter().format(rec)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\u2028" not in line
    assert "\u202e" not in line and "\x85" not in line
    parsed = parse_logfmt(line)
    assert parsed["level"] == "info" and parsed["msg"] == "lease acked"
    assert parsed["hostname"] == hostile  # escaped, and read back exactly
    assert set(parsed) == {"ts", "level", "logger", "msg", "hostname", "mac"}
    js = JsonFormatter().format(rec)
    assert js.isascii() and "\n" not in js
    assert json.loads(js)["hostname"] == hostile


def test_hostile_keys_are_sanitised_and_cannot_overwrite_fixed_ones():
    fields = {"msg": "forged", "level": "critical", "a b=c": 1, "a_b_c": 2, "\n": 3, "": 4}
    line = LogfmtFormatter().format(record("lease acked", fields=fields))
    parsed = parse_logfmt(line)
    assert parsed["msg"] == "lease acked" and parsed["level"] == "info"
    assert parsed["msg_"] == "forged" and parsed["level_"] == "critical"
    assert parsed["a_b_c"] == "1" and parsed["a_b_c_"] == "2" and parsed["_"] == "3" and parsed["__"] == "4"
    doc = json.loads(JsonFormatter().format(record("lease acked", fields=fields)))
    assert doc["msg"] == "lease acked" and doc["msg_"] == "forged" and len(doc) == 4 + len(fields)


def test_traceback_is_one_field():
    try:
        raise ValueError("disk\nfull")
    except ValueError:
        rec = record(
            "commit failed", fields={"path": "/var/lib/provision/provision.db"}, exc_info=sys.exc_info()
        )
    line = LogfmtFormatter().format(rec)
    assert "\n" not in line
    parsed = parse_logfmt(line)
    assert parsed["exc"].startswith("Traceback (most recent call last):")
    assert parsed["exc"].rstrip().endswith("ValueError: disk\nfull")
    assert parsed["path"] == "/var/lib/provision/provision.db"
    doc = json.loads(JsonFormatter().format(rec))
    assert doc["exc"] == parsed["exc"] and list(doc)[-1] == "exc"


def test_logfmt_and_json_agree_on_keys_and_order():
    """The logfmt line is built in its own loop (the DHCP hot path), JSON from _entries: the same
    keys in the same order, collisions, `exc` and `stack` included."""
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    records = [
        record("plain"),
        record("with %s", "args", fields={"mac": "52:54:00:12:34:56", "n": 1, "ok": False}),
        record("clash", fields={"ts": 1, "ts_": 2, "a b": 3, "a_b": 4, 7: "int key", "note": "é → x"}),
        record("failed", fields={"path": "/x"}, exc_info=exc_info),
    ]
    records[0].stack_info = "Stack (most recent call last):\n  here"
    for rec in records:
        text = parse_logfmt(LogfmtFormatter().format(rec))
        doc = json.loads(JsonFormatter().format(rec))
        assert list(text) == list(doc)
        assert all(text[k] == v for k, v in doc.items() if isinstance(v, str))


def _hierarchy(formatter: logging.Formatter | None = None):
    """A logger tree of its own (not the process's root, which pytest's capture handlers share),
    with the handler `configure()` installs on its root: a StreamHandler into a buffer."""
    root = logging.RootLogger(logging.INFO)
    manager = logging.Manager(root)
    manager.getLogger("provision")  # a parent between the logger and the root, as in the product
    logger = manager.getLogger("provision.serve")
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(formatter or LogfmtFormatter())
    root.addHandler(handler)
    return root, logger, handler, buf


FIELDS = {"kind": "dhcp.ack", "mac": "52:54:00:12:34:56", "ip": "198.18.0.10", "lease_time": 3600,
          "note": "unknown (discover): bios-pxe → undionly.kpxe", "msg": "forged", "path": "a\nb c"}  # fmt: skip


def test_write_fields_writes_the_line_logging_would():
    """The direct path (a DHCP lease's event line) and logger.log give the same line, but for the
    time; it is taken only with the one handler configure() installs."""
    _root, logger, handler, buf = _hierarchy()
    assert _sole_logfmt_handler(logger, logging.INFO) is handler
    write_fields(logger, logging.INFO, "event", FIELDS)
    logger.log(logging.INFO, "event", extra={"fields": FIELDS})
    fast, slow = buf.getvalue().splitlines()
    assert fast.split(" ", 1)[1] == slow.split(" ", 1)[1]
    assert fast.startswith("ts=") and parse_logfmt(fast)["msg_"] == "forged"
    assert parse_logfmt(fast)["path"] == FIELDS["path"]  # a newline in a value: escaped, one line
    write_fields(logger, logging.DEBUG, "event", FIELDS)  # below the logger's level: nothing
    assert len(buf.getvalue().splitlines()) == 2


def test_write_fields_leaves_any_other_setup_to_logging():
    root, logger, handler, _buf = _hierarchy()
    logger.addFilter(lambda record: True)
    assert _sole_logfmt_handler(logger, logging.INFO) is None
    logger.filters.clear()
    second = logging.StreamHandler(io.StringIO())
    root.addHandler(second)  # a test's capture, an embedding program's handler
    assert _sole_logfmt_handler(logger, logging.INFO) is None
    root.removeHandler(second)
    handler.setLevel(logging.WARNING)
    assert _sole_logfmt_handler(logger, logging.INFO) is None
    handler.setLevel(logging.NOTSET)
    logger.parent.propagate = False  # type: ignore[union-attr]
    assert _sole_logfmt_handler(logger, logging.INFO) is None
    _root, logger, _handler, buf = _hierarchy(JsonFormatter())
    assert _sole_logfmt_handler(logger, logging.INFO) is None
    write_fields(logger, logging.INFO, "event", FIELDS)  # JSON lines: through logging
    assert json.loads(buf.getvalue())["msg_"] == "forged"


def test_write_fields_falls_back_to_logging_for_what_it_cannot_write(capsys):
    """A value the line cannot hold is logging's to report (its "--- Logging error ---", and
    no exception for the caller), a Logger subclass makes its records its own way, and a stream
    without flush() is written."""
    _root, logger, _handler, buf = _hierarchy()
    write_fields(logger, logging.INFO, "event", {"odd": {(1, 2): 3}})  # json cannot key a tuple
    assert buf.getvalue() == "" and "--- Logging error ---" in capsys.readouterr().err

    class Tagged(logging.Logger):
        def makeRecord(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            record = super().makeRecord(*args, **kwargs)
            record.fields = {**record.fields, "tagged": 1}
            return record

    root, _logger, handler, buf = _hierarchy()
    tagged = Tagged("provision.tagged")
    tagged.parent = root
    assert _sole_logfmt_handler(tagged, logging.INFO) is None
    write_fields(tagged, logging.INFO, "event", {"kind": "x"})
    assert parse_logfmt(buf.getvalue().strip())["tagged"] == "1"

    class Sink:  # a stream with write() only
        def __init__(self) -> None:
            self.text = ""

        def write(self, text: str) -> None:
            self.text += text

    _root, logger, handler, _buf = _hierarchy()
    sink = Sink()
    handler.setStream(sink)  # type: ignore[arg-type]
    write_fields(logger, logging.INFO, "event", {"kind": "x"})
    assert sink.text.endswith(" kind=x\n")


def test_a_line_of_plain_keys_is_the_line_the_renaming_loop_writes():
    """_logfmt_line skips the collision bookkeeping when every key is one it has seen clean and
    unlike a fixed key; the line is the same as through the full loop (a Mapping that is not a
    dict takes it), and renaming still happens where a key needs it."""
    fields = {"kind": "dhcp.ack", "mac": "52:54:00:12:34:56", "lease_time": 3600, "note": "a b", "ok": True}
    for _ in range(2):  # the first line teaches the keys
        fast = _logfmt_line(1e9, "INFO", "provision.serve", "event", dict(fields))
        full = _logfmt_line(1e9, "INFO", "provision.serve", "event", MappingProxyType(fields))
        assert fast == full
    assert fast[1:] == ["kind=dhcp.ack", "mac=52:54:00:12:34:56", "lease_time=3600", 'note="a b"', "ok=true"]
    mixed = _logfmt_line(1e9, "INFO", "x", "event", {"kind": "k", "a b": 1, "a_b": 2, "msg": "m"})
    assert mixed[1:] == ["kind=k", "a_b=1", "a_b_=2", "msg_=m"]


class _Counting(io.StringIO):
    """A stream that counts its flushes (and can be told to fail them)."""

    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0
        self.fail = False

    def flush(self) -> None:
        self.flushes += 1
        if self.fail:
            raise OSError(28, "No space left on device")


def test_write_fields_flushes_once_a_turn_of_the_event_loop(capsys):
    """Off a loop every line is flushed; on one, the lines of one turn (a DHCP burst's) are
    flushed once, when the turn's callbacks are done. A failing flush is logging's to report
    (its "--- Logging error ---" on stderr) and does not reach the loop."""
    _root, logger, handler, _buf = _hierarchy()
    stream = _Counting()
    handler.setStream(stream)  # type: ignore[arg-type]
    write_fields(logger, logging.INFO, "event", {"kind": "a"})
    assert stream.flushes == 1

    async def burst() -> tuple[int, int]:
        for n in range(3):
            write_fields(logger, logging.INFO, "event", {"kind": "b", "n": n})
        during = stream.flushes
        await asyncio.sleep(0)  # the turn ends, _write_turn runs
        return during, stream.flushes

    assert asyncio.run(burst()) == (1, 2)
    assert len(stream.getvalue().splitlines()) == 4  # every line written, none lost
    stream.fail = True

    async def failing() -> None:
        write_fields(logger, logging.INFO, "event", {"kind": "c"})
        await asyncio.sleep(0)

    asyncio.run(failing())
    assert "--- Logging error ---" in capsys.readouterr().err


def test_on_a_loop_a_turns_lines_are_written_at_its_end_in_the_order_of_the_calls(capsys):
    """write_fields on a running loop: nothing is written until the turn ends, then the turn's
    lines in one write. A record logged through the handler meanwhile
    (a warning between two leases) comes after the lines called before it, and a line that
    cannot be formatted goes through logging in its place: the file keeps the order of the calls."""
    _root, logger, handler, _buf = _hierarchy()
    stream = _Counting()
    handler.setStream(stream)  # type: ignore[arg-type]

    async def turn() -> str:
        write_fields(logger, logging.INFO, "event", {"kind": "a", "n": 1})
        logger.warning("between", extra={"fields": {"n": 2}})
        write_fields(logger, logging.INFO, "event", {"kind": "b", "n": 3})
        write_fields(logger, logging.INFO, "event", {"odd": {(1, 2): 3}, "n": 4})  # json cannot key it
        write_fields(logger, logging.INFO, "event", {"kind": "c", "n": 5})
        during = stream.getvalue()
        await asyncio.sleep(0)
        return during

    during = asyncio.run(turn())
    lines = [parse_logfmt(line) for line in stream.getvalue().splitlines()]
    assert len(during.splitlines()) == 2  # the warning wrote the line called before it, and itself
    assert [line.get("n") for line in lines] == ["1", "2", "3", "5"]
    assert [line["msg"] for line in lines] == ["event", "between", "event", "event"]
    assert "--- Logging error ---" in capsys.readouterr().err  # n=4, reported where it was


def test_lines_of_a_turn_that_never_ended_are_written_at_exit():
    """A loop stopped and closed in the turn that wrote a line: the line waits in _turns; the
    atexit hook writes it."""
    _root, logger, _handler, buf = _hierarchy()
    loop = asyncio.new_event_loop()

    def last() -> None:
        write_fields(logger, logging.INFO, "event", {"kind": "last"})
        loop.stop()  # the loop ends with this turn

    loop.call_soon(last)
    loop.run_forever()
    loop.close()
    assert buf.getvalue() == ""
    _write_all_waiting()
    assert parse_logfmt(buf.getvalue().strip())["kind"] == "last"


def test_cli_option_choices():
    """The option and its env variable exist; a wrong value is a usage error (exit 2). JSON lines
    of a real `provision --log-format json serve` are parsed in tests/provision/server/test_stream_netns.py."""
    out = run_cli("--help", timeout=60)
    assert "--log-format [text|json]" in out.stdout and "PROVISION_LOG_FORMAT" in out.stdout
    bad = run_cli("--log-format", "xml", "status", timeout=60)
    assert bad.returncode == 2 and "xml" in bad.stderr
    bad = run_cli("status", env={"PROVISION_LOG_FORMAT": "yaml"}, timeout=60)
    assert bad.returncode == 2 and "yaml" in bad.stderr
