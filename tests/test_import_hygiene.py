"""The engine and the headless path never import the UI libraries, and the layering contract holds."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.common import REPO

CORE = [
    "ironpost_tui.engine.engine",
    "ironpost_tui.engine.headless",
    "ironpost_tui.engine.supervisor",
    "ironpost_tui.engine.reload",
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
    "ironpost_tui.ctl.commands",
    "ironpost_tui.engine.control_socket.server",
    "ironpost_tui.engine.control_socket.desk",
    "ironpost_tui.triage.rates",
    "ironpost_tui.triage.reader",
    "ironpost_tui.triage.json_form",
    "ironpost_tui.records.top_codec",
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
# format set, web config read, metrics endpoint bound and scraped, the program compiled (BCC) or loaded
# from the compiled-program cache (no BCC); it ends at
# Engine.start() on an interface that does not exist (exit 6), before anything is attached.
HEADLESS_RUN = """
import json, socket, sys, threading, urllib.request
from ironpost_tui import cli
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
tmp = sys.argv[1]
scraped = []
from ironpost_tui.engine import engine
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
    ran = {"ironpost_tui.kernel.program_cache", "prometheus_client", "yaml", "ironpost_tui.metrics.server"}
    assert ran | {"ironpost_tui.engine.engine"} <= modules
    bad = sorted(m for m in modules if m.split(".")[0] in UI)
    assert bad == [], f"the headless path pulled in UI libraries: {bad}"
    # No [crowdsec]: its HTTP client is not imported (some 20 ms of a start), though the engine is.
    assert "httpx" not in modules and "ironpost_tui.engine.crowdsec.lapi" not in modules


# The layering contract: import-linter's contracts in pyproject.toml ([tool.importlinter]): the layers from
# cli down to errors/model, and no Textual, Rich or plotext outside ironpost_tui.ui.  Static: no root.
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
LAYERS = "Layers: a module imports only from its own layer and those below"
CORE_NO_UI = "Core: no Textual, Rich or plotext, directly or through another module"
CLI_NO_UI = "CLI: Textual, Rich and plotext only through ironpost_tui.ui"
CONTRACTS = (LAYERS, CORE_NO_UI, CLI_NO_UI)


def lint_imports(cwd: Path, config: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports on the package under cwd (it puts cwd first on sys.path), without a cache."""
    env = {**os.environ, "PYTHONPATH": str(cwd), "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(config), "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_lint_imports_keeps_every_contract() -> None:
    proc = lint_imports(REPO, REPO / "pyproject.toml")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in out, out
    for contract in CONTRACTS:
        assert re.search(rf"^{re.escape(contract)} KEPT\b", out, re.M), out


# (file to edit, line put first, the contract it breaks, the import the report names)
WRONG_IMPORTS = {
    "upward": ("kernel/abi.py", "import ironpost_tui.engine.engine", LAYERS,
               "ironpost_tui.kernel.abi -> ironpost_tui.engine.engine (l.1)"),
    "sibling": ("metrics/collector.py", "import ironpost_tui.records.export", LAYERS,
                "ironpost_tui.metrics.collector -> ironpost_tui.records.export (l.1)"),
    "textual in the core": ("detectors/window.py", "import textual", CORE_NO_UI,
                            "ironpost_tui.detectors.window -> textual (l.1)"),
    "rich in the cli": ("cli.py", "import rich", CLI_NO_UI, "ironpost_tui.cli -> rich (l.1)"),
}  # fmt: skip


@pytest.mark.parametrize("case", WRONG_IMPORTS)
def test_lint_imports_fails_on_a_wrong_import(tmp_path: Path, case: str) -> None:
    """Negative control: a copy of the package (clean at first) with one wrong import added breaks
    exactly the contract that forbids it, and the report names that import."""
    path, line, contract, named = WRONG_IMPORTS[case]
    shutil.copytree(REPO / "ironpost_tui", tmp_path / "ironpost_tui", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    clean = lint_imports(tmp_path, tmp_path / "pyproject.toml")
    assert clean.returncode == 0, clean.stdout + clean.stderr

    module = tmp_path / "ironpost_tui" / path
    module.write_text(f"{line}  # noqa: F401\n" + module.read_text())
    proc = lint_imports(tmp_path, tmp_path / "pyproject.toml")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert f"Contracts: {len(CONTRACTS) - 1} kept, 1 broken." in out, out
    assert re.search(rf"^{re.escape(contract)} BROKEN\b", out, re.M), out
    assert re.search(rf"^-\s+{re.escape(named)}$", out, re.M), out  # listed as an import chain of its own
