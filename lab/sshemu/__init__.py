"""Stateful Huawei VRP / H3C Comware SSH CLI emulator for the enforcer's tests and the demo.

Nothing public emulates these vendors' configuration mode, so this package does: prompts,
views, abbreviations, caret errors, ``save`` dialogues, ``display`` output and fault
injection, close enough that netmiko's own ``huawei`` and ``hp_comware`` drivers run
against it unchanged (see docs in ``server.py`` and ``cli.py``)."""

from lab.sshemu.model import AclRule, DeviceState, EmulatedDevice, Faults, Profile
from lab.sshemu.server import Emulator, EmulatorCore, start

__all__ = [
    "AclRule",
    "DeviceState",
    "EmulatedDevice",
    "Emulator",
    "EmulatorCore",
    "Faults",
    "Profile",
    "start",
]
