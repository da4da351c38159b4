"""ironpost-tui: an XDP packet filter and triage console for Linux hosts."""

__version__ = "0.1.0"
