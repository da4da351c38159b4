"""The configuration file's TOML parse kept on disk, so that a start with the file unchanged since the last
start skips the parse.

Of a 10,000-rule file's start, the depth check (locate.too_deep) and tomli's parse take some 130 ms on the
build VMs; reading the same tables back from JSON takes 4.  Only the parse is kept: every setting and rule
is checked on it at every start, as on a fresh parse (``now``, the host's addresses and the kernel's room
are the start's own).

The file is named by a key over what the parse depends on: the text, tomli's version, the depth limit and
this format.  An edited file is another key; the newest KEEP_FILES files stay.  It lives in root's cache
directory, trusted as the compiled program's is (cache_dir.py), and holds a header line (the key, and
a sha256 of the data line, so that a file cut short or damaged is never half-used) and the data line.
A file that fails any check is one warning and the configuration parsed.

Not kept: a parse holding a date or a time (JSON has neither), or a float that is not finite.  Every value
of the file is kept, a CrowdSec API key written in it too: the cache file is 0600 in a 0700 directory of
root's, as the configuration itself should be.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, NoReturn

from ironpost_tui.cache_dir import CacheFile, CacheRefused

log = logging.getLogger(__name__)

FORMAT = 1
FILE_PREFIX = "config-"
FILE_SUFFIX = ".json"
# A 10 MiB file's JSON is mostly smaller than it (non-ASCII text kept as UTF-8), but may be up to 4 times
# larger (``9e15`` is ``9000000000000000.0``, ``"\e"`` is ``"\u001b"``): a parse whose JSON is larger is not kept.
MAX_FILE_BYTES = 32 * 1024 * 1024
KEEP_FILES = 4


def parser_version() -> str:
    import tomli

    return str(getattr(tomli, "__version__", ""))


# The modules whose code decides what a text parses to, or whether it is refused before it is parsed (the
# depth check): a change to any of them (an upgrade) is another key.
_PARSE_MODULES = ("locate.py", "settings.py", "parse_cache.py")


def _code_digest() -> str:
    h = hashlib.sha256()
    here = Path(__file__).parent
    for name in _PARSE_MODULES:
        try:
            h.update((here / name).read_bytes())
        except OSError:
            h.update(b"?")
    return h.hexdigest()


def cache_key(text: str | bytes, max_depth: int) -> str:
    """sha256 over what the parse depends on (``text`` as given, or already encoded as UTF-8)."""
    h = hashlib.sha256()
    h.update(json.dumps(["ironpost-config-parse", FORMAT, parser_version(), max_depth, _code_digest()]).encode())
    h.update(b"\n")
    h.update(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


class ParseCache:
    """The parse of one text, in ``directory``."""

    def __init__(self, directory: Path, text: str | bytes, max_depth: int) -> None:
        self.key = cache_key(text, max_depth)
        self._file = CacheFile(directory, FILE_PREFIX, FILE_SUFFIX, self.key, MAX_FILE_BYTES, KEEP_FILES)
        self.path = self._file.path

    def _warn(self, what: str, why: str) -> None:
        why = " ".join(why.split())
        extra = {"event": "config_cache", "path": str(self.path), "why": why}
        log.warning("configuration cache %s %s (%s)", self.path, what, why, extra=extra)

    def get(self) -> dict[str, Any] | None:
        """The parse kept for this text, or None: absent (silently) or refused (one warning)."""
        return self._file.load("cache", self._decode, lambda why: self._warn("ignored, the file parsed instead", why))

    def _decode(self, raw: bytes) -> dict[str, Any]:
        head, newline, body = raw.partition(b"\n")
        try:
            header = json.loads(head)
        except ValueError:
            raise CacheRefused("its header is not JSON") from None
        if not newline or not isinstance(header, dict) or header.get("format") != FORMAT:
            raise CacheRefused("it is not of this format")
        if header.get("key") != self.key:
            raise CacheRefused("it holds another file's parse")
        if header.get("data_sha256") != hashlib.sha256(body).hexdigest():
            raise CacheRefused("its data does not match its digest: cut short or damaged")
        try:
            data = json.loads(body, parse_constant=_not_finite)
        except (ValueError, RecursionError):
            raise CacheRefused("its data is not JSON as this cache writes it") from None
        if not isinstance(data, dict):
            raise CacheRefused("its data is not a table")
        return data

    def encode(self, data: dict[str, Any]) -> bytes | None:
        """The file put() writes for ``data``, or None when JSON cannot hold it as it is (a date or time,
        a float that is not finite).  Made before the checks read ``data``."""
        try:
            body = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
        except (TypeError, ValueError) as exc:
            log.debug("configuration parse not cached: %s", exc)
            return None
        header = {"format": FORMAT, "key": self.key, "data_sha256": hashlib.sha256(body).hexdigest()}
        encoded = json.dumps(header).encode() + b"\n" + body
        if len(encoded) > MAX_FILE_BYTES:
            log.debug("configuration parse not cached: its JSON is %d bytes", len(encoded))
            return None
        return encoded

    def put(self, encoded: bytes) -> None:
        """Save what encode() made; a failure is one warning, never an error.  Not fsynced: a file cut
        short by a crash fails its digest, and the next start parses."""
        self._file.save(encoded, lambda why: self._warn("not saved", why), durable=False)


def _not_finite(word: str) -> NoReturn:
    raise ValueError(f"{word} is not written by this cache")
