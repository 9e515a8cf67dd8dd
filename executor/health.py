"""`--health-port`: /health and /status as JSON on 127.0.0.1 (never on a public interface).

The executor's loop publishes a status document after every tick; the HTTP thread only reads
that document, so it never touches the ledger connection.
"""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return obj


def to_json(doc: dict) -> str:
    return json.dumps(_clean(doc), sort_keys=True, allow_nan=False)


class HealthServer:
    def __init__(self, port: int) -> None:
        self._doc: dict[str, Any] = {"mode": "paper", "started": False}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((HOST, port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def publish(self, doc: dict[str, Any]) -> None:
        with self._lock:
            self._doc = doc

    def document(self) -> dict[str, Any]:
        with self._lock:
            return self._doc

    def health(self) -> tuple[int, dict[str, Any]]:
        """200 while candles arrive in time and trading is allowed; 503 when the feed is stale,
        has not started, or the kill-switch file exists (no new entry is taken)."""
        d = self.document()
        halts = d.get("halts", {})
        path = halts.get("kill_file_path")  # looked at now: a person may have just created it
        kill_file = Path(path).exists() if path else bool(halts.get("kill_file", False))
        ok = bool(d.get("started")) and not d.get("feed_stale", False) and not kill_file
        return (200 if ok else 503), {
            "ok": ok, "mode": d.get("mode"), "feed": d.get("feed"),
            "last_candle": d.get("last_candle"), "feed_lag_seconds": d.get("feed_lag_seconds"),
            "feed_stale": d.get("feed_stale"), "feed_error": d.get("feed_error"),
            "kill_file": kill_file,
        }

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0].rstrip("/")
                if path == "/health":
                    code, body = server.health()
                elif path == "/status":
                    code, body = 200, server.document()
                else:
                    code, body = 404, {"error": f"no such endpoint {path!r}: use /health or /status"}
                data = to_json(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def close(self) -> None:
        """Release the port of a server that was never started."""
        self._server.server_close()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
