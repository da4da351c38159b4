"""The peer: xdp-filter (xdp-tools), loaded like for like with ironpost's rule load.

It gets the same 8,744 exact IPv4 sources (written straight into its pinned ``filter_ipv4`` map: one
``xdp-filter ip`` process per address would take minutes; the value is the flag that command writes,
``MAP_FLAG_SRC``) and the same destination ports the multi-field rules use (``xdp-filter port``, TCP
and UDP).  It has no prefixes and no multi-field rules: those of ironpost's frames it passes.

Variants (``Variant``): ``alw_all`` (every feature: the program xdp-filter loads by default, and the
one the budget compares, since it filters ports as ironpost does), ``alw_ip`` (``--features
ipv4,ipv6``: addresses only, no ports), both loaded without libxdp's dispatcher
(``LIBXDP_SKIP_DISPATCHER=1``: the program itself is attached, and test-run), and ``alw_all`` through
the dispatcher (the dispatcher is what is attached, and what a packet runs: its cost is shown apart).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ironpost_tui.model import StrEnum  # enum.StrEnum needs Python 3.11

from . import rig

PINS = Path("/sys/fs/bpf/xdp-filter")
LOCK = Path("/run/xdp-filter.lck")
MAP_FLAG_SRC = 1  # xdp-filter's common_kern_user.h: the address matches as a source


class DispatcherUnavailable(rig.BenchError):
    """libxdp loaded the program alone: its compatibility check for the dispatcher failed on this kernel."""


class Variant(StrEnum):
    ALW_ALL = "alw_all"  # xdpfilt_alw_all, no dispatcher: the peer of the budget
    ALW_IP = "alw_ip"  # xdpfilt_alw_ip, no dispatcher: addresses only
    ALW_ALL_DISPATCHER = "alw_all+dispatcher"  # libxdp's dispatcher in front of xdpfilt_alw_all

    @property
    def filters_ports(self) -> bool:
        return self is not Variant.ALW_IP

    @property
    def program(self) -> str:
        return "xdpfilt_alw_ip" if self is Variant.ALW_IP else "xdpfilt_alw_all"


@dataclass(frozen=True)
class Loaded:
    variant: Variant
    prog_id: int
    prog_name: str  # what is attached (and test-run): xdpfilt_* or xdp_dispatcher
    sources: frozenset[ipaddress.IPv4Address]
    ports: frozenset[int]

    def verdict_drops(self, src: ipaddress.IPv4Address | ipaddress.IPv6Address, proto: str, dport: int | None) -> bool:
        """Whether this xdp-filter drops a packet (policy allow: a listed source or port drops)."""
        if src in self.sources:
            return True
        return self.variant.filters_ports and proto in ("tcp", "udp") and dport in self.ports


def _stale_lock() -> None:
    """xdp-filter leaves its lock file behind when it dies (say, of SIGPIPE): remove it if its PID is gone."""
    try:
        pid = int(LOCK.read_text().strip() or "0")
    except (OSError, ValueError):
        return
    if pid and Path(f"/proc/{pid}").exists():
        return
    LOCK.unlink(missing_ok=True)


def ensure_bpffs() -> None:
    mounts = Path("/proc/self/mounts").read_text().split("\n")
    if not any(len(m.split()) > 2 and m.split()[1] == "/sys/fs/bpf" and m.split()[2] == "bpf" for m in mounts):
        Path("/sys/fs/bpf").mkdir(parents=True, exist_ok=True)
        rig.sh("mount", "-t", "bpf", "bpf", "/sys/fs/bpf")


def _fill_sources(sources: Iterable[ipaddress.IPv4Address]) -> None:
    from ironpost_tui.kernel import libbpf

    fd = libbpf.obj_get(str(PINS / "filter_ipv4"))
    try:
        ncpu = int(rig.possible_cpus())
        value = MAP_FLAG_SRC.to_bytes(8, "little") * ncpu  # a per-CPU hash: one u64 per possible CPU
        for a in sources:
            libbpf.map_update(fd, a.packed, value)
    finally:
        os.close(fd)


@contextlib.contextmanager
def loaded(variant: Variant, sources: Iterable[ipaddress.IPv4Address], ports: Iterable[int]) -> Iterator[Loaded]:
    """xdp-filter on the host side of a throw-away lab; unloaded, its pins removed and the lab deleted
    afterwards."""
    from ironpost_tui.kernel import libbpf

    rig.need("xdp-filter")
    ensure_bpffs()
    if PINS.exists():
        raise rig.BenchError(f"{PINS} exists: xdp-filter is in use on this host; not disturbing it")
    xdp_dir = Path("/sys/fs/bpf/xdp")
    had_xdp_dir = xdp_dir.exists()
    _stale_lock()
    srcs = frozenset(sources)
    port_set = frozenset(ports) if variant.filters_ports else frozenset()
    env = dict(os.environ)
    if variant is not Variant.ALW_ALL_DISPATCHER:
        env["LIBXDP_SKIP_DISPATCHER"] = "1"
    else:
        env.pop("LIBXDP_SKIP_DISPATCHER", None)
    features = ["--features", "ipv4,ipv6"] if variant is Variant.ALW_IP else []
    with rig.lab() as lab:
        try:
            rig.sh_env(env, "xdp-filter", "load", "--mode", "native", *features, lab.host_if)
            _fill_sources(srcs)
            for port in sorted(port_set):
                rig.sh("xdp-filter", "port", str(port))
            prog_ids = [pid for _mode, pid in libbpf.xdp_query(lab.ifindex).prog_ids]
            if len(prog_ids) != 1:
                raise rig.BenchError(f"xdp-filter: expected one program on {lab.host_if}, found {prog_ids}")
            fd = libbpf.prog_fd_by_id(prog_ids[0])
            try:
                name = libbpf.prog_info(fd).name
            finally:
                os.close(fd)
            want = "xdp_dispatcher" if variant is Variant.ALW_ALL_DISPATCHER else variant.program
            if name != want and variant is Variant.ALW_ALL_DISPATCHER:
                raise DispatcherUnavailable(f"libxdp attached {name} without its dispatcher (its compatibility "
                                            "check failed on this kernel): every xdp-filter figure here is "
                                            "dispatcher-less")  # fmt: skip
            if name != want:
                raise rig.BenchError(f"xdp-filter {variant}: {name} attached, expected {want}")
            yield Loaded(variant, prog_ids[0], name, srcs, port_set)
        finally:
            _stale_lock()
            rig.sh_env(env, "xdp-filter", "unload", lab.host_if, check=False)
            _stale_lock()
            if PINS.exists():
                shutil.rmtree(PINS, ignore_errors=True)
            if not had_xdp_dir and xdp_dir.exists():
                with contextlib.suppress(OSError):
                    xdp_dir.rmdir()
