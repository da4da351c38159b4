"""The sensor: detectors' raised alerts pushed to the LAPI with a ban for their source.

The same guards as auto-block (rules/auto_block.py), with a policy of its own: infrastructure and the
anti-lockout protections are never pushed, a many-sources incident pushes nothing, and the caps
(max_blocks_per_minute, max_auto_blocks as bans pushed and not expired, max_incident_sources) hold.
``offer`` runs on the tick and only queues; a thread logs in (POST /v1/watchers/login, a JWT) and posts
(POST /v1/alerts), retrying with backoff; the queue is bounded, its oldest alert dropped when full.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ironpost_tui.config.crowdsec import CrowdSecSettings
from ironpost_tui.detectors.alerts import Alert
from ironpost_tui.detectors.settings import AutoBlockLimits
from ironpost_tui.engine.crowdsec.alert_payload import payload
from ironpost_tui.engine.crowdsec.lapi import LapiClient, LapiError
from ironpost_tui.rules.auto_block import AutoBlockPolicy, Refusal
from ironpost_tui.rules.infrastructure import InfraAddress

log = logging.getLogger(__name__)

QUEUE_MAX = 1_000
MAX_BACKOFF = 60.0


class Sensor:
    def __init__(
        self,
        settings: CrowdSecSettings,
        client: LapiClient,
        credentials: tuple[str, str],
        limits: AutoBlockLimits,
        infrastructure: Callable[[str, float], InfraAddress | None],
    ) -> None:
        self.settings = settings
        self._client = client
        self._login, self._password = credentials
        self.policy = AutoBlockPolicy(limits, infrastructure)
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(QUEUE_MAX)
        self._pushed: deque[float] = deque()  # monotonic expiry of each ban pushed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._machine = socket.gethostname()
        self.sent = 0
        self.failed = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="crowdsec-sensor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.timeout + 1)
        self._client.close()

    # --- on the tick ------------------------------------------------------------------
    def offer(self, raised: Sequence[Alert], now: float) -> None:
        """Queue the raised alerts the policy allows (``now``: monotonic seconds)."""
        while self._pushed and self._pushed[0] <= now:
            self._pushed.popleft()
        for alert in raised:
            decision = self.policy.decide(alert, now, len(self._pushed))
            if decision.incident is not None:
                log.warning("CrowdSec push stopped: %s", decision.incident, extra={"event": "crowdsec_push_stopped"})
            if not decision.block:
                if decision.refusal is Refusal.INFRASTRUCTURE:
                    log.warning("alert on %s not pushed to CrowdSec: %s", alert.source, decision.why_not)
                continue
            item = payload(alert, self.settings.ban_duration, self._machine)
            if self._queue.full():
                self._queue.get_nowait()
                log.warning("CrowdSec push queue full: the oldest alert dropped")
            self._queue.put_nowait(item)
            self.policy.blocked(alert, now)
            self._pushed.append(now + self.settings.ban_duration)

    # --- the sender thread ----------------------------------------------------------------
    def _run(self) -> None:
        backoff = 1.0
        batch: list[dict[str, Any]] = []
        while not self._stop.is_set():
            if not batch:
                try:
                    batch = [self._queue.get(timeout=0.2)]
                except queue.Empty:
                    continue
                while len(batch) < 100:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
            try:
                if not self._client.logged_in:
                    self._client.login(self._login, self._password)
                self._client.push_alerts(batch)
            except LapiError as exc:
                self.failed += 1
                log.warning("pushing %d alert(s) to CrowdSec failed (%s): retrying in %g s", len(batch), exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            except Exception:
                log.exception("pushing alerts to CrowdSec failed")
                self._stop.wait(backoff)
                continue
            self.sent += len(batch)
            log.info("pushed %d alert(s) to CrowdSec: %s", len(batch), ", ".join(a["source"]["value"] for a in batch))
            batch = []
            backoff = 1.0
            time.sleep(0)
