"""The TOML configuration: the seed's ironpost.toml, read, checked and explained.

Every error of a file is collected, each as ``path:line:col: what is wrong
and what to do``, and a file with any error is refused whole: the engine only
ever receives a complete, valid Settings.  Sections of the seed's other
modules ([log_pipeline], [container], [sbom]) are accepted as they are and
ignored.
"""

from __future__ import annotations

import ipaddress
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# tomli, not the standard library's tomllib (the same parser, a newer release): its wheels are compiled
# with mypyc, and a 10,000-rule file parses in a third of the time (0.15 -> 0.055 s here), a start-up cost.
# Release 2.4 reads TOML 1.1, a superset of the 1.0 that tomllib (and the seed) read: every file they take
# reads the same, and \e and \xHH escapes, newlines in inline tables and HH:MM times are accepted too
# (what a string holds is checked after, whatever escape wrote it: control characters are refused).
import tomli as tomllib

from ironpost_tui import trust
from ironpost_tui.config import rules as config_rules
from ironpost_tui.config.check import Check, ConfigError, ConfigIssue, Table, quote, show
from ironpost_tui.config.crowdsec import KEYS as CROWDSEC_KEYS
from ironpost_tui.config.crowdsec import CrowdSecSettings, crowdsec_settings
from ironpost_tui.config.locate import line_col, too_deep
from ironpost_tui.config.parse_cache import ParseCache
from ironpost_tui.config.rules import ACTIONS, MAX_DESCRIPTION_CHARS, MAX_ID_CHARS, MAX_RULES
from ironpost_tui.config.sizes import ring_buffer_kib
from ironpost_tui.detectors.settings import AutoBlockLimits, Detector, PortScanConfig, SynFloodConfig
from ironpost_tui.errors import BadInterfaceName
from ironpost_tui.kernel.datapath import DatapathConfig
from ironpost_tui.kernel.host import check_iface_name
from ironpost_tui.kernel.xdp_link import XdpChoice, xdp_choice
from ironpost_tui.model import FilterRule, IPNetwork

MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_DEPTH = 16  # levels of tables and arrays

XDP_MODES = ("auto", "native", "skb", "offload", "hw")  # hw is the seed's name for offload
LOG_LEVELS = ("trace", "debug", "info", "warn", "error")
LOG_FORMATS = {"text": "text", "json": "json", "pretty": "text"}  # pretty is the seed's text
OTHER_MODULES = ("log_pipeline", "container", "sbom")  # the seed's, accepted and ignored
TOP_KEYS = ("general", "ebpf", "rules", "detectors", "metrics", "safety", "console", "crowdsec", *OTHER_MODULES)


# --------------------------------------------------------------------------- #
# settings


DATA_DIR = Path("/var/lib/ironpost")  # the state file's directory (--state-dir's default)


@dataclass(frozen=True)
class GeneralSettings:
    log_level: str = "info"  # sets the level of ironpost's own loggers (trace = debug)
    log_format: str = "text"  # text or json
    data_dir: Path = DATA_DIR  # only DATA_DIR: see _general
    pid_file: Path | None = None  # written at start, removed at exit; None: no pid file


@dataclass(frozen=True)
class EbpfSettings:
    enabled: bool = True
    interface: str = ""
    xdp_mode: XdpChoice = "auto"
    ring_buffer_size: int = 256  # KiB, as in the seed
    blocklist_max_entries: int = 10_000
    event_rate_limit: int = 10_000  # events/s per CPU; 0 = unlimited

    def datapath(self) -> DatapathConfig:
        return DatapathConfig(
            blocklist_max_entries=self.blocklist_max_entries,
            ring_buffer_kib=self.ring_buffer_size,
            event_rate=self.event_rate_limit,
        )


@dataclass(frozen=True)
class MetricsSettings:
    enabled: bool = True
    addr: str = "127.0.0.1"
    port: int = 9717
    web_config: Path | None = None  # Prometheus exporter web config (TLS, basic auth)


