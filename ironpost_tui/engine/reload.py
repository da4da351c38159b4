"""Moving a running engine to its configuration file again: what a reload does and what it found."""

from __future__ import annotations

from dataclasses import dataclass

from ironpost_tui.config.settings import Settings
from ironpost_tui.config.watch import ConfigSource
from ironpost_tui.engine.engine import Engine
from ironpost_tui.errors import IronpostError
from ironpost_tui.rules import protect
from ironpost_tui.rules.audit import Actor
from ironpost_tui.rules.protect import Protected


@dataclass(frozen=True)
class ReloadResult:
    changed: bool = False
    rules: int = 0
    error: str | None = None  # the refusal: every error of the file, one per line


def reload_into(engine: Engine, source: ConfigSource, why: str) -> ReloadResult:
    """Load the file again and move the engine to it; on an error the rules in force stay."""
    try:
        settings = source.load()
        changed = engine.reload(list(settings.rules), protections(settings), Actor.current(why))
    except IronpostError as exc:
        return ReloadResult(error=exc.message)
    return ReloadResult(changed=changed, rules=len(settings.rules))


def protections(settings: Settings) -> list[Protected]:
    safety = settings.safety
    return protect.gather(
        safety.protect,
        include_ssh=safety.protect_ssh_client,
        include_host=safety.protect_host_addresses,
    )
