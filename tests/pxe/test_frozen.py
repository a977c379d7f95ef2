"""pxe.frozen.fast_init: the same objects as dataclasses' own frozen __init__, built cheaper."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import InitVar, dataclass, field

import pytest

from pxe.dhcp.leases import Answer, Lease, LeaseState, Outcome
from pxe.frozen import fast_init
from pxe.policy import BootDecision, Client, Event, Service


@dataclass(frozen=True)
class _Plain:
    a: int
    b: str | None = None
    c: dict[str, int] = field(default_factory=dict)


@fast_init
@dataclass(frozen=True)
class _Fast:
    a: int
    b: str | None = None
    c: dict[str, int] = field(default_factory=dict)


def test_same_fields_defaults_and_factories_as_the_generated_init() -> None:
    assert vars(_Fast(1)) == vars(_Plain(1)) == {"a": 1, "b": None, "c": {}}
    assert vars(_Fast(1, "x", {"k": 2})) == vars(_Plain(1, "x", {"k": 2}))
    assert vars(_Fast(a=3, c={"k": 1})) == vars(_Plain(a=3, c={"k": 1}))
    assert _Fast(1).c is not _Fast(1).c  # a fresh dict per instance, as default_factory says
    assert str(inspect.signature(_Fast)) == str(inspect.signature(_Plain))
    with pytest.raises(TypeError):
        _Fast()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        _Fast(1, d=2)  # type: ignore[call-arg]


def test_instances_stay_frozen_hashable_and_replaceable() -> None:
    d = BootDecision(bootfile="undionly.kpxe", note="n")
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.bootfile = "x"  # type: ignore[misc]
    assert d == BootDecision(bootfile="undionly.kpxe", note="n")
    assert dataclasses.replace(d, note="m").note == "m"
    lease = Lease("198.18.0.9", "52:54:00:00:00:01", LeaseState.BOUND, 10.0, "198.18.0.0/24")
    assert hash(lease) == hash(dataclasses.replace(lease))
    assert Answer(Outcome.ACK, ip="198.18.0.9").lease_time == 0
    assert Event("dhcp.ack").ts > 0 and Event("dhcp.ack").detail == {}
    client = Client(mac="52:54:00:00:00:01", service=Service.DHCP)
    assert client.options == {} and client.headers == {} and client.arch is None


def test_what_it_cannot_reproduce_is_refused() -> None:
    @dataclass(frozen=True)
    class Post:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclass(frozen=True)
    class WithInitVar:
        a: int
        b: InitVar[int] = 0

    @dataclass(frozen=True)
    class KwOnly:
        a: int = field(kw_only=True)

    @dataclass
    class NotFrozen:
        a: int

    for cls in (Post, WithInitVar, KwOnly, NotFrozen):
        with pytest.raises(TypeError):
            fast_init(cls)
