"""Each error a user meets: one line on stderr starting ``ironpost-tui: ``
that says what to do, its own exit code (ironpost_tui/errors.py ExitStatus),
no traceback, and nothing left attached.

The CLI runs as a subprocess, on the host side of a netlab veth pair (never on
a real interface), or inside the lab's namespace.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import secrets
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support import netlab
from support.agents import (
    IRONPOST,
    PIN_ROOT,
    AgentPool,
    one_error_line,
    pinned_map_dump,
    pins,
    ready_info,
    run,
    wait_no_xdp,
    xdp_progs,
)
from support.bpftool import dump_keys
from support.common import REPO, net

from ironpost_tui.errors import BlocklistFull, ExitStatus, HeadersMissing
from ironpost_tui.kernel import abi, datapath
from ironpost_tui.model import Action, FilterRule

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ironpost.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_exit_codes_are_the_documented_ones() -> None:
    """The numbers these tests check: scripts and service managers rely on them."""
    assert {s.name: int(s) for s in ExitStatus if s not in (ExitStatus.OK, ExitStatus.ERROR)} | {"OK": 0} == {
        "OK": 0,
        "CONFIG_INVALID": 2,
        "NOT_PERMITTED": 3,
        "BCC_MISSING": 4,
        "HEADERS_MISSING": 5,
        "NO_SUCH_INTERFACE": 6,
        "MODE_UNSUPPORTED": 7,
        "BLOCKLIST_FULL": 8,
        "XDP_BUSY": 9,
        "PIN_MISMATCH": 10,
        "INTERFACE_GONE": 11,
        "LOAD_FAILED": 12,
        "ALREADY_RUNNING": 13,
        "METRICS_PORT_IN_USE": 14,
        "NO_CONTROLLER": 15,
        "CAPTURE_BUSY": 16,
        "PROGRAM_DETACHED": 17,
        "CTRL_C": 130,
    }
    assert len({int(s) for s in ExitStatus}) == len(ExitStatus)  # each its own


def unused_ifname() -> str:
    while True:
        name = f"ipx{secrets.token_hex(4)}"
        if not Path(f"/sys/class/net/{name}").exists():
            return name


# --------------------------------------------------------------------------- #
# the host


@pytest.mark.root  # root to become nobody
def test_not_root_exits_3_and_says_sudo(lab: netlab.Lab, agents: AgentPool) -> None:
    for args in ((lab.host_if, "--headless"), ("cleanup", lab.host_if)):
        proc = subprocess.run(
            [*NOBODY, *IRONPOST, *args], capture_output=True, text=True, timeout=60, cwd="/", stdin=subprocess.DEVNULL
        )
        assert proc.returncode == 3, proc  # NOT_PERMITTED
        msg = one_error_line(proc.stderr)
        assert "sudo" in msg and "root" in msg
    assert xdp_progs(lab.ifindex) == []


@pytest.mark.root
def test_bcc_missing_exits_4_and_names_python3_bpfcc(lab: netlab.Lab, agents: AgentPool, tmp_path: Path) -> None:
    """The system python3 with -S: no site packages, so no bcc; ironpost_tui itself comes from PYTHONPATH."""
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "PYTHONPATH": str(REPO)}
    no_bcc = subprocess.run(["/usr/bin/python3", "-S", "-c", "import bcc"], capture_output=True, env=env, cwd=tmp_path)
    assert no_bcc.returncode != 0, "bcc imports even with -S: this test cannot hide it"

    agents.track(lab.host_if)
    proc = subprocess.run(
        ["/usr/bin/python3", "-S", "-m", "ironpost_tui", lab.host_if, "--headless"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 4, proc  # BCC_MISSING
    msg = one_error_line(proc.stderr)
    assert "python3-bpfcc" in msg and "--system-site-packages" in msg
    assert xdp_progs(lab.ifindex) == []


def _loaded_path(soname: str) -> str:
    """Where this process's dynamic loader found ``soname`` (loaded here first)."""
    ctypes.CDLL(soname)
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith(f"/{soname}") or f"/{soname}." in line:
            return line.split()[-1]
    raise AssertionError(f"{soname} is not mapped")


