"""Shared test set-up.

* ``@pytest.mark.root``: the test needs root and a working bpf() syscall.
  Without them it is skipped, with the reason, except under ``CI=true``,
  where it fails instead.
* Under ``CI=true`` any skipped test makes the run fail (exit status 1).
* bpffs is mounted at /sys/fs/bpf for the session when running as root.
* A compiled-program cache the session's agents made (/var/cache/ironpost-tui) is removed at its end.
* ``lab``: a fresh netns + veth pair from ``netlab.veth_pair()``; ``agents``: an ``AgentPool`` on it.
* The helpers tests share live in ``tests/support/`` (see its ``__init__``).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before the first import from tests/support/: its asserts fail with pytest's messages, as a test's do.
pytest.register_assert_rewrite("support")

from support import crowdsec, netlab  # noqa: E402
from support.agents import AgentPool  # noqa: E402
from support.traffic import Probe  # noqa: E402

BPFFS = Path("/sys/fs/bpf")

# bpf(2) by machine; BPF_MAP_CREATE of a tiny array map proves the syscall works.
_SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "i686": 357, "armv7l": 386, "ppc64le": 361, "s390x": 351}
_BPF_MAP_CREATE = 0
_BPF_MAP_TYPE_ARRAY = 2


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@functools.cache
def root_unavailable_reason() -> str | None:
    """Why a root-marked test cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (euid is not 0)"
    nr = _SYS_BPF.get(platform.machine())
    if nr is None:
        return None if Path("/proc/sys/kernel/unprivileged_bpf_disabled").exists() else "no bpf() syscall"
    attr = (ctypes.c_uint32 * 32)()  # union bpf_attr, zeroed past the map fields
    attr[0], attr[1], attr[2], attr[3] = _BPF_MAP_TYPE_ARRAY, 4, 4, 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    fd = libc.syscall(ctypes.c_long(nr), ctypes.c_int(_BPF_MAP_CREATE), ctypes.byref(attr), ctypes.c_uint(128))
    if fd < 0:
        err = ctypes.get_errno()
        return f"bpf() is unavailable: BPF_MAP_CREATE failed: {os.strerror(err)}"
    os.close(fd)
    return None


def bpffs_mounted() -> bool:
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return False
    return any(len(f) > 2 and f[1] == str(BPFFS) and f[2] == "bpf" for f in (m.split() for m in mounts))


