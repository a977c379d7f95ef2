"""A small schema layer over PyYAML's node graph, so every error carries file and line.

PyYAML's `compose` keeps a start mark on every node; validating nodes (not the plain objects
`safe_load` returns) is what lets us say `switch.yml:12:5: unknown key 'kernal'` with a fix.
Validated mappings come back as `Section` (a dict that remembers where it and each key stood), so
later semantic checks (an unknown profile id, a missing file) can point at the right line too.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any as _Any

import yaml

from provision.config.errors import ConfigError, Mark

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_MAC_RE = re.compile(r"^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$", re.IGNORECASE)


@dataclass
class Context:
    file: Path | str
    # None: the first error raises (what loaders want). A list: errors are collected there and
    # checking goes on with the field's default, so `provision check` reports every one at once.
    errors: list[ConfigError] | None = None

    @property
    def base_dir(self) -> Path:
        return Path(self.file).resolve().parent if str(self.file) != "<string>" else Path.cwd()

    def mark(self, node: yaml.Node) -> Mark:
        m = node.start_mark
        return Mark(self.file, m.line + 1, m.column + 1)

    def error(
        self, node: yaml.Node, message: str, fix: str | None = None, code: str = "bad-value"
    ) -> ConfigError:
        return ConfigError(self.mark(node), message, fix, code)

    def collect(self, exc: ConfigError) -> None:
        """Keep `exc` and go on (collecting), or raise it (the first error stops loading)."""
        if self.errors is None:
            raise exc
        self.errors.append(exc)


class Section(dict):
    """A validated mapping that remembers its own mark and the mark of each key's value."""

    mark: Mark | None
    key_marks: dict[str, Mark]
    failed: set[str]  # keys written with a wrong value (collecting only: reported, then defaulted)

    def __init__(self, *args: _Any, **kwargs: _Any):
        super().__init__(*args, **kwargs)
        self.mark = None
        self.key_marks = {}
        self.failed = set()

    def mark_of(self, key: str) -> Mark | None:
        return self.key_marks.get(key, self.mark)

    def error(
        self, key: str | None, message: str, fix: str | None = None, code: str | None = None
    ) -> ConfigError:
        return ConfigError(self.mark_of(key) if key else self.mark, message, fix, code)


class Schema:
    """Base: `check(node, ctx)` returns the plain Python value or raises ConfigError."""

    describe = "a value"

    def check(self, node: yaml.Node, ctx: Context) -> _Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _scalar(self, node: yaml.Node, ctx: Context) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise ctx.error(node, f"expected {self.describe}, found a {_kind(node)}")
        return node.value


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "mapping (key: value block)"
    if isinstance(node, yaml.SequenceNode):
        return "list"
    return f"scalar {node.value!r}"


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


class Any(Schema):
    describe = "any value"

    def check(self, node: yaml.Node, ctx: Context) -> _Any:
        return yaml.SafeLoader(b"").construct_document(node) if node is not None else None


class Str(Schema):
    def __init__(self, pattern: str | None = None, hint: str | None = None, allow_empty: bool = False):
        self.pattern = re.compile(pattern) if pattern else None
        self.hint = hint
        self.allow_empty = allow_empty
        self.describe = hint or "a string"

    def check(self, node: yaml.Node, ctx: Context) -> str:
        value = self._scalar(node, ctx)
        if not value and not self.allow_empty:
            raise ctx.error(node, "empty value", f"write {self.describe}")
        if self.pattern and not self.pattern.fullmatch(value):
            raise ctx.error(node, f"{value!r} is not {self.describe}", f"write {self.describe}")
        return value


class Int(Schema):
    def __init__(self, min: int | None = None, max: int | None = None):
        self.min, self.max = min, max
        self.describe = "a whole number" + (
            f" from {min} to {max}" if min is not None and max is not None else ""
        )

    def check(self, node: yaml.Node, ctx: Context) -> int:
        raw = self._scalar(node, ctx)
        try:
            value = int(raw, 0)
        except ValueError:
            raise ctx.error(node, f"{raw!r} is not a whole number", f"write {self.describe}") from None
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            raise ctx.error(node, f"{value} is out of range", f"write {self.describe}")
        return value


