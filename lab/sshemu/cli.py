"""The command interpreter of one CLI session: views, parsing with VRP-style abbreviations
and caret errors, and the commands the enforcer needs.

One ``CliSession`` per SSH session; they share the device's ``DeviceConfig`` like sessions on
a real router do. ``handle(line)`` takes one entered line (without its line break) and returns
what the device prints after echoing it: output, then the next prompt. Keywords may be
abbreviated to any unique prefix (``disp cur int g0/0/1.1001``), as on the real devices."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from lab.sshemu.model import AclRule, DeviceConfig, split_ifname
from lab.sshemu.vendors import NL, Comware, Vendor

T = TypeVar("T")
Action = Callable[[], str]
View = Literal["user", "system", "interface", "acl"]


class CliError(Exception):
    """A syntax error: the vendor prints a caret under column ``col`` and ``kind``."""

    def __init__(self, kind: str, col: int) -> None:
        super().__init__(kind)
        self.kind = kind
        self.col = col


class Refused(Exception):
    """The command parsed but cannot be done (ACL absent, …); the text is printed."""


class Cursor:
    """Walks the tokens of one line, remembering each token's column for the caret."""

    def __init__(self, line: str, offset: int = 0) -> None:
        self.line = line
        self.offset = offset
        self.toks = [(m.group(), m.start() + offset) for m in re.finditer(r"\S+", line)]
        self.i = 0
        self.piped = False  # set by commands that accept "| include …"

    def more(self) -> bool:
        return self.i < len(self.toks)

    def col(self) -> int:
        if self.more():
            return self.toks[self.i][1]
        return self.offset + len(self.line.rstrip()) + 1

    def peek(self) -> str | None:
        return self.toks[self.i][0] if self.more() else None

    def _match(self, words: tuple[str, ...]) -> list[str]:
        tok = self.toks[self.i][0].lower()
        exact = [w for w in words if w.lower() == tok]
        return exact or [w for w in words if w.lower().startswith(tok)]

    def kw(self, *words: str) -> str:
        """The keyword the next token abbreviates; a caret error when none or several."""
        if not self.more():
            raise CliError("Incomplete command", self.col())
        matches = self._match(words)
        if len(matches) != 1:
            kind = "Ambiguous command" if matches else "Unrecognized command"
            raise CliError(kind, self.col())
        self.i += 1
        return matches[0]

    def opt_kw(self, *words: str) -> str | None:
        if self.more() and len(self._match(words)) == 1:
            return self.kw(*words)
        return None

    def param(self, parse: Callable[[str], T]) -> T:
        if not self.more():
            raise CliError("Incomplete command", self.col())
        try:
            value = parse(self.toks[self.i][0])
        except ValueError:
            raise CliError("Wrong parameter", self.col()) from None
        self.i += 1
        return value

    def rest(self) -> str:
        if not self.more():
            raise CliError("Incomplete command", self.col())
        text = self.line[self.toks[self.i][1] - self.offset :].strip()
        self.i = len(self.toks)
        return text

    def end(self) -> None:
        if self.more():
            raise CliError("Too many parameters", self.col())


def _ipv4(tok: str) -> str:
    return str(ipaddress.IPv4Address(tok))


def _prefixlen(tok: str) -> int:
    """A mask as dotted quad (contiguous) or as a length."""
    if tok.isdigit():
        n = int(tok)
        if 0 <= n <= 32:
            return n
        raise ValueError(tok)
    return ipaddress.IPv4Network(f"0.0.0.0/{ipaddress.IPv4Address(tok)}").prefixlen


def _wildcard(tok: str) -> str:
    if tok == "0":
        return "0"
    wc = str(ipaddress.IPv4Address(tok))
    return "0" if wc == "0.0.0.0" else wc


def _number(lo: int, hi: int) -> Callable[[str], int]:
    def parse(tok: str) -> int:
        if not tok.isdigit() or not lo <= int(tok) <= hi:
            raise ValueError(tok)
        return int(tok)

    return parse


