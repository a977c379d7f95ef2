"""Log lines as logfmt or JSON (`provision --log-format text|json`, env PROVISION_LOG_FORMAT).

One record is one line with the same keys in both formats (docs/observability.md "Logs"):

    ts=2026-12-05T03:50:00.123Z level=info logger=pxe.dhcp msg="lease acked" mac=52:54:00:12:34:56
    {"ts": "2026-12-05T03:50:00.123Z", "level": "info", "logger": "pxe.dhcp", "msg": "lease acked", ...}

The convention every module follows: a short constant message, and what varies as fields,

    log.info("lease acked", extra={"fields": {"mac": mac, "ip": ip}})

so a line can be filtered by key (`mac=...`) without parsing prose. A record without fields
renders its formatted message as `msg`. A traceback is the field `exc` (one line: its newlines
escaped), never a second line.

Fields may hold what a client on the boot LAN sent (a host name, a path). Neither format lets
such a value forge a line or a key: in logfmt a value is bare only when it is printable ASCII
without space, `"`, `=` or `\\`, else it is quoted with `\\"`, `\\\\` and the escapes of
`pxe.logsafe.safe` (controls, C1, line separators, bidi overrides); JSON escapes every control
and non-ASCII character (`\\uNNNN`). Keys are our code's, but are sanitised anyway (anything but
`[A-Za-z0-9_.-]` becomes `_`); a field named like a fixed key (`ts`, `level`, `logger`, `msg`,
`exc`) gets a trailing `_` instead of overwriting it.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import re
import sys
import time
from collections.abc import Iterator, Mapping
from typing import IO, Any

from pxe.logsafe import safe

FORMATS = ("text", "json")
ENV_FORMAT = "PROVISION_LOG_FORMAT"
FIXED_KEYS = ("ts", "level", "logger", "msg", "exc")
_BARE = re.compile(r"[!#-<>-\[\]-~]+")  # printable ASCII but space, '"', '=' and '\'
_KEY_BAD = re.compile(r"[^A-Za-z0-9_.\-]")


_second: tuple[int, str] = (-1, "")  # the last second formatted: most lines share it


def iso_ms(created: float) -> str:
    """UTC with milliseconds and a Z, the same shape as the API's times."""
    global _second
    sec, ms = divmod(round(created * 1000), 1000)
    if _second[0] != sec:
        _second = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
    return f"{_second[1]}.{ms:03d}Z"


_CLEAN: dict[str, str] = {}  # field name -> its clean key: keys are few (our code's), lines many
_CLEAN_MAX = 4096


def clean_key(key: object) -> str:
    """The key as logfmt and JSON write it; remembered for text keys (`_logfmt_line` reads
    `_CLEAN` itself first, without the call)."""
    if type(key) is str:
        clean = _CLEAN.get(key)
        if clean is not None:
            return clean
    clean = _KEY_BAD.sub("_", str(key)) or "_"
    if type(key) is str and len(_CLEAN) < _CLEAN_MAX:
        _CLEAN[key] = clean
        if clean == key and key not in FIXED_KEYS:
            _PLAIN.add(key)
    return clean


# Text keys written as they are: clean already and no fixed key's name. A line whose keys are all
# plain needs no renaming, so `_logfmt_line` skips the collision bookkeeping (distinct dict keys
# that are their own clean form cannot collide with each other or with a fixed key).
_PLAIN: set[str] = set()


def _entries(record: logging.LogRecord, formatter: logging.Formatter) -> Iterator[tuple[str, object]]:
    """(key, value) in line order: the fixed keys, the record's fields, then `exc`."""
    yield "ts", iso_ms(record.created)
    yield "level", record.levelname.lower()
    yield "logger", record.name
    yield "msg", record.getMessage()
    seen = set(FIXED_KEYS)
    fields = getattr(record, "fields", None)
    if isinstance(fields, Mapping):
        for raw_key, value in fields.items():
            key = clean_key(raw_key)
            while key in seen:
                key += "_"
            seen.add(key)
            yield key, value
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    if record.exc_text:
        yield "exc", record.exc_text
    if record.stack_info:
        yield "stack", formatter.formatStack(record.stack_info)


_quoted: dict[str, str] = {}  # text -> its quoted form: a policy's note repeats on every lease
_QUOTED_MAX = 1024


def logfmt_value(value: object) -> str:
    """One value: bare when it is plain, else quoted and escaped (see the module doc)."""
    kind = type(value)
    if kind is str:
        text: str = value  # type: ignore[assignment]
        done = _quoted.get(text)
        if done is None:
            done = _bare_or_quoted(text)
            # quoted ones only: bare text costs one match, and unique MACs would crowd the cache
            if done is not text and len(text) <= 256:
                if len(_quoted) >= _QUOTED_MAX:
                    _quoted.clear()
                _quoted[text] = done
        return done
    elif kind is int:
        return str(value)  # digits and a sign: always bare
    elif value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str | int | float):
        text = str(value)
    elif isinstance(value, Mapping | list | tuple):
        text = json.dumps(value, default=str, separators=(",", ":"), ensure_ascii=False)
    else:
        text = str(value)
    return _bare_or_quoted(text)


