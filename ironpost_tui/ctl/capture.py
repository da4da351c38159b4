"""``ironpost-tui capture IFACE --src ADDR [...] -w FILE``: a capture beside the running program.

Bad input (an address, a number, the file) is one line and exit 2, found before anything changes;
no ironpost program on IFACE is exit 15 (NO_CONTROLLER), another capture running there exit 16
(CAPTURE_BUSY).  Rule ids are turned into slots (and slots into ids for the comments) by the
running controller's ``rules`` answer.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from ironpost_tui import files, filter_terms
from ironpost_tui.config.durations import parse_duration
from ironpost_tui.config.sizes import parse_kib
from ironpost_tui.ctl.client import ask
from ironpost_tui.ctl.commands import _checked, _Parser
from ironpost_tui.engine.control_socket.protocol import BadRequest, Op, Show, parse_addr, socket_path
from ironpost_tui.errors import ExitStatus, NoController
from ironpost_tui.kernel import abi
from ironpost_tui.kernel.capture import DEFAULT_RATE, DEFAULT_SNAPLEN, CaptureFilter
from ironpost_tui.records.capture import Capture, Limits, Progress, check_output
from ironpost_tui.records.capture_expr import CaptureExpression


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from {low} to {high}")
        return int(text)

    return convert


def _seconds(text: str) -> float:
    try:
        secs = float(parse_duration(text)) if not text.replace(".", "", 1).isdigit() else float(text)
    except ValueError:
        secs = -1.0
    if not 0 < secs <= 86400:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration from 1s to 1d (a number of seconds, or 30s, 5m)")
    return secs


def _size(text: str) -> int:
    if text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} has no unit: write {text.strip()}KiB or {text.strip()}MiB")
    try:
        kib = parse_kib(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} {exc}") from None
    if not 1 <= kib <= 4 * 1024 * 1024:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size from 1KiB to 4096MiB")
    return kib * 1024


def _expression(text: str) -> CaptureExpression:
    try:
        return CaptureExpression.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _protocol(text: str) -> int:
    number = filter_terms.PROTOCOL_NUMBERS.get(text.lower())
    if number is None:
        if text.isascii() and text.isdigit() and 1 <= int(text) <= 255:
            return int(text)
        raise argparse.ArgumentTypeError(f"{text!r} is not tcp, udp, icmp, icmpv6 or a protocol number 1-255")
    return number


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="ironpost-tui capture",
        description="write copies of IFACE's packets, taken in its running XDP program before the verdict "
        "(dropped ones too), to a pcapng file; stops at --count, --size or --seconds, whichever comes first",
    )
    p.add_argument("iface", metavar="IFACE")
    p.add_argument("--src", type=_checked(parse_addr), help="source ADDR[/LEN] (IPv4 or IPv6, no host bits)")
    p.add_argument("--dst", type=_checked(parse_addr), help="destination ADDR[/LEN]")
    p.add_argument("--port", type=_int_in(1, 65535), default=0, help="source or destination port")
    p.add_argument("--proto", type=_protocol, default=0, help="tcp, udp, icmp, icmpv6 or a number")
    p.add_argument("--filter", metavar="EXPR", type=_expression,
                   help="the events filter's syntax, what the kernel can evaluate: src:ADDR dst:ADDR port:N proto:P "
                   "rule:ID (AND-ed; not with the flags of the same fields)")  # fmt: skip
    p.add_argument("--rule", metavar="ID", help="only packets this rule matched (its id, as `rules IFACE` shows)")
    p.add_argument("--count", type=_int_in(1, 10_000_000), help="stop after N packets")
    p.add_argument("--seconds", type=_seconds, default=60.0, help="stop after this long (default 60)")
    p.add_argument("--size", type=_size, default=64 * 1024 * 1024, help="stop at this file size (default 64MiB)")
    p.add_argument("--snaplen", type=_int_in(1, abi.CAPTURE_SNAPLEN_MAX), default=DEFAULT_SNAPLEN,
                   help=f"bytes kept of each packet (default {DEFAULT_SNAPLEN})")  # fmt: skip
    p.add_argument("--rate", type=_int_in(0, 10_000_000), default=DEFAULT_RATE,
                   help=f"at most N copies/s per CPU, the rest lost (default {DEFAULT_RATE}, 0: no limit)")  # fmt: skip
    p.add_argument("-w", dest="file", metavar="FILE", type=Path, required=True, help="the pcapng file (new)")
    return p


def _merge_filter(args: argparse.Namespace, expr: CaptureExpression) -> None:
    """--filter's terms into the flags' places; the same field from both is refused, not guessed at."""
    for name, flag, value, unset in (
        ("src", "src", expr.src, None),
        ("dst", "dst", expr.dst, None),
        ("port", "port", expr.port, 0),
        ("proto", "proto", expr.protocol, 0),
        ("rule", "rule", expr.rule_id, None),
    ):
        if value == unset:
            continue
        if getattr(args, flag) != unset:
            raise BadRequest(f"capture: --{flag} and --filter's {name}: both say what to capture: give one")
        setattr(args, flag, value)


def _controller_rules(iface: str) -> list[dict[str, Any]] | None:
    try:
        answer = ask(iface, Show(Op.RULES))
    except NoController:
        return None
    rules = answer.get("rules")
    return rules if isinstance(rules, list) else []


def _rule_names(rules: list[dict[str, Any]] | None) -> dict[int, str]:
    out = {}
    for r in rules or []:
        if isinstance(r, dict) and isinstance(r.get("slot"), int) and isinstance(r.get("id"), str):
            out[r["slot"]] = r["id"]
    return out


def run(argv: list[str], out: TextIO | None = None) -> ExitStatus:
    args = parser().parse_args(argv)
    socket_path(args.iface)  # a name no interface can have: exit 2 before anything else
    if args.filter is not None:
        _merge_filter(args, args.filter)
    if args.src is not None and args.dst is not None and args.src.version != args.dst.version:
        raise BadRequest("capture: --src and --dst are of different IP versions")
    if args.src is None and args.dst is None and not args.port and not args.proto and args.rule is None:
        raise BadRequest("capture: say what to capture: --src, --dst, --port, --proto, --rule or --filter")
    owner = files.invoking_user()
    path = check_output(args.file, owner)
    rules = _controller_rules(args.iface)
    names = _rule_names(rules)
    slot = None
    if args.rule is not None:
        if rules is None:
            raise NoController(f"--rule needs the running controller of {args.iface} to name its rules; none answers")
        slot = next((s for s, rid in names.items() if rid == args.rule), None)
        if slot is None:
            raise BadRequest(f"capture: no rule {args.rule!r} on {args.iface} (see ironpost-tui rules)")
    filt = CaptureFilter(args.src, args.dst, args.port, args.proto, slot, args.snaplen, args.rate)
    cap = Capture(args.iface, filt, path, Limits(args.count, args.seconds, args.size), names, owner)
    previous = {sig: signal.signal(sig, lambda *_: cap.stop()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        done = cap.run(
            _progress_printer(sys.stderr),
            lambda prog_id: print(f"capturing on {args.iface} (program {prog_id}) to {path}", flush=True, file=out),
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"{path}: {done.describe()} (stopped by {done.stopped_by})", file=out or sys.stdout)
    return ExitStatus.OK


def _progress_printer(err: TextIO) -> Callable[[Progress], None]:
    def show(p: Progress) -> None:
        if err.isatty():
            print(f"\rcapturing: {p.describe()}   ", end="" if p.stopped_by is None else "\n", file=err, flush=True)

    return show
