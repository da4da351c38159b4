"""Interface names are checked once, before they become a path or a map key.

`ironpost-tui cleanup ../../../../tmp/somedir` used to remove /tmp/somedir recursively as root
once /sys/fs/bpf/ironpost existed: the name was joined into the pin path unchecked.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import agents

from ironpost_tui.config.store import RuleStore, RuleStoreError
from ironpost_tui.errors import BadInterfaceName, ExitStatus
from ironpost_tui.kernel import host

BAD = [
    "",
    ".",
    "..",
    "../x",
    "x/..",
    "eth0/../../x",
    "a" * 16,  # IFNAMSIZ is 16 with the NUL
    "é" * 8,  # 16 bytes in UTF-8
    "eth 0",
    "eth\t0",
    "eth0\n",
    "eth:0",
    "eth\x1b]0;owned\x07",  # an OSC title sequence
    "eth\x00",
    "eth\u202e0",  # a bidi override
]
GOOD = ["eth0", "lo", "veth-ab12", "a" * 15, "ens3f0np0", "br.100", "wg_0", "é" * 7]


@pytest.mark.parametrize("name", BAD, ids=repr)
def test_a_bad_name_is_refused(name: str) -> None:
    with pytest.raises(BadInterfaceName) as exc:
        host.check_iface_name(name)
    assert exc.value.exit_status == ExitStatus.CONFIG_INVALID
    assert "\x1b" not in exc.value.message and "\n" not in exc.value.message  # one safe line


@pytest.mark.parametrize("name", GOOD)
def test_a_good_name_passes(name: str) -> None:
    assert host.check_iface_name(name) == name


@pytest.mark.parametrize("name", ["../x", "a" * 16])
def test_every_path_made_of_a_name_checks_it(name: str, tmp_path: Path) -> None:
    with pytest.raises(BadInterfaceName):
        host.pin_dir(name)
    with pytest.raises(BadInterfaceName):
        host.InterfaceLock(name)
    with pytest.raises(BadInterfaceName):
        host.ifindex(name)
    with pytest.raises(RuleStoreError, match="is not an interface name"):
        RuleStore.state_file(name, tmp_path / "state")
    assert not (tmp_path / "state").exists()


@contextlib.contextmanager
def pin_root() -> Iterator[None]:
    """/sys/fs/bpf/ironpost exists (the condition of the old fault); removed after if we made it."""
    host.ensure_bpffs()
    made = not host.PIN_ROOT.exists()
    host.PIN_ROOT.mkdir(parents=True, exist_ok=True)
    try:
        yield
    finally:
        if made:
            with contextlib.suppress(OSError):
                host.PIN_ROOT.rmdir()


def traversal_to(target: Path) -> str:
    """A name that, joined under PIN_ROOT, lands on ``target``."""
    return os.path.relpath(target, host.PIN_ROOT)


@pytest.mark.root
def test_cleanup_of_a_traversal_name_touches_nothing(tmp_path: Path) -> None:
    planted = tmp_path / "somedir"
    (planted / "inside").mkdir(parents=True)
    (planted / "inside" / "file").write_text("keep me")
    name = traversal_to(planted)
    assert (host.PIN_ROOT / name).resolve() == planted.resolve()  # the old code would have removed it
    with pin_root():
        proc = agents.run("cleanup", name)
        assert proc.returncode == ExitStatus.CONFIG_INVALID, proc.stdout + proc.stderr
        assert proc.stderr.count("\n") == 1 and "is not an interface name" in proc.stderr
        assert (planted / "inside" / "file").read_text() == "keep me"
        # Positive control: a well-formed name that is not there is cleaned (nothing to do), exit 0.
        ok = agents.run("cleanup", "ipx-nothere0")
        assert ok.returncode == 0 and "nothing to clean on ipx-nothere0" in ok.stdout, ok.stdout + ok.stderr
    shutil.rmtree(planted)


@pytest.mark.root
@pytest.mark.parametrize("name", ["../x", "eth\x1b]0;t\x07", "a" * 16])
def test_run_refuses_a_bad_name_before_anything(name: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = agents.run(name, "--headless", "--no-metrics", "--state-dir", str(state), "--audit-log",
                      str(tmp_path / "audit.log"))  # fmt: skip
    assert proc.returncode == ExitStatus.CONFIG_INVALID, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "is not an interface name" in proc.stderr
    assert "\x1b" not in proc.stderr
    assert not state.exists() and not (tmp_path / "audit.log").exists()
