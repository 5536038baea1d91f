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
    paging_command = "screen-length 0 temporary"
    save_command = "save"
    save_question = r"\[Y/N\]:?\s*$"
    save_answer = "y"
    # VRP redraws long lines with "space ESC[1D"; netmiko's huawei driver strips it too.
    ansi_escape_codes = True

    def brief_is_admin_down(self, fields: list[str]) -> bool:
        return fields[1].lower() == "*down"