class Bool(Schema):
    describe = "true or false"

    def check(self, node: yaml.Node, ctx: Context) -> bool:
        raw = self._scalar(node, ctx).lower()
        if raw in ("true", "yes", "on"):
            return True
        if raw in ("false", "no", "off"):
            return False
        raise ctx.error(node, f"{raw!r} is not true or false", "write true or false")


class Enum(Schema):
    def __init__(self, *choices: str):
        self.choices = choices
        self.describe = "one of " + ", ".join(choices)

    def check(self, node: yaml.Node, ctx: Context) -> str:
        raw = self._scalar(node, ctx)
        if raw in self.choices:
            return raw
        close = difflib.get_close_matches(raw, self.choices, n=1)
        fix = f"did you mean {close[0]!r}?" if close else f"write {self.describe}"
        raise ctx.error(node, f"{raw!r} is not {self.describe}", fix)


class Size(Schema):
    """Bytes, written as 4096, 128M, 1.5G or 2GiB (binary units: what sgdisk means by M and G)."""

    describe = "a size such as 512M or 4G"

    def check(self, node: yaml.Node, ctx: Context) -> int:
        raw = self._scalar(node, ctx)
        m = _SIZE_RE.match(raw)
        if not m:
            raise ctx.error(node, f"{raw!r} is not a size", f"write {self.describe}")
        unit = (m.group(2) or "").upper().rstrip("B").rstrip("I") or ""
        return int(float(m.group(1)) * _SIZE_UNITS[unit])


class FilePath(Schema):
    """A path, resolved against the folder of the file that names it."""

    def __init__(self, must_exist: bool = True, kind: str = "file"):
        self.must_exist = must_exist
        self.kind = kind
        self.describe = f"a path to a {kind}"

    def check(self, node: yaml.Node, ctx: Context) -> Path:
        raw = self._scalar(node, ctx)
        path = Path(raw).expanduser()
        if not path.is_absolute():
            path = ctx.base_dir / path
        if self.must_exist:
            ok = path.is_dir() if self.kind == "folder" else path.exists()
            if not ok:
                raise ctx.error(
                    node,
                    f"{self.kind} not found: {raw} (looked at {path})",
                    f"check the path; relative paths start at {ctx.base_dir}",
                    f"{self.kind}-missing",
                )
        return path


class MacAddr(Schema):
    describe = "a MAC address such as 52:54:00:12:34:56"

    def check(self, node: yaml.Node, ctx: Context) -> str:
        raw = self._scalar(node, ctx)
        if not _MAC_RE.match(raw):
            raise ctx.error(node, f"{raw!r} is not a MAC address", f"write {self.describe}")
        return raw.lower().replace("-", ":")


class IPv4Addr(Schema):
    describe = "an IPv4 address such as 198.18.0.10"

    def check(self, node: yaml.Node, ctx: Context) -> str:
        raw = self._scalar(node, ctx)
        try:
            return str(ipaddress.IPv4Address(raw))
        except ValueError:
            raise ctx.error(node, f"{raw!r} is not an IPv4 address", f"write {self.describe}") from None


class IPv4Net(Schema):
    describe = "an IPv4 network such as 198.18.0.0/24"

    def check(self, node: yaml.Node, ctx: Context) -> str:
        raw = self._scalar(node, ctx)
        try:
            return str(ipaddress.IPv4Network(raw, strict=True))
        except ValueError as exc:
            raise ctx.error(
                node, f"{raw!r} is not an IPv4 network ({exc})", f"write {self.describe}"
            ) from None


