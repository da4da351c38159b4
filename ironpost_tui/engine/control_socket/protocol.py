"""What the command line and a running controller say to each other: one JSON line each way.

A request is one line of UTF-8 JSON, at most MAX_REQUEST_BYTES with its newline::

    {"v": 1, "op": "block", "addr": "198.18.0.9", "ttl": 3600, "id": null, "comment": "", "force": false,
     "user": "alice", "ssh_client": "198.51.100.7"}
    {"v": 1, "op": "unblock", "addr": "198.18.0.9"}          (or "id": "f2b-sshd-198.18.0.9")
    {"v": 1, "op": "rules"}
    {"v": 1, "op": "alerts"}

The answer is one line: ``{"v": 1, "ok": true, "result": {...}}``, or
``{"v": 1, "ok": false, "exit": 2, "title": "Anti-lockout", "error": "..."}`` where ``exit`` is the
exit status the command line ends with.  ``user`` and ``ssh_client`` are what the caller says of
itself (from its environment, as the console's audit takes them); who it is, the kernel says
(SO_PEERCRED).  Both sides check every field with the same functions, so what the command line
refuses the controller refuses too, whoever wrote the request.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ironpost_tui.config.durations import parse_duration
from ironpost_tui.config.rules import MAX_DESCRIPTION_CHARS, MAX_ID_CHARS, network
from ironpost_tui.errors import ExitStatus, IronpostError
from ironpost_tui.kernel.host import RUN_DIR, check_iface_name
from ironpost_tui.model import IPNetwork, StrEnum
from ironpost_tui.rules.placement import EXTERNAL_PREFIX, GROUP_RULE_IDS
from ironpost_tui.text import escape, unsafe

VERSION = 1
MAX_REQUEST_BYTES = 16 * 1024  # the longest valid request is about 5 KiB (a 1,024-character comment, escaped)
MAX_ANSWER_BYTES = 64 * 1024 * 1024  # 10,000 rules or 1,000 alerts are a few MiB
MAX_USER_CHARS = 256
MAX_ADDRESS_CHARS = 45  # the longest IPv6 text (an IPv4-mapped one written in full)


class Op(StrEnum):
    BLOCK = "block"
    UNBLOCK = "unblock"
    RULES = "rules"
    ALERTS = "alerts"


class BadRequest(IronpostError):
    """A request that cannot be carried out as written: nothing of it is applied."""

    exit_status = ExitStatus.CONFIG_INVALID
    title = "Bad request"


@dataclass(frozen=True)
class Block:
    addr: IPNetwork
    ttl: int | None = None  # seconds; None: until unblocked
    rule_id: str | None = None  # None: block-ADDR
    comment: str = ""
    force: bool = False  # past the anti-lockout protections


@dataclass(frozen=True)
class Unblock:
    """Exactly one of the two."""

    addr: IPNetwork | None = None
    rule_id: str | None = None


@dataclass(frozen=True)
class Show:
    what: Op  # RULES or ALERTS


Command = Block | Unblock | Show


@dataclass(frozen=True)
class Request:
    command: Command
    user: str | None = None  # the caller's claim: SUDO_USER or USER
    ssh_client: str | None = None  # the caller's claim: SSH_CONNECTION's client


@dataclass(frozen=True)
class Answer:
    ok: bool
    result: dict[str, Any]
    exit: int = 0
    title: str = ""
    error: str = ""


def socket_path(iface: str, run_dir: Path = RUN_DIR) -> Path:
    """``/run/ironpost/IFACE.sock``, for a name an interface can have (BadInterfaceName, exit 2, else)."""
    return run_dir / f"{check_iface_name(iface)}.sock"


# --------------------------------------------------------------------------- #
# fields, checked the same way on both sides


def parse_addr(text: str) -> IPNetwork:
    """ADDR or ADDR/LEN, without host bits (as a rule's src_ip in the configuration)."""
    try:
        return network(text)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def parse_ttl(text: str) -> int:
    """A duration as the configuration writes them (30s, 10m, 1h30m, 2d), in seconds."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise BadRequest(f"--ttl {_quote(text)} {exc}") from None


def check_id(text: str) -> str:
    if not text:
        raise BadRequest("--id is empty: give the rule an id, like f2b-sshd-198.51.100.7")
    if len(text) > MAX_ID_CHARS:
        raise BadRequest(f"--id is {len(text)} characters long, more than {MAX_ID_CHARS}: shorten it")
    _check_text("--id", text)
    return text


def check_new_id(text: str) -> str:
    """The id of a rule to add: as check_id, and not one of the ids groups of rules count under."""
    if text in GROUP_RULE_IDS:
        raise BadRequest(f"--id {text} is reserved (a group of rules counts its hits under it): choose another id")
    if text.startswith(EXTERNAL_PREFIX):  # as the configuration and the console's form say (until session 26, late)
        raise BadRequest(f"--id {_quote(text)}: ids starting with {EXTERNAL_PREFIX!r} name other tools' BLOCKLIST "
                         "entries: choose another id")  # fmt: skip
    return check_id(text)


def check_comment(text: str) -> str:
    if len(text) > MAX_DESCRIPTION_CHARS:
        raise BadRequest(f"--comment is {len(text)} characters long, more than {MAX_DESCRIPTION_CHARS}: shorten it")
    _check_text("--comment", text)
    return text


def _check_text(name: str, text: str) -> None:
    bad = unsafe(text)
    if bad is not None:
        raise BadRequest(f"{name} contains {escape(bad)}, a control or format character: remove it")
    if not text.isprintable():  # a tab, a space other than ' ' (no-break, em...), a private-use or unassigned character
        ch = next(c for c in text if not c.isprintable())
        raise BadRequest(f"{name} contains {escape(ch)}, a tab, an unusual space or a private-use or unassigned "
                         "character: use plain spaces and printable text")  # fmt: skip


def _quote(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


# --------------------------------------------------------------------------- #
# requests


def encode_request(request: Request) -> bytes:
    cmd = request.command
    body: dict[str, Any] = {"v": VERSION}
    if isinstance(cmd, Block):
        body.update(op=Op.BLOCK.value, addr=str(cmd.addr), ttl=cmd.ttl, id=cmd.rule_id, comment=cmd.comment,
                    force=cmd.force)  # fmt: skip
    elif isinstance(cmd, Unblock):
        body.update(op=Op.UNBLOCK.value, addr=None if cmd.addr is None else str(cmd.addr), id=cmd.rule_id)
    else:
        body.update(op=cmd.what.value)
    body.update(user=request.user, ssh_client=request.ssh_client)
    return _line(body)


_FIELDS = {
    Op.BLOCK: {"addr", "ttl", "id", "comment", "force"},
    Op.UNBLOCK: {"addr", "id"},
    Op.RULES: set(),
    Op.ALERTS: set(),
}
_COMMON = {"v", "op", "user", "ssh_client"}


def decode_request(line: bytes) -> Request:
    """The request on ``line``; BadRequest saying what is wrong with it otherwise."""
    data = _object(line, MAX_REQUEST_BYTES, "request")
    version = data.get("v")
    if version != VERSION or isinstance(version, bool):
        raise BadRequest(
            f"protocol version {_show(version)} is not spoken here (this controller speaks {VERSION}): "
            "use the ironpost-tui of the same version as the running controller"
        )
    word = data.get("op")
    try:
        op = Op(word) if isinstance(word, str) else None
    except ValueError:
        op = None
    if op is None:
        raise BadRequest(f"op {_show(word)} is not one of {', '.join(o.value for o in Op)}")
    unknown = sorted(set(data) - _COMMON - _FIELDS[op])
    if unknown:
        raise BadRequest(f"{op.value}: unknown field(s) {', '.join(_quote(k) for k in unknown)}")
    user = _optional(data, "user", str)
    if user is not None:
        if not 0 < len(user) <= MAX_USER_CHARS:
            raise BadRequest(f"user is {len(user)} characters long: 1 to {MAX_USER_CHARS}")
        _check_text("user", user)
    ssh = _optional(data, "ssh_client", str)
    if ssh is not None:
        # No zone: ip_address() took "2001:db8::1%" and some 15 KB of any characters after it into the audit's
        # ssh_client (until session 26).
        try:
            addr = ipaddress.ip_address(ssh) if len(ssh) <= MAX_ADDRESS_CHARS else None
        except ValueError:
            addr = None
        if addr is None or (isinstance(addr, ipaddress.IPv6Address) and addr.scope_id):
            raise BadRequest(f"ssh_client {_quote(ssh)} is not an IP address without a zone")
        ssh = str(addr)
    return Request(_command(op, data), user, ssh)


def _command(op: Op, data: dict[str, Any]) -> Command:
    if op is Op.BLOCK:
        addr = _optional(data, "addr", str)
        if addr is None:
            raise BadRequest("block: give the address to block (ADDR or ADDR/LEN)")
        ttl = _optional(data, "ttl", int)
        if ttl is not None:
            parse_ttl(f"{ttl}s")  # the same range as --ttl
        rule_id = _optional(data, "id", str)
        force = _optional(data, "force", bool)
        return Block(
            addr=parse_addr(addr),
            ttl=ttl,
            rule_id=None if rule_id is None else check_new_id(rule_id),
            comment=check_comment(_optional(data, "comment", str) or ""),
            force=bool(force),
        )
    if op is Op.UNBLOCK:
        addr = _optional(data, "addr", str)
        rule_id = _optional(data, "id", str)
        if (addr is None) == (rule_id is None):
            raise BadRequest("unblock: give the address (ADDR or ADDR/LEN) or --id ID, one of them")
        return Unblock(
            addr=None if addr is None else parse_addr(addr),
            rule_id=None if rule_id is None else check_id(rule_id),
        )
    return Show(op)


def _optional(data: dict[str, Any], key: str, kind: type) -> Any:
    value = data.get(key)
    if value is None:
        return None
    # bool is an int to Python: a flag is no number, and no number is a flag.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadRequest(f"{key} must be {kind.__name__}, got {_show(value)}")
    return value


def _show(value: object) -> str:
    text = json.dumps(value) if isinstance(value, (str, int, float, bool)) or value is None else type(value).__name__
    return _quote(text) if len(text) > 40 else text


# --------------------------------------------------------------------------- #
# answers


def encode_answer(result: dict[str, Any]) -> bytes:
    return _line({"v": VERSION, "ok": True, "result": result})


def encode_failure(error: IronpostError) -> bytes:
    return _line(
        {"v": VERSION, "ok": False, "exit": int(error.exit_status), "title": error.title, "error": error.message}
    )


def decode_answer(line: bytes) -> Answer:
    """The controller's answer; IronpostError (exit 1) when it is not one."""
    try:
        data = _object(line, MAX_ANSWER_BYTES, "answer")
    except BadRequest as exc:
        raise IronpostError(f"the controller's answer is unreadable: {exc.message}") from None
    if data.get("v") != VERSION:
        raise IronpostError(
            f"the controller speaks protocol version {_show(data.get('v'))}, this command {VERSION}: "
            "use the ironpost-tui of the same version as the running controller"
        )
    if data.get("ok") is True and isinstance(data.get("result"), dict):
        return Answer(True, data["result"])
    error, title, code = data.get("error"), data.get("title"), data.get("exit")
    if data.get("ok") is not False or not isinstance(error, str) or not isinstance(title, str):
        raise IronpostError("the controller's answer is not one this command understands")
    known = {int(s) for s in ExitStatus}
    status = code if isinstance(code, int) and not isinstance(code, bool) and code in known and code != 0 else 1
    return Answer(False, {}, status, title, error)


# --------------------------------------------------------------------------- #
# lines


def _line(body: dict[str, Any]) -> bytes:
    # ASCII only: every character beyond it, and every control character, goes as a \u escape,
    # so a line is one line and nothing in it can reach a terminal raw.
    return json.dumps(body, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def _object(line: bytes, limit: int, what: str) -> dict[str, Any]:
    if len(line) > limit:
        raise BadRequest(f"the {what} is longer than {limit} bytes")

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a number")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise ValueError(f"field {key!r} appears twice")
            out[key] = value
        return out

    try:
        data = json.loads(line.decode("utf-8"), parse_constant=no_constant, object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequest(f"the {what} is not one line of JSON: {_quote(str(exc))}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"the {what} is not a JSON object")
    return data
