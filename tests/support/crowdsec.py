"""A real CrowdSec Local API for tests: the distribution's ``crowdsec`` run as the LAPI alone.

``Lapi.start(tmp)`` writes a config into a temporary directory (sqlite database there, no Central
API, no agent, no Prometheus, listening on 127.0.0.1 on a free port) and runs ``crowdsec -c CONF
-no-cs``; ``cscli`` calls go through the same config.  ``stop()`` kills it; the ``lapi`` fixture
(tests/conftest.py) always stops it and removes the directory.  The package is installed by
scripts/setup.sh (PLATFORM.md: offline install, no systemd).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from support.metrics_lab import free_port

CROWDSEC = "/usr/bin/crowdsec"
CSCLI = "/usr/bin/cscli"
PROFILES = Path("/etc/crowdsec/profiles.yaml")
READY_TIMEOUT = 60.0


def available() -> str | None:
    """Why the LAPI cannot run here, or None."""
    for path in (CROWDSEC, CSCLI, str(PROFILES)):
        if not Path(path).exists():
            return f"{path} is missing: run scripts/setup.sh (installs the crowdsec package)"
    return None


class Lapi:
    """One LAPI process and its directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.conf = root / "config.yaml"
        self.log = root / "crowdsec.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._write_config()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def _write_config(self) -> None:
        r = self.root
        (r / "hub").mkdir(exist_ok=True)
        (r / "hub" / ".index.json").write_text("{}")
        (r / "data").mkdir(exist_ok=True)
        (r / "acquis.yaml").write_text("")
        (r / "simulation.yaml").write_text("simulation: false\n")
        (r / "local_api_credentials.yaml").write_text("")
        conf = {
            "common": {"daemonize": False, "log_media": "stdout", "log_level": "info", "working_dir": str(r)},
            "config_paths": {
                "config_dir": str(r),
                "data_dir": str(r / "data"),
                "simulation_path": str(r / "simulation.yaml"),
                "hub_dir": str(r / "hub"),
                "index_path": str(r / "hub" / ".index.json"),
            },
            "crowdsec_service": {"acquisition_path": str(r / "acquis.yaml")},
            "cscli": {"output": "human"},
            "db_config": {"type": "sqlite", "db_path": str(r / "crowdsec.db"), "use_wal": True},
            "api": {
                "client": {"insecure_skip_verify": False, "credentials_path": str(r / "local_api_credentials.yaml")},
                "server": {"listen_uri": f"127.0.0.1:{self.port}", "profiles_path": str(PROFILES)},
            },
            "prometheus": {"enabled": False},
        }
        self.conf.write_text(json.dumps(conf))  # JSON is YAML

    # --- the process ---------------------------------------------------------------
    def start(self) -> None:
        assert self.proc is None
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [CROWDSEC, "-c", str(self.conf), "-no-cs"], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"crowdsec exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                httpx.get(f"{self.url}v1/decisions", timeout=1.0)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"the LAPI did not answer within {READY_TIMEOUT} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait(timeout=15)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    # --- cscli ------------------------------------------------------------------------
    def cscli(self, *args: str, timeout: float = 120.0) -> str:
        done = subprocess.run(
            [CSCLI, "-c", str(self.conf), *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"cscli {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def import_decisions(self, path: Path, tries: int = 5) -> str:
        """``cscli decisions import -i PATH``; retried when sqlite says "database is locked" (crowdsec 1.4's
        import can meet a bouncer's pull holding the database)."""
        for attempt in range(tries):
            try:
                return self.cscli("decisions", "import", "-i", str(path), timeout=600.0)
            except RuntimeError as exc:
                if "database is locked" not in str(exc) or attempt == tries - 1:
                    raise
                time.sleep(1.0)
        raise AssertionError("unreachable")

    def add_bouncer(self, name: str = "ironpost") -> Path:
        """A bouncer's API key, in a file of mode 0600 (what ``[crowdsec] api_key_file`` names)."""
        key = self.cscli("bouncers", "add", name, "-o", "raw").strip()
        path = self.root / f"bouncer-{name}.key"
        path.write_text(key + "\n")
        path.chmod(0o600)
        return path

    def add_machine(self, name: str) -> Path:
        """A machine's credentials file (login, password, url), as ``cscli machines add -f`` writes it."""
        path = self.root / f"machine-{name}.yaml"
        self.cscli("machines", "add", name, "--auto", "-f", str(path), "--force")
        path.chmod(0o600)
        return path

    def decisions(self) -> list[dict[str, Any]]:
        out = self.cscli("decisions", "list", "-a", "-o", "json").strip()
        alerts = json.loads(out) if out and out != "null" else []
        return [d for a in alerts or [] for d in a.get("decisions") or []]

    def alerts(self) -> list[dict[str, Any]]:
        out = self.cscli("alerts", "list", "-a", "-o", "json").strip()  # -a: every origin (machines too)
        return list(json.loads(out) or []) if out and out != "null" else []


def make_lapi(machine: str = "tests") -> tuple[Lapi, Path]:
    """A started LAPI in a new temporary directory, with a machine registered for cscli (its
    ``decisions add`` needs one); the caller stops it and removes the directory (see the fixture)."""
    root = Path(tempfile.mkdtemp(prefix="ironpost-lapi-"))
    root.chmod(0o700)
    try:
        lapi = Lapi(root)
        lapi.start()
        lapi.cscli("machines", "add", machine, "--auto", "-f", str(lapi.root / "local_api_credentials.yaml"), "--force")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return lapi, root
