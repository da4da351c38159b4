"""``ironpost-tui block|unblock|rules|alerts IFACE ...``: parsed, checked, asked, printed.

Bad input is one line and exit 2, found here before anything is sent (and found again by the
controller, which trusts no client)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TextIO

from ironpost_tui.ctl import show
from ironpost_tui.ctl.client import ask
from ironpost_tui.engine.control_socket.protocol import (
    BadRequest,
    Block,
    Command,
    Op,
    Show,
    Unblock,
    check_comment,
    check_id,
    parse_addr,
    parse_ttl,
    socket_path,
)
from ironpost_tui.errors import ExitStatus

COMMANDS = tuple(op.value for op in Op)
FORCE_HELP = "block even an address the anti-lockout protects (your SSH client, this host, [safety] protect)"


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (BadRequest, exit 2) rather than usage and a line."""

    def error(self, message: str) -> NoReturn:
        raise BadRequest(f"{self.prog.removeprefix('ironpost-tui ')}: {message} (see {self.prog} --help)")


def _checked(check: Callable[[str], Any], flag: str = "") -> Callable[[str], Any]:
    """A protocol check as an argparse type; argparse names the argument, so the message does not again."""

    def convert(text: str) -> Any:
        try:
            return check(text)
        except BadRequest as exc:
            raise argparse.ArgumentTypeError(exc.message.removeprefix(f"{flag} ")) from None

    return convert


def _parser(op: Op) -> argparse.ArgumentParser:
    prog = f"ironpost-tui {op.value}"
    if op is Op.BLOCK:
        p = _Parser(prog=prog, description="drop a source address or prefix on IFACE, through its running controller")
        p.add_argument("iface", metavar="IFACE")
        p.add_argument("addr", metavar="ADDR[/LEN]", type=_checked(parse_addr), help="IPv4 or IPv6, no host bits")
        p.add_argument("--ttl", type=_checked(parse_ttl, "--ttl"), help="expire after this long: 30s, 10m, 1h30m, 2d")
        p.add_argument("--id", dest="rule_id", type=_checked(check_id, "--id"), help="rule id (default block-ADDR)")
        p.add_argument("--comment", type=_checked(check_comment, "--comment"), default="", help="rule description")
        p.add_argument("--force", action="store_true", help=FORCE_HELP)
    elif op is Op.UNBLOCK:
        p = _Parser(prog=prog, description="delete the drop rule on a source address (or the rule ID) on IFACE")
        p.add_argument("iface", metavar="IFACE")
        p.add_argument("addr", metavar="ADDR[/LEN]", nargs="?", type=_checked(parse_addr),
                       help="the source a drop rule blocks, exactly (ADDR/LEN for a prefix)")  # fmt: skip
        p.add_argument("--id", dest="rule_id", type=_checked(check_id, "--id"), help="the rule's id instead")
    else:
        what = "the rules in force, with their hits" if op is Op.RULES else "the open and recent alerts"
        p = _Parser(prog=prog, description=f"{what} on IFACE, from its running controller")
        p.add_argument("iface", metavar="IFACE")
        p.add_argument("--json", action="store_true", help="one JSON array, for scripts")
    return p


def command(op: Op, args: argparse.Namespace) -> Command:
    if op is Op.BLOCK:
        return Block(args.addr, args.ttl, args.rule_id, args.comment, args.force)
    if op is Op.UNBLOCK:
        if (args.addr is None) == (args.rule_id is None):
            raise BadRequest(
                "ironpost-tui unblock: give ADDR or --id ID, one of them (see ironpost-tui unblock --help)"
            )
        return Unblock(args.addr, args.rule_id)
    return Show(op)


def run(name: str, argv: list[str], out: TextIO | None = None) -> ExitStatus:
    """One command line; errors are raised (IronpostError: one line and its exit status)."""
    op = Op(name)
    args = _parser(op).parse_args(argv)
    socket_path(args.iface)  # a name no interface can have: exit 2 before anything else
    cmd = command(op, args)
    result = ask(args.iface, cmd)
    print(render(op, result, getattr(args, "json", False)), file=out or sys.stdout)
    return ExitStatus.OK


def render(op: Op, result: dict[str, Any], as_json: bool = False) -> str:
    if op is Op.BLOCK:
        return show.blocked(result)
    if op is Op.UNBLOCK:
        return show.unblocked(result)
    items = result.get(op.value) or []
    if as_json:
        return show.as_json(items)
    return show.rules_table(items) if op is Op.RULES else show.alerts_table(items)