@pytest.mark.root
@pytest.mark.parametrize(
    ("stand_in", "says"),
    [
        ("/dev/null", "libbpf.so.1: file too short"),  # none there: dlopen fails
        ("libz.so.1", "lacks bpf_link_create"),  # a libbpf.so.1 without the calls of 1.0 (as 0.x lacks some)
    ],
    ids=["absent", "without-the-calls"],
)
def test_libbpf_missing_or_too_old_exits_4_and_names_libbpf1(
    lab: netlab.Lab, agents: AgentPool, stand_in: str, says: str
) -> None:
    """libbpf.so.1 replaced, in a mount namespace of the command's own, by nothing or by another library: one
    line that says to install libbpf1 (Ubuntu 22.04 packages only libbpf 0.5), exit 4, nothing attached.
    The control: the same command with libbpf in place gets past the check (exit 6 for an unused name)."""
    real = _loaded_path("libbpf.so.1")
    source = stand_in if stand_in.startswith("/") else _loaded_path(stand_in)
    name = unused_ifname()
    assert run(name, "--headless").returncode == 6  # the control: libbpf found, the interface not
    agents.track(lab.host_if)
    hide = ["unshare", "--mount", "--propagation", "private", "sh", "-c", f'mount --bind {source} {real} && exec "$@"']
    for iface in (lab.host_if, name):
        proc = run(iface, "--headless", prefix=[*hide, "sh"])
        assert proc.returncode == 4, proc  # BCC_MISSING: the distribution's packages
        msg = one_error_line(proc.stderr)
        assert says in msg and "apt-get install libbpf1" in msg and "Ubuntu 22.04" in msg, msg
    assert xdp_progs(lab.ifindex) == []
    assert ctypes.CDLL(real).bpf_link_create  # the host's own libbpf.so.1 is untouched
    (Path("/run/ironpost") / f"{name}.lock").unlink(missing_ok=True)


IMPORT_BCC = """
from ironpost_tui.errors import BccMissing
from ironpost_tui.kernel import datapath
try:
    bcc = datapath.import_bcc()
except BccMissing as exc:
    print("refused:", exc.message)
else:
    print("imported", bcc.__version__)
"""


@pytest.mark.parametrize(
    ("version", "refused"),
    [("0.18.0", True), ("0.24.9+ds", True), ("0.25.0", False), ("0.26.0", False), ("1.0", False)],
)
def test_a_bcc_older_than_0_25_is_refused_in_one_line(tmp_path: Path, version: str, refused: bool) -> None:
    """BCC before 0.25 has no BPF_TABLE_PINNED with flags (the pinned LPM tries'): said before a compile fails
    on it.  A stand-in module named bcc, first on the path, gives the version (not the kernel path: no
    program is compiled)."""
    (tmp_path / "bcc").mkdir()
    (tmp_path / "bcc" / "__init__.py").write_text(f"__version__ = {version!r}\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}:{REPO}"}
    out = subprocess.run([sys.executable, "-c", IMPORT_BCC], capture_output=True, text=True, env=env, check=True)
    if refused:
        assert out.stdout == (
            f"refused: BCC {version} is too old: ironpost-tui needs 0.25 or newer (python3-bpfcc of Debian 12 or "
            "Ubuntu 24.04; Ubuntu 22.04 packages 0.18)\n"
        )
    else:
        assert out.stdout == f"imported {version}\n"


