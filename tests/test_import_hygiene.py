"""The engine and the headless path never import the UI libraries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.common import REPO

CORE = [
    "ironpost_tui.engine.engine",
    "ironpost_tui.engine.headless",
    "ironpost_tui.cli",
    "ironpost_tui.kernel.cleanup",
    "ironpost_tui.config.settings",
    "ironpost_tui.kernel.datapath",
    "ironpost_tui.rules.table",
    "ironpost_tui.metrics.collector",
    "ironpost_tui.metrics.endpoint",
    "ironpost_tui.metrics.server",
    "ironpost_tui.metrics.web_config",
    "ironpost_tui.metrics.log_format",
]
UI = ("textual", "rich", "plotext")


def test_core_imports_no_textual_or_rich() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE)
        + "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich', 'plotext'))\n"
        + "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"core modules pulled in UI libraries: {out.stdout.strip()}"


# The headless path for real, in a fresh interpreter: options parsed, configuration loaded, log
# format set, web config read, metrics endpoint bound and scraped, BCC imported; it ends at
# Engine.start() on an interface that does not exist (exit 6), before anything is attached.
HEADLESS_RUN = """
import json, socket, sys, threading, urllib.request
from ironpost_tui import cli
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
tmp = sys.argv[1]
scraped = []
from ironpost_tui import engine
real_start = engine.Engine.start
def start(self):
    scraped.append(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode())
    return real_start(self)
engine.Engine.start = start
rc = cli.main(["ipx-nonexistent", "--headless", "--config", tmp + "/c.toml", "--state-dir", tmp,
               "--audit-log", tmp + "/audit.log", "--metrics-port", str(port), "--log-format", "json",
               "--web-config", tmp + "/web.yml"])
print(json.dumps({"rc": rc, "modules": sorted(sys.modules), "scraped": scraped}))
"""


@pytest.mark.root  # the run path starts with a privilege check
def test_the_headless_run_path_imports_no_ui(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text('[general]\nlog_format = "text"\n')
    (tmp_path / "web.yml").write_text("http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
    proc = subprocess.run([sys.executable, "-c", HEADLESS_RUN, str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rc"] == 6, proc.stdout + proc.stderr  # no such interface: after the endpoint, before attaching
    assert "ironpost_build_info" in result["scraped"][0]
    modules = set(result["modules"])
    assert {"bcc", "prometheus_client", "yaml", "ironpost_tui.metrics.server", "ironpost_tui.engine.engine"} <= modules
    bad = sorted(m for m in modules if m.split(".")[0] in UI)
    assert bad == [], f"the headless path pulled in UI libraries: {bad}"
