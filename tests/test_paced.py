"""tests/support/paced.py's senders are gone when their block ends: trafgen forks a worker that a signal to
the parent alone left sending, reparented to init, until its count was done (seen after a CI run)."""

from __future__ import annotations

import subprocess
import time

import pytest
from support import netlab, paced

pytestmark = pytest.mark.root


def senders_of(lab: netlab.Lab) -> list[str]:
    """The trafgen processes sending on the lab's peer device."""
    out = subprocess.run(["pgrep", "-f", f"trafgen --dev {lab.peer_if} "], capture_output=True, text=True)
    return out.stdout.split()


def test_a_paced_block_leaves_no_sender_behind(lab: netlab.Lab) -> None:
    with paced.paced(lab, [(lab.ns_ip4, 200, 60.0)]):
        time.sleep(1.0)
        during = senders_of(lab)
        assert len(during) >= 2, during  # the control: the parent and its forked worker both send
    assert senders_of(lab) == []