def test_what_bcc_s_source_warns_of_is_not_printed(tmp_path: Path) -> None:
    """Debian 12's BCC has an invalid escape in a string (bcc/__init__.py: '\\.cold'), which Python 3.12 prints
    as a SyntaxWarning when it compiles the module: it landed in the one-line error of a refused start.  A
    stand-in bcc with the same escape, never compiled before (no __pycache__), with every warning shown."""
    (tmp_path / "bcc").mkdir()
    (tmp_path / "bcc" / "__init__.py").write_text("__version__ = '0.26.0'\nCOLD = '^.*\\.cold$'\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}:{REPO}", "PYTHONDONTWRITEBYTECODE": "1"}
    code = "from ironpost_tui.kernel import datapath\nprint(datapath.import_bcc().COLD)"
    out = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, env=env)
    assert (out.returncode, out.stdout, out.stderr) == (0, "^.*\\.cold$\n", "")
    # The control: the same module imported plainly does warn (a SyntaxWarning from 3.12, before it a
    # DeprecationWarning), so the test above shows the warning held back, not absent.
    plain = subprocess.run(
        [sys.executable, "-W", "always", "-c", "import bcc"], capture_output=True, text=True, env=env
    )
    assert "invalid escape sequence" in plain.stderr


def test_kernel_headers_missing_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(HeadersMissing) as exc:
        datapath.check_kernel_headers(modules_root=tmp_path, kheaders=tmp_path / "none")
    err = exc.value
    assert err.exit_status == 5  # HEADERS_MISSING
    release = os.uname().release
    assert f"linux-headers-{release}" in err.message
    assert str(tmp_path / release / "build") in err.message
    assert "\n" not in err.message

    # Headers where BCC looks, or the kernel's own kheaders: no error.
    (tmp_path / release / "build" / "include").mkdir(parents=True)
    datapath.check_kernel_headers(modules_root=tmp_path, kheaders=tmp_path / "none")
    kheaders = tmp_path / "kheaders.tar.xz"
    kheaders.write_bytes(b"")
    datapath.check_kernel_headers(modules_root=tmp_path / "empty", kheaders=kheaders)


@pytest.mark.root
def test_no_such_interface_exits_6() -> None:
    name = unused_ifname()
    for extra in ((), ("--persist",)):
        proc = run(name, "--headless", *extra)
        assert proc.returncode == 6, proc  # NO_SUCH_INTERFACE
        msg = one_error_line(proc.stderr)
        assert f"'{name}' not found" in msg and "ip link" in msg
    assert not (Path("/sys/fs/bpf/ironpost") / name).exists()
    (Path("/run/ironpost") / f"{name}.lock").unlink(missing_ok=True)


# --------------------------------------------------------------------------- #
# XDP modes: the namespace's own loopback has no native XDP


@pytest.mark.root
def test_native_mode_unsupported_exits_7_and_auto_falls_back_to_skb(lab: netlab.Lab, agents: AgentPool) -> None:
    in_ns = ["ip", "netns", "exec", lab.ns]
    lo = 1  # ifindex of lo in every namespace

    proc = agents.run("lo", "--xdp-mode", "native", prefix=in_ns)
    assert proc.returncode == 7, proc  # MODE_UNSUPPORTED
    msg = one_error_line(proc.stderr)
    assert "native" in msg and "--xdp-mode skb" in msg and "--xdp-mode auto" in msg
    assert xdp_progs(lo, ns=lab.ns) == []

    agent = agents.start("lo", "--xdp-mode", "auto", prefix=in_ns)
    ready = agent.wait_ready()
    notice = agent.wait_for("native XDP is not available")
    assert "WARNING" in notice and "skb" in notice
    assert agent.out.index(notice) < agent.out.index(ready)
    mode, prog_id = ready_info(ready)
    assert mode == "skb"
    assert xdp_progs(lo, ns=lab.ns) == [("skb", prog_id)]
    agent.send(signal.SIGINT)
    assert agent.wait() == 0, agent.describe()
    assert "detached from lo" in agent.stdout
    wait_no_xdp(lo, ns=lab.ns)


# --------------------------------------------------------------------------- #
# the blocklist


