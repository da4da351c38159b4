"""``ironpost-tui capture`` (issue 17) beside a running headless agent, with real packets over veth.

The copies are taken in the agent's own XDP program (bpf/capture.h): the capture adds no program
and the agent's stays attached.  The file is read back by tcpdump (and tshark where installed) and,
for the per-packet comments and exact bytes, block by block with dpkt.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from dpkt import pcapng
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q
from support import netlab
from support.agents import IRONPOST, Agent, AgentPool, agent_env, one_error_line, ready_info, xdp_progs
from support.agents import run as run_ironpost

pytestmark = pytest.mark.root

PORT = 40123  # the captured packets' destination port
OTHER_PORT = 40124  # a negative control: never captured
SNAPLEN = 256
FINAL = re.compile(
    r"wrote (?P<written>\d+) packets .* matched (?P<matched>\d+) = captured (?P<captured>\d+) \+ lost (?P<lost>\d+) "
    r"\(rate limit (?P<lost_rate>\d+), buffer (?P<lost_perf>\d+)\)"
)


@dataclass(frozen=True)
class Block:
    ts: int  # ns since the epoch (if_tsresol 9)
    caplen: int
    pkt_len: int
    data: bytes
    comment: str


def read_pcapng(path: Path) -> tuple[dict[int, bytes], list[Block]]:
    """(the interface's options by code, the packets) of a little-endian pcapng file, with dpkt's block classes."""
    raw = path.read_bytes()
    off, idb_opts, packets = 0, {}, []
    while off < len(raw):
        btype, blen = struct.unpack_from("<II", raw, off)
        chunk = raw[off : off + blen]
        if btype == pcapng.PCAPNG_BT_IDB:
            idb = pcapng.InterfaceDescriptionBlockLE(chunk)
            assert idb.linktype == pcapng.DLT_EN10MB
            idb_opts = {o.code: o.data for o in idb.opts}
        elif btype == pcapng.PCAPNG_BT_EPB:
            epb = pcapng.EnhancedPacketBlockLE(chunk)
            comments = [o.data.decode() for o in epb.opts if o.code == pcapng.PCAPNG_OPT_COMMENT]
            ts = (epb.ts_high << 32) | epb.ts_low
            packets.append(Block(ts, epb.caplen, epb.pkt_len, bytes(epb.pkt_data[: epb.caplen]), comments[0]))
        off += blen
    return idb_opts, packets


def start_agent(agents: AgentPool, lab: netlab.Lab, tmp_path: Path) -> tuple[Agent, int]:
    agent = agents.start(
        lab.host_if, "--state-dir", str(tmp_path / "state"), "--audit-log", str(tmp_path / "audit"), env=agent_env()
    )
    mode, prog_id = ready_info(agent.wait_ready())
    assert xdp_progs(lab.ifindex) == [(mode, prog_id)]
    return agent, prog_id


def start_capture(*args: str, env: dict[str, str] | None = None) -> Agent:
    """The real command, as a process whose output lines the test can wait on."""
    return Agent([*IRONPOST, "capture", *args], env=env or agent_env())


def marked(kind: str, i: int, size: int = 0) -> bytes:
    text = f"IRONPOST-CAPTURE-{kind}-{i:04d}-".encode()
    return text + b"x" * max(0, size - len(text))


def frames(lab: netlab.Lab, port: int, n: int) -> list[bytes]:
    """n IPv4, n IPv6 and n VLAN-tagged IPv4 datagrams from the namespace host, each with its own marker;
    the last IPv4 one longer than the snap length."""
    out = []
    for i in range(n):
        big = 600 if i == n - 1 else 0
        v4 = IP(src=lab.ns_ip4, dst=lab.host_ip4) / UDP(sport=5000 + i, dport=port)
        v6 = IPv6(src=lab.ns_ip6, dst=lab.host_ip6) / UDP(sport=5000 + i, dport=port)
        out.append(netlab.frame(lab, v4 / marked(f"v4p{port}", i, big)))
        out.append(netlab.frame(lab, v6 / marked(f"v6p{port}", i)))
        out.append(netlab.frame(lab, Dot1Q(vlan=7) / v4 / marked(f"vlanp{port}", i)))
    return out


def ironpost_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_ironpost(*args, env=agent_env())


def test_capture_beside_the_agent_has_every_packet_with_its_verdict(
    lab: netlab.Lab, agents: AgentPool, tmp_path: Path
) -> None:
    """IPv4, IPv6 and VLAN-tagged datagrams of one namespace host to one port are each in the file once,
    with their bytes up to the snap length and the real length; the IPv6 ones, which a block rule drops,
    say verdict=drop and the rule; the others pass.  Datagrams to another port (negative control) are
    not in it.  tcpdump reads the file.  The agent's program is the same before and after (bpftool), and
    a second capture at the same time is refused with exit 16."""
    agent, prog_id = start_agent(agents, lab, tmp_path)
    blocked = ironpost_cli("block", lab.host_if, lab.ns_ip6)
    assert blocked.returncode == 0, blocked
    rule_id = f"block-{lab.ns_ip6}"
    out = tmp_path / "cap.pcapng"
    n = 4
    wanted = frames(lab, PORT, n)
    cap = start_capture(lab.host_if, "--port", str(PORT), "--count", str(len(wanted)), "--seconds", "60",
                        "-w", str(out))  # fmt: skip
    try:
        cap.wait_for(f"capturing on {lab.host_if} (program {prog_id})", timeout=30)
        second = ironpost_cli("capture", lab.host_if, "--port", str(PORT), "-w", str(tmp_path / "second.pcapng"))
        assert second.returncode == 16, second
        assert "another capture" in one_error_line(second.stderr)
        assert not (tmp_path / "second.pcapng").exists()
        netlab.send_frames(lab, frames(lab, OTHER_PORT, 2))  # negative control first
        netlab.send_frames(lab, wanted)
        assert cap.wait(60) == 0, cap.describe()
    finally:
        cap.kill()
    final = FINAL.search(cap.stdout)
    assert final, cap.describe()
    assert int(final["written"]) == len(wanted) == int(final["captured"])

    assert out.stat().st_mode & 0o777 == 0o600
    tcpdump = subprocess.run(["tcpdump", "-nn", "-e", "-r", str(out)], capture_output=True, text=True)
    assert tcpdump.returncode == 0, tcpdump.stderr
    assert len(tcpdump.stdout.splitlines()) == len(wanted)
    assert "vlan 7" in tcpdump.stdout and "ethertype IPv6" in tcpdump.stdout and f".{PORT}:" in tcpdump.stdout
    # tshark too (scripts/setup.sh installs it): every packet, and the comments Wireshark shows.
    assert shutil.which("tshark"), "tshark is missing: scripts/setup.sh installs it"
    tshark = subprocess.run(["tshark", "-r", str(out), "-T", "fields", "-e", "frame.comment"],
                            capture_output=True, text=True)  # fmt: skip
    assert tshark.returncode == 0, tshark
    comments = tshark.stdout.splitlines()
    assert len(comments) == len(wanted), tshark.stdout
    assert sum("verdict=drop" in c for c in comments) == sum(f[12:14] == b"\x86\xdd" for f in wanted)
    assert all(c.startswith("ironpost verdict=") for c in comments)

    idb, packets = read_pcapng(out)
    assert idb[pcapng.PCAPNG_OPT_IF_NAME] == lab.host_if.encode()
    assert idb[pcapng.PCAPNG_OPT_IF_TSRESOL] == bytes([9])
    by_bytes = {p.data: p for p in packets}
    assert len(by_bytes) == len(packets) == len(wanted)  # every one once
    now = time.time_ns()
    for frame in wanted:
        p = by_bytes.get(frame[:SNAPLEN])
        assert p is not None, f"not captured: {frame[:80]!r}"
        assert p.pkt_len == len(frame) and p.caplen == min(len(frame), SNAPLEN)
        assert now - 120 * 10**9 < p.ts <= now  # wall time, in ns
        is_v6 = frame[12:14] == b"\x86\xdd"
        if is_v6:
            assert p.comment.startswith(f"ironpost verdict=drop rule={rule_id} slot="), p.comment
        else:
            assert p.comment == "ironpost verdict=pass rule=none", p.comment
    assert any(p.caplen == SNAPLEN < p.pkt_len for p in packets)  # the long one was cut
    assert not any(f"p{OTHER_PORT}".encode() in p.data for p in packets)

    assert xdp_progs(lab.ifindex) == [("skb", prog_id)] or [i for _, i in xdp_progs(lab.ifindex)] == [prog_id]
    shown = subprocess.run(["bpftool", "-j", "net", "show", "dev", lab.host_if], capture_output=True, text=True)
    assert f'"id":{prog_id}' in shown.stdout.replace(" ", ""), shown.stdout
    assert agent.proc.poll() is None


def test_rate_limited_capture_counts_its_losses_exactly(
    lab: netlab.Lab, agents: AgentPool, tmp_path: Path, nobodys_dir: Path
) -> None:
    """3,000 datagrams sent at full speed to a capture limited to 50 copies/s: the kernel matched exactly
    3,000, and captured + lost = matched with losses to the rate limit; the file holds what was captured.
    A capture without the limit (positive control) loses none of 200; run as under sudo, its file is the
    invoking user's."""
    _, prog_id = start_agent(agents, lab, tmp_path)
    sent = 1000  # of each kind: 3,000 frames
    users = nobodys_dir
    for rate, per_kind in (("50", sent), ("0", 100)):
        out = (tmp_path if rate != "0" else users) / f"rate{rate}.pcapng"
        env = agent_env(SUDO_UID="65534", SUDO_GID="65534") if rate == "0" else None
        # The limited one says what to capture in the events filter's syntax (--filter), the other with flags:
        # both must select the same packets (matched == what was sent).
        what = (
            ["--filter", f"src:{lab.ns_ip4} port:{PORT}"] if rate != "0" else ["--src", lab.ns_ip4, "--port", str(PORT)]
        )
        cap = start_capture(lab.host_if, *what, "--rate", rate, "--seconds", "120", "-w", str(out), env=env)
        try:
            cap.wait_for(f"program {prog_id}", timeout=30)
            v4 = [f for f in frames(lab, PORT, per_kind) if f[12:14] != b"\x86\xdd"]  # --src is IPv4
            netlab.send_frames(lab, v4)
            time.sleep(0.5)  # the last copies reach the rings; counted either way
            cap.send(signal.SIGINT)
            assert cap.wait(60) == 0, cap.describe()
        finally:
            cap.kill()
        final = FINAL.search(cap.stdout)
        assert final, cap.describe()
        got = {k: int(v) for k, v in final.groupdict().items()}
        assert got["matched"] == len(v4)
        assert got["captured"] + got["lost"] == got["matched"]
        assert got["lost"] == got["lost_rate"] + got["lost_perf"]
        _, packets = read_pcapng(out)
        assert len(packets) == got["written"] == got["captured"]
        if rate == "0":
            assert got["lost"] == 0
            st = out.stat()
            assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (65534, 65534, 0o600)
        else:
            assert got["lost_rate"] > 0 and 0 < got["captured"] < len(v4)


def test_bad_capture_input_is_one_line_and_changes_nothing(lab: netlab.Lab, tmp_path: Path, nobodys_dir: Path) -> None:
    """-w to a symbolic link, a name with '..', an existing file, a directory the sudo user cannot write;
    a nonsense --src, --snaplen or --count: exit 2, one line on stderr, nothing created or changed.
    With no ironpost program on the interface: exit 15, no such interface: exit 6; no file either way."""
    d = tmp_path / "out"
    d.mkdir()
    target = tmp_path / "precious"
    target.write_text("keep")
    (d / "link.pcapng").symlink_to(target)
    (d / "old.pcapng").write_text("old")
    locked = nobodys_dir / "root-only"  # root's, in a directory nobody can reach
    locked.mkdir(mode=0o755)
    before = sorted(os.listdir(d))
    nobody = agent_env(SUDO_UID="65534", SUDO_GID="65534")
    cases = [
        (["--src", lab.ns_ip4, "-w", str(d / "link.pcapng")], None, "exists"),
        (["--src", lab.ns_ip4, "-w", f"{d}/../out/x.pcapng"], None, "'..'"),
        (["--src", lab.ns_ip4, "-w", str(d / "old.pcapng")], None, "exists"),
        (["--src", lab.ns_ip4, "-w", str(locked / "x.pcapng")], nobody, "not writable"),
        (["--src", "not-an-address", "-w", str(d / "x.pcapng")], None, "--src"),
        (["--src", "198.18.0.1/33", "-w", str(d / "x.pcapng")], None, "--src"),
        (["--src", lab.ns_ip4, "--snaplen", "0", "-w", str(d / "x.pcapng")], None, "--snaplen"),
        (["--src", lab.ns_ip4, "--count", "-1", "-w", str(d / "x.pcapng")], None, "--count"),
        (["-w", str(d / "x.pcapng")], None, "say what to capture"),
        (["--src", lab.ns_ip4, "--size", "5", "-w", str(d / "x.pcapng")], None, "--size"),
        (["--src", lab.ns_ip4, "--dst", lab.ns_ip6, "-w", str(d / "x.pcapng")], None, "different IP versions"),
        (["--filter", f"sport:{PORT}", "-w", str(d / "x.pcapng")], None, "cannot select by sport"),
        (["--filter", "flood", "-w", str(d / "x.pcapng")], None, "not words"),
        (["--filter", "srcip:198.18.0.1", "-w", str(d / "x.pcapng")], None, "unknown key"),
        (["--filter", f"src:{lab.ns_ip4}", "--src", lab.ns_ip4, "-w", str(d / "x.pcapng")], None, "give one"),
        (["--filter", f"src:{lab.ns_ip4} dst:{lab.ns_ip6}", "-w", str(d / "x.pcapng")], None, "different IP"),
    ]
    for args, env, expect in cases:
        proc = run_ironpost("capture", lab.host_if, *args, env=env or agent_env())
        assert proc.returncode == 2, (args, proc)
        assert expect in one_error_line(proc.stderr), (args, proc.stderr)
        assert sorted(os.listdir(d)) == before and os.listdir(locked) == []
        assert target.read_text() == "keep" and (d / "old.pcapng").read_text() == "old"
    # Positive control for the directory check: the same user can write a directory it owns.
    os.chown(locked, 65534, 65534)
    proc = run_ironpost("capture", lab.host_if, "--src", lab.ns_ip4, "-w", str(locked / "x.pcapng"), env=nobody)
    assert proc.returncode == 15, proc  # no program on the interface (next case), but the path passed
    assert "no ironpost program" in one_error_line(proc.stderr)
    assert os.listdir(locked) == []
    gone = run_ironpost("capture", "ipx-no-such0", "--src", lab.ns_ip4, "-w", str(d / "x.pcapng"), env=agent_env())
    assert gone.returncode == 6 and "no interface ipx-no-such0" in one_error_line(gone.stderr), gone
    assert sorted(os.listdir(d)) == before


def test_a_capture_ends_when_the_agent_it_reads_leaves(lab: netlab.Lab, agents: AgentPool, tmp_path: Path) -> None:
    """The agent stops (SIGTERM) during a 120 s capture: the capture ends within seconds, its file complete
    with what was copied before, saying it stopped because the program left."""
    agent, prog_id = start_agent(agents, lab, tmp_path)
    out = tmp_path / "left.pcapng"
    cap = start_capture(lab.host_if, "--src", lab.ns_ip4, "--seconds", "120", "-w", str(out))
    try:
        cap.wait_for(f"program {prog_id}", timeout=30)
        v4 = [f for f in frames(lab, PORT, 3) if f[12:14] == b"\x08\x00"]
        netlab.send_frames(lab, v4)
        agent.send(signal.SIGTERM)
        assert agent.wait(30) == 0
        assert cap.wait(30) == 0, cap.describe()
    finally:
        cap.kill()
    assert "(stopped by detached)" in cap.stdout, cap.describe()
    _, packets = read_pcapng(out)
    assert sorted(p.data for p in packets) == sorted(f[:SNAPLEN] for f in v4)


def test_a_full_disk_stops_the_capture_in_one_line_and_the_file_holds_whole_packets(
    lab: netlab.Lab, agents: AgentPool, tmp_path: Path
) -> None:
    """The capture's file on a 32 KiB tmpfs, and more copies than fit: the capture stops by itself, exit 1, one
    line naming the disk's refusal and the packets kept; tcpdump reads every one of them, no block cut short
    (written through a buffered file, a full disk left a block cut anywhere and the rings and the file open:
    an attacker's review of session 29).  Its lock is free again (a second capture runs) and the agent's
    program stays attached."""
    agent, prog_id = start_agent(agents, lab, tmp_path)
    disk = tmp_path / "small"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k,mode=0700", "ironpost-test-full", str(disk)], check=True)
    try:
        out = disk / "cap.pcapng"
        cap = start_capture(lab.host_if, "--port", str(PORT), "--rate", "0", "--seconds", "60", "-w", str(out))
        try:
            cap.wait_for(f"capturing on {lab.host_if} (program {prog_id})", timeout=30)
            for burst in range(40):
                big = IP(src=lab.ns_ip4, dst=lab.host_ip4) / UDP(sport=6000, dport=PORT)
                netlab.send_frames(
                    lab, [netlab.frame(lab, big / marked("full", burst * 20 + i, 400)) for i in range(20)]
                )
                if cap.proc.poll() is not None:
                    break
                time.sleep(0.1)
            assert cap.wait(30) == 1, cap.describe()
        finally:
            cap.kill()
        line = one_error_line(cap.stderr)
        assert "No space left on device" in line and "every one whole" in line, line
        held = re.search(r"holds the ([\d,]+) packets", line)
        assert held, line
        n = int(held[1].replace(",", ""))
        tcpdump = subprocess.run(["tcpdump", "-nn", "-r", str(out)], capture_output=True, text=True)
        assert tcpdump.returncode == 0 and "truncated" not in tcpdump.stderr, tcpdump.stderr
        assert len(tcpdump.stdout.splitlines()) == n > 20, (n, tcpdump.stdout[-300:])
        _, packets = read_pcapng(out)
        assert len(packets) == n and all(b"IRONPOST-CAPTURE-full-" in p.data for p in packets)
        # The disk full to its last byte: a capture whose header it refuses is bad output, exit 2, and leaves no
        # empty file behind to refuse the next try as "exists".
        with (disk / "filler").open("wb", buffering=0) as filler:
            with pytest.raises(OSError, match="No space left"):
                while True:
                    filler.write(b"\0" * 512)
        again = ironpost_cli("capture", lab.host_if, "--port", str(PORT), "--seconds", "5",
                             "-w", str(disk / "again.pcapng"))  # fmt: skip
        assert again.returncode == 2 and "No space left on device" in one_error_line(again.stderr), again
        assert sorted(p.name for p in disk.iterdir()) == ["cap.pcapng", "filler"]
    finally:
        subprocess.run(["umount", str(disk)], check=False)
    second = start_capture(lab.host_if, "--port", str(PORT), "--seconds", "1", "-w", str(tmp_path / "second.pcapng"))
    try:
        assert second.wait(30) == 0, second.describe()  # the capture lock was let go
    finally:
        second.kill()
    assert agent.proc.poll() is None and [i for _, i in xdp_progs(lab.ifindex)] == [prog_id]
