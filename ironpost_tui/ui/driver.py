"""The console's terminal driver: Textual's Linux driver, resuming only after its own suspend.

When the terminal goes (an SSH session dropped, tmux killed), the kernel sends the foreground
process group SIGHUP, then SIGCONT.  Textual's driver resumes application mode on any SIGCONT: on a
terminal that is going away it starts a second output thread, whose first write fails (EIO) and ends
it; the thirty-first write after that (the driver's queue holds thirty) then waits forever, inside
the shutdown that should close the engine.  This driver resumes only after the SIGTSTP it handled
itself (Ctrl+Z, then ``fg``): a SIGCONT it did not stop for changes nothing.
"""

from __future__ import annotations

import sys
from typing import Any

if sys.platform == "linux":
    from textual.drivers.linux_driver import LinuxDriver

    class ConsoleDriver(LinuxDriver):
        def _sigcont_application(self, *args: Any) -> None:
            if self._must_signal_resume:  # set by this driver's SIGTSTP handler: a suspend it made
                super()._sigcont_application(*args)

    DRIVER: type[LinuxDriver] | None = ConsoleDriver
else:  # the product runs on Linux; elsewhere Textual chooses
    DRIVER = None
