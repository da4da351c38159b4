"""What the tests share, beside the tests (no tests here).

* ``netlab``: the throw-away test network, a namespace joined by a veth pair (needs root).
* ``agents``: ``ironpost-tui`` run as a subprocess (``Agent``, ``AgentPool``), an engine run in
  process, and what a program left on an interface (XDP programs, pins).
* ``traffic``: UDP from a lab's namespace: ``Probe`` (do datagrams pass?) and ``Flood`` (a steady stream).
* ``bpftool``: a program's maps and their keys, read through bpftool.
* ``packets``: Ethernet frames for ``BPF_PROG_TEST_RUN``, with fixed MACs.
* ``verdicts``: a compiled program and its rule table, and ``check()`` of a frame's verdict, counters,
  rule credited and events through ``BPF_PROG_TEST_RUN``.
* ``metrics_lab``: free ports, an agent's files, scraping, TLS material, a real Prometheus.
* ``tmux``: a command in a detached tmux session, and its screen.
* ``ui``: the console's fakes, frozen clock and waits on messages (Pilot tests and snapshots).
* ``recordings``: the script that makes ``tests/recordings/lab.ipr.gz``.
* ``common``: the repository's root and ``net()``.

Tests import them as ``from support import netlab``: pytest puts ``tests/`` on
``sys.path`` (rootdir-relative "prepend" imports, no ``tests/__init__.py``), and
``bench/__init__.py`` does the same for the benchmarks.  ``conftest.py`` registers
the package for pytest's assertion rewriting.
"""