def _five_sources(max_entries: int = 4) -> str:
    rules = "".join(
        f'\n[[ebpf.rules]]\nid = "src-{k}"\nsrc_ip = "198.18.{200 + k}.1"\naction = "drop"\n' for k in range(5)
    )
    return f"[ebpf]\nblocklist_max_entries = {max_entries}\n{rules}"


@pytest.mark.root
def test_blocklist_overflow_in_the_config_is_refused_before_anything_loads(
    lab: netlab.Lab, agents: AgentPool, tmp_path: Path
) -> None:
    """5 exact sources for a 4-entry BLOCKLIST: refused before compiling, with BLOCKLIST_FULL (8):
    the file is valid, the kernel's map is too small for it.  (The kernel-side refusal is below.)
    """
    config = write_config(tmp_path, _five_sources())
    for extra in ((), ("--persist",)):
        proc = agents.run(lab.host_if, "--config", str(config), *extra)
        assert proc.returncode == 8, proc  # BLOCKLIST_FULL
        msg = one_error_line(proc.stderr)
        assert "'src-4'" in msg and "BLOCKLIST" in msg and "holds 4" in msg and "blocklist_max_entries" in msg
        assert "ready:" not in proc.stdout
        assert xdp_progs(lab.ifindex) == []
        assert pins(lab.host_if) == []


_PIN_MAPS_ONLY = textwrap.dedent(
    """\
    # Pinned maps with rules in them and no pinned link: what a --persist start leaves
    # when it is killed (or fails) after its maps are pinned and before its link is.
    import ipaddress, sys
    from ironpost_tui.kernel.datapath import Datapath, DatapathConfig
    from ironpost_tui.model import FilterRule
    from ironpost_tui.rules.table import RuleTable, monotonic_to_wall_offset
    dp = Datapath(DatapathConfig(blocklist_max_entries=4), pin_dir=__import__("pathlib").Path(sys.argv[1]))
    table = RuleTable(dp, monotonic_to_wall_offset())
    for k in range(4):
        table.add(FilterRule(f"old-{k}", src_ip=ipaddress.ip_network(f"198.18.{200 + k}.1/32")))
    """
)


def _blocklist_keys(iface: str) -> list[bytes]:
    return dump_keys(pinned_map_dump(iface, "BLOCKLIST"))


@pytest.mark.root
def test_pinned_maps_without_a_link_hold_no_hidden_rules(lab: netlab.Lab, agents: AgentPool, tmp_path: Path) -> None:
    """The next --persist start learns what orphaned pinned maps hold, and syncs it to its configuration."""
    agents.track(lab.host_if)
    pin_dir = PIN_ROOT / lab.host_if
    pin_dir.mkdir(parents=True)
    helper = subprocess.run([sys.executable, "-c", _PIN_MAPS_ONLY, str(pin_dir)], capture_output=True, text=True)
    assert helper.returncode == 0, helper.stderr
    stale = _blocklist_keys(lab.host_if)
    assert len(stale) == 4 and "link" not in pins(lab.host_if)

    one = write_config(
        tmp_path,
        f'[ebpf]\nblocklist_max_entries = 4\n\n[[ebpf.rules]]\nid = "only"\nsrc_ip = "{lab.ns_ip4}"\naction = "drop"\n',
    )
    agent = agents.start(lab.host_if, "--persist", "--config", str(one))
    ready_info(agent.wait_ready())
    agent.send(signal.SIGTERM)
    assert agent.wait() == 0, agent.describe()
    assert _blocklist_keys(lab.host_if) == [ipaddress.IPv4Address(lab.ns_ip4).packed]  # the four stale ones are gone


