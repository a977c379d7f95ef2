"""`fast_init`: a frozen dataclass whose `__init__` fills the instance dict directly.

The `__init__` dataclasses writes for a frozen class sets each field through `object.__setattr__`
(to get past the class's own `__setattr__`, which raises): about 0.1 µs a field, paid for every
Client, BootDecision, Event, Lease and Answer the DHCP path builds per packet (bench/dhcp.py,
docs/netboot.md "Performance: the DHCP hot path"). For a class without `__slots__` the instance
dict is where `object.__setattr__` puts the values anyway; storing into it directly makes the same
object for half the cost. The signature (names, order, defaults, default factories) is the
dataclass's own; what this cannot reproduce (`__post_init__`, InitVar, `init=False` or kw-only
fields, `__slots__`) is refused when the class is defined.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, TypeVar

T = TypeVar("T")


class _Factory:
    def __repr__(self) -> str:
        return "<factory>"  # what inspect.signature shows for dataclasses' own


_MISSING = _Factory()


def fast_init(cls: type[T]) -> type[T]:
    """Class decorator, above `@dataclass(frozen=True)`: replaces the generated `__init__`."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise TypeError(f"{cls.__name__}: fast_init is for frozen dataclasses")
    if hasattr(cls, "__post_init__") or "__slots__" in cls.__dict__:
        raise TypeError(f"{cls.__name__}: __post_init__ and __slots__ are not supported by fast_init")
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    generated = cls.__init__
    names = list(inspect.signature(generated).parameters)[1:]
    if names != [f.name for f in fields] or any(f.kw_only or f.name.startswith("_fi_") for f in fields):
        raise TypeError(f"{cls.__name__}: InitVar, init=False and kw-only fields are not supported")
    scope: dict[str, Any] = {"_fi_MISSING": _MISSING}
    args, body = [], []
    for f in fields:
        if f.default is not dataclasses.MISSING:
            scope[f"_fi_d_{f.name}"] = f.default
            args.append(f"{f.name}=_fi_d_{f.name}")
            body.append(f"    _fi_dict[{f.name!r}] = {f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            scope[f"_fi_f_{f.name}"] = f.default_factory
            args.append(f"{f.name}=_fi_MISSING")
            body.append(
                f"    _fi_dict[{f.name!r}] = _fi_f_{f.name}() if {f.name} is _fi_MISSING else {f.name}"
            )
        else:
            args.append(f.name)
            body.append(f"    _fi_dict[{f.name!r}] = {f.name}")
    source = f"def __init__(_fi_self, {', '.join(args)}):\n    _fi_dict = _fi_self.__dict__\n" + "\n".join(
        body
    )
    exec(source, scope)  # the same technique as dataclasses' own generated methods
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__annotations__ = dict(getattr(generated, "__annotations__", {}))
    cls.__init__ = init  # type: ignore[method-assign]
    return cls


__all__ = ["fast_init"]