def _bare_or_quoted(text: str) -> str:
    if _BARE.fullmatch(text):
        return text
    return '"' + safe(text).replace('"', '\\"') + '"'


_HEADS: dict[tuple[str, str], str] = {}  # (level, logger) -> "level=info logger=pxe.dhcp"


def _head(levelname: str, name: str) -> str:
    head = f"level={logfmt_value(levelname.lower())} logger={logfmt_value(name)}"
    if len(_HEADS) < 1024:  # loggers and levels are our code's few
        _HEADS[(levelname, name)] = head
    return head


def _logfmt_line(created: float, levelname: str, name: str, msg: str, fields: object) -> list[str]:
    """A line's parts up to its fields (LogfmtFormatter.format and write_fields share it)."""
    head = _HEADS.get((levelname, name))
    if head is None:
        head = _head(levelname, name)
    bare = _BARE.fullmatch
    parts = [f"ts={iso_ms(created)} {head} msg={msg if bare(msg) else logfmt_value(msg)}"]
    if type(fields) is dict and _PLAIN.issuperset(fields):  # (a lease's line, after the first)
        for key, value in fields.items():
            kind = type(value)
            if kind is int or (kind is str and bare(value)):  # type: ignore[arg-type]
                parts.append(f"{key}={value}")
            else:
                parts.append(f"{key}={logfmt_value(value)}")
    elif type(fields) is dict or isinstance(fields, Mapping):  # (an ABC check costs a µs)
        seen = set(FIXED_KEYS)
        for raw_key, value in fields.items():
            key = _CLEAN.get(raw_key) or clean_key(raw_key)  # (only text keys are in _CLEAN)
            while key in seen:
                key += "_"
            seen.add(key)
            kind = type(value)
            if kind is int or (kind is str and bare(value)):  # type: ignore[arg-type]
                parts.append(f"{key}={value}")
            else:
                parts.append(f"{key}={logfmt_value(value)}")
    return parts


class LogfmtFormatter(logging.Formatter):
    """`key=value` pairs separated by one space (logfmt), values quoted where needed."""

    def format(self, record: logging.LogRecord) -> str:
        # A lease's line is formatted on the DHCP hot path (docs/netboot.md "Performance"): the
        # line is built in one loop over the fields, without _entries' generator, and plain
        # values (most: MACs, addresses, numbers) are written without a call to logfmt_value.
        # The same keys, order and quoting as _entries gives the JSON formatter.
        if _turns:
            _write_waiting(self)
        parts = _logfmt_line(
            record.created,
            record.levelname,
            record.name,
            record.getMessage(),
            getattr(record, "fields", None),
        )
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            parts.append(f"exc={logfmt_value(record.exc_text)}")
        if record.stack_info:
            parts.append(f"stack={logfmt_value(self.formatStack(record.stack_info))}")
        return " ".join(parts)


def write_fields(logger: logging.Logger, level: int, msg: str, fields: dict[str, object]) -> None:
    """`logger.log(level, msg, extra={"fields": fields})`, the same line, for a caller on a hot
    path (a DHCP lease's event line: docs/netboot.md "Performance"). When the record could only
    reach the one handler `configure()` installs (plain loggers up to the root, no filter, the
    root's single StreamHandler with the logfmt formatter, the stock Logger class and record
    factory), the line is formatted and written as that handler would, without building a
    LogRecord and walking the logging machinery: a third of the line's cost. Anything else (a
    test's capture, an embedding program's handlers, JSON lines, a value the line cannot hold)
    goes through `logger.log` as before.

    On a running event loop the line is formatted and written at the end of the loop's current
    turn, with the other lines of that turn, in one write and one flush (`_write_turn`): a DHCP
    burst's lines are then formatted one after the other, not each between a packet's other work
    (15 instead of 24 µs a line in a storm, the formatting code staying in the CPU's caches), and
    reach the file (and journald) in one write. It keeps the time of the call; any other record
    through that handler writes the waiting lines first (LogfmtFormatter.format), so the file
    keeps the order of the calls. `fields` is read then: the caller leaves it as it is. A process
    killed before its turn ends loses that turn's lines, as it loses what a buffered stream holds."""
    if not logger.isEnabledFor(level):
        return
    handler = _sole_logfmt_handler(logger, level)
    if handler is None:
        logger.log(level, msg, extra={"fields": fields})
        return
    line = (time.time(), level, logger, msg, fields)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        _write_lines(handler, [line])
        return
    turn = _turns.get(handler)
    if turn is None or turn[0] is not loop:
        turn = _turns[handler] = (loop, [])
        loop.call_soon(_write_turn, handler, turn)
    turn[1].append(line)