class URL(Str):
    def __init__(self, schemes: Iterable[str] = ("http", "https", "tftp")):
        self.schemes = tuple(schemes)
        super().__init__(hint="a URL starting with " + " or ".join(f"{s}://" for s in self.schemes))

    def check(self, node: yaml.Node, ctx: Context) -> str:
        value = super().check(node, ctx)
        if not value.startswith(tuple(f"{s}://" for s in self.schemes)):
            raise ctx.error(node, f"{value!r} is not {self.describe}", f"write {self.describe}")
        return value


class List(Schema):
    def __init__(self, item: Schema, min_len: int = 0, unique: bool = False):
        self.item, self.min_len, self.unique = item, min_len, unique
        self.describe = f"a list of {item.describe}"

    def check(self, node: yaml.Node, ctx: Context) -> list[_Any]:
        if _is_null(node):
            values: list[_Any] = []
        elif not isinstance(node, yaml.SequenceNode):
            raise ctx.error(node, f"expected {self.describe}, found a {_kind(node)}", "write a list: - item")
        else:
            values = []
            children = []
            for child in node.value:
                try:
                    values.append(self.item.check(child, ctx))
                    children.append(child)
                except ConfigError as exc:
                    ctx.collect(exc)  # collecting: the bad item is left out, the rest checked
            if self.unique:
                seen: set[_Any] = set()
                for child, value in zip(children, values, strict=True):
                    key = repr(value)
                    if key in seen:
                        ctx.collect(
                            ctx.error(
                                child, f"{value!r} is listed twice", "remove the duplicate", "duplicate-item"
                            )
                        )
                    seen.add(key)
        # Counted on the YAML (items dropped by a collected error were reported already).
        if (len(node.value) if isinstance(node, yaml.SequenceNode) else 0) < self.min_len:
            raise ctx.error(node, f"needs at least {self.min_len} item(s)", f"write {self.describe}")
        return values


class Map(Schema):
    """A free-form mapping: keys checked by `key`, values by `value`."""

    def __init__(self, value: Schema, key: Schema | None = None):
        self.key = key or Str()
        self.value = value
        self.describe = f"a mapping of {self.key.describe} to {value.describe}"

    def check(self, node: yaml.Node, ctx: Context) -> Section:
        out = Section()
        out.mark = ctx.mark(node)
        if _is_null(node):
            return out
        if not isinstance(node, yaml.MappingNode):
            raise ctx.error(node, f"expected {self.describe}, found a {_kind(node)}")
        for knode, vnode in node.value:
            try:
                key = self.key.check(knode, ctx)
                if key in out:
                    raise ctx.error(knode, f"key {key!r} appears twice", "keep one of them", "duplicate-key")
                out[key] = self.value.check(vnode, ctx)
            except ConfigError as exc:
                ctx.collect(exc)
                continue
            out.key_marks[key] = ctx.mark(vnode)
        return out


@dataclass
class Field:
    schema: Schema
    required: bool = False
    default: _Any = None
    doc: str = ""
    default_factory: Callable[[], _Any] | None = field(default=None, repr=False)


