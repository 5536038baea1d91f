"""H3C Comware (netmiko ``hp_comware``): ``system-view``, ``shutdown``, ``save force``.

``display interface brief`` shows ``ADM`` in the Link column for an administratively-down
interface; Comware reports errors as ``% Unrecognized command found at '^' position.`` and
friends."""

from __future__ import annotations

from typing import Any

from enforcer.drivers import register
from enforcer.drivers.base import SystemViewDriver


@register
class ComwareDriver(SystemViewDriver):
    device_type = "hp_comware"
    error_pattern = (
        r"^\s*%\s*(?:Unrecognized command|Incomplete command|Too many parameters|"
        r"Wrong parameter|Ambiguous command).*$|^\s*Error:.*$"
    )

    paging_command = "screen-length disable"
    save_command = "save force"

    def connect_options(self) -> dict[str, Any]:
        # netmiko turns command-echo verification off for Comware because long lines wrap at
        # the terminal width; every line our templates render is short (checked at render
        # time), so the echo is exact and we keep cmd_verify as for the other vendors.
        return {"global_cmd_verify": True}

    def brief_is_admin_down(self, fields: list[str]) -> bool:
        return fields[1].upper() == "ADM"
