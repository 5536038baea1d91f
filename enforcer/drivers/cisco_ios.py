"""Cisco IOS (netmiko ``cisco_ios``): ``enable``, ``configure terminal``, ``write mem``.

Verification reads ``show running-config interface X`` for a ``shutdown`` line: fake-switches
(the lab's IOS model) prints no "administratively down" in ``show interfaces``, and the
running configuration is what a real IOS reports too."""

from __future__ import annotations

import re

from enforcer.drivers import register
from enforcer.drivers.base import Driver


@register
class CiscoIosDriver(Driver):
    device_type = "cisco_ios"
    error_pattern = r"^\s*%\s*(?:Invalid input|Incomplete command|Ambiguous command).*$"
    needs_enable = True

    def interface_state(self, output: str, interface: str) -> bool | None:
        if not re.search(r"^interface\s+\S+", output, flags=re.M):
            return None
        return self.config_shutdown(output)
