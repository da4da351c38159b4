"""Signals held off the calling thread while the verifier checks a program.

A signal delivered to the thread a BPF_PROG_LOAD runs in interrupts the verifier: the load fails with
EAGAIN (libbpf tries again a few times; BCC's compile path too), and with a program of 65,000
instructions every try takes a tenth of a second or more.  The console's terminal resizes (SIGWINCH), a
job-control stop or a kill may come at any moment.  Held only around the load, so that nothing else
(a child process started meanwhile inherits the mask) runs with them blocked; what arrived is delivered
when the load returns.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def signals_held() -> Iterator[None]:
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
