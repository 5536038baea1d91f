"""Run one fake-switches Cisco IOS device over SSH, with the fixes it needs on Python 3.

Runs inside fake-switches' own venv (see lab/fakeswitches.py), so it imports nothing of
Edge Warden. Fixes (../shared/LAB.md): the enable password is kept as str (upstream passes
bytes, so ``enable`` with a password always fails); config mode gets ``end`` (netmiko's
``send_config_set`` leaves config mode with it); the port list holds exactly the given
interfaces, sub-interfaces included; ``ip route P M Null0`` is accepted (upstream requires
an IP next hop) and ``ipv6 route CIDR Null0`` exists (upstream has no IPv6 routes);
unknown or failing commands answer IOS's ``% Invalid input detected at '^' marker.``
instead of a private message or a dropped session; ``terminal length 0`` works before
``enable`` as on IOS. Prints ``ready PORT`` once listening; SIGTERM stops it."""

from __future__ import annotations

import argparse
import logging
import sys

from fake_switches import switch_factory
from fake_switches.cisco import cisco_core
from fake_switches.cisco.command_processor import enabled
from fake_switches.cisco.command_processor.config import ConfigCommandProcessor
from fake_switches.cisco.command_processor.default import DefaultCommandProcessor
from fake_switches.command_processing.shell_session import ShellSession
from fake_switches.switch_configuration import Port, Route
from fake_switches.transports.ssh_service import SwitchSshService
from netaddr import IPAddress, IPNetwork
from twisted.internet import reactor

log = logging.getLogger("fakeswitches_main")


def _config_end(self, *_args):
    """IOS ``end``: leave configuration mode from any sub-mode."""
    self.is_done = True


def _route_init(self, destination, mask, next_hop):
    self.dest = IPNetwork(f"{destination}/{mask}")
    try:
        self.next_hop = IPAddress(next_hop)
    except Exception:
        self.next_hop = next_hop  # an interface: Null0


_upstream_no_ip = ConfigCommandProcessor.do_no_ip


def _config_no_ip(self, cmd, *args):
    try:
        _upstream_no_ip(self, cmd, *args)
    except StopIteration:
        self.write_line("%No matching route to delete")


class Route6:
    """An IPv6 static route, kept in the same list as upstream's IPv4 ones."""

    def __init__(self, cidr, next_hop):
        self.dest = IPNetwork(cidr)
        self.next_hop = next_hop

    @property
    def destination(self):
        return self.dest


_upstream_build_static_routes = enabled.build_static_routes


def _build_static_routes(route):
    if isinstance(route, Route6):
        return f"ipv6 route {route.dest} {route.next_hop}"
    return _upstream_build_static_routes(route)


def _config_ipv6(self, cmd, *args):
    if not "route".startswith(cmd) or len(args) != 2:
        raise ValueError(f"unsupported: ipv6 {cmd} {' '.join(args)}")
    route = Route6(args[0], args[1])
    routes = self.switch_configuration.static_routes
    if not any(isinstance(r, Route6) and r.dest == route.dest for r in routes):
        routes.append(route)


def _config_no_ipv6(self, cmd, *args):
    if not "route".startswith(cmd) or not args:
        raise ValueError(f"unsupported: no ipv6 {cmd} {' '.join(args)}")
    routes = self.switch_configuration.static_routes
    dest = IPNetwork(args[0])
    hit = [r for r in routes if isinstance(r, Route6) and r.dest == dest]
    if not hit:
        self.write_line("%No matching route to delete")
    for r in hit:
        routes.remove(r)


def _deepest(processor):
    while processor.sub_processor is not None:
        processor = processor.sub_processor
    return processor


def _invalid_input(self, line):
    prompt = _deepest(self.command_processor).get_prompt() or ""
    self.command_processor.terminal_controller.write(
        " " * len(prompt) + "^\n% Invalid input detected at '^' marker.\n\n"
    )


_upstream_receive = ShellSession.receive


def _receive(self, line):
    try:
        return _upstream_receive(self, line)
    except Exception:
        log.exception("command failed: %s", line)
        _invalid_input(self, line)
        self.command_processor.show_prompt()
        return True


def patch() -> None:
    ConfigCommandProcessor.do_end = _config_end
    ConfigCommandProcessor.do_no_ip = _config_no_ip
    ConfigCommandProcessor.do_ipv6 = _config_ipv6
    ConfigCommandProcessor.do_no_ipv6 = _config_no_ipv6
    enabled.build_static_routes = _build_static_routes
    DefaultCommandProcessor.do_terminal = lambda self, *args: None
    Route.__init__ = _route_init
    cisco_core.CiscoShellSession.handle_unknown_command = _invalid_input
    cisco_core.CiscoShellSession.receive = _receive


def ports_for(interfaces: list[str]) -> list[Port]:
    """Ports for the interfaces, each sub-interface's parent first if not listed."""
    names: list[str] = []
    for name in interfaces:
        parent = name.split(".", 1)[0]
        for n in (parent, name):
            if n not in names:
                names.append(n)
    return [Port(n) for n in names]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--username", default="admin")
    parser.add_argument("--password", default="admin")
    parser.add_argument("--secret", default="enable")
    parser.add_argument("--model", default="cisco_generic")
    parser.add_argument("--interfaces", required=True, help="comma-separated interface names")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    patch()
    interfaces = [i.strip() for i in args.interfaces.split(",") if i.strip()]
    core = switch_factory.SwitchFactory().get(
        args.model, args.name, args.secret, ports=ports_for(interfaces)
    )
    service = SwitchSshService(
        ip=args.host,
        port=args.port,
        switch_core=core,
        users={args.username: args.password.encode()},
    )
    listening = service.hook_to_reactor(reactor)
    print(f"ready {listening.getHost().port}", flush=True)
    reactor.run()  # stops on SIGTERM / SIGINT
    return 0


if __name__ == "__main__":
    sys.exit(main())
