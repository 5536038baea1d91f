"""Driver plugins keyed by netmiko device type.

Every module in this package that defines a :class:`Driver` subclass registers itself through
:func:`register`; other distributions can add vendors through the ``edgewarden.drivers`` entry
point group. Adding a vendor is a new module plus its template folder, never an edit here."""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points
from typing import TypeVar

from enforcer.drivers.base import Batch, Driver, Verdict
from enforcer.errors import UnknownDriver

__all__ = ["Batch", "Driver", "Verdict", "available", "get_driver", "register"]

_REGISTRY: dict[str, type[Driver]] = {}
_INSTANCES: dict[str, Driver] = {}
_loaded = False
D = TypeVar("D", bound=type[Driver])


def register(cls: D) -> D:
    """Class decorator: make ``cls`` the driver for ``cls.device_type``."""
    _REGISTRY[cls.device_type] = cls
    return cls


def _discover() -> None:
    global _loaded
    if _loaded:
        return
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")
    for ep in entry_points(group="edgewarden.drivers"):
        register(ep.load())
    _loaded = True


def available() -> list[str]:
    """Device types that have a driver."""
    _discover()
    return sorted(_REGISTRY)


def get_driver(device_type: str) -> Driver:
    """The (stateless, shared) driver for a netmiko device type."""
    _discover()
    if device_type not in _INSTANCES:
        cls = _REGISTRY.get(device_type)
        if cls is None:
            raise UnknownDriver(
                f"no enforcement driver for device type {device_type!r} "
                f"(have: {', '.join(sorted(_REGISTRY))})"
            )
        _INSTANCES[device_type] = cls()
    return _INSTANCES[device_type]