class Obj(Schema):
    """A mapping with known keys; unknown keys are errors (a typo must not be silently ignored)."""

    def __init__(self, fields: Mapping[str, Field | Schema], name: str = "section"):
        self.fields = {k: v if isinstance(v, Field) else Field(v) for k, v in fields.items()}
        self.name = name
        self.describe = f"a {name} (mapping)"

    def check(self, node: yaml.Node, ctx: Context) -> Section:
        out = Section()
        out.mark = ctx.mark(node)
        if _is_null(node):
            pairs: list[tuple[yaml.Node, yaml.Node]] = []
        elif not isinstance(node, yaml.MappingNode):
            raise ctx.error(node, f"expected {self.describe}, found a {_kind(node)}")
        else:
            pairs = node.value
        seen: set[str] = set()
        failed = out.failed
        for knode, vnode in pairs:
            key = knode.value if isinstance(knode, yaml.ScalarNode) else None
            if key not in self.fields:
                close = difflib.get_close_matches(str(key), list(self.fields), n=1)
                fix = f"did you mean {close[0]!r}?" if close else "known keys: " + ", ".join(self.fields)
                ctx.collect(ctx.error(knode, f"unknown key {key!r} in {self.name}", fix, "unknown-key"))
                continue
            if key in seen:
                ctx.collect(
                    ctx.error(
                        knode,
                        f"key {key!r} appears twice in {self.name}",
                        "keep one of them",
                        "duplicate-key",
                    )
                )
                continue
            seen.add(key)
            try:
                out[key] = self.fields[key].schema.check(vnode, ctx)
            except ConfigError as exc:
                if "password" in key:
                    # `password_env: hunter2!` is a password written where a name belongs: an
                    # error must never print it (logs, CI output, a pasted terminal).
                    exc = ConfigError(
                        exc.mark,
                        f"the value of {key} is not {self.fields[key].schema.describe} (not shown: "
                        "it may be a secret)",
                        exc.fix,
                        exc.code,
                    )
                ctx.collect(exc)
                failed.add(key)
                continue
            out.key_marks[key] = ctx.mark(vnode)
        for key, f in self.fields.items():
            if key in out:
                continue
            if f.required and key not in failed:
                doc = f" ({f.doc})" if f.doc else ""
                ctx.collect(
                    ConfigError(
                        out.mark,
                        f"{self.name} is missing required key {key!r}{doc}",
                        f"add `{key}: <{f.schema.describe}>`",
                        "missing-key",
                    )
                )
            # Collecting: a wrong or missing value stands as the default (None when required), so
            # later rules see a complete Section and skip what is unknown.
            out[key] = f.default_factory() if f.default_factory else f.default
        return out


# No config of ours nests deeper than a few levels; PyYAML's composer recurses per level and
# would die with a RecursionError (a traceback) somewhere past ~300. Checked on the event stream
# first, which is flat, so the error can say where.
MAX_DEPTH = 64


def _too_deep(text: str, file: Path | str) -> ConfigError | None:
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    m = event.start_mark
                    return ConfigError(
                        Mark(file, m.line + 1, m.column + 1) if m else Mark(file, 1, 1),
                        f"YAML nested more than {MAX_DEPTH} levels deep",
                        "no provision file nests this deep: look for runaway [ or { brackets",
                        "yaml-too-deep",
                    )
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.YAMLError:
        return None  # compose reports it, with its mark
    return None


def _compose(text: str, file: Path | str) -> yaml.Node | None:
    deep = _too_deep(text, file)
    if deep is not None:
        raise deep
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        m = exc.problem_mark or exc.context_mark
        mark = Mark(file, m.line + 1, m.column + 1) if m else Mark(file, 1, 1)
        raise ConfigError(
            mark,
            f"YAML syntax error: {exc.problem or exc.context}",
            "check indentation (spaces, not tabs) and quoting around ':' and '#'",
            "yaml-syntax",
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(Mark(file, 1, 1), f"YAML error: {exc}", code="yaml-syntax") from None


def load_text(
    text: str, schema: Schema, file: Path | str = "<string>", errors: list[ConfigError] | None = None
) -> _Any:
    """Check `text` against `schema`. With `errors` (a list), every schema error is appended
    there and the result holds defaults where values were wrong; a YAML syntax error still
    raises (there is no document to go on with)."""
    ctx = Context(file, errors)
    node = _compose(text, file)
    if node is None:
        node = yaml.ScalarNode("tag:yaml.org,2002:null", "", yaml.Mark(str(file), 0, 0, 0, None, 0))
    return schema.check(node, ctx)


def load_file(path: Path | str, schema: Schema) -> _Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(None, f"{path}: no such file", "check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(None, f"{path}: cannot read: {exc}") from None
    return load_text(text, schema, path)