@pytest.mark.root
def test_rule_table_add_on_a_full_blocklist_changes_nothing() -> None:
    from ironpost_tui.kernel.datapath import Datapath, DatapathConfig
    from ironpost_tui.model import FilterRule
    from ironpost_tui.rules.table import RuleTable, monotonic_to_wall_offset

    dp = Datapath(DatapathConfig(blocklist_max_entries=4))
    try:
        table = RuleTable(dp, monotonic_to_wall_offset())
        for k in range(4):
            table.add(FilterRule(f"src-{k}", src_ip=net(f"198.18.{200 + k}.1/32")))
        assert dp.map_len("BLOCKLIST") == 4

        def state() -> dict[str, object]:
            maps = {
                name: sorted(dp.map_items(name)) for name in ("BLOCKLIST", "SRC4", "SRC6", "MATCH", "SHAPES", "CONFIG")
            }
            return {**maps, "RULE_HITS": dp.percpu_table("RULE_HITS")}

        before = state()
        rules_before = table.rules()
        with pytest.raises(BlocklistFull) as exc:
            table.add(FilterRule("src-4", src_ip=net("198.18.204.1/32")))
        assert exc.value.exit_status == ExitStatus.BLOCKLIST_FULL
        assert "BLOCKLIST is full" in exc.value.message
        assert state() == before  # byte for byte
        assert table.rules() == rules_before and "src-4" not in table and len(table) == 4

        # Nothing leaked: after a removal the refused rule fits.
        table.delete("src-0")
        table.add(FilterRule("src-4", src_ip=net("198.18.204.1/32")))
        assert dp.map_len("BLOCKLIST") == 4 and "src-4" in table
    finally:
        dp.close()


def _rule(rid: str, action: str, src: str | None = None, dport: int | None = None) -> FilterRule:
    return FilterRule(
        rid,
        Action(action),
        src_ip=ipaddress.ip_network(src) if src else None,
        dst_port=dport,
        protocol=6 if dport else None,
    )


@pytest.mark.root
@pytest.mark.parametrize(
    ("src", "dport", "other_src"),
    [("198.18.210.1/32", None, "198.18.211.0/24"), ("198.18.210.0/24", 8080, "198.18.211.1/32")],
    ids=["blocklist", "match"],
)
def test_rule_table_update_whose_kernel_write_fails_changes_nothing(
    src: str, dport: int | None, other_src: str
) -> None:
    """An in-place update (same match, new action) whose map write the kernel refuses leaves the
    table as it was, agreeing with the kernel's entry.  The refusal is real: the rule's map is
    frozen (BPF_MAP_FREEZE), so every write to it from user space fails with EPERM."""
    import ctypes

    from ironpost_tui.kernel.datapath import Datapath, DatapathConfig
    from ironpost_tui.rules import placement as kernel_rules
    from ironpost_tui.rules.table import RuleTable, monotonic_to_wall_offset

    dp = Datapath(DatapathConfig(blocklist_max_entries=64, cidr_max_entries=64, match_max_entries=64))
    try:
        table = RuleTable(dp, monotonic_to_wall_offset())
        rule, other = _rule("r", "drop", src, dport), _rule("other", "drop", other_src)
        table.add(rule)
        table.add(other)
        rule_map, other_map = kernel_rules.place(rule).map_name, kernel_rules.place(other).map_name
        assert rule_map != other_map

        def state() -> dict[str, object]:
            names = ("BLOCKLIST", "EXACT4", "SRC4", "SRC6", "MATCH", "SHAPES", "CONFIG", "ADDR_FILTER", "PORT_FILTER")
            return {name: sorted(dp.map_items(name)) for name in names}

        def kernel_action(map_name: str) -> int:
            (raw,) = [v for _, v in dp.map_items(map_name)]  # the map's only entry
            return abi.BLOCKLIST_VALUE.unpack(raw)[1]  # own_action: the rule's own

        assert ctypes.CDLL("libbpf.so.1", use_errno=True).bpf_map_freeze(dp.map_fd(rule_map)) == 0
        before, status_before = state(), table.status()
        with pytest.raises(Exception, match="not permitted"):
            table.update(_rule("r", "monitor", src, dport))
        assert state() == before  # byte for byte, the prefilter's match rank included
        assert table.get("r") == rule and table.status() == status_before
        assert kernel_action(rule_map) == kernel_rules.action_code(rule.action) == abi.ACTION_DROP

        # Negative control: the same update of a rule in a map that takes writes changes both sides.
        table.update(_rule("other", "monitor", other_src))
        assert table.get("other") == _rule("other", "monitor", other_src)
        assert kernel_action(other_map) == abi.ACTION_MONITOR
        assert kernel_action(rule_map) == abi.ACTION_DROP
    finally:
        dp.close()


