"""The configuration file a running engine follows: loaded, and watched for changes.

Reloading it into a running engine is ``ironpost_tui.engine.reload``'s job, a layer up."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from ironpost_tui.config import settings as config_mod
from ironpost_tui.config.check import ConfigError
from ironpost_tui.config.journal import journal_path
from ironpost_tui.config.settings import Settings
from ironpost_tui.config.store import RuleStore
from ironpost_tui.model import FilterRule

DEFAULT_CONFIG = Path("/etc/ironpost/ironpost.toml")
# A rewrite within one tick of the file system's clock (a few ms) keeps inode, size and mtime; while
# the mtime is this recent, the content is compared as well.
RECENT_SECS = 5.0


class _MarkingStore:
    """A RuleStore whose own writes do not count as changes to reload."""

    def __init__(self, store: RuleStore, source: ConfigSource) -> None:
        self._store = store
        self._source = source

    def add(self, rule: FilterRule) -> None:
        self._store.add(rule)
        self._source.mark()

    def update(self, rule: FilterRule) -> None:
        self._store.update(rule)
        self._source.mark()

    def delete(self, rule_id: str) -> None:
        self._store.delete(rule_id)
        self._source.mark()

    def replace_all(self, rules: list[FilterRule]) -> None:
        self._store.replace_all(rules)
        self._source.mark()


class ConfigSource:
    """Where rules come from and where edits go: a config file, or the state file."""

    def __init__(
        self,
        path: Path | None,
        iface: str,
        state_dir: Path = Path("/var/lib/ironpost"),
        cache_dir: Path | None = None,
    ) -> None:
        """``cache_dir``: where the file's parse is kept between starts (parse_cache.py), or None."""
        self.cache_dir = cache_dir
        if path is None and DEFAULT_CONFIG.exists():
            path = DEFAULT_CONFIG
        if path is not None:
            store = RuleStore(path)
            self.is_state_file = False
        else:
            store = RuleStore.state_file(iface, state_dir)
            self.is_state_file = True
        self.path = store.path
        self.store = _MarkingStore(store, self)
        self.journal_path = journal_path(state_dir, iface)  # auto-blocks: never in the file above
        self._seen: tuple[int, int, int] | None = None
        self._digest: bytes | None = None

    def load(self, on_ebpf: config_mod.EbpfReady | None = None, cached: bool = False) -> Settings:
        """The file's settings.  ``cached``: its parse read from and kept in ``cache_dir`` (a start's load;
        a reload, under the engine's lock, parses and writes nothing).  The file is read once, checked
        before it is read (config_mod.read_bytes), and remembered as read."""
        try:
            data, st = config_mod.read_bytes(self.path)
        except ConfigError:
            self.mark()  # refused as it is now: not a change to reload again at every step
            raise
        self._seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        self._digest = hashlib.sha256(data).digest()
        text = config_mod.decode(str(self.path), data)
        return config_mod.loads(text, str(self.path), on_ebpf=on_ebpf, cache_dir=self.cache_dir if cached else None)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _content_digest(self) -> bytes | None:
        """The digest of the file's bytes, read as a load reads them (never a FIFO's wait, nor past the size
        limit: until session 29 a plain read_bytes() did both, under the engine's lock); None when refused."""
        try:
            return hashlib.sha256(config_mod.read_bytes(self.path)[0]).digest()
        except ConfigError:
            return None

    def mark(self) -> None:
        """Remember the file as it is now (after our own writes, too)."""
        self._seen = self._stat()
        self._digest = self._content_digest()

    def changed(self) -> bool:
        now = self._stat()
        if now != self._seen:
            return True
        if now is not None and time.time() - now[1] / 1e9 < RECENT_SECS:
            return self._content_digest() != self._digest
        return False