# --------------------------------------------------------------------------- #
# the root marker


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is None:
        return
    reason = root_unavailable_reason()
    if reason is None:
        return
    if under_ci():
        pytest.fail(f"root-marked test cannot run under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


# --------------------------------------------------------------------------- #
# under CI=true a skipped test is a failure

_skipped: list[str] = []


_OWN_BASETEMP = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    """Every test's tmp_path under one directory of this session's own, removed when the session ends,
    failed tests' too (pytest keeps the last three sessions' under /tmp/pytest-of-<user>).  Of its own, so
    that the end of one run never removes the directories of another that runs beside it."""
    if config.option.basetemp is None:
        config.option.basetemp = tempfile.mkdtemp(prefix="ironpost-tests-")
        config.stash[_OWN_BASETEMP] = Path(config.option.basetemp)
    # `sudo make test` (the README's command) leaves sudo's variables here: a file ironpost makes for "the
    # user who ran sudo" would then go only where that user may write, never into root's 0700 tmp_path, and
    # the audit would name that user.  The tests of both set them themselves; every other test runs as
    # plain root, as CI does.
    for name in ("SUDO_UID", "SUDO_GID", "SUDO_USER"):
        os.environ.pop(name, None)


def pytest_unconfigure(config: pytest.Config) -> None:
    own = config.stash.get(_OWN_BASETEMP, None)
    if own is not None:
        shutil.rmtree(own, ignore_errors=True)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if under_ci() and _skipped and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    if under_ci() and _skipped:
        terminalreporter.section("CI=true", sep="=", red=True, bold=True)
        terminalreporter.write_line(
            f"under CI=true a skipped test is a failure: {len(_skipped)} skipped, so the session exits with status 1:"
        )
        for nodeid in _skipped:
            terminalreporter.write_line(f"  {nodeid}")


# --------------------------------------------------------------------------- #
# fixtures


@pytest.fixture(scope="session", autouse=True)
def _no_scapy_address_resolution() -> Iterator[None]:
    """A frame built without explicit MACs makes scapy resolve the destination: an ARP or NDP
    request from this host to whatever the address routes to.  Tests build frames, they never
    resolve: fail instead (the network rule)."""
    import scapy.layers.l2  # noqa: F401  (sets up conf.neighbor)
    from scapy.config import conf

    def refuse(*_args: object, **_kw: object) -> None:
        raise AssertionError("scapy was about to resolve a MAC address (ARP/NDP): give Ether(src=..., dst=...)")

    original = conf.neighbor.resolve
    conf.neighbor.resolve = refuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        conf.neighbor.resolve = original  # type: ignore[method-assign]


@pytest.fixture(scope="session", autouse=True)
def _bpffs() -> Iterator[None]:
    """Mount bpffs at /sys/fs/bpf (left mounted afterwards) when root and it is not mounted."""
    if os.geteuid() == 0 and not bpffs_mounted():
        BPFFS.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(["mount", "-t", "bpf", "bpf", str(BPFFS)], capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"conftest: could not mount bpffs at {BPFFS}: {proc.stderr.strip()}")
    yield


@pytest.fixture(scope="session", autouse=True)
def _program_cache_of_the_session() -> Iterator[None]:
    """The agents the tests start fill the compiled-program cache (/var/cache/ironpost-tui): a cache
    the session made is removed when it ends; one that was there before (the host's) is left."""
    from ironpost_tui.kernel.program_cache import DEFAULT_DIR

    existed = DEFAULT_DIR.exists()
    yield
    if not existed and os.geteuid() == 0:
        shutil.rmtree(DEFAULT_DIR, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _tmux_server_of_the_session() -> Iterator[None]:
    """The console tests run in tmux (tests/support/tmux.py): its server and socket are removed when the
    session ends, and tmux's directory for this user too when the session made it and left it empty."""
    from support import tmux

    existed = tmux.socket_dir().exists()
    yield
    if shutil.which("tmux"):
        tmux.remove_server_if_idle()
    if not existed:
        with contextlib.suppress(OSError):  # not empty: another tmux of this user's is in it
            tmux.socket_dir().rmdir()


@pytest.fixture
def gc_restored() -> Iterator[None]:
    """The test process's garbage collector as it was, whatever the test did to it (its freeze undone)."""
    import gc

    enabled = gc.isenabled()
    try:
        yield
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()
        else:
            gc.disable()


@pytest.fixture
def nobodys_dir() -> Iterator[Path]:
    """A directory of uid 65534's (nobody), mode 0755, that nobody can reach: in /tmp, not under pytest's
    tmp_path (0700, root's), since a file is made for a user under sudo only where that user could have put
    it themselves.  Removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="ironpost-nobody-"))
    try:
        base.chmod(0o755)
        os.chown(base, 65534, 65534)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pin_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A directory of its own in the BPF filesystem for the maps a test pins (a --persist run's), removed
    with whatever is pinned in it."""
    name = request.node.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    path = Path(f"/sys/fs/bpf/ironpost-test-{name}-{random.getrandbits(32):08x}")
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def lab() -> Iterator[netlab.Lab]:
    """A netns + veth pair (see tests/support/netlab.py); mark the test ``root``."""
    with netlab.veth_pair() as lab:
        yield lab


@pytest.fixture
def probe(lab: netlab.Lab) -> Iterator[Probe]:
    """UDP from the lab's namespace to sockets on the host side (tests/support/traffic.py), closed after."""
    p = Probe(lab)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def agents(lab: netlab.Lab) -> Iterator[AgentPool]:
    """ironpost-tui processes: killed, and their interfaces cleaned, before the lab goes."""
    pool = AgentPool()
    try:
        yield pool
    finally:
        problems = pool.close()
        assert not problems, problems


@pytest.fixture
def lapi() -> Iterator[crowdsec.Lapi]:
    """A real CrowdSec LAPI on 127.0.0.1 (a free port), its config and database in a temporary directory,
    a machine registered for cscli; always killed, and the directory removed.  Mark the test ``root``."""
    missing = crowdsec.available()
    if missing is not None:
        pytest.skip(missing)  # a failure under CI=true (see pytest_runtest_logreport)
    server, root = crowdsec.make_lapi()
    try:
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
