"""What a command-line request asks of the running engine, done as the console does it.

Every change goes through the engine's rule controller, under the engine's lock: checked against
the anti-lockout protections (``--force`` as the console's confirmation), written to the kernel,
saved where the console's edits are saved (the configuration or the state file), and audited
``via cli`` with the caller the kernel names.  The snapshot is published at once, so ``/metrics``
and a following ``rules`` see the change.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ironpost_tui.detectors import Alert
from ironpost_tui.detectors.alerts import live_fields
from ironpost_tui.engine.control_socket.protocol import (
    BadRequest,
    Block,
    Op,
    Request,
    Show,
    Unblock,
    decode_request,
    encode_answer,
    encode_failure,
)
from ironpost_tui.engine.engine import Engine
from ironpost_tui.errors import IronpostError, RuleRefused
from ironpost_tui.model import Action, FilterRule, IPNetwork, RuleStatus, StrEnum
from ironpost_tui.rules.audit import Actor, Peer

log = logging.getLogger("ironpost.cli")
VIA = "cli"


class Change(StrEnum):
    """What a command-line request did to a rule (the audit's and the recording's word for it)."""

    ADD = "add"
    UPDATE = "update"
    DELETE = "delete"


_PAST = {Change.ADD: "added", Change.UPDATE: "updated", Change.DELETE: "deleted"}


@dataclass(frozen=True)
class RemoteChange:
    """A rule change the command line made: what, the rule, and who."""

    what: Change
    rule: FilterRule
    actor: Actor

    def describe(self) -> str:
        verb = _PAST[self.what]
        who = f" (uid {self.actor.peer.uid}, pid {self.actor.peer.pid})" if self.actor.peer is not None else ""
        return f"command line: {verb} rule '{self.rule.id}'{who}"


def block_id(addr: IPNetwork) -> str:
    """The id a block gets without --id: ``block-ADDR`` (as the console's ``b``), ``block-NET/LEN`` for a prefix."""
    host = addr.prefixlen == addr.max_prefixlen
    return f"block-{addr.network_address if host else addr}"


class Desk:
    """Answers request lines for one engine; ``changed`` hears of every change made (any thread)."""

    def __init__(self, engine: Engine, changed: Callable[[RemoteChange], None] | None = None) -> None:
        self.engine = engine
        self._changed = changed

    def answer(self, line: bytes, peer: Peer) -> bytes:
        try:
            return encode_answer(self.do(decode_request(line), peer))
        except IronpostError as exc:
            return encode_failure(exc)
        except Exception:
            log.exception("command-line request failed")
            return encode_failure(IronpostError("the controller failed to carry out the request: see its log"))

    def do(self, request: Request, peer: Peer) -> dict[str, Any]:
        cmd = request.command
        if isinstance(cmd, Show):
            return self._show(cmd)
        actor = Actor.caller(peer, VIA, request.user, request.ssh_client)
        with self.engine.lock:
            if not self.engine.running:
                raise IronpostError("the controller is stopping: nothing changed")
            if isinstance(cmd, Block):
                change = self._block(cmd, actor)
                changes = [change]
                result: dict[str, Any] = {
                    "change": change.what.value,
                    "rule": rule_entry(change.rule),
                    "forced": cmd.force,
                }
            else:
                changes = self._unblock(cmd, actor)
                result = {"deleted": [rule_entry(c.rule) for c in changes]}
            self.engine.publish()
        if self._changed is not None:
            for change in changes:
                self._changed(change)
        return result

    # --- changes ---------------------------------------------------------------------
    def _block(self, cmd: Block, actor: Actor) -> RemoteChange:
        control = self.engine.control
        rule = FilterRule(
            id=cmd.rule_id or block_id(cmd.addr),
            action=Action.DROP,
            src_ip=cmd.addr,
            description=cmd.comment,
            expires_at=None if cmd.ttl is None else time.time() + cmd.ttl,
        )
        old = control.table.get(rule.id)
        if old is None:
            control.add(rule, actor, force=cmd.force)
            return RemoteChange(Change.ADD, rule, actor)
        if not blocks_exactly(old, cmd.addr):
            raise RuleRefused(
                f"rule '{rule.id}' exists and is not a block of {cmd.addr}: pick another --id, or unblock it first"
            )
        control.update(rule, actor, force=cmd.force)  # blocked again: its expiry and comment are the new ones
        return RemoteChange(Change.UPDATE, rule, actor)

    def _unblock(self, cmd: Unblock, actor: Actor) -> list[RemoteChange]:
        control = self.engine.control
        if cmd.rule_id is not None:
            if control.table.get(cmd.rule_id) is None:
                raise BadRequest(
                    f"no rule with id '{cmd.rule_id}': nothing changed (`ironpost-tui rules IFACE` lists them)"
                )
            ids = [cmd.rule_id]
        else:
            assert cmd.addr is not None
            ids = [r.id for r in control.rules() if blocks_exactly(r, cmd.addr)]
            if not ids:
                raise BadRequest(
                    f"no drop rule on the source {cmd.addr} alone: nothing changed "
                    "(a rule on a wider prefix or on more fields is unblocked by --id)"
                )
        return [RemoteChange(Change.DELETE, control.delete(rule_id, actor), actor) for rule_id in ids]

    # --- reading ---------------------------------------------------------------------
    def _show(self, cmd: Show) -> dict[str, Any]:
        if cmd.what is Op.ALERTS:
            return {"alerts": [alert_entry(a) for a in self.engine.alerts()]}
        with self.engine.lock:
            if not self.engine.running:
                raise IronpostError("the controller is stopping")
            rules = self.engine.publish().rules  # hits as /metrics counts them
        return {"rules": [rule_entry(s) for s in rules]}


def blocks_exactly(rule: FilterRule, addr: IPNetwork) -> bool:
    """Whether ``rule`` drops the source ``addr`` (exactly that network) and matches on nothing else."""
    return rule.action is Action.DROP and rule.match_fields == ("src_ip",) and rule.src_ip == addr


def rule_entry(rule: FilterRule | RuleStatus) -> dict[str, Any]:
    """A rule as the command line shows it (every key always there, null when it does not apply)."""
    status = rule if isinstance(rule, RuleStatus) else None
    r = status.rule if status is not None else rule
    assert isinstance(r, FilterRule)
    out: dict[str, Any] = {
        "id": r.id,
        "action": r.action.value,
        "src_ip": None if r.src_ip is None else str(r.src_ip),
        "dst_ip": None if r.dst_ip is None else str(r.dst_ip),
        "dst_port": r.dst_port,
        "protocol": r.protocol,
        "description": r.description,
        "expires_at": r.expires_at,
        "auto": r.auto,
    }
    if status is not None:
        out.update(map=status.map_name, hits=status.hits, last_hit=status.last_hit, slot=status.slot)
    return out


def alert_entry(alert: Alert) -> dict[str, Any]:
    """An alert with its state (active, blocked, resolved), the live fields a console row shows (rate,
    time left, drops: detectors.alerts.live_fields), and as the JSON log has them: src_ip (where the
    source is an address), dst_ip and dst_port (the destination attacked most, its port), targets
    (``ADDRESS:PORT`` strings, ``ADDRESS:*`` for many ports)."""
    out: dict[str, Any] = {k: _plain(v) for k, v in dataclasses.asdict(alert).items()}
    out.update({k: v for k, v in live_fields(alert, time.time()).items() if k not in out})
    out["state"] = alert.state.value.lower()  # active, blocked or resolved
    out.setdefault("src_ip", _address(alert.source))
    out["targets"] = [str(t) for t in alert.targets]
    out["dst_ip"] = alert.dst_ip
    out["dst_port"] = alert.dst_port
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value.value if hasattr(value, "value") and isinstance(value, str) else value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None
