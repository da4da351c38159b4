"""Rules while the agent runs, as an operator lives them: reloads (good and
bad files, a signal or a file change), reloads under a packet flood, the
panic button, expiry, anti-lockout, edits that persist, and the audit trail.

Everything runs on the host side of a netlab veth pair (``lab`` fixture),
with real packets from the lab's namespace.  Agents are ``ironpost-tui``
subprocesses (tests/support/agents.py); each test kills what it started and runs
``ironpost-tui cleanup IFACE`` at the end, also when it fails.  Every run gets
``--config``, ``--state-dir`` and ``--audit-log`` under ``tmp_path``: nothing
here touches /etc/ironpost, /var/lib/ironpost or /var/log/ironpost.

Synchronising with the agent: a rewritten configuration is seen both by the
file watcher (a stat every ~100 ms tick) and by SIGUSR1.  When a test needs to
know that *every* load triggered by one rewrite is over (bad files: each load
logs ``refused``), it waits for the watcher's load first and only then sends
the signal, so each trigger logs exactly one line.

Addresses: rules use the lab's own addresses, or prefixes picked at random in
198.18.0.0/15 (/28, avoiding every address in use on the host) and
2001:db8:XXXX:N::/64 with N != 0 (netlab's labs use 2001:db8:XXXX::/64 only),
so that another test's lab appearing meanwhile cannot land inside a drop rule.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import bpftool, netlab, trafgen
from support import engine as running
from support.agents import Agent, AgentPool, agent_env, in_process_engine, one_error_line, ready_info, xdp_progs
from support.agents import run as run_ironpost
from support.bpftool import hexbytes, map_dump, map_keys, prog_maps
from support.traffic import Probe

from ironpost_tui.config import settings as config
from ironpost_tui.config.store import RuleStore
from ironpost_tui.engine.engine import Engine, EngineOptions
from ironpost_tui.kernel import abi
from ironpost_tui.model import Action, FilterRule, PacketEvent, Verdict
from ironpost_tui.rules import placement as kernel_rules
from ironpost_tui.rules import prefilter
from ironpost_tui.rules.audit import login_uid
from ironpost_tui.rules.control import LockoutRefused
from ironpost_tui.rules.protect import REASON_SSH_CLIENT, Protected

pytestmark = pytest.mark.root

CORPUS_BAD = Path(__file__).resolve().parent / "config_corpus" / "bad"
RULE_MAPS = ("BLOCKLIST", "SRC4", "SRC6", "MATCH")
STATE_MAPS = (*RULE_MAPS, "SHAPES", "ALLOW4", "ALLOW6", "CONFIG")
REFUSED = "refused, the previous rules stay in force"
RELOADED = "reloaded "


# --------------------------------------------------------------------------- #
# fixtures and small helpers


@dataclass
class Paths:
    config: Path
    state_dir: Path
    audit: Path

    def args(self, with_config: bool = True) -> list[str]:
        cfg = ["--config", str(self.config)] if with_config else []
        return [*cfg, "--state-dir", str(self.state_dir), "--audit-log", str(self.audit)]


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "ironpost.toml", tmp_path / "state", tmp_path / "audit.log")


def write_atomic(path: Path, text: str | bytes) -> None:
    """Replace ``path`` the way editors and config management do: a temporary file, then rename."""
    data = text.encode() if isinstance(text, str) else text
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_bytes(data)
    os.rename(tmp, path)


def start_agent(pool: AgentPool, lab: netlab.Lab, paths: Paths, *extra: str, env: dict[str, str] | None = None,
                with_config: bool = True) -> tuple[Agent, int]:  # fmt: skip
    """Start an agent on the lab and wait until it is ready; (agent, prog id)."""
    agent = pool.start(lab.host_if, *paths.args(with_config), *extra, env=env or agent_env())
    mode, prog_id = ready_info(agent.wait_ready())
    assert xdp_progs(lab.ifindex) == [(mode, prog_id)]
    return agent, prog_id


def count_lines(agent: Agent, text: str) -> int:
    return sum(1 for line in list(agent.out) if text in line)


def wait_count(agent: Agent, text: str, count: int, timeout: float = 5.0) -> float:
    """Until ``count`` stdout lines contain ``text``; the monotonic time it was seen."""
    end = time.monotonic() + timeout
    while True:
        if count_lines(agent, text) >= count:
            return time.monotonic()
        if time.monotonic() > end:
            raise AssertionError(f"fewer than {count} lines with {text!r} within {timeout} s:\n{agent.describe()}")
        if agent.proc.poll() is not None:
            raise AssertionError(f"the agent exited while waiting for {text!r}:\n{agent.describe()}")
        time.sleep(0.01)


def wait_line(agent: Agent, after: int, text: str, timeout: float = 5.0) -> int:
    """Until a stdout line past index ``after`` contains ``text``; its index."""
    end = time.monotonic() + timeout
    while True:
        lines = list(agent.out)
        for i in range(after, len(lines)):
            if text in lines[i]:
                return i
        if time.monotonic() > end:
            raise AssertionError(f"no line with {text!r} past line {after} within {timeout} s:\n{agent.describe()}")
        if agent.proc.poll() is not None:
            raise AssertionError(f"the agent exited while waiting for {text!r}:\n{agent.describe()}")
        time.sleep(0.005)


def _addresses_in_use() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, check=True).stdout
    return [
        ipaddress.ip_network(a["local"]) for link in json.loads(out) for a in link.get("addr_info", []) if "local" in a
    ]


def free_net4(lab: netlab.Lab, avoid: tuple[ipaddress.IPv4Network, ...] = ()) -> ipaddress.IPv4Network:
    """A /28 in 198.18.0.0/15 holding no address of this host and not the lab's /30."""
    used = [n for n in _addresses_in_use() if n.version == 4]
    lab_net = ipaddress.ip_network(lab.net4)
    base = int(ipaddress.IPv4Address("198.18.0.0"))
    for _ in range(1000):
        net = ipaddress.IPv4Network((base + 16 * secrets.randbelow(2**17 // 16), 28))
        if not any(net.overlaps(u) for u in used) and not net.overlaps(lab_net) and net not in avoid:
            return net
    raise AssertionError("no free /28 in 198.18.0.0/15")


def free_net6() -> ipaddress.IPv6Network:
    """2001:db8:XXXX:N::/64, N != 0: never a netlab lab's net (those are 2001:db8:XXXX::/64)."""
    return ipaddress.IPv6Network(f"2001:db8:{secrets.token_hex(2)}:{1 + secrets.randbelow(0xFFFE):x}::/64")


def toml_rule(rule_id: str, action: str = "drop", **fields: object) -> str:
    body = "".join(f"{k} = {json.dumps(v)}\n" for k, v in fields.items())
    return f'\n[[ebpf.rules]]\nid = "{rule_id}"\n{body}action = "{action}"\n'


# --------------------------------------------------------------------------- #
# the kernel's maps, through bpftool


def attached_prog(lab: netlab.Lab) -> int:
    progs = xdp_progs(lab.ifindex)
    assert len(progs) == 1, progs
    return progs[0][1]


def dump_state(maps: dict[str, int]) -> dict[str, str]:
    """The raw ``bpftool -j map dump`` output of every map holding rules or protections."""
    return {name: map_dump(maps[name]) for name in STATE_MAPS}


def v4key(addr: str) -> bytes:
    return ipaddress.IPv4Address(addr).packed


# --------------------------------------------------------------------------- #
# traffic: UDP from the namespace to sockets on the host side


# --------------------------------------------------------------------------- #
# 1. a bad file changes nothing


def _good_config(lab: netlab.Lab, p4: ipaddress.IPv4Network, p6: ipaddress.IPv6Network,
                 exact: str, protect: str) -> str:  # fmt: skip
    # Host addresses are not protected here: another test's lab coming or going while this
    # runs would change ALLOW4/ALLOW6 at the final (good) reload and make the dumps differ.
    return (
        "# the good configuration\n"
        "[ebpf]\nblocklist_max_entries = 64\n\n"
        f'[safety]\nprotect = ["{protect}"]\nprotect_host_addresses = false\n'
        + toml_rule("exact-v4", src_ip=exact)
        + toml_rule("prefix-v4", src_ip=str(p4))
        + toml_rule("prefix-v6", src_ip=str(p6))
        + toml_rule("multi", src_ip=str(p4), dst_port=9999, protocol=17)
        + toml_rule("watch-dns", "monitor", dst_port=53, protocol=17)
        + toml_rule("watch-v6", "monitor", src_ip=str(p6.supernet(new_prefix=56)))
    )


def test_bad_files_change_nothing_in_the_kernel(lab: netlab.Lab, agents: AgentPool, paths: Paths) -> None:
    p4 = free_net4(lab)
    p6 = free_net6()
    other4 = free_net4(lab, avoid=(p4,))
    exact, protect, protect2 = str(other4[1]), str(other4[5]), str(other4[9])
    good = _good_config(lab, p4, p6, exact, protect)
    write_atomic(paths.config, good)
    agent, prog_id = start_agent(agents, lab, paths)
    assert "(6 in force)" in agent.wait_for("rules: "), agent.describe()
    maps = prog_maps(prog_id, expect=STATE_MAPS)
    before = dump_state(maps)
    # The good state is what the file says.
    assert map_keys(maps["BLOCKLIST"]) == [v4key(exact)]
    assert len(json.loads(before["SRC4"])) == 1 and len(json.loads(before["SRC6"])) == 2
    assert len(json.loads(before["MATCH"])) == 2
    assert bytes(abi.LPM_V4_KEY.pack(32, v4key(protect))) in map_keys(maps["ALLOW4"])

    bad: dict[str, bytes] = {f.name: f.read_bytes() for f in sorted(CORPUS_BAD.glob("*.toml"))}
    assert len(bad) >= 10, sorted(bad)
    bad["10001-rules.toml"] = "".join(
        f'[[rules]]\nid = "r{i}"\nsrc_ip = "{ipaddress.IPv4Address("198.18.0.0") + i}"\n' for i in range(10_001)
    ).encode()
    pad = b"# padding padding padding padding padding padding padding padding padding padding\n"
    bad["11MB.toml"] = good.encode() + pad * (11 * 1024 * 1024 // len(pad) + 1)
    assert len(bad["11MB.toml"]) > 11 * 1024 * 1024
    # Valid files the running kernel cannot take: refused by the engine, not by the parser.
    bad["over-capacity.toml"] = (
        good.replace("blocklist_max_entries = 64", "blocklist_max_entries = 10000")
        + "".join(toml_rule(f"cap-{i}", src_ip=str(ipaddress.IPv4Address("198.19.255.0") - i)) for i in range(65))
    ).encode()
    # A new protect list, and a drop of the newly protected address in the same file: refused,
    # and the old protections must stay as they were (ALLOW4 included).
    bad["lockout.toml"] = (
        good.replace(f'protect = ["{protect}"]', f'protect = ["{protect2}"]') + toml_rule("lockout", src_ip=protect2)
    ).encode()

    for name, data in bad.items():
        refused = count_lines(agent, REFUSED)
        write_atomic(paths.config, data)
        # The watcher's load first, then the signal's: one "refused" each.
        wait_count(agent, REFUSED, refused + 1, timeout=10)
        agent.send(signal.SIGUSR1)
        wait_count(agent, REFUSED, refused + 2, timeout=10)
        assert agent.proc.poll() is None, f"{name}: the agent died:\n{agent.describe()}"
        after = dump_state(maps)
        changed = [m for m in STATE_MAPS if after[m] != before[m]]
        assert not changed, f"{name}: refused, yet {changed} changed:\n{agent.describe()}"
        assert xdp_progs(lab.ifindex)[0][1] == prog_id
    assert count_lines(agent, RELOADED) == 0, agent.describe()
    assert "Traceback" not in agent.stdout + agent.stderr, agent.describe()

    # Back to the good file: nothing to change, so nothing is reloaded (and nothing refused).
    refused = count_lines(agent, REFUSED)
    write_atomic(paths.config, good)
    agent.send(signal.SIGUSR1)
    time.sleep(1.0)  # ten ticks: the watcher's and the signal's loads are long done
    assert count_lines(agent, REFUSED) == refused, agent.describe()
    assert count_lines(agent, RELOADED) <= 1, agent.describe()
    assert dump_state(maps) == before
    assert agent.proc.poll() is None
    agent.send(signal.SIGTERM)
    assert agent.wait() == 0, agent.describe()


# --------------------------------------------------------------------------- #
# 2. reloads under fire


def _udp_counts(stats_map: int) -> tuple[int, int]:
    """(packets, drops) of STATS' UDP row, summed over CPUs: what the program itself counted."""
    packets, _bytes, drops = bpftool.percpu_sums(("id", str(stats_map)), abi.PROTO_STATS)[abi.STATS_UDP]
    return packets, drops


def _wait_rules(agent: Agent, mark: int, count: int) -> None:
    wait_line(agent, mark, f": {count} rules in force", timeout=20)


def test_reload_under_fire_lets_nothing_through(lab: netlab.Lab, agents: AgentPool, paths: Paths,
                                                tmp_path: Path) -> None:  # fmt: skip
    """trafgen floods UDP from the lab's namespace at full rate while the blocked source moves between
    an exact rule (BLOCKLIST/EXACT4), a prefix rule (SRC4, a /31) and a multi-field rule (MATCH) over 100
    reloads, every one of the six moves between them some 16 times (until session 26 the order made three
    of them only: exact -> multi-field, multi-field -> prefix and prefix -> exact were never tried), each
    reload with the flood on it: the program's own STATS count every packet of the flood, and not one
    passed.  The control: one more reload without the block, and the passes show in the same counters."""
    block31 = ipaddress.ip_network(f"{lab.ns_ip4}/31", strict=False)  # the namespace side, not the host's
    assert ipaddress.ip_address(lab.host_ip4) not in block31
    pad = toml_rule("watch-dns", "monitor", dst_port=53, protocol=17) + toml_rule("v6", src_ip=str(free_net6()))
    forms = {  # text, rules in force (all different, so each reload is waited for by its own count)
        "exact": (pad + toml_rule("block-exact", src_ip=lab.ns_ip4), 3),
        "prefix": (pad + toml_rule("block-prefix", src_ip=str(block31))
                   + toml_rule("watch-ssh", "monitor", dst_port=22), 4),
        "multi-field": (pad + toml_rule("block-match", src_ip=lab.ns_ip4, dst_port=9, protocol=17)
                        + toml_rule("watch-ssh", "monitor", dst_port=22)
                        + toml_rule("watch-web", "monitor", dst_port=80, protocol=6), 5),
    }  # fmt: skip
    order = ["exact", "prefix", "multi-field", "exact", "multi-field", "prefix"]  # each of the six moves once a cycle
    moves = {f"{a} -> {b}" for a in forms for b in forms if a != b}
    write_atomic(paths.config, forms["exact"][0])
    agent, prog_id = start_agent(agents, lab, paths)
    stats = prog_maps(prog_id, expect=("STATS",))["STATS"]
    packets0, drops0 = _udp_counts(stats)
    tx0 = netlab.peer_tx_packets(lab)
    reloads = 100
    with trafgen.flood(lab, trafgen.trafgen_cfg(lab, proto="udp", dport=9), tmp_path) as tg:
        # Until the flood shows in STATS (trafgen is up and sending).
        end = time.monotonic() + 30
        while _udp_counts(stats)[0] - packets0 < 1000:
            assert tg.poll() is None, tg.stderr.read().decode() if tg.stderr else "trafgen exited"
            assert time.monotonic() < end, "the flood never reached the program"
            time.sleep(0.05)
        seen = []
        leaks: dict[str, int] = {}  # passes counted during each kind of move (the failure message says)
        judged: list[int] = []  # packets the program judged during each reload
        before = _udp_counts(stats)
        for n in range(1, reloads + 1):
            form = order[n % len(order)]
            text, count = forms[form]
            mark = len(agent.out)
            write_atomic(paths.config, text)
            agent.send(signal.SIGUSR1)
            _wait_rules(agent, mark, count)
            after = _udp_counts(stats)
            move = f"{seen[-1] if seen else 'exact'} -> {form}"
            leaks[move] = leaks.get(move, 0) + (after[0] - before[0]) - (after[1] - before[1])
            judged.append(after[0] - before[0])
            before = after
            seen.append(form)
        assert tg.poll() is None, "trafgen stopped during the reloads"
    time.sleep(0.2)
    packets, drops = _udp_counts(stats)
    sent = netlab.peer_tx_packets(lab) - tx0
    print(f"reload under fire: {reloads} reloads, {packets - packets0} UDP packets judged, {sent} sent")
    assert set(seen) == set(forms) and seen.count("prefix") >= 33 and set(leaks) == moves
    assert min(judged) >= 100, f"a reload with no flood on it: {judged}"
    assert count_lines(agent, REFUSED) == 0, agent.describe()
    assert packets - packets0 >= 10_000, "the flood was too thin to mean anything"
    assert packets - packets0 <= sent
    passed = (packets - packets0) - (drops - drops0)
    assert passed == 0, f"{passed} passed; by move: {leaks}"

    # The control: the block goes; the same counters see the flood pass.
    mark = len(agent.out)
    write_atomic(paths.config, pad)
    agent.send(signal.SIGUSR1)
    _wait_rules(agent, mark, 2)
    packets1, drops1 = _udp_counts(stats)
    with trafgen.flood(lab, trafgen.trafgen_cfg(lab, proto="udp", dport=9), tmp_path):
        end = time.monotonic() + 30
        while (_udp_counts(stats)[0] - packets1) - (_udp_counts(stats)[1] - drops1) < 1000:
            assert time.monotonic() < end, "no pass counted without the block: the counters see nothing"
            time.sleep(0.05)
    agent.send(signal.SIGTERM)
    assert agent.wait() == 0, agent.describe()


# --------------------------------------------------------------------------- #
# 3. anti-lockout


def test_a_protected_address_is_refused_at_start_unless_forced(
    lab: netlab.Lab, agents: AgentPool, paths: Paths, probe: Probe
) -> None:
    """The refusal names the protection.  The SSH client's own cases, with a real sshd: test_ssh_operator.py."""
    head = f'[safety]\nprotect = ["{lab.ns_ip4}"]\nprotect_host_addresses = false\n'
    around = ipaddress.ip_network(f"{lab.ns_ip4}/24", strict=False)
    for rule_id, src in (("drop-protected", lab.ns_ip4), ("drop-protected-net", str(around))):
        write_atomic(paths.config, head + toml_rule(rule_id, src_ip=src))
        proc = agents.run(lab.host_if, *paths.args(), env=agent_env())
        assert proc.returncode == 2, proc
        msg = one_error_line(proc.stderr)
        assert f"'{rule_id}'" in msg and "[safety] protect list" in msg and lab.ns_ip4 in msg, msg
        assert "ready:" not in proc.stdout
        assert xdp_progs(lab.ifindex) == []

    # --force: it starts; the rule is in the kernel, and the allowlist still lets the address through.
    write_atomic(paths.config, head + toml_rule("drop-protected", src_ip=lab.ns_ip4))
    agent, prog_id = start_agent(agents, lab, paths, "--force")
    maps = prog_maps(prog_id, expect=STATE_MAPS)
    assert map_keys(maps["BLOCKLIST"]) == [v4key(lab.ns_ip4)]
    assert abi.LPM_V4_KEY.pack(32, v4key(lab.ns_ip4)) in map_keys(maps["ALLOW4"])
    assert probe.burst(20) == 20
    agent.send(signal.SIGTERM)
    assert agent.wait() == 0, agent.describe()


def test_a_stale_ssh_connection_protects_nothing(lab: netlab.Lab, agents: AgentPool, paths: Paths,
                                                 probe: Probe) -> None:  # fmt: skip
    """SSH_CONNECTION with no live sshd connection behind it (a tmux pane of an ended login): the drop applies."""
    env = agent_env(SSH_CONNECTION=f"{lab.ns_ip4} 50000 {lab.host_ip4} 22")
    write_atomic(paths.config, toml_rule("drop-claimed-client", src_ip=lab.ns_ip4))
    agent, prog_id = start_agent(agents, lab, paths, env=env)
    assert agent.wait_for("no SSH client found: your own address is not protected")
    assert abi.LPM_V4_KEY.pack(32, v4key(lab.ns_ip4)) not in map_keys(prog_maps(prog_id)["ALLOW4"])
    assert probe.burst(20) == 0
    agent.send(signal.SIGTERM)
    assert agent.wait() == 0, agent.describe()


def test_a_protected_source_passes_a_hand_made_blocklist_entry_which_is_then_deleted(
    lab: netlab.Lab, agents: AgentPool, paths: Paths, probe: Probe
) -> None:
    """The kernel's allowlist wins at once; the controller then refuses the entry (anti-lockout for other
    writers: tests/test_external_live.py has the cases with a source that is not protected)."""
    write_atomic(paths.config, f'[safety]\nprotect = ["{lab.ns_ip4}"]\n')
    agent, prog_id = start_agent(agents, lab, paths)
    maps = prog_maps(prog_id, expect=STATE_MAPS)
    allow_key = abi.LPM_V4_KEY.pack(32, v4key(lab.ns_ip4))
    assert allow_key in map_keys(maps["ALLOW4"])
    assert map_keys(maps["BLOCKLIST"]) == []
    assert probe.burst(20) == 20

    # A drop entry for the protected source written behind ironpost's back, the way a tool had to before
    # controllers took other tools' entries in: first the FILTER_EXACT bit of the address's ADDR_FILTER
    # bucket, so the program reads it at once, then the entry.
    bucket = prefilter.filter_bucket(v4key(lab.ns_ip4).ljust(16, b"\0"), abi.FAMILY_V4)
    word_key = (bucket >> 1).to_bytes(4, "little")
    found = json.loads(bpftool.run("-j", "map", "lookup", "id", str(maps["ADDR_FILTER"]), "key", *hexbytes(word_key)))
    word = int.from_bytes(bytes(int(b, 16) for b in found["value"]), "little")
    word |= abi.FILTER_EXACT << ((bucket & 1) * 32)
    bpftool.run("map", "update", "id", str(maps["ADDR_FILTER"]), "key", *hexbytes(word_key),
               "value", *hexbytes(word.to_bytes(8, "little")))  # fmt: skip
    value = abi.BLOCKLIST_VALUE.pack(abi.ACTION_DROP, abi.ACTION_DROP, 0, 0, 0, 0, 0)
    assert len(value) == 20
    bpftool.run("map", "update", "id", str(maps["BLOCKLIST"]), "key", *hexbytes(v4key(lab.ns_ip4)),
               "value", *hexbytes(value))  # fmt: skip
    assert probe.burst(20) == 20  # the allowlist wins
    # The controller deletes it (a drop on a protected address), says so, and audits it.
    agent.wait_for(f"BLOCKLIST entry for {lab.ns_ip4} written by another tool refused", timeout=2)
    assert map_keys(maps["BLOCKLIST"]) == []
    assert probe.burst(20) == 20
    audit = [json.loads(line) for line in paths.audit.read_text().splitlines()]
    assert ("refuse", f"external:{lab.ns_ip4}", "external") in [
        (e["change"], e.get("rule", {}).get("id"), e["via"]) for e in audit
    ]
    assert agent.proc.poll() is None


def kernel_state(eng: Engine) -> dict[str, list[tuple[bytes, bytes]]]:
    return {name: sorted(running.datapath(eng).map_items(name)) for name in STATE_MAPS}


def test_engine_refuses_to_drop_a_protected_address_and_forced_it_still_passes(
    lab: netlab.Lab, paths: Paths, probe: Probe
) -> None:
    ns = ipaddress.ip_network(lab.ns_ip4)
    opts = EngineOptions(
        iface=lab.host_if, rules=(), protected=(Protected(ns, REASON_SSH_CLIENT),), audit_log=paths.audit
    )
    with in_process_engine(opts) as eng:
        rule = FilterRule("drop-client", Action.DROP, src_ip=ns)
        before = kernel_state(eng)
        with pytest.raises(LockoutRefused) as info:
            running.add_rule(eng, rule)
        assert "drop-client" in info.value.message and "SSH client" in info.value.message
        assert kernel_state(eng) == before
        assert running.rules(eng) == []
        assert probe.burst(20) == 20

        running.add_rule(eng, rule, force=True)
        assert running.rules(eng) == [rule]
        assert [k for k, _ in running.datapath(eng).map_items("BLOCKLIST")] == [v4key(lab.ns_ip4)]
        eng.tick(0)  # drain
        assert probe.burst(20) == 20  # the allowlist wins over the forced drop
        events: list[PacketEvent] = []
        end = time.monotonic() + 2
        while len(events) < 20 and time.monotonic() < end:
            events += [e for e in eng.tick(50).events if e.rule_id == "drop-client"]
        assert len(events) == 20 and {e.verdict for e in events} == {Verdict.PROTECTED}
        status = {s.rule.id: s for s in running.rule_status(eng)}
        assert status["drop-client"].hits == 20
        # The forced change is audited as such.
        entries = [json.loads(line) for line in paths.audit.read_text().splitlines()]
        assert [(e["change"], e.get("rule", {}).get("id"), e.get("forced")) for e in entries][-1] == (
            "add",
            "drop-client",
            True,
        )


# --------------------------------------------------------------------------- #
# 4. panic


_PING_REPLY = re.compile(r"^\[(?P<ts>\d+\.\d+)\] \d+ bytes from .*icmp_seq=(?P<seq>\d+)")


def ping_replies(out: str) -> list[tuple[float, int]]:
    return [(float(m["ts"]), int(m["seq"])) for line in out.splitlines() if (m := _PING_REPLY.match(line))]


@pytest.mark.parametrize("how", ["sigusr2", "cleanup"])
def test_panic_clears_every_drop_rule_within_a_second(
    lab: netlab.Lab, agents: AgentPool, paths: Paths, how: str
) -> None:
    write_atomic(
        paths.config,
        "# panic test\n"
        + toml_rule("drop-ns", src_ip=lab.ns_ip4, description="the namespace")
        + toml_rule("watch-dns", "monitor", dst_port=53, protocol=17),
    )
    agent, prog_id = start_agent(agents, lab, paths)
    mode = xdp_progs(lab.ifindex)[0][0]
    maps = prog_maps(prog_id, expect=STATE_MAPS)
    assert map_keys(maps["BLOCKLIST"]) == [v4key(lab.ns_ip4)]

    ping = subprocess.Popen(
        ["ip", "netns", "exec", lab.ns, "ping", "-D", "-n", "-i", "0.05", "-c", "200", "-W", "1", lab.host_ip4],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)  # ~30 echo requests, all dropped
        t_panic = time.time()
        if how == "sigusr2":
            agent.send(signal.SIGUSR2)
            t_sent = t_panic
        else:
            done = run_ironpost("cleanup", lab.host_if)
            t_sent = time.time()
            assert done.returncode == 0, done.stderr
            assert f"pid {agent.pid}" in done.stdout and "panic" in done.stdout, done.stdout
        line = agent.wait_for("panic: cleared", timeout=5)
        assert "cleared 1 drop rule(s): drop-ns" in line, line
        out, err = ping.communicate(timeout=30)
    finally:
        if ping.poll() is None:
            ping.kill()
            ping.communicate()
    replies = ping_replies(out)
    assert replies, f"no reply at all:\n{out}\n{err}"
    first = min(ts for ts, _ in replies)
    print(f"panic ({how}): first reply {first - t_panic:.3f} s after asking, {first - t_sent:.3f} s after the signal")
    assert first >= t_panic, f"a reply came before the panic ({first} < {t_panic}):\n{out}"
    # From the signal (for cleanup: from when it had sent it) to the first reply.
    assert first - t_sent <= 1.0, f"first reply {first - t_panic:.3f} s after the panic was asked:\n{out}"
    # Everything after that point is answered.
    seqs = sorted(seq for _, seq in replies)
    assert seqs == list(range(seqs[0], 201)) or len(seqs) >= 200 - seqs[0] - 2, out

    # Kernel, then file: the drop rule is gone from both; the monitor rule stays.
    assert map_keys(maps["BLOCKLIST"]) == []
    assert [r.id for r in config.load(paths.config).rules] == ["watch-dns"]
    assert "# panic test" in paths.config.read_text()
    # No reload was triggered by the panic's own write.
    time.sleep(0.3)
    assert count_lines(agent, RELOADED) == 0 and count_lines(agent, REFUSED) == 0, agent.describe()
    assert agent.proc.poll() is None
    assert xdp_progs(lab.ifindex) == [(mode, prog_id)]
    agent.send(signal.SIGTERM)
    assert agent.wait() == 0, agent.describe()


# --------------------------------------------------------------------------- #
# 5. expiry


def test_a_rule_expires_from_the_kernel_and_the_file(
    lab: netlab.Lab, agents: AgentPool, paths: Paths, probe: Probe
) -> None:
    write_atomic(
        paths.config,
        "# expiry test\n"
        + toml_rule("short", src_ip=lab.ns_ip4, expires_in="2s")
        + toml_rule("watch-dns", "monitor", dst_port=53, protocol=17),
    )
    t_launch = time.monotonic()
    agent, prog_id = start_agent(agents, lab, paths)
    t_ready = time.monotonic()
    maps = prog_maps(prog_id, expect=STATE_MAPS)
    assert map_keys(maps["BLOCKLIST"]) == [v4key(lab.ns_ip4)]
    assert probe.burst(20) == 0  # in force

    # Gone within ~3.5 s of the start: 2 s, plus at most one ~1 s sample period to notice it,
    # (when compiling took longer than 2 s, it goes at the first sample after ready).
    deadline = max(t_launch + 3.6, t_ready + 1.5)
    while map_keys(maps["BLOCKLIST"]):
        assert time.monotonic() < deadline + 2, f"still in BLOCKLIST {time.monotonic() - t_launch:.2f} s on"
        time.sleep(0.02)
    t_gone = time.monotonic()
    print(f"expiry: ready {t_ready - t_launch:.2f} s, gone {t_gone - t_launch:.2f} s after the launch")
    assert t_gone <= deadline, (
        f"expired {t_gone - t_launch:.2f} s after the start ({t_ready - t_launch:.2f} s to ready)"
    )
    assert probe.burst(20) == 20
    # ... and from the file, the rest of it untouched.
    end = time.monotonic() + 2
    while "short" in [r.id for r in config.load(paths.config).rules] and time.monotonic() < end:
        time.sleep(0.02)
    assert [r.id for r in config.load(paths.config).rules] == ["watch-dns"]
    assert "# expiry test" in paths.config.read_text()
    time.sleep(0.3)
    assert count_lines(agent, RELOADED) == 0 and count_lines(agent, REFUSED) == 0, agent.describe()
    entries = [json.loads(line) for line in paths.audit.read_text().splitlines()]
    assert ("delete", "short", "expiry") in [(e["change"], e.get("rule", {}).get("id"), e["via"]) for e in entries]
    assert agent.proc.poll() is None


# --------------------------------------------------------------------------- #
# 6. edits persist


def kernel_rule_set(eng: Engine) -> set[tuple[str, FilterRule]]:
    """(map, rule without id) for every rule entry the kernel holds, decoded from the maps themselves."""

    def plen(mask: bytes) -> int:
        return bin(int.from_bytes(mask, "big")).count("1")

    shapes = {}
    for raw_key, raw in running.datapath(eng).map_items("SHAPES"):
        fields, family, _pm, _portm, smask, dmask = abi.RULE_SHAPE.unpack(raw)
        if fields and not fields & abi.SHAPE_UNUSED:
            shapes[int.from_bytes(raw_key, "little")] = kernel_rules.Shape(fields, family, plen(smask), plen(dmask))
    out = set()
    for name in RULE_MAPS:
        for key, raw in running.datapath(eng).map_items(name):
            own_action = abi.BLOCKLIST_VALUE.unpack(raw)[1]
            rule = kernel_rules.rule_from_entry(name, key, own_action, shapes, "-")
            assert rule is not None, (name, key)
            out.add((name, rule))
    return out


def without_id(rules: list[FilterRule]) -> set[tuple[str, FilterRule]]:
    return {
        (kernel_rules.place(r).map_name, FilterRule("-", r.action, r.src_ip, r.dst_ip, r.dst_port, r.protocol))
        for r in rules
    }


def test_edits_through_the_engine_persist_in_the_file(lab: netlab.Lab, paths: Paths, probe: Probe) -> None:
    keep = free_net4(lab)
    paths.config.write_text(
        "# top of the file\n"
        "[ebpf]\n"
        'xdp_mode = "auto"  # how to attach\n'
        "\n"
        "# a scanner range\n"
        "[[ebpf.rules]]\n"
        'id = "keep-range"  # kept as it is\n'
        f'src_ip = "{keep}"\n'
        'action = "drop"\n'
        "\n"
        "# web monitor\n"
        "[[ebpf.rules]]\n"
        'id = "watch-web"\n'
        "dst_port = 8080  # the web port\n"
        "protocol = 6\n"
        'action = "monitor"\n'
        "\n"
        "# to be deleted\n"
        "[[ebpf.rules]]\n"
        'id = "old-one"\n'
        'src_ip = "2001:db8:ffff:1::/64"\n'
        'action = "drop"\n'
    )

    def file_ids() -> list[str]:
        return [r.id for r in config.load(paths.config).rules]

    def comments_kept(*texts: str) -> None:
        text = paths.config.read_text()
        for t in ("# top of the file", "# how to attach", *texts):
            assert t in text, f"{t!r} lost:\n{text}"

    settings = config.load(paths.config)
    opts = EngineOptions(
        iface=lab.host_if, rules=settings.rules, store=RuleStore(paths.config), audit_log=paths.audit, protected=()
    )
    with in_process_engine(opts) as eng:
        assert [r.id for r in running.rules(eng)] == ["keep-range", "watch-web", "old-one"]
        assert probe.burst(10) == 10

        # add
        ns_drop = FilterRule("drop-ns", Action.DROP, src_ip=ipaddress.ip_network(lab.ns_ip4), description="lab ns")
        running.add_rule(eng, ns_drop)
        assert file_ids() == ["keep-range", "watch-web", "old-one", "drop-ns"]
        assert config.load(paths.config).rules[-1] == ns_drop
        comments_kept("# a scanner range", "# kept as it is", "# web monitor", "# the web port", "# to be deleted")
        assert probe.burst(10) == 0
        multi = FilterRule("drop-udp", Action.DROP, dst_ip=ipaddress.ip_network(lab.host_ip4), dst_port=7, protocol=17)
        running.add_rule(eng, multi)
        assert file_ids()[-1] == "drop-udp"

        # update
        web = FilterRule("watch-web", Action.MONITOR, dst_port=8443, protocol=6)
        running.update_rule(eng, web)
        assert [r for r in config.load(paths.config).rules if r.id == "watch-web"] == [web]
        comments_kept("# a scanner range", "# kept as it is", "# web monitor", "# to be deleted")
        text = paths.config.read_text()
        assert "dst_port = 8443" in text and "8080" not in text

        # update, to another map (the entry moves: BLOCKLIST -> SRC4)
        ns_drop = FilterRule("drop-ns", Action.DROP, src_ip=ipaddress.ip_network(lab.net4), description="lab ns")
        running.update_rule(eng, ns_drop)
        assert [r for r in config.load(paths.config).rules if r.id == "drop-ns"] == [ns_drop]

        # delete
        running.delete_rule(eng, "old-one")
        assert file_ids() == ["keep-range", "watch-web", "drop-ns", "drop-udp"]
        comments_kept("# a scanner range", "# kept as it is", "# web monitor")
        assert "old-one" not in paths.config.read_text()

        final_rules = running.rules(eng)
        in_kernel = kernel_rule_set(eng)
        assert in_kernel == without_id(final_rules)
        assert probe.burst(10) == 0

    entries = [json.loads(line) for line in paths.audit.read_text().splitlines()]
    assert [(e["change"], e.get("rule", {}).get("id")) for e in entries if e["change"] != "load"] == [
        ("add", "drop-ns"),
        ("add", "drop-udp"),
        ("update", "watch-web"),
        ("update", "drop-ns"),
        ("delete", "old-one"),
    ]

    # A new engine from the saved file has exactly those rules, in the kernel too.
    again = config.load(paths.config)
    assert list(again.rules) == final_rules
    opts2 = EngineOptions(iface=lab.host_if, rules=again.rules, store=RuleStore(paths.config), protected=())
    with in_process_engine(opts2) as eng2:
        assert running.rules(eng2) == final_rules
        assert kernel_rule_set(eng2) == in_kernel
        assert probe.burst(10) == 0


def test_state_file_mode_keeps_rules_across_starts(
    lab: netlab.Lab, agents: AgentPool, paths: Paths, probe: Probe
) -> None:
    if Path("/etc/ironpost/ironpost.toml").exists():
        pytest.skip("/etc/ironpost/ironpost.toml exists: without --config the agent would follow it")
    state_file = paths.state_dir / f"{lab.host_if}.rules.toml"
    assert not state_file.exists()
    agent, _ = start_agent(agents, lab, paths, with_config=False)
    assert agent.wait_for("rules: ").endswith(f"rules: {state_file} (0 in force)"), agent.describe()
    assert state_file.exists()
    assert (state_file.stat().st_mode & 0o777) == 0o600
    assert config.load(state_file).rules == ()
    assert probe.burst(10) == 10
    agent.send(signal.SIGTERM)
    assert agent.wait() == 0, agent.describe()

    rule = FilterRule("drop-ns", Action.DROP, src_ip=ipaddress.ip_network(lab.ns_ip4))
    RuleStore.state_file(lab.host_if, paths.state_dir).add(rule)
    assert "# ironpost-tui rule state" in state_file.read_text()

    agent, prog_id = start_agent(agents, lab, paths, with_config=False)
    assert agent.wait_for("rules: ").endswith(f"rules: {state_file} (1 in force)"), agent.describe()
    assert map_keys(prog_maps(prog_id, expect=STATE_MAPS)["BLOCKLIST"]) == [v4key(lab.ns_ip4)]
    assert probe.burst(10) == 0
    agent.send(signal.SIGTERM)
    assert agent.wait() == 0, agent.describe()


# --------------------------------------------------------------------------- #
# 7. file change


def test_a_rewritten_file_is_in_force_within_a_second(
    lab: netlab.Lab, agents: AgentPool, paths: Paths, probe: Probe
) -> None:
    elsewhere = free_net4(lab)
    write_atomic(paths.config, toml_rule("elsewhere", src_ip=str(elsewhere)))
    agent, prog_id = start_agent(agents, lab, paths)
    maps = prog_maps(prog_id, expect=STATE_MAPS)
    assert probe.burst(20) == 20
    time.sleep(0.3)  # not the same clock tick as the start's own mark of the file

    t0 = time.monotonic()
    write_atomic(paths.config, toml_rule("elsewhere", src_ip=str(elsewhere)) + toml_rule("drop-ns", src_ip=lab.ns_ip4))
    seen = wait_count(agent, RELOADED, 1, timeout=3)
    assert seen - t0 <= 1.0, f"picked up {seen - t0:.2f} s after the write"
    line = next(x for x in agent.out if RELOADED in x)
    assert f"reloaded {paths.config} (file change): 2 rules in force" in line, line
    assert map_keys(maps["BLOCKLIST"]) == [v4key(lab.ns_ip4)]
    assert probe.burst(20) == 0

    # In place too (same inode, not a rename): the size changes.
    t0 = time.monotonic()
    paths.config.write_text(toml_rule("elsewhere", src_ip=str(elsewhere)))
    seen = wait_count(agent, RELOADED, 2, timeout=3)
    assert seen - t0 <= 1.0
    assert probe.burst(20) == 20
    assert count_lines(agent, REFUSED) == 0, agent.describe()


# --------------------------------------------------------------------------- #
# 8. audit


def test_audit_log_names_who_what_and_how(lab: netlab.Lab, agents: AgentPool, paths: Paths) -> None:
    client = lab.ns_ip6  # the SSH client: not dropped by any rule here
    env = agent_env(SUDO_USER="alice", SSH_CONNECTION=f"{client} 50000 {lab.host_ip6} 22")
    pfx = free_net4(lab)
    # Host addresses unprotected: another test's lab coming or going would make a second,
    # protections-only "reload" entry.  The audit names the environment's SSH client as the actor
    # (no live sshd connection has it here, so it is not protected: test_ssh_operator.py).
    head = "[safety]\nprotect_host_addresses = false\n"
    write_atomic(
        paths.config, head + toml_rule("drop-ns", src_ip=lab.ns_ip4) + toml_rule("watch-dns", "monitor", dst_port=53)
    )
    agent, _ = start_agent(agents, lab, paths, env=env)

    write_atomic(
        paths.config,
        head
        + toml_rule("drop-ns", src_ip=lab.ns_ip4)
        + toml_rule("watch-dns", "monitor", dst_port=53)
        + toml_rule("drop-range", src_ip=str(pfx)),
    )
    agent.send(signal.SIGUSR1)
    wait_count(agent, RELOADED, 1)
    time.sleep(0.3)  # the second trigger (file change or signal) finds nothing to change
    agent.send(signal.SIGUSR2)
    line = agent.wait_for("panic: cleared", timeout=5)
    assert "2 drop rule(s)" in line and "drop-ns" in line and "drop-range" in line, line
    agent.send(signal.SIGTERM)
    assert agent.wait() == 0, agent.describe()

    entries = [json.loads(line) for line in paths.audit.read_text().splitlines()]
    assert entries, "empty audit log"
    for e in entries:
        assert e["user"] == "alice" and e["ssh_client"] == client, e
        assert e["event"] == "rule_change" and isinstance(e["ts"], float)
        assert e["loginuid"] == login_uid(), e  # the kernel's, inherited from this test: not the environment's
    changes = [e["change"] for e in entries]
    assert changes == ["load", "reload", "panic-delete", "panic-delete"], entries
    load, reload, *panics = entries
    assert load["via"] == "config" and load["rules"] == 2
    assert reload["via"] in ("signal", "file change") and reload["rules"] == 3
    # Which rules each whole-set change put in force.
    assert load.get("ids") == ["drop-ns", "watch-dns"], load
    assert reload.get("ids") == ["drop-ns", "watch-dns", "drop-range"], reload
    assert {p["via"] for p in panics} == {"signal"}
    assert sorted(p["rule"]["id"] for p in panics) == ["drop-ns", "drop-range"]
    assert all(p["rule"]["action"] == "drop" for p in panics)
    assert panics[0]["rule"].get("src_ip") in (f"{lab.ns_ip4}/32", str(pfx))
    # The log is private.
    assert (paths.audit.stat().st_mode & 0o777) == 0o600


# --------------------------------------------------------------------------- #
# 9. a storm of signals


def test_a_signal_storm_leaves_the_agent_in_control(
    lab: netlab.Lab, agents: AgentPool, paths: Paths, probe: Probe
) -> None:
    """Hundreds of thousands of SIGUSR1: the agent still reloads, panics and stops.

    Regression: the handlers called threading.Event.set(), which can run in the middle of the
    loop's own Event.clear() (same thread, the Event's lock held): the agent hung for good.
    """
    head = "[safety]\nprotect_host_addresses = false\n"
    write_atomic(paths.config, head + toml_rule("elsewhere", src_ip=str(free_net4(lab))))
    agent, prog_id = start_agent(agents, lab, paths)
    end = time.monotonic() + 3.0
    sent = 0
    while time.monotonic() < end:
        agent.send(signal.SIGUSR1)
        sent += 1
        if sent % 50 == 0:
            time.sleep(0.0005)  # let the agent's loop run between bursts
    assert sent > 10_000
    assert agent.proc.poll() is None, agent.describe()

    mark = len(agent.out)
    write_atomic(paths.config, head + toml_rule("drop-ns", src_ip=lab.ns_ip4))
    wait_line(agent, mark, ": 1 rules in force", timeout=3)
    assert probe.burst(20) == 0
    agent.send(signal.SIGUSR2)
    assert "drop-ns" in agent.wait_for("panic: cleared", timeout=3)
    assert probe.burst(20) == 20
    agent.send(signal.SIGTERM)
    assert agent.wait(5) == 0, agent.describe()
    assert xdp_progs(lab.ifindex) == []
    assert prog_id not in [p for _, p in xdp_progs(lab.ifindex)]
