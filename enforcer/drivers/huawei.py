"""Huawei VRP (netmiko ``huawei``): ``system-view``, ``shutdown``, ``save`` with ``[Y/N]``.

``display interface brief`` marks an administratively-down interface ``*down`` in the PHY
column; VRP reports errors as ``Error: ...``."""

from __future__ import annotations

from enforcer.drivers import register
from enforcer.drivers.base import SystemViewDriver


@register
class HuaweiDriver(SystemViewDriver):
    device_type = "huawei"
    error_pattern = r"^\s*Error:.*$|Unrecognized command.*$"

    def brief_is_admin_down(self, fields: list[str]) -> bool:
        return fields[1].lower() == "*down"