@dataclass(frozen=True)
class SafetySettings:
    protect: tuple[IPNetwork, ...] = ()
    protect_ssh_client: bool = True
    protect_host_addresses: bool = True


@dataclass(frozen=True)
class ConsoleSettings:
    refresh_secs: float = 1.0
    theme: str = "dark"


@dataclass(frozen=True)
class Settings:
    ebpf: EbpfSettings = field(default_factory=EbpfSettings)
    rules: tuple[FilterRule, ...] = ()
    path: Path | None = None
    general: GeneralSettings = field(default_factory=GeneralSettings)
    syn_flood: SynFloodConfig = field(default_factory=SynFloodConfig)
    port_scan: PortScanConfig = field(default_factory=PortScanConfig)
    auto_block: AutoBlockLimits = field(default_factory=AutoBlockLimits)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    safety: SafetySettings = field(default_factory=SafetySettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    crowdsec: CrowdSecSettings = field(default_factory=CrowdSecSettings)


# --------------------------------------------------------------------------- #
# loading


# Called with the [ebpf] section as soon as it is checked, before the rules are: a start compiles the
# program with it meanwhile (kernel/datapath.py PreparedDatapath).
EbpfReady = Callable[[EbpfSettings], None]


def load(
    path: Path, now: float | None = None, on_ebpf: EbpfReady | None = None, cache_dir: Path | None = None
) -> Settings:
    """Read and check ``path``; ConfigError with every error of the file.

    ``expires_in`` counts from ``now`` (default: the time of the call, i.e.
    from when the file is loaded).  ``on_ebpf``: see EbpfReady (not called when the file has errors
    before its rules).  ``cache_dir``: where the parse is kept between starts (parse_cache.py), or None.
    """
    return loads(read_text(path), str(path), now, on_ebpf, cache_dir)


def read_text(path: Path) -> str:
    """The text of ``path``, its size checked before anything is read; ConfigError otherwise."""
    return decode(str(path), read_bytes(path)[0])


def read_bytes(path: Path) -> tuple[bytes, os.stat_result]:
    """The bytes of ``path`` and the fstat of what was read, checked (trust, a regular file, the size limit)
    before anything is read, without blocking on a FIFO; ConfigError otherwise."""
    name = str(path)
    try:
        # O_NONBLOCK: a FIFO swapped in for the file must not block start-up; fstat judges what opened.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            st = os.fstat(fd)
            problem = trust.file_problem(st, Path(path))
            if problem is not None:
                raise _fail(name, problem)
            size = st.st_size
            if size > MAX_FILE_BYTES:
                raise _fail(name, _too_big(size))
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)  # it may have grown since fstat
        finally:
            os.close(fd)
    except OSError as exc:
        raise _fail(name, f"cannot read the file: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise _fail(name, _too_big(len(data)))
    return data, st


def decode(name: str, data: bytes) -> str:
    """The file's bytes as text; ConfigError naming the first byte that is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = len(data[data.rfind(b"\n", 0, exc.start) + 1 : exc.start].decode("utf-8", "replace")) + 1
        bad = data[exc.start : exc.start + 1].hex()
        raise _fail(name, f"not UTF-8 text (byte 0x{bad}): save the file as UTF-8", line, col) from None


def loads(
    text: str,
    path: str,
    now: float | None = None,
    on_ebpf: EbpfReady | None = None,
    cache_dir: Path | None = None,
) -> Settings:
    """Check the TOML ``text`` (named ``path`` in messages); ConfigError with every error.

    ``expires_in`` counts from ``now`` (default: the time of the call).  ``cache_dir``: the parse is
    read from there when this text's was kept, and kept there once the file passes its checks.
    """
    raw = text.encode("utf-8", "surrogatepass")  # once: the size checked, and the cache's key
    if len(raw) > MAX_FILE_BYTES:
        raise _fail(path, _too_big(len(raw)))
    cache = ParseCache(cache_dir, raw, MAX_DEPTH) if cache_dir is not None else None
    data = cache.get() if cache is not None else None
    encoded = None
    if data is None:
        data = _parse(text, path)
        encoded = cache.encode(data) if cache is not None else None  # before the checks read it
    check = Check()
    settings = _build(check, data, Path(path), time.time() if now is None else now, on_ebpf)
    if check.pending:
        raise ConfigError.from_issues(check.resolve(path, text))
    if cache is not None and encoded is not None:
        cache.put(encoded)
    return settings


def _parse(text: str, path: str) -> dict[str, Any]:
    """tomli's parse of ``text``, after the depth check; ConfigError with the first error."""
    deep = too_deep(text, MAX_DEPTH)
    if deep is not None:
        raise _fail(path, f"tables and arrays nest deeper than {MAX_DEPTH} levels: flatten the file", *deep)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(path, text, str(exc)) from None
    except RecursionError:  # too_deep should have refused it first
        raise _fail(path, f"tables and arrays nest too deeply: flatten the file (at most {MAX_DEPTH} levels)") from None
    except ValueError:  # int() past sys.get_int_max_str_digits()
        m = re.search(r"[0-9A-Fa-f_]{4000,}", text)
        pos = line_col(text, m.start()) if m else (1, 1)
        raise _fail(path, "a number has thousands of digits: no setting needs that", *pos) from None
    return data


def _fail(path: str, message: str, line: int = 1, col: int = 1) -> ConfigError:
    return ConfigError.from_issues([ConfigIssue(path, line, col, None, message)])


def _too_big(size: int) -> str:
    return (
        f"the file is {size} bytes, more than the limit of {MAX_FILE_BYTES} bytes (10 MiB): "
        "check that it is the right file"
    )


_TOML_POSITION = re.compile(r"^(.*) \(at (?:line (\d+), column (\d+)|end of document)\)$", re.DOTALL)


def _syntax_error(path: str, text: str, message: str) -> ConfigError:
    m = _TOML_POSITION.match(message)
    if m is None:
        what, line, col = message, 1, 1
    elif m.group(2) is None:
        what = m.group(1)
        line, col = line_col(text, len(text))
    else:
        what, line, col = m.group(1), int(m.group(2)), int(m.group(3))
    what = _SYNTAX_HINTS.get(what, what[:1].lower() + what[1:])
    return _fail(path, f"TOML syntax error: {what}", line, col)


_SYNTAX_HINTS = {  # tomllib's words where a plainer say helps
    "Illegal character '\\n'": "the string is not closed before the end of the line: add the closing quote",
    "Unterminated string": "a string is never closed: add the closing quote",
}


# --------------------------------------------------------------------------- #
# the sections


def _build(check: Check, data: dict[str, Any], path: Path, now: float, on_ebpf: EbpfReady | None = None) -> Settings:
    top = Table(check, data, (), TOP_KEYS)
    top.unknown_keys()
    general = _general(top.subtable("general", ("log_level", "log_format", "data_dir", "pid_file")))
    ebpf_table = top.subtable(
        "ebpf",
        (
            "enabled",
            "interface",
            "xdp_mode",
            "ring_buffer_size",
            "blocklist_max_entries",
            "event_rate_limit",
            "rules",
        ),
    )
    ebpf = _ebpf(ebpf_table)
    ebpf_table.unknown_keys()
    if on_ebpf is not None and not check.pending:
        on_ebpf(ebpf)
    rules = config_rules.rules(check, data, ebpf.blocklist_max_entries, now)
    detectors = top.subtable("detectors", (*Detector, *_LIMIT_KEYS))
    detectors.unknown_keys()
    return Settings(
        ebpf=ebpf,
        rules=rules,
        path=path,
        general=general,
        syn_flood=_syn_flood(detectors.subtable(Detector.SYN_FLOOD, _SYN_KEYS)),
        port_scan=_port_scan(detectors.subtable(Detector.PORT_SCAN, _SCAN_KEYS)),
        auto_block=_auto_block(detectors),
        metrics=_metrics(top.subtable("metrics", ("enabled", "addr", "port", "web_config"))),
        safety=_safety(top.subtable("safety", ("protect", "protect_ssh_client", "protect_host_addresses"))),
        console=_console(top.subtable("console", ("refresh_secs", "theme"))),
        crowdsec=crowdsec_settings(top.subtable("crowdsec", CROWDSEC_KEYS), path),
    )


def _general(t: Table) -> GeneralSettings:
    t.unknown_keys()
    d = GeneralSettings()
    log_format = t.string("log_format", d.log_format, tuple(LOG_FORMATS))
    data_dir = t.string("data_dir", str(d.data_dir), nonempty=True)
    if data_dir and Path(data_dir) != DATA_DIR:
        # With a configuration file, rule edits are written back to that file and ironpost keeps
        # nothing in a data directory; without one, this file is itself the state file, found in
        # --state-dir before it is read.  Another directory would be parsed and ignored: refused.
        t.error(
            "data_dir",
            f"{t.name('data_dir')} {quote(data_dir)}: ironpost-tui keeps no data in a directory of the "
            "configuration's choosing (edits go back to this file; the state file's directory is --state-dir): "
            f'remove the key or write "{DATA_DIR}"',
        )
    pid_file = t.string("pid_file", "")
    if pid_file and (not pid_file.startswith("/") or pid_file.endswith("/")):
        t.error(
            "pid_file", f"{t.name('pid_file')} {quote(pid_file)} is not an absolute file path: like /run/ironpost.pid"
        )
        pid_file = ""
    return GeneralSettings(
        log_level=t.string("log_level", d.log_level, LOG_LEVELS),
        log_format=LOG_FORMATS[log_format],
        data_dir=DATA_DIR,
        pid_file=Path(pid_file) if pid_file else None,
    )


def _ebpf(t: Table) -> EbpfSettings:
    d = EbpfSettings()
    interface = t.string("interface", d.interface)
    if interface:  # "" means: the one given on the command line
        try:
            check_iface_name(interface)
        except BadInterfaceName:
            t.error(
                "interface",
                f"{t.name('interface')} {quote(interface)} is not an interface name "
                "(1-15 bytes; no '/', ':', whitespace or control characters)",
            )
    mode = t.string("xdp_mode", d.xdp_mode, XDP_MODES)
    enabled = t.boolean("enabled", d.enabled)
    if not enabled:
        # The seed's key, which ironpost-tui cannot honour by running: it exists to attach its program.
        # Ignored, a host told not to filter would filter; refused, it says so and changes nothing.
        t.error(
            "enabled",
            f"{t.name('enabled')} = false: ironpost-tui runs only to attach its XDP program, so it will not start "
            "with this; to stop filtering, stop ironpost-tui (with --persist: `ironpost-tui cleanup IFACE`), "
            "and set it to true or remove it",
        )
    return EbpfSettings(
        enabled=enabled,
        interface=interface,
        xdp_mode=xdp_choice(mode),
        ring_buffer_size=ring_buffer_kib(t, d.ring_buffer_size),
        blocklist_max_entries=t.integer("blocklist_max_entries", d.blocklist_max_entries, 1, 1_000_000),
        event_rate_limit=t.integer(
            "event_rate_limit",
            d.event_rate_limit,
            0,
            10_000_000,
            "it must be 0 (unlimited) to 10000000 events/s per CPU",
        ),
    )


_SYN_KEYS = ("window_secs", "threshold", "syn_ratio_threshold", "auto_block", "block_ttl")
_SCAN_KEYS = ("window_secs", "port_threshold", "auto_block", "block_ttl")


def _syn_flood(t: Table) -> SynFloodConfig:
    t.unknown_keys()
    d = SynFloodConfig()
    return SynFloodConfig(
        window_secs=t.number("window_secs", d.window_secs, 0.1, 3600),
        threshold=t.integer("threshold", d.threshold, 1, 1_000_000_000),
        syn_ratio_threshold=t.number("syn_ratio_threshold", d.syn_ratio_threshold, 0.0, 1.0),
        auto_block=t.boolean("auto_block", d.auto_block),
        block_ttl=t.duration("block_ttl", d.block_ttl),
    )


def _port_scan(t: Table) -> PortScanConfig:
    t.unknown_keys()
    d = PortScanConfig()
    return PortScanConfig(
        window_secs=t.number("window_secs", d.window_secs, 0.1, 3600),
        port_threshold=t.integer("port_threshold", d.port_threshold, 1, 65535),
        auto_block=t.boolean("auto_block", d.auto_block),
        block_ttl=t.duration("block_ttl", d.block_ttl),
    )


_LIMIT_KEYS = ("max_blocks_per_minute", "max_auto_blocks", "max_incident_sources", "quiet_secs")


def _auto_block(t: Table) -> AutoBlockLimits:
    """Auto-block's limits, keys of [detectors] itself (they bound both detectors together)."""
    d = AutoBlockLimits()
    return AutoBlockLimits(
        max_blocks_per_minute=t.integer("max_blocks_per_minute", d.max_blocks_per_minute, 0, 100_000),
        max_auto_blocks=t.integer("max_auto_blocks", d.max_auto_blocks, 0, 1_000_000),
        max_incident_sources=t.integer("max_incident_sources", d.max_incident_sources, 1, 100_000),
        quiet_secs=t.number("quiet_secs", d.quiet_secs, 1, 86_400),
    )


def _metrics(t: Table) -> MetricsSettings:
    t.unknown_keys()
    d = MetricsSettings()
    addr = t.string("addr", d.addr)
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        t.error("addr", f"{t.name('addr')} {quote(addr)} is not an IP address: use one like 127.0.0.1, 0.0.0.0 or ::")
    web_config = t.string("web_config", "")
    return MetricsSettings(
        enabled=t.boolean("enabled", d.enabled),
        addr=addr,
        port=t.integer("port", d.port, 1, 65535, "a port is 1 to 65535"),
        web_config=Path(web_config) if web_config else None,
    )


def _safety(t: Table) -> SafetySettings:
    t.unknown_keys()
    d = SafetySettings()
    protect: list[IPNetwork] = []
    raw = t.typed("protect", (list,), 'an array of addresses and prefixes, like ["192.0.2.10", "2001:db8::/32"]')
    for i, item in enumerate(raw or []):
        loc = (*t.loc, "protect", i)
        if not isinstance(item, str):
            t.check.error(loc, f"{t.name('protect')} entries must be strings, got {show(item)}")
            continue
        try:
            protect.append(config_rules.network(item))
        except ValueError as exc:
            t.check.error(loc, f"{t.name('protect')} entry {exc}")
    return SafetySettings(
        protect=tuple(protect),
        protect_ssh_client=t.boolean("protect_ssh_client", d.protect_ssh_client),
        protect_host_addresses=t.boolean("protect_host_addresses", d.protect_host_addresses),
    )


def _console(t: Table) -> ConsoleSettings:
    t.unknown_keys()
    d = ConsoleSettings()
    return ConsoleSettings(
        refresh_secs=t.number("refresh_secs", d.refresh_secs, 0.1, 60),
        theme=t.string("theme", d.theme, nonempty=True),
    )


__all__ = [
    "ACTIONS",
    "AutoBlockLimits",
    "MAX_DEPTH",
    "MAX_DESCRIPTION_CHARS",
    "MAX_FILE_BYTES",
    "MAX_ID_CHARS",
    "MAX_RULES",
    "XDP_MODES",
    "ConfigError",
    "ConfigIssue",
    "ConsoleSettings",
    "EbpfSettings",
    "GeneralSettings",
    "MetricsSettings",
    "PortScanConfig",
    "SafetySettings",
    "Settings",
    "SynFloodConfig",
    "load",
    "loads",
    "read_text",
]
