"""The program is compiled while the configuration's rules are checked (kernel/datapath.py
PreparedDatapath, started from the [ebpf] section by config.settings.load's ``on_ebpf``), and the engine
attaches that very program; a prepared program whose settings differ from the engine's is unloaded and the
engine compiles its own.  Real compiles, real attach on a lab veth."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import netlab

from ironpost_tui.config.check import ConfigError
from ironpost_tui.config.settings import EbpfSettings
from ironpost_tui.config.watch import ConfigSource
from ironpost_tui.engine.engine import Engine, EngineOptions
from ironpost_tui.engine.reload import protections
from ironpost_tui.kernel import host, libbpf
from ironpost_tui.kernel.datapath import DatapathConfig, PreparedDatapath
from ironpost_tui.kernel.xdp_link import occupants

pytestmark = pytest.mark.root

CONFIG = """[safety]
protect_ssh_client = false
protect_host_addresses = false

[ebpf]
blocklist_max_entries = 8192

[[ebpf.rules]]
id = "drop-a"
src_ip = "198.18.200.1"
action = "drop"
"""


def prog_id(prepared: PreparedDatapath) -> int:
    """The id of the program the prepared datapath compiled (waiting for it)."""
    prepared._thread.join()
    assert prepared._dp is not None
    return libbpf.prog_info(prepared._dp.prog_fd).id


def loaded(pid: int) -> bool:
    try:
        os.close(libbpf.prog_fd_by_id(pid))
    except OSError as exc:
        assert exc.errno == errno.ENOENT
        return False
    return True


@contextlib.contextmanager
def started(lab: netlab.Lab, tmp_path: Path, prepared: PreparedDatapath) -> Iterator[Engine]:
    path = tmp_path / "ironpost.toml"
    settings = ConfigSource(path, lab.host_if, state_dir=tmp_path / "state").load()
    engine = Engine(
        EngineOptions(
            iface=lab.host_if,
            xdp_mode="native",
            datapath=settings.ebpf.datapath(),
            rules=settings.rules,
            protected=tuple(protections(settings)),
            auto_journal=tmp_path / "auto.jsonl",
            audit_log=tmp_path / "audit.log",
        ),
        prepared=prepared,
    )
    try:
        engine.start()
        yield engine
    finally:
        engine.close()
        prepared.close()
        with contextlib.suppress(FileNotFoundError):
            (host.RUN_DIR / f"{lab.host_if}.lock").unlink()


def test_the_engine_attaches_the_program_compiled_while_the_rules_were_checked(lab: netlab.Lab, tmp_path: Path) -> None:
    path = tmp_path / "ironpost.toml"
    path.write_text(CONFIG)
    seen: list[EbpfSettings] = []
    ConfigSource(path, lab.host_if, state_dir=tmp_path / "state").load(on_ebpf=seen.append)
    assert [s.blocklist_max_entries for s in seen] == [8192]
    prepared = PreparedDatapath(seen[0].datapath())
    compiled = prog_id(prepared)
    with started(lab, tmp_path, prepared):
        assert [o.prog_id for o in occupants(lab.ifindex)] == [compiled]
    assert not loaded(compiled)  # detached and unloaded with the engine


def test_a_prepared_program_of_other_settings_is_unloaded_and_not_attached(lab: netlab.Lab, tmp_path: Path) -> None:
    (tmp_path / "ironpost.toml").write_text(CONFIG)
    prepared = PreparedDatapath(DatapathConfig(blocklist_max_entries=4096))  # the file says 8192
    other = prog_id(prepared)
    with started(lab, tmp_path, prepared):
        attached = [o.prog_id for o in occupants(lab.ifindex)]
        assert len(attached) == 1 and attached != [other]
        assert not loaded(other)


def test_no_compile_for_a_file_with_errors_before_its_rules(tmp_path: Path) -> None:
    """A wrong [ebpf] value: the load fails and nothing was started.  A wrong rule (after [ebpf]): the
    compile was started (the caller closes it when the load fails)."""
    path = tmp_path / "ironpost.toml"
    seen: list[EbpfSettings] = []
    path.write_text(CONFIG.replace("8192", '"many"'))
    with pytest.raises(ConfigError):
        ConfigSource(path, "lab0", state_dir=tmp_path / "state").load(on_ebpf=seen.append)
    assert seen == []
    path.write_text(CONFIG.replace('"198.18.200.1"', '"not an address"'))
    with pytest.raises(ConfigError):
        ConfigSource(path, "lab0", state_dir=tmp_path / "state").load(on_ebpf=seen.append)
    assert len(seen) == 1
