"""A real headless Chromium for tests, driven over the DevTools protocol (a tiny CDP client on
websocket-client, which the Hyperliquid SDK already installs): open a local page, collect
console errors, uncaught exceptions and every network request, evaluate JavaScript, and take
a full-page screenshot. `find()` is None when no Chromium is installed."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--mute-audio", "--remote-debugging-port=0",
         "--window-size=1400,1000")


def find() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class Page:
    errors: list[str] = field(default_factory=list)  # console.error, exceptions, Log errors
    requests: list[str] = field(default_factory=list)  # every URL the page asked for


class Browser:
    def __init__(self, binary: str, timeout: float = 60.0) -> None:
        import websocket

        self.profile = tempfile.mkdtemp(prefix="hlq-chromium-")
        self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not port_file.exists() or len(port_file.read_text().split()) < 2:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start (no DevToolsActivePort)")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(url, timeout=timeout, suppress_origin=True)
        self.timeout, self.next_id, self.page = timeout, 0, Page()

    def _event(self, msg: dict) -> None:
        method, p = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.page.errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
        elif method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            self.page.errors.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
        elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
            self.page.errors.append(p["entry"]["text"])
        elif method == "Network.requestWillBeSent":
            self.page.requests.append(p["request"]["url"])

    def call(self, method: str, wait_event: str | None = None, **params: Any) -> dict:
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        result, seen = None, wait_event is None
        deadline = time.monotonic() + self.timeout
        while result is None or not seen:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{method}: no answer in {self.timeout}s")
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                result = msg["result"]
            else:
                self._event(msg)
                seen = seen or msg.get("method") == wait_event
        return result

    def open(self, path: Path) -> Page:
        self.page = Page()
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.call(f"{domain}.enable")
        self.call("Page.navigate", wait_event="Page.loadEventFired", url=path.resolve().as_uri())
        self.eval("new Promise(r => setTimeout(r, 300))")  # let plotly finish its first draw
        return self.page

    def eval(self, expression: str) -> Any:
        res = self.call("Runtime.evaluate", expression=expression, awaitPromise=True,
                        returnByValue=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression[:60]}: {res['exceptionDetails'].get('text')}")
        return res["result"].get("value")

    def screenshot(self, path: Path, max_height: int = 7000) -> Path:
        h = int(self.eval("document.documentElement.scrollHeight"))
        self.call("Emulation.setDeviceMetricsOverride", width=1400, height=min(h, max_height),
                  deviceScaleFactor=1, mobile=False)
        self.eval("new Promise(r => setTimeout(r, 300))")
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)
