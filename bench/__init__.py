"""ironpost-tui benchmarks: ``sudo make bench`` (``.venv/bin/python -m bench``).

Every figure is printed beside its floor or its peer measured in the same run
(the build machines are noisy: ratios hold, absolute figures do not), and each
budget that is not met is a FAIL line; the exit status is non-zero if any is.
"""

import sys
from pathlib import Path

# tests/support/netlab.py (the namespace + veth lab) is shared with the test suite: ``from support import netlab``.
_TESTS = str(Path(__file__).resolve().parents[1] / "tests")
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
