"""The seed document's TOML example, verbatim (``config_corpus/seed-example.toml``), run for real.

``ring_buffer_size = 256`` is in KiB, as the seed says: ``check-config`` accepts the file
(test_config_corpus), and the headless agent started with it on a netlab veth holds an ``EVENTS``
ring buffer of 256 KiB, read from the kernel with ``bpftool map show``.  The control: the seed's
troubleshooting value, 512, gives 512 KiB, so the size shown is the configuration's and not a
default.  The example's drop rule is in the kernel's ``BLOCKLIST`` too (no traffic goes to its
address: it only sits in the map).
"""

from __future__ import annotations

import ipaddress
import shutil
import signal
from pathlib import Path

import pytest
from support import netlab
from support.agents import AgentPool, ready_info
from support.bpftool import map_keys, prog_maps, run_json

pytestmark = pytest.mark.root

SEED_EXAMPLE = Path(__file__).resolve().parent / "config_corpus" / "seed-example.toml"
BPF_MAP_TYPE_RINGBUF = "ringbuf"


def events_map(prog_id: int) -> dict[str, object]:
    """``bpftool -j map show`` of the program's EVENTS map."""
    info = run_json("map", "show", "id", str(prog_maps(prog_id, expect=("EVENTS",))["EVENTS"]))
    assert isinstance(info, dict)
    return info


def run_with(config: Path, lab: netlab.Lab, agents: AgentPool, tmp_path: Path) -> int:
    """Start the agent with ``config``; its prog id once it is ready."""
    agent = agents.start(
        lab.host_if,
        "--config",
        str(config),
        "--state-dir",
        str(tmp_path / "state"),
        "--audit-log",
        str(tmp_path / "audit.log"),
    )
    mode, prog_id = ready_info(agent.wait_ready())
    assert mode == "native", agent.describe()  # the example's xdp_mode; veth has native XDP
    return prog_id


def test_the_seed_example_attaches_with_a_256_kib_events_ring(
    lab: netlab.Lab, agents: AgentPool, tmp_path: Path
) -> None:
    config = tmp_path / "ironpost.toml"
    shutil.copyfile(SEED_EXAMPLE, config)
    prog_id = run_with(config, lab, agents, tmp_path)

    events = events_map(prog_id)
    assert events["type"] == BPF_MAP_TYPE_RINGBUF, events
    assert events["max_entries"] == 256 * 1024, events
    blocklist = prog_maps(prog_id)["BLOCKLIST"]
    assert map_keys(blocklist) == [ipaddress.IPv4Address("10.0.0.1").packed]
    assert config.read_bytes() == SEED_EXAMPLE.read_bytes()  # read, not rewritten

    # The control: the seed's troubleshooting advice, "ring_buffer_size = 512  # 256 -> 512 KiB".
    for agent in agents.agents:
        agent.send(signal.SIGTERM)
        assert agent.wait() == 0, agent.describe()
    text = SEED_EXAMPLE.read_text()
    assert text.count("ring_buffer_size = 256\n") == 1
    config.write_text(text.replace("ring_buffer_size = 256\n", "ring_buffer_size = 512\n"))
    prog_id = run_with(config, lab, agents, tmp_path)
    events = events_map(prog_id)
    assert events["max_entries"] == 512 * 1024, events