# --------------------------------------------------------------------------- #
# the configuration

BAD_CONFIGS = {
    # one mistake each, so one line each
    "unknown action": '[[ebpf.rules]]\nid = "x"\nsrc_ip = "198.18.0.1"\naction = "reject"\n',
    "unknown xdp_mode": '[ebpf]\nxdp_mode = "turbo"\n',
    "not an address": '[[ebpf.rules]]\nid = "x"\nsrc_ip = "198.18.0.300"\naction = "drop"\n',
    "host bits in a prefix": '[[ebpf.rules]]\nid = "x"\nsrc_ip = "198.18.0.1/24"\naction = "drop"\n',
    "port out of range": '[[ebpf.rules]]\nid = "x"\ndst_port = 70000\naction = "drop"\n',
    "protocol out of range": '[[ebpf.rules]]\nid = "x"\nprotocol = 300\naction = "drop"\n',
    "rule without id": '[[ebpf.rules]]\nsrc_ip = "198.18.0.1"\naction = "drop"\n',
    "rule without a match field": '[[ebpf.rules]]\nid = "x"\naction = "drop"\n',
    "two rules, same packets": (
        '[[ebpf.rules]]\nid = "a"\nsrc_ip = "198.18.0.1"\naction = "drop"\n'
        '[[ebpf.rules]]\nid = "b"\nsrc_ip = "198.18.0.1"\naction = "monitor"\n'
    ),
    "ring buffer size not a number": '[ebpf]\nring_buffer_size = "big"\n',
    "ring buffer size not a power of two": "[ebpf]\nring_buffer_size = 1000\n",
    "ring buffer size in bytes": "[ebpf]\nring_buffer_size = 262144\n",
    "blocklist of 0 entries": "[ebpf]\nblocklist_max_entries = 0\n",
    "negative blocklist": "[ebpf]\nblocklist_max_entries = -5\n",
    "negative event rate": "[ebpf]\nevent_rate_limit = -1\n",
    "ebpf not a table": "ebpf = 3\n",
    "TOML syntax": "[ebpf\n",
}


# A bad configuration through each door: `check-config` (any user), and the run path, which checks
# privileges first (so it needs root) and finds the mistake before anything is loaded: an interface
# that does not exist is never reached.
DOORS = [pytest.param("check-config", id="check-config"), pytest.param("run", id="run", marks=pytest.mark.root)]


def config_error(door: str, config: Path) -> str:
    """The one line on stderr for ``config`` through ``door``, which must exit 2 (CONFIG_INVALID)."""
    if door == "run":
        proc = run(unused_ifname(), "--headless", "--config", str(config))
        assert proc.returncode == 2, proc
        return one_error_line(proc.stderr)
    proc = run("check-config", str(config))  # every error, one per line, without the program's prefix
    assert proc.returncode == 2, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("text", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_bad_config_exits_2(tmp_path: Path, text: str, door: str) -> None:
    config = write_config(tmp_path, text)
    assert str(config) in config_error(door, config)


@pytest.mark.parametrize("door", DOORS)
def test_missing_config_file_exits_2(tmp_path: Path, door: str) -> None:
    msg = config_error(door, tmp_path / "absent.toml")
    assert "absent.toml" in msg and "cannot read" in msg
