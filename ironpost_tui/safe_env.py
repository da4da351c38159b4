"""Textual's debugging and automation variables, dropped from the environment of a process running as root.

Textual reads them when it is imported or when an App starts: ``TEXTUAL_PRESS`` presses keys (``!,y`` is a
panic, ``q`` a quit), ``TEXTUAL_DRIVER`` imports a class by its path, ``TEXTUAL_LOG`` and
``TEXTUAL_SCREENSHOT_*`` write files where they say, ``TEXTUAL=devtools`` and ``TEXTUAL_DEVTOOLS_*`` send the
screen to a host and port.  None of that belongs in a console that runs as root on an interface under attack
(``sudo -E`` and ``env_keep`` pass them through).  The variables that only change how it draws are kept, and
names Textual does not read are left alone.
"""

from __future__ import annotations

from collections.abc import MutableMapping

# What the pinned Textual reads that acts beyond drawing (tests/test_safe_env.py fails on a name it reads that
# is in neither set, so that an upgrade's new variable is classified before it is honoured as root).
DROPPED = frozenset(
    {
        "TEXTUAL",  # feature flags: devtools, debug
        "TEXTUAL_ALLOW_SIGNALS",  # Ctrl+C a SIGINT: the console ended mid-incident
        "TEXTUAL_DEBUG",
        "TEXTUAL_DEVTOOLS_HOST",
        "TEXTUAL_DEVTOOLS_PORT",
        "TEXTUAL_DRIVER",  # a class imported by its path
        "TEXTUAL_LOG",  # a file written as root
        "TEXTUAL_PRESS",  # keys pressed
        "TEXTUAL_SCREENSHOT",
        "TEXTUAL_SCREENSHOT_FILENAME",
        "TEXTUAL_SCREENSHOT_LOCATION",
        "TEXTUAL_SHOW_RETURN",
        "TEXTUAL_SLOW_THRESHOLD",
    }
)
KEPT = frozenset(
    {
        "TEXTUAL_ANIMATIONS",
        "TEXTUAL_COLOR_SYSTEM",
        "TEXTUAL_DIM_FACTOR",
        "TEXTUAL_DISABLE_KITTY_KEY",
        "TEXTUAL_FILTERS",  # how it draws (monochrome, dim...)
        "TEXTUAL_FPS",
        "TEXTUAL_SMOOTH_SCROLL",
        "TEXTUAL_SPEEDUPS",
        "TEXTUAL_THEME",
    }
)


def drop_textual_debugging(env: MutableMapping[str, str]) -> list[str]:
    """Remove the DROPPED variables from ``env``; the names removed, sorted."""
    dropped = sorted(name for name in env if name in DROPPED)
    for name in dropped:
        del env[name]
    return dropped
