"""Small things many test modules use: the repository's root and ``net()``."""

from __future__ import annotations

import ipaddress
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """``ipaddress.ip_network(text)``; a bare address is a /32 or /128."""
    return ipaddress.ip_network(text)
