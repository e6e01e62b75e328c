"""Push instead of poll: an HTTP endpoint for S3/MinIO bucket notifications that re-checks the zones they touch.

    tuneflow relay --zones deployments/landing.yaml --port 8790
    # MinIO:  mc admin config set ALIAS notify_webhook:tuneflow endpoint=http://HOST:8790/ auth_token=TOKEN
    #         mc event add ALIAS/landing arn:minio:sqs::tuneflow:webhook --event put,delete
    # AWS S3: an SNS topic with an HTTPS subscription, or EventBridge API destination, to this endpoint

A notification only says "something changed under this zone": the relay then looks at the zone
exactly as the polling sensor does (marker or settle time, content identity, event id), so push
and poll never disagree and a burst of per-object notifications emits one landed event.
"""

from __future__ import annotations

import hmac
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from flows.landing import look_once
from tasks.arrival.notifications import object_urls, zones_touched
from tasks.arrival.zones import LandingZone
from tasks.errors import TuneflowError

MAX_BODY = 1 << 20


class Relay:
    """Zones to re-check: at once on a notification, then again when their settle time is up."""

    def __init__(self, zones: list[LandingZone], zones_file: str | None, store: str | None = None, log=print) -> None:
        self.zones, self.zones_file, self.store, self.log = zones, zones_file, store, log
        self._due: dict[str, float] = {}  # zone name -> when to look again
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def notify(self, body: bytes) -> int:
        """Handle one notification body; returns how many zones it touched."""
        touched = zones_touched(self.zones, object_urls(body))
        self._look(touched)
        return len(touched)

    def _look(self, zones: list[LandingZone]) -> None:
        if not zones:
            return
        with self._lock:  # one look at a time: the zone state file is read, updated and written
            for zone, check in look_once(zones, self.zones_file, self.store):
                self.log(f"zone {zone.name}: {check.status}")
                if check.status.startswith(("settling", "in progress")):
                    self._due[zone.name] = time.time() + max(zone.settle_seconds, 1.0)
                else:
                    self._due.pop(zone.name, None)

    def run_timers(self) -> None:
        """Re-look at zones whose settle time is up (a thread, until stop())."""
        while not self._stop.wait(1.0):
            now = time.time()
            with self._lock:
                due = [z for z in self.zones if self._due.get(z.name, now + 1) <= now]
            self._look(due)

    def stop(self) -> None:
        self._stop.set()


def serve(relay: Relay, host: str, port: int, token: str | None = None) -> ThreadingHTTPServer:
    """An HTTP server feeding `relay`; POST a notification to any path. Bearer `token` required if set."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            if token and not hmac.compare_digest(self.headers.get("Authorization", ""), f"Bearer {token}"):
                return self._reply(401, "bad or missing token")
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                return self._reply(413, "notification too large")
            try:
                touched = relay.notify(self.rfile.read(length))
            except TuneflowError as exc:
                relay.log(f"notification refused: {exc}")
                return self._reply(400, str(exc))
            self._reply(200, f"{touched} zone(s) checked")

        def _reply(self, code: int, text: str) -> None:
            body = (text + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # the relay logs what it decided, not every request
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=relay.run_timers, daemon=True, name="relay-timers").start()
    return server


def token_from_env() -> str | None:
    return os.environ.get("TUNEFLOW_RELAY_TOKEN") or None
