"""A rollout plan: which devices, to what, in which waves, behind which gates (docs/rollout.md).

Read from YAML through the schema layer (provision.config.schema), so every problem is reported
at once as `file:line:col: what` with a fix, exit 2; or built from `provision rollout start`'s
flags for the simple case, through the same checks. The result (`Plan`) is resolved against the
inventory once, at start: the device list and the waves are stored with the rollout, so a
resume runs the same waves even if lab.yml changed since.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from provision.config import Any as AnyValue
from provision.config import Bool, ConfigError, Field, Int, Map, Mark, Obj, Section, Str
from provision.config.errors import ConfigErrors, Finding
from provision.config.inventory import Device, Inventory
from provision.config.schema import Context, Schema, _compose

GLOB_CHARS = "*?["
# tags: a device must carry every tag listed (each may be a glob); the others: any value listed
FILTER_KEYS = ("role", "group", "site", "rack", "platform", "profile", "tags")
DEFAULT_TIMEOUTS = {"arm": 300, "install": 1800, "boot": 900}


class Marked(str):
    """A string that remembers where it was written (None: given as a flag)."""

    mark: Mark | None = None


def _marked(value: str, mark: Mark | None) -> Marked:
    out = Marked(value)
    out.mark = mark
    return out


class _Strs(Schema):
    """One string or a list of them: `rack: r1` or `rack: [r1, r2]`; each keeps its mark."""

    describe = "a name or a list of names (globs work: 'leaf-*')"

    def check(self, node: yaml.Node, ctx: Context) -> list[Marked]:
        nodes = node.value if isinstance(node, yaml.SequenceNode) else [node]
        out: list[Marked] = []
        for child in nodes:
            if not isinstance(child, yaml.ScalarNode) or not child.value:
                raise ctx.error(child, f"expected {self.describe}", "write a name, or a list: [a, b]")
            out.append(_marked(child.value, ctx.mark(child)))
        return out


SELECTION = Obj(
    {
        "names": Field(_Strs(), default_factory=list, doc="device names or globs"),
        **{
            k: Field(_Strs(), default_factory=list, doc=f"the inventory's {k} (globs work)")
            for k in FILTER_KEYS
        },
        "exclude": Field(_Strs(), default_factory=list, doc="names or globs left out"),
    },
    name="devices",
)


class _Selection(Schema):
    """`devices:` as a mapping of filters, or as a plain list of names/globs."""

    describe = "a list of device names, or a mapping of filters (names, role, group, site, rack, ...)"

    def check(self, node: yaml.Node, ctx: Context) -> Section:
        if isinstance(node, yaml.SequenceNode | yaml.ScalarNode) and not (
            isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"
        ):
            out = Section(names=_Strs().check(node, ctx), exclude=[], **{k: [] for k in FILTER_KEYS})
            out.mark = ctx.mark(node)
            out.key_marks["names"] = out.mark
            return out
        return SELECTION.check(node, ctx)


class _Canaries(Schema):
    """`canaries: 2` (the first two of the selection) or `canaries: [leaf-01, leaf-17]`."""

    describe = "a number of devices, or a list of device names"

    def check(self, node: yaml.Node, ctx: Context) -> int | list[Marked]:
        if isinstance(node, yaml.ScalarNode) and node.value.isdigit():
            return int(node.value)
        return _Strs().check(node, ctx)


DRIVER_CHOICE = Obj(
    {
        "name": Field(Str(), default=None, doc="the arming driver (ssh, bmc, qemu, manual)"),
        "options": Field(Map(AnyValue()), default_factory=dict, doc="merged over the plan's options"),
    },
    name="driver override",
)


class _Driver(Schema):
    """`driver: ssh`, or a mapping with options and per-group / per-device overrides."""

    describe = "a driver name, or a mapping (name, options, groups, devices)"
    full = Obj(
        {
            "name": Field(Str(), required=True, doc="the arming driver (ssh, bmc, qemu, manual)"),
            "options": Field(Map(AnyValue()), default_factory=dict),
            "groups": Field(Map(DRIVER_CHOICE), default_factory=dict, doc="overrides per inventory group"),
            "devices": Field(Map(DRIVER_CHOICE), default_factory=dict, doc="overrides per device"),
        },
        name="driver",
    )

    def check(self, node: yaml.Node, ctx: Context) -> Section:
        if isinstance(node, yaml.ScalarNode) and node.tag != "tag:yaml.org,2002:null":
            out = Section(name=Str().check(node, ctx), options={}, groups={}, devices={})
            out.mark = ctx.mark(node)
            out.key_marks["name"] = out.mark
            return out
        return self.full.check(node, ctx)


PLAN = Obj(
    {
        "name": Field(Str(), default=None, doc="a label for list and status (default: the file's name)"),
        "devices": Field(_Selection(), required=True, doc="which devices of the inventory"),
        "target": Field(
            Str(), required=True, doc="what to arm them with: a NOS version, an installer file, a boot entry"
        ),
        "version": Field(Str(), default=None, doc="the NOS version a done device reports (default: target)"),
        "canaries": Field(_Canaries(), default=0, doc="the first N of the selection, or named devices"),
        "wave_size": Field(Int(), default=10, doc="devices per wave after the canaries"),
        "max_parallel": Field(Int(), default=None, doc="devices in flight at once (default: wave_size)"),
        "gates": Field(
            Obj(
                {
                    "max_failures": Field(Int(0), default=None, doc="stop when a wave has more failures"),
                    "max_failure_percent": Field(Int(0, 100), default=None, doc="... or more than P%"),
                    "pause_after_canaries": Field(Bool(), default=False),
                    "delay": Field(Int(0), default=0, doc="seconds between waves"),
                },
                name="gates",
            ),
            default=None,
        ),
        "timeouts": Field(
            Obj({k: Field(Int(1), default=v) for k, v in DEFAULT_TIMEOUTS.items()}, name="timeouts"),
            default=None,
        ),
        "retries": Field(Int(0, 10), default=0, doc="new armings of a device that failed"),
        "driver": Field(_Driver(), required=True, doc="how devices are taken into the install"),
    },
    name="rollout plan",
)


@dataclass(frozen=True)
class DriverChoice:
    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """A plan resolved against the inventory: devices and waves are names, fixed at start."""

    name: str
    source: str  # the plan file, or "flags"
    target: str
    version: str | None  # what current_version must say when a device is done (None: servers)
    waves: tuple[tuple[str, ...], ...]  # wave 0 holds the canaries when there are any
    canaries: int  # how many devices wave 0 holds as canaries (0: no canary wave)
    max_parallel: int
    max_failures: int | None
    max_failure_percent: int | None
    pause_after_canaries: bool
    delay: int
    timeouts: dict[str, int]
    retries: int
    drivers: dict[str, DriverChoice]  # per device
    notes: tuple[str, ...] = ()  # said at start and in --dry-run (devices left out, and why)

    @property
    def devices(self) -> list[str]:
        return [n for wave in self.waves for n in wave]

    def to_doc(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "target": self.target,
            "version": self.version,
            "waves": [list(w) for w in self.waves],
            "canaries": self.canaries,
            "max_parallel": self.max_parallel,
            "max_failures": self.max_failures,
            "max_failure_percent": self.max_failure_percent,
            "pause_after_canaries": self.pause_after_canaries,
            "delay": self.delay,
            "timeouts": dict(self.timeouts),
            "retries": self.retries,
            "drivers": {n: {"name": d.name, "options": d.options} for n, d in self.drivers.items()},
            "notes": list(self.notes),
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Plan:
        return cls(
            name=doc["name"],
            source=doc["source"],
            target=doc["target"],
            version=doc.get("version"),
            waves=tuple(tuple(w) for w in doc["waves"]),
            canaries=int(doc["canaries"]),
            max_parallel=int(doc["max_parallel"]),
            max_failures=doc.get("max_failures"),
            max_failure_percent=doc.get("max_failure_percent"),
            pause_after_canaries=bool(doc.get("pause_after_canaries")),
            delay=int(doc.get("delay") or 0),
            timeouts={**DEFAULT_TIMEOUTS, **doc.get("timeouts", {})},
            retries=int(doc.get("retries") or 0),
            drivers={
                n: DriverChoice(d["name"], dict(d.get("options") or {})) for n, d in doc["drivers"].items()
            },
            notes=tuple(doc.get("notes") or ()),
        )

    def gate_tripped(self, wave: int, failed: int, size: int) -> str | None:
        """Why the gate stops the rollout after `failed` of `size` devices of `wave` failed
        (None: it does not). The canary wave stops at its first failure: that is what canaries
        are for."""
        if failed == 0:
            return None
        if wave == 0 and self.canaries:
            return f"canary wave: {failed} of {size} failed (any canary failure stops the rollout)"
        if self.max_failures is not None and failed > self.max_failures:
            return f"wave {wave}: {failed} of {size} failed, more than max_failures {self.max_failures}"
        if self.max_failure_percent is not None and failed * 100 > self.max_failure_percent * size:
            return (
                f"wave {wave}: {failed} of {size} failed ({failed * 100 / size:.0f}%), more than "
                f"max_failure_percent {self.max_failure_percent}%"
            )
        return None


# -- reading and resolving ------------------------------------------------------------------------


class _Problems:
    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def add(self, mark: Mark | None, message: str, fix: str | None = None, code: str = "bad-plan") -> None:
        self.findings.append(Finding("error", code, mark, message, fix))

    def raise_any(self) -> None:
        if self.findings:
            where = [(f.mark.line, f.mark.column) if f.mark else (0, 0) for f in self.findings]
            raise ConfigErrors(
                [f for _w, f in sorted(zip(where, self.findings, strict=True), key=lambda p: p[0])]
            )


def _did_you_mean(name: str, names: Collection[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=3)
    return f"did you mean {', '.join(close)}? " if close else ""


def _matches(dev: Device, key: str, patterns: list[Marked]) -> bool:
    if key == "tags":
        return all(any(fnmatch.fnmatchcase(t, p) for t in dev.tags) for p in patterns)
    value = getattr(dev, key)
    return value is not None and any(fnmatch.fnmatchcase(str(value), p) for p in patterns)


def _select(sel: Section, inv: Inventory, problems: _Problems) -> tuple[list[Device], list[str]]:
    """The devices `devices:` selects, in order (named ones in the order named, else the
    inventory's), and notes on devices left out."""
    notes: list[str] = []
    names: list[Marked] = sel["names"]
    chosen: dict[str, Device] = {}
    named: set[str] = set()
    if names:
        for pattern in names:
            if any(c in pattern for c in GLOB_CHARS):
                hits = [d for d in inv.devices if fnmatch.fnmatchcase(d.name, pattern)]
                if not hits:
                    problems.add(
                        pattern.mark,
                        f"no device matches {str(pattern)!r}",
                        "check the pattern; `provision devices list` shows the inventory",
                        "unknown-device",
                    )
                chosen.update((d.name, d) for d in hits)
                continue
            dev = inv.named(pattern)
            if dev is None:
                problems.add(
                    pattern.mark,
                    f"no device {str(pattern)!r} in the inventory (lab.yml's devices and enrolled ones)",
                    f"{_did_you_mean(pattern, [d.name for d in inv.devices])}"
                    "enroll it (provision devices enroll) or add it to lab.yml; give --lab lab.yml",
                    "unknown-device",
                )
                continue
            chosen[dev.name] = dev
            named.add(dev.name)
    else:
        chosen = {d.name: d for d in inv.devices}
    for key in FILTER_KEYS:
        if sel[key]:
            for name, dev in list(chosen.items()):
                if not _matches(dev, key, sel[key]):
                    del chosen[name]
                    if name in named:
                        notes.append(f"{name}: named, but its {key} is {getattr(dev, key)!r}: left out")
    for name in list(chosen):
        if any(fnmatch.fnmatchcase(name, p) for p in sel["exclude"]):
            del chosen[name]
    for name, dev in list(chosen.items()):
        if dev.install in ("always", "never"):
            if name in named:
                problems.add(
                    next((p.mark for p in names if p == name), None),
                    f"{name} has install: {dev.install}: a rollout cannot arm it",
                    "drop it from the plan, or set install: armed in lab.yml",
                    "not-armable",
                )
            else:
                notes.append(f"{name}: install: {dev.install} (cannot be armed): left out")
            del chosen[name]
    return list(chosen.values()), notes


def resolve(
    data: Section,
    inventory: Inventory,
    *,
    source: str,
    drivers: Collection[str],
    check_target: Callable[[Device, str], str | None] | None = None,
    version_of: Callable[[Device, str], str | None] | None = None,
    problems: _Problems | None = None,
) -> Plan:
    """The plan of a checked document (`PLAN`), against `inventory`; every problem at once
    (ConfigErrors, exit 2). `drivers`: the known driver names; `check_target(dev, target)`: why
    `target` cannot be armed for `dev` (None: it can); `version_of(dev, target)`: the NOS version
    that target installs (the installer's header), "" for a boot entry (no version to check),
    None when it cannot be told (then `version`, else `target` itself, is the version)."""
    problems = problems or _Problems()
    sel: Section = data["devices"]
    gates = data["gates"] or {"max_failures": None, "max_failure_percent": None}
    gates_section = data["gates"] if isinstance(data["gates"], Section) else None
    devices: list[Device] = []
    notes: list[str] = []
    if sel is not None:
        devices, notes = _select(sel, inventory, problems)
        if not devices and not problems.findings:
            problems.add(
                sel.mark,
                "the selection is empty: no device of the inventory matches devices:",
                "check the filters against `provision devices list` (and give --lab lab.yml)",
                "empty-selection",
            )
    names = [d.name for d in devices]
    wave_size: int = data["wave_size"]
    if wave_size is not None and wave_size < 1:
        problems.add(
            data.mark_of("wave_size"),
            f"wave_size {wave_size}: a wave needs at least one device",
            "write wave_size: 1 or more (after the canaries, devices go this many at a time)",
            "bad-wave-size",
        )
    max_parallel = data["max_parallel"]
    if max_parallel is not None and max_parallel < 1:
        problems.add(
            data.mark_of("max_parallel"),
            f"max_parallel {max_parallel}: at least one device must be in flight",
            "write max_parallel: 1 or more, or leave it out (default: wave_size)",
            "bad-max-parallel",
        )
    canaries = data["canaries"]
    canary_names: list[str] = []
    if isinstance(canaries, list):
        for c in canaries:
            if c not in names:
                problems.add(
                    c.mark,
                    f"canary {str(c)!r} is not in the selection",
                    f"{_did_you_mean(c, names)}add it to devices:, or name a selected device",
                    "canary-not-selected",
                )
            elif c not in canary_names:
                canary_names.append(str(c))
    elif canaries:
        if devices and canaries > len(devices):
            problems.add(
                data.mark_of("canaries"),
                f"canaries: {canaries}, but the selection has {len(devices)} device(s)",
                f"write canaries: {max(len(devices) - 1, 0)} or fewer",
                "too-many-canaries",
            )
        canary_names = names[:canaries]
    drv: Section | None = data["driver"]
    choices: dict[str, DriverChoice] = {}
    if drv is not None and drv["name"] is not None:
        for name, mark in [(drv["name"], drv.mark_of("name"))] + [
            (o["name"], o.mark_of("name")) for o in (*drv["groups"].values(), *drv["devices"].values())
        ]:
            if name is not None and name not in drivers:
                problems.add(
                    mark,
                    f"unknown arming driver {name!r}",
                    f"{_did_you_mean(name, drivers)}use one of: {', '.join(sorted(drivers)) or 'none'}"
                    " (docs/rollout.md, Drivers)",
                    "unknown-driver",
                )
        for dname in drv["devices"]:
            if dname not in names:
                problems.add(
                    drv["devices"].mark_of(dname),
                    f"driver override for {dname!r}, which is not in the selection",
                    f"{_did_you_mean(dname, names)}remove the override or select the device",
                    "unknown-device",
                )
        for dev in devices:
            name, options = drv["name"], dict(drv["options"])
            for over in (drv["groups"].get(dev.group or ""), drv["devices"].get(dev.name)):
                if over:
                    name = over["name"] or name
                    options.update(over["options"])
            choices[dev.name] = DriverChoice(name, options)
    target: str | None = data["target"]
    if target is not None and check_target is not None:
        seen: set[str] = set()
        for dev in devices:
            why = check_target(dev, target)
            if why and why not in seen:
                seen.add(why)
                problems.add(
                    data.mark_of("target"),
                    f"target {target!r} for {dev.name}: {why}",
                    "name an installer of onie.installers (file, NOS version or name-version) or a boot entry",
                    "bad-target",
                )
    if gates_section is not None and gates_section["pause_after_canaries"] and not canaries:
        problems.add(
            gates_section.mark_of("pause_after_canaries"),
            "pause_after_canaries without canaries",
            "add canaries: N (or a list of names), or drop pause_after_canaries",
            "no-canaries",
        )
    problems.raise_any()
    assert target is not None and drv is not None
    rest = [n for n in names if n not in canary_names]
    waves: list[tuple[str, ...]] = [tuple(canary_names)] if canary_names else []
    waves += [tuple(rest[i : i + wave_size]) for i in range(0, len(rest), wave_size)]
    timeouts = dict(data["timeouts"]) if data["timeouts"] else dict(DEFAULT_TIMEOUTS)
    max_failures, max_percent = gates["max_failures"], gates["max_failure_percent"]
    if max_failures is None and max_percent is None:
        max_failures = 0  # the safe default: any failure in a wave stops the rollout
    version: str | None = data["version"]
    if version is None:
        told = version_of(devices[0], target) if version_of and devices else None
        version = target if told is None else (told or None)
    return Plan(
        name=data["name"] or Path(source).stem,
        source=source,
        target=target,
        version=version,
        waves=tuple(waves),
        canaries=len(canary_names),
        max_parallel=max_parallel or wave_size,
        max_failures=max_failures,
        max_failure_percent=max_percent,
        pause_after_canaries=bool(gates_section and gates_section["pause_after_canaries"]),
        delay=int(gates_section["delay"]) if gates_section else 0,
        timeouts=timeouts,
        retries=data["retries"],
        drivers=choices,
        notes=tuple(notes),
    )


def load_plan(
    path: Path,
    inventory: Inventory,
    *,
    drivers: Collection[str],
    check_target: Callable[[Device, str], str | None] | None = None,
    version_of: Callable[[Device, str], str | None] | None = None,
) -> Plan:
    """Read, check and resolve a plan file: every problem at once (ConfigErrors, exit 2)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(None, f"{path}: cannot read: {exc}", "check the path of the plan") from None
    errors: list[ConfigError] = []
    node = _compose(text, path)
    if node is None:
        raise ConfigError(Mark(path, 1, 1), "the plan is empty", "see examples/rollout.yml")
    data = PLAN.check(node, Context(path, errors))
    problems = _Problems()
    problems.findings += [Finding("error", e.code or "bad-value", e.mark, e.message, e.fix) for e in errors]
    return resolve(
        data,
        inventory,
        source=str(path),
        drivers=drivers,
        check_target=check_target,
        version_of=version_of,
        problems=problems,
    )


def plan_from_flags(
    inventory: Inventory,
    *,
    devices: tuple[str, ...],
    target: str | None,
    drivers: Collection[str],
    name: str | None = None,
    version: str | None = None,
    canaries: int = 0,
    wave_size: int = 10,
    max_parallel: int | None = None,
    max_failures: int | None = None,
    max_failure_percent: int | None = None,
    pause_after_canaries: bool = False,
    delay: int = 0,
    retries: int = 0,
    driver: str | None = None,
    options: Mapping[str, Any] | None = None,
    check_target: Callable[[Device, str], str | None] | None = None,
    version_of: Callable[[Device, str], str | None] | None = None,
) -> Plan:
    """The simple case from flags, through the same checks as a file (errors without a place)."""
    problems = _Problems()
    if not target:
        problems.add(None, "no target", "give --target VERSION|INSTALLER|BOOT-ENTRY", "missing-target")
    if not driver:
        problems.add(
            None, "no arming driver", f"give --driver ({', '.join(sorted(drivers))})", "missing-driver"
        )
    sel = Section(names=[_marked(d, None) for d in devices], exclude=[], **{k: [] for k in FILTER_KEYS})
    if not devices:
        problems.add(
            None, "which devices?", "give --devices NAME|'GLOB' (repeat it for more)", "empty-selection"
        )
    gates = Section(
        max_failures=max_failures,
        max_failure_percent=max_failure_percent,
        pause_after_canaries=pause_after_canaries,
        delay=delay,
    )
    drv = Section(name=driver, options=dict(options or {}), groups=Section(), devices=Section())
    data = Section(
        name=name or "flags",
        devices=sel if devices else None,
        target=target,
        version=version,
        canaries=canaries,
        wave_size=wave_size,
        max_parallel=max_parallel,
        gates=gates,
        timeouts=None,
        retries=retries,
        driver=drv,
    )
    return resolve(
        data,
        inventory,
        source="flags",
        drivers=drivers,
        check_target=check_target,
        version_of=version_of,
        problems=problems,
    )


__all__ = ["PLAN", "DriverChoice", "Plan", "load_plan", "plan_from_flags", "resolve"]