_Line = tuple[float, int, logging.Logger, str, dict[str, object]]  # time, level, logger, msg, fields
# Per handler, the loop whose turn is collecting lines and those lines. Only that loop's thread
# appends; another thread may take them (LogfmtFormatter.format), so they are taken by copying
# and then deleting that many from the front, never by swapping the list: each step is atomic
# under the GIL, and a line appended in between stays for the next taker.
_turns: dict[logging.StreamHandler[Any], tuple[asyncio.AbstractEventLoop, list[_Line]]] = {}


def _take(lines: list[_Line]) -> list[_Line]:
    taken = lines[:]
    del lines[: len(taken)]
    return taken


def _write_turn(
    handler: logging.StreamHandler[Any], turn: tuple[asyncio.AbstractEventLoop, list[_Line]]
) -> None:
    if _turns.get(handler) is turn:
        del _turns[handler]
    _write_lines(handler, _take(turn[1]))


def _write_waiting(formatter: logging.Formatter) -> None:
    """Before a record formatted by `formatter` is written: the lines waiting for the end of the
    loop's turn on a handler that uses it, so the file keeps the order of the calls."""
    for handler, (_loop, lines) in list(_turns.items()):
        if lines and handler.formatter is formatter:
            _write_lines(handler, _take(lines))


def _write_lines(handler: logging.StreamHandler[Any], lines: list[_Line]) -> None:
    """Format the lines and write them in one write and one flush, under the handler's lock; a
    line that cannot be formatted goes through logging, in its place."""
    text: list[str] = []
    first = 0  # the line of text[0]
    for n, (created, level, logger, msg, fields) in enumerate(lines):
        try:
            text.append(
                " ".join(_logfmt_line(created, logging.getLevelName(level), logger.name, msg, fields))
            )
        except RecursionError:  # as StreamHandler.emit: not swallowed
            raise
        except Exception:  # a value the line cannot hold: logging's own path reports it its way
            if text:
                _write_text(handler, text, lines[first])
            text, first = [], n + 1
            logger.log(level, msg, extra={"fields": fields})
    if text:
        _write_text(handler, text, lines[first])


def _write_text(handler: logging.StreamHandler[Any], text: list[str], first: _Line) -> None:
    """The lines' text in one write; `first`, the first of them, for logging's error report."""
    terminator = handler.terminator
    handler.acquire()
    try:
        stream = handler.stream
        stream.write(terminator.join(text) + terminator)
        if hasattr(stream, "flush"):  # as StreamHandler.flush
            stream.flush()
    except RecursionError:
        raise
    except Exception:  # what StreamHandler.emit does: handleError, with the record it needs
        _created, level, logger, msg, fields = first
        handler.handleError(
            logger.makeRecord(
                logger.name, level, "(unknown file)", 0, msg, (), None, extra={"fields": fields}
            )
        )
    finally:
        handler.release()


def _write_all_waiting() -> None:
    """At exit: lines of a turn that never ended (a loop closed without another turn)."""
    for handler, (_loop, lines) in list(_turns.items()):
        _turns.pop(handler, None)
        _write_lines(handler, _take(lines))


atexit.register(_write_all_waiting)  # (after logging's own atexit, so before its shutdown: LIFO)


def _sole_logfmt_handler(logger: logging.Logger, level: int) -> logging.StreamHandler[Any] | None:
    """The handler a record of `logger` at `level` would reach, when it is the only one and
    nothing on the way could change or drop the record; else None."""
    if (
        type(logger) is not logging.Logger  # a subclass may make or handle its records its own way
        or logger.filters
        or logger.disabled
        or logging.getLogRecordFactory() is not logging.LogRecord
    ):
        return None
    node: logging.Logger | None = logger
    while node is not None and node.parent is not None:  # up to the root, which has no parent
        if node.handlers or not node.propagate:
            return None
        node = node.parent
    if node is None or len(node.handlers) != 1:
        return None
    handler = node.handlers[0]
    if (
        type(handler) is not logging.StreamHandler
        or handler.filters
        or level < handler.level
        or type(handler.formatter) is not LogfmtFormatter
    ):
        return None
    return handler


class JsonFormatter(logging.Formatter):
    """One JSON object per line, ASCII only (a U+2028 in a value cannot break a viewer's line)."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(dict(_entries(record, self)), default=str, ensure_ascii=True)


def formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter()
    if fmt == "text":
        return LogfmtFormatter()
    raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")


def configure(level: int, fmt: str = "text", stream: IO[str] | None = None) -> None:
    """The root logger's handler for a command (stderr); like logging.basicConfig, a no-op when
    the root logger already has a handler (a test's capture, an embedding program's)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter(fmt))
    logging.basicConfig(level=level, handlers=[handler])


def fields(**values: Any) -> dict[str, dict[str, Any]]:
    """`extra=fields(mac=..., ip=...)`: the same as `extra={"fields": {...}}`, shorter to type."""
    return {"fields": values}


__all__ = ["FORMATS", "JsonFormatter", "LogfmtFormatter", "configure", "fields", "formatter", "logfmt_value"]
