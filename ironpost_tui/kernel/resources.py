"""Where the BPF sources and themes are, installed or in a source tree."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent  # ironpost_tui/, not ironpost_tui/kernel/


def _data_dir(name: str) -> Path:
    # A wheel carries bpf/ and themes/ inside the package (see pyproject.toml);
    # a source checkout has them beside the package.
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"ironpost-tui's {name}/ directory is missing from {_PACKAGE}")


def bpf_dir() -> Path:
    return _data_dir("bpf")


def bpf_source() -> Path:
    return bpf_dir() / "ironpost_xdp.c"


def themes_dir() -> Path:
    return _data_dir("themes")