class CliSession:
    """One user's CLI on an emulated device."""

    def __init__(self, cfg: DeviceConfig, vendor: Vendor) -> None:
        self.cfg = cfg
        self.v = vendor
        self.view: View = "user"
        self.iface = ""
        self.acl = 0
        self.pending: Callable[[str], str] | None = None
        self.closed = False
        self.hung = False
        self.pipe: tuple[str, str] | None = None

    # ---- prompts and views -------------------------------------------------------------
    def prompt(self) -> str:
        name = self.cfg.sysname
        if self.view == "user":
            return f"<{name}>"
        if self.view == "system":
            return f"[{name}]"
        if self.view == "interface":
            return f"[{name}-{self.iface}]"
        return f"[{name}-{self.v.acl_view(self.acl)}]"

    def greeting(self) -> str:
        return self.v.banner() + self.prompt()

    def ctrl_z(self) -> str:
        self.pending = None
        if self.view != "user":
            self.view = "user"
        return NL + self.prompt()

    def _go(self, view: View, iface: str = "", acl: int = 0) -> str:
        self.view, self.iface, self.acl = view, iface, acl
        return ""

    # ---- one line -----------------------------------------------------------------------
    def handle(self, line: str) -> str:
        """What the device prints after the echoed ``line``: output and the next prompt."""
        stripped = line.strip()
        cfg = self.cfg
        if stripped:
            with cfg.lock:
                cfg.commands.append(stripped)
        faults = cfg.faults
        if stripped and faults.hangs(stripped):
            self.hung = True
            return ""
        prompt = self.prompt()
        if self.pending is not None:
            answer, self.pending = self.pending, None
            out = answer(stripped)
        elif not stripped:
            out = ""
        elif faults.rejects(stripped):
            out = self._caret(prompt, "Unrecognized command", len(line) - len(line.lstrip()))
        else:
            try:
                out = self._run(line)
            except CliError as e:
                out = self._caret(prompt, e.kind, e.col)
            except Refused as e:
                with cfg.lock:
                    cfg.rejected.append(stripped)
                out = str(e)
        if self.closed or self.hung or self.pending is not None:
            return out
        return (out + NL if out else "") + self.prompt()

    def run_exec(self, command: str) -> str:
        """An ``ssh host COMMAND`` request: the command's output in user view, no prompt."""
        out = self.handle(command)
        prompt = self.prompt()
        return out[: -len(prompt)] if out.endswith(prompt) else out

    def _caret(self, prompt: str, kind: str, col: int) -> str:
        with self.cfg.lock:
            self.cfg.rejected.append(self.cfg.commands[-1] if self.cfg.commands else "")
        return " " * (len(prompt) + col) + "^" + NL + self.v.error(kind)

    def _run(self, line: str) -> str:
        left, bar, right = line.partition("|")
        cur = Cursor(left)
        self.pipe = None
        if bar:
            pcur = Cursor(right, offset=len(left) + 1)
            how = pcur.kw("include", "exclude", "begin")
            rx = pcur.rest()
            try:
                re.compile(rx)
            except re.error:
                raise CliError("Wrong parameter", pcur.toks[1][1]) from None
            self.pipe = (how, rx)
        action = self._parse(cur, bar_col=len(left) if bar else None)
        return action()

    def _parse(self, cur: Cursor, bar_col: int | None) -> Action:
        try:
            action = self._parse_in(self.view, cur)
        except CliError as first:
            if self.view not in ("interface", "acl"):
                raise
            again = Cursor(cur.line)
            try:
                inner = self._parse_in("system", again)
            except CliError as second:
                raise (second if second.col > first.col else first) from None

            def action() -> str:
                self._go("system")
                return inner()

            cur = again
        if bar_col is not None and not cur.piped:
            raise CliError("Unrecognized command", bar_col)
        return action

    def _parse_in(self, view: View, cur: Cursor) -> Action:
        table: dict[str, Callable[[Cursor], Action]] = {
            "display": self.p_display,
            "save": self.p_save,
        }
        if view == "user":
            table |= {
                "screen-length": self.p_paging,
                "system-view": self.p_system_view,
                "quit": self.p_logout,
            }
        elif view == "system":
            table |= {
                "interface": self.p_interface,
                "acl": self.p_acl,
                "ip": self.p_route,
                "ipv6": self.p_route6,
                "undo": self.p_undo_system,
                "sysname": self.p_sysname,
                "quit": lambda c: self._leave(c, "user"),
                "return": lambda c: self._leave(c, "user"),
            }
        elif view == "interface":
            table |= {
                "shutdown": self.p_shutdown,
                "undo": self.p_undo_interface,
                "description": self.p_description,
                self.v.filter_word: self.p_filter,
                "quit": lambda c: self._leave(c, "system"),
                "return": lambda c: self._leave(c, "user"),
            }
        else:
            table |= {
                "rule": self.p_rule,
                "undo": self.p_undo_acl,
                "quit": lambda c: self._leave(c, "system"),
                "return": lambda c: self._leave(c, "user"),
            }
        word = cur.kw(*table)
        return table[word](cur)

    # ---- user view ----------------------------------------------------------------------
    def p_paging(self, cur: Cursor) -> Action:
        for word in self.v.paging[1:]:
            if word.isdigit():
                cur.param(_number(0, 512))
            else:
                cur.kw(word)
        cur.end()
        return lambda: self.v.paging_reply

    def p_system_view(self, cur: Cursor) -> Action:
        cur.end()
        return lambda: self._go("system") + self.v.system_view_reply

    def p_logout(self, cur: Cursor) -> Action:
        cur.end()

        def run() -> str:
            self.closed = True
            return ""

        return run

    def _leave(self, cur: Cursor, view: View) -> Action:
        cur.end()
        return lambda: self._go(view)

    # ---- display ------------------------------------------------------------------------
    def p_display(self, cur: Cursor) -> Action:
        cur.piped = True
        cfg, v = self.cfg, self.v
        what = cur.kw(
            "current-configuration",
            "saved-configuration",
            "this",
            "interface",
            "acl",
            "ip",
            "version",
        )
        produce: Callable[[], str]
        if what == "current-configuration":
            if cur.opt_kw("interface"):
                ifname = self.p_ifname(cur)
                produce = lambda: v.interface_config(cfg, ifname)  # noqa: E731
            else:
                produce = cfg.running_config
        elif what == "saved-configuration":
            produce = lambda: cfg.saved_config  # noqa: E731
        elif what == "this":
            produce = self._this
        elif what == "interface":
            if cur.opt_kw("brief"):
                produce = lambda: v.brief(cfg)  # noqa: E731
            elif cur.more():
                ifname = self.p_ifname(cur)
                produce = lambda: v.interface_detail(cfg, ifname)  # noqa: E731
            else:
                produce = lambda: NL.join(v.interface_detail(cfg, i) for i in cfg.interfaces)  # noqa: E731
        elif what == "acl":
            if cur.opt_kw("all"):
                produce = lambda: NL.join(v.display_acl(cfg, n) for n in sorted(cfg.acls))  # noqa: E731
            else:
                number = cur.param(_number(2000, 3999))
                produce = lambda: self._display_acl(number)  # noqa: E731
        elif what == "ip":
            cur.kw("routing-table")
            produce = self._p_routing_table(cur)
        else:
            produce = v.version
        cur.end()

        def run() -> str:
            with cfg.lock:
                text = produce()
            return self._apply_pipe(text)

        return run

    def _this(self) -> str:
        cfg, v = self.cfg, self.v
        if self.view == "interface":
            return v.interface_config(cfg, self.iface)
        if self.view == "acl":
            return NL.join(["#", *v.acl_block(cfg, self.acl), "#", "return"])
        return cfg.running_config()

    def _display_acl(self, number: int) -> str:
        if number not in self.cfg.acls:
            raise Refused(self.v.fail("The ACL does not exist."))
        return self.v.display_acl(self.cfg, number)

    def _p_routing_table(self, cur: Cursor) -> Callable[[], str]:
        if not cur.more():
            return lambda: self.v.routing_table(sorted(self.cfg.routes))
        addr = ipaddress.IPv4Address(cur.param(_ipv4))
        plen = cur.param(_prefixlen) if cur.more() else None

        def produce() -> str:
            routes = sorted(self.cfg.routes)
            if plen is not None:
                wanted = ipaddress.IPv4Network((addr, plen), strict=False)
                hits = [n for n in routes if n == wanted]
            else:
                cover = [n for n in routes if addr in n]
                hits = [max(cover, key=lambda n: n.prefixlen)] if cover else []
            return self.v.routing_table(hits)

        return produce

    def _apply_pipe(self, text: str) -> str:
        if self.pipe is None:
            return text
        how, rx = self.pipe
        lines = text.split(NL)
        if how == "include":
            lines = [ln for ln in lines if re.search(rx, ln)]
        elif how == "exclude":
            lines = [ln for ln in lines if not re.search(rx, ln)]
        else:
            start = next((i for i, ln in enumerate(lines) if re.search(rx, ln)), len(lines))
            lines = lines[start:]
        return NL.join(lines)

    # ---- save ---------------------------------------------------------------------------
    def p_save(self, cur: Cursor) -> Action:
        force = isinstance(self.v, Comware) and cur.opt_kw("force") is not None
        cur.end()

        def run() -> str:
            if force:
                self.cfg.save()
                return self.v.save_done()
            self.pending = self._save_confirmed
            return self.v.save_question()

        return run

    def _save_confirmed(self, answer: str) -> str:
        if answer.lower() not in ("y", "yes"):
            return "Info: Save was canceled." if not isinstance(self.v, Comware) else ""
        if not isinstance(self.v, Comware):
            self.cfg.save()
            return self.v.save_done()
        self.pending = self._comware_file_name
        return NL.join(
            [
                "Please input the file name(*.cfg)[flash:/startup.cfg]",
                "(To leave the existing filename unchanged, press the enter key):",
            ]
        )

    def _comware_file_name(self, name: str) -> str:
        if name and not name.endswith(".cfg"):
            return "The file name is invalid(does not end with .cfg)."
        if name in ("", "flash:/startup.cfg", "startup.cfg"):
            self.pending = self._comware_overwrite
            return "flash:/startup.cfg exists, overwrite? [Y/N]:"
        self.cfg.save()
        return self.v.save_done()

    def _comware_overwrite(self, answer: str) -> str:
        if answer.lower() not in ("y", "yes"):
            return ""
        self.cfg.save()
        return self.v.save_done()

    # ---- system view --------------------------------------------------------------------
    def p_ifname(self, cur: Cursor) -> str:
        """An existing interface, as one token (``g0/0/1.1001``) or two (``GE 0/0/1``)."""
        if not cur.more():
            raise CliError("Incomplete command", cur.col())
        tok, col = cur.toks[cur.i]
        used = 1
        try:
            kind, number = split_ifname(tok)
        except ValueError:
            kind = tok
            if cur.i + 1 >= len(cur.toks):
                raise CliError("Incomplete command", cur.col() + len(tok) + 1) from None
            number = cur.toks[cur.i + 1][0]
            if not re.fullmatch(r"\d[\d/:.]*", number):
                raise CliError("Wrong parameter", cur.toks[cur.i + 1][1]) from None
            used = 2
        full = self._resolve_type(kind)
        name = f"{full}{number}" if full else ""
        if name not in self.cfg.admin_up:
            raise CliError("Wrong parameter", col)
        cur.i += used
        return name

    def _resolve_type(self, kind: str) -> str | None:
        types = {t.lower(): t for t in self.v.known_types}
        types |= {split_ifname(i)[0].lower(): split_ifname(i)[0] for i in self.cfg.interfaces}
        k = kind.lower()
        if k in types:
            return types[k]
        if k in self.v.type_aliases:
            return self.v.type_aliases[k]
        hits = [t for low, t in types.items() if low.startswith(k)]
        return hits[0] if len(hits) == 1 else None

    def p_interface(self, cur: Cursor) -> Action:
        ifname = self.p_ifname(cur)
        cur.end()
        return lambda: self._go("interface", iface=ifname)

    def _p_acl_number(self, cur: Cursor) -> int:
        words = ("number", "basic", "advanced") if isinstance(self.v, Comware) else ("number",)
        which = cur.opt_kw(*words)
        lo, hi = {"basic": (2000, 2999), "advanced": (3000, 3999)}.get(which or "", (2000, 3999))
        return cur.param(_number(lo, hi))

    def p_acl(self, cur: Cursor) -> Action:
        number = self._p_acl_number(cur)
        cur.end()

        def run() -> str:
            with self.cfg.lock:
                self.cfg.acls.setdefault(number, {})
            self.cfg.changed()
            return self._go("acl", acl=number)

        return run

    def _p_null0(self, cur: Cursor) -> None:
        tok = (cur.peek() or "").lower()
        if tok == "null0":
            cur.i += 1
        elif tok == "null":
            cur.i += 1
            cur.param(_number(0, 0))
        else:
            kind = "Wrong parameter" if cur.more() else "Incomplete command"
            raise CliError(kind, cur.col())

    def _p_prefix(self, cur: Cursor) -> ipaddress.IPv4Network:
        cur.kw("route-static")
        addr = cur.param(_ipv4)
        plen = cur.param(_prefixlen)
        return ipaddress.IPv4Network(f"{addr}/{plen}", strict=False)

    def p_route(self, cur: Cursor) -> Action:
        net = self._p_prefix(cur)
        self._p_null0(cur)
        cur.end()

        def run() -> str:
            with self.cfg.lock:
                self.cfg.routes[net] = "NULL0"
            self.cfg.changed()
            return ""

        return run

    def _p_prefix6(self, cur: Cursor) -> ipaddress.IPv6Network:
        cur.kw("route-static")
        addr = cur.param(lambda t: str(ipaddress.IPv6Address(t)))
        plen = cur.param(_number(0, 128))
        return ipaddress.IPv6Network(f"{addr}/{plen}", strict=False)

    def p_route6(self, cur: Cursor) -> Action:
        net = self._p_prefix6(cur)
        self._p_null0(cur)
        cur.end()

        def run() -> str:
            with self.cfg.lock:
                self.cfg.routes6[net] = "NULL0"
            self.cfg.changed()
            return ""

        return run

    def p_sysname(self, cur: Cursor) -> Action:
        name = cur.param(lambda t: t if re.fullmatch(r"[\w.-]{1,64}", t) else _fail(t))
        cur.end()

        def run() -> str:
            with self.cfg.lock:
                self.cfg.sysname = name
            self.cfg.changed()
            return ""

        return run

    def p_undo_system(self, cur: Cursor) -> Action:
        what = cur.kw("acl", "ip", "ipv6")
        if what == "acl":
            number = self._p_acl_number(cur)
            cur.end()
            return lambda: self._drop_acl(number)
        if what == "ipv6":
            net6 = self._p_prefix6(cur)
            if cur.more():
                self._p_null0(cur)
            cur.end()
            return lambda: self._drop_route(net6)
        net = self._p_prefix(cur)
        if cur.more():
            self._p_null0(cur)
        cur.end()
        return lambda: self._drop_route(net)

    def _drop_acl(self, number: int) -> str:
        with self.cfg.lock:
            if number not in self.cfg.acls:
                raise Refused(self.v.fail("The ACL does not exist."))
            del self.cfg.acls[number]
        self.cfg.changed()
        return ""

    def _drop_route(self, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
        with self.cfg.lock:
            table: dict[Any, str] = self.cfg.routes if net.version == 4 else self.cfg.routes6
            if net not in table:
                raise Refused(self.v.fail("The static route does not exist."))
            del table[net]
        self.cfg.changed()
        return ""

    # ---- interface view -----------------------------------------------------------------
    def p_shutdown(self, cur: Cursor) -> Action:
        cur.end()
        return lambda: self._admin(False)

    def _admin(self, up: bool) -> str:
        self.cfg.set_admin(self.iface, up)
        return ""

    def p_description(self, cur: Cursor) -> Action:
        text = cur.rest()

        def run() -> str:
            with self.cfg.lock:
                self.cfg.descriptions[self.iface] = text
            self.cfg.changed()
            return ""

        return run

    def _p_direction(self, cur: Cursor) -> str:
        return cur.kw("inbound", "outbound")

    def p_filter(self, cur: Cursor) -> Action:
        """VRP ``traffic-filter inbound acl N``; Comware ``packet-filter N inbound``."""
        if isinstance(self.v, Comware):
            number = cur.param(_number(2000, 3999))
            direction = self._p_direction(cur)
        else:
            direction = self._p_direction(cur)
            cur.kw("acl")
            number = cur.param(_number(2000, 3999))
        cur.end()
        iface = self.iface

        def run() -> str:
            with self.cfg.lock:
                self.cfg.filters.setdefault(iface, {})[direction] = number
            self.cfg.changed()
            return ""

        return run

    def p_undo_interface(self, cur: Cursor) -> Action:
        what = cur.kw("shutdown", "description", self.v.filter_word)
        iface = self.iface
        if what == "shutdown":
            cur.end()
            return lambda: self._admin(True)
        if what == "description":
            cur.end()

            def drop_description() -> str:
                with self.cfg.lock:
                    self.cfg.descriptions.pop(iface, None)
                self.cfg.changed()
                return ""

            return drop_description
        if isinstance(self.v, Comware):
            number = cur.param(_number(2000, 3999)) if (cur.peek() or "").isdigit() else None
            direction = self._p_direction(cur)
        else:
            direction = self._p_direction(cur)
            number = None
            if cur.opt_kw("acl"):
                number = cur.param(_number(2000, 3999))
        cur.end()

        def drop_filter() -> str:
            with self.cfg.lock:
                current = self.cfg.filters.get(iface, {})
                if direction not in current or number not in (None, current[direction]):
                    raise Refused(self.v.fail("The packet filter configuration does not exist."))
                del current[direction]
            self.cfg.changed()
            return ""

        return drop_filter

    # ---- ACL view -----------------------------------------------------------------------
    def _p_rule_body(self, cur: Cursor) -> AclRule:
        advanced = self.acl >= 3000
        action = cur.kw("deny", "permit")
        protocol = cur.kw("ip", "tcp", "udp", "icmp") if advanced else None
        ends: dict[str, tuple[str, str] | None] = {}
        words = ("source", "destination") if advanced else ("source",)
        while cur.more():
            col = cur.col()
            word = cur.kw(*words)
            if word in ends:
                raise CliError("Wrong parameter", col)
            if cur.opt_kw("any"):
                ends[word] = None
                continue
            addr = cur.param(_ipv4)
            wc = cur.param(_wildcard)
            masked = int(ipaddress.IPv4Address(addr)) & ~int(
                ipaddress.IPv4Address("0.0.0.0" if wc == "0" else wc)
            )
            ends[word] = (str(ipaddress.IPv4Address(masked & 0xFFFFFFFF)), wc)
        return AclRule(
            number=-1,
            action="deny" if action == "deny" else "permit",
            protocol=protocol,
            source=ends.get("source"),
            destination=ends.get("destination"),
        )

    def p_rule(self, cur: Cursor) -> Action:
        number = cur.param(_number(0, 4294967294)) if (cur.peek() or "").isdigit() else None
        body = self._p_rule_body(cur)
        acl = self.acl

        def run() -> str:
            with self.cfg.lock:
                rules = self.cfg.acls.setdefault(acl, {})
                if number is None:
                    if any(_same(r, body) for r in rules.values()):
                        return ""
                    n = (max(rules) // 5 + 1) * 5 if rules else self.v.first_rule
                else:
                    n = number
                rules[n] = AclRule(n, body.action, body.protocol, body.source, body.destination)
            self.cfg.changed()
            return ""

        return run

    def p_undo_acl(self, cur: Cursor) -> Action:
        cur.kw("rule")
        acl = self.acl
        if (cur.peek() or "").isdigit():
            number: int | None = cur.param(_number(0, 4294967294))
            cur.end()
            body = None
        else:
            number, body = None, self._p_rule_body(cur)

        def run() -> str:
            with self.cfg.lock:
                rules = self.cfg.acls.get(acl, {})
                if body is not None:
                    hit = [n for n, r in rules.items() if _same(r, body)]
                    gone = hit[0] if hit else None
                else:
                    gone = number if number in rules else None
                if gone is None:
                    raise Refused(self.v.fail("The rule does not exist."))
                del rules[gone]
            self.cfg.changed()
            return ""

        return run


def _same(a: AclRule, b: AclRule) -> bool:
    return (a.action, a.protocol, a.source, a.destination) == (
        b.action,
        b.protocol,
        b.source,
        b.destination,
    )


def _fail(tok: str) -> str:
    raise ValueError(tok)
