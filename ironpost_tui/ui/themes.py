"""The console's themes: TOML files in themes/, loaded into Textual Themes."""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

import tomli  # the configuration's parser (config/settings.py); the standard library's tomllib needs Python 3.11
from textual.theme import BUILTIN_THEMES, Theme

from ironpost_tui.kernel.resources import themes_dir

log = logging.getLogger(__name__)

DEFAULT_THEME = "ironpost-dark"
# What [console] theme may say for short.
ALIASES = {"dark": "ironpost-dark", "light": "ironpost-light", "contrast": "ironpost-contrast"}
# Variables every theme gets unless it sets them; the widgets' CSS uses them.  Our themes set
# the colours (tests/test_ui_contrast.py checks them); these fit a dark background.
VARIABLE_DEFAULTS = {
    "ironpost-emphasis": "none",
    "ironpost-acked": "#A9B2BF",  # an acknowledged alert's row
    "ironpost-resolved": "#8A94A3",  # a resolved alert's row
    "ironpost-border": "#7D8796",  # an unfocused pane's border
}

_COLOUR_KEYS = {f.name for f in fields(Theme)} - {"name", "variables"}


def load_theme(path: Path) -> Theme:
    """One theme file; ValueError naming the file and the problem."""
    try:
        data: dict[str, Any] = tomli.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomli.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    unknown = set(data) - _COLOUR_KEYS - {"name", "variables"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {', '.join(sorted(unknown))}")
    if "primary" not in data:
        raise ValueError(f"{path}: a theme needs at least 'primary'")
    variables = {**VARIABLE_DEFAULTS, **{str(k): str(v) for k, v in data.get("variables", {}).items()}}
    return Theme(
        name=str(data.get("name", path.stem)),
        variables=variables,
        **{k: v for k, v in data.items() if k in _COLOUR_KEYS},
    )


def load_themes(directory: Path | None = None) -> list[Theme]:
    """Every *.toml theme in ``directory`` (default: the package's themes/), by name.
    A broken file is logged and skipped: the console still starts."""
    try:
        directory = directory or themes_dir()
    except FileNotFoundError as exc:
        log.warning("%s", exc)
        return []
    themes = []
    for path in sorted(directory.glob("*.toml")):
        try:
            themes.append(load_theme(path))
        except ValueError as exc:
            log.warning("theme skipped: %s", exc)
    return themes


def refusal(name: str) -> str | None:
    """Why the console has no theme ``name`` (ironpost's, their short names and Textual's own are taken), or None."""
    ours = [t.name for t in load_themes()]
    if name in ours or name in ALIASES or name in BUILTIN_THEMES:
        return None
    shown = name if len(name) <= 40 else name[:40] + "..."
    return f"no theme {shown!r}: {', '.join(ours + list(ALIASES))}, or one of Textual's (textual-dark, ...)"


def resolve(name: str, available: list[str]) -> str | None:
    """The registered theme ``name`` (or its alias) means, or None."""
    name = ALIASES.get(name, name)
    return name if name in available else None
