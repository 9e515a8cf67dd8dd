"""A local stand-in for Hyperliquid's `POST /info`, for tests that must not touch the network.

    server = FakeHyperliquid(coins=("BTC", "ETH"), now_ms=...)
    with server:                      # starts on 127.0.0.1, a random free port
        info = Info(server.url, skip_ws=True)
        ...
    # or, in a test module:  from fakes.hl_server import hl_server  (the pytest fixture)

What it answers, in Hyperliquid's format (HYPERLIQUID.md):
- `meta` / `metaAndAssetCtxs` (universe with name, szDecimals, maxLeverage, isDelisted; the
  contexts as strings: funding, openInterest (`open_interest`), markPx, oraclePx, midPx,
  premium, dayNtlVlm, impactPxs [bid, ask] (`impact_half`), prevDayPx), `spotMeta` (minimal
  valid: USDC and one pair), `allMids`;
- `l2Book`: {"coin", "time": now_ms, "levels": [bids best first, asks best first]}, 20 levels
  a side of {"px", "sz", "n"} (`book`), or the levels set in `books[coin]` (hand-made books);
- `candleSnapshot`: {"t", "T", "s", "i", "o", "c", "h", "l", "v", "n"} with prices as strings;
  only the latest `candle_window` candles per interval exist (5,000 like the real API) and the
  last one is still open (its close is the price at `now_ms`); a response holds at most
  `candle_cap` candles, earliest first (each sent twice with `repeat_rows`);
- `fundingHistory`: {"coin", "fundingRate", "premium", "time"} for each hour up to `now_ms`,
  `time` = the hour + a deterministic 1-999 ms jitter; at most `funding_cap` rows, earliest first.

Prices and rates are deterministic functions of (coin, time), so a test can compute what it
should receive (`candle`, `funding_record`). `now_ms` can be moved between calls (`advance`)
to make new candles close. Scripted faults (`fail`, `delay`) apply to the next matching
requests: an HTTP status instead of an answer (429, 500, ...) or a delay before answering
(pair it with a client timeout to simulate a timeout). Every request body is logged in
`requests` with the status it got.
"""

from __future__ import annotations

import json
import math
import threading
import time
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

HOUR_MS = 3_600_000
INTERVAL_MS = {
    "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
    "1h": HOUR_MS, "2h": 2 * HOUR_MS, "4h": 4 * HOUR_MS, "8h": 8 * HOUR_MS,
    "12h": 12 * HOUR_MS, "1d": 24 * HOUR_MS, "3d": 72 * HOUR_MS, "1w": 168 * HOUR_MS,
}
DEFAULT_NOW_MS = 1_735_689_600_000 + 30 * 60_000  # 2025-01-01 00:30 UTC: the 00:00 bar is open


@dataclass
class Fault:
    status: int = 0  # HTTP status to answer with instead (0: answer normally)
    delay: float = 0.0  # seconds to wait first
    times: int = 1  # how many matching requests it applies to
    match: str | None = None  # only requests whose "type" is this
    body: str = ""


def _fmt(x: float) -> str:
    return f"{x:.6g}"


class FakeHyperliquid:
    def __init__(self, coins=("BTC", "ETH"), now_ms: int = DEFAULT_NOW_MS, *,
                 delisted=(), listed_since: dict[str, int] | None = None,
                 funding_since_ms: int | None = None, candle_window: int = 5_000,
                 candle_cap: int = 5_000, funding_cap: int = 500) -> None:
        self.coins = tuple(coins)
        self.delisted = tuple(delisted)
        self.now_ms = now_ms
        self.listed_since = dict(listed_since or {})
        self.funding_since_ms = funding_since_ms
        self.candle_window, self.candle_cap, self.funding_cap = candle_window, candle_cap, funding_cap
        self.repeat_rows = False  # every candle row sent twice in its page (a misbehaving server)
        self.faults: list[Fault] = []
        self.books: dict[str, tuple[list, list]] = {}  # coin -> (bids, asks) of (px, sz), served as is
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- scripting -------------------------------------------------------------------
    def fail(self, status: int, times: int = 1, match: str | None = None, body: str = "") -> None:
        """The next `times` requests (of type `match`) get HTTP `status`."""
        self.faults.append(Fault(status=status, times=times, match=match, body=body))

    def delay(self, seconds: float, times: int = 1, match: str | None = None) -> None:
        """The next `times` requests (of type `match`) are answered after `seconds`."""
        self.faults.append(Fault(delay=seconds, times=times, match=match))

    def advance(self, hours: float) -> None:
        self.now_ms += int(hours * HOUR_MS)

    def count(self, kind: str, status: int = 200) -> int:
        return sum(1 for r in self.requests if r["body"].get("type") == kind and r["status"] == status)

    # ---- the market --------------------------------------------------------------------
    def _seed(self, coin: str) -> int:
        return zlib.crc32(coin.encode())

    def price(self, coin: str, t_ms: int) -> float:
        s = self._seed(coin)
        base = 10.0 ** (2 + s % 3)
        h = t_ms / HOUR_MS
        return float(_fmt(base * math.exp(0.05 * math.sin(h / 37.0 + s % 7)
                                          + 0.01 * math.sin(h / 3.1 + s % 5))))

    def first_bar(self, coin: str, interval: str) -> int:
        """Open time of the oldest candle served now (availability window and listing)."""
        step = INTERVAL_MS[interval]
        open_t = self.now_ms - self.now_ms % step
        first = open_t - (self.candle_window - 1) * step
        since = self.listed_since.get(coin)
        if since is not None:
            first = max(first, since - since % step + (step if since % step else 0))
        return first

    def candle(self, coin: str, interval: str, t: int) -> dict:
        """The candle opening at t as the API shows it now (partial when still open)."""
        step = INTERVAL_MS[interval]
        end = min(t + step, self.now_ms)
        o, c = self.price(coin, t), self.price(coin, end)
        frac = (end - t) / step
        return {
            "t": t, "T": t + step - 1, "s": coin, "i": interval,
            "o": _fmt(o), "c": _fmt(c),
            "h": _fmt(max(o, c) * 1.002), "l": _fmt(min(o, c) * 0.998),
            "v": _fmt((100.0 + (t // step) % 17) * frac), "n": int(50 + (t // step) % 29),
        }

    def funding_record(self, coin: str, hour_ms: int) -> dict:
        s = self._seed(coin)
        h = hour_ms // HOUR_MS
        rate = 1.25e-5 + 2.0e-5 * math.sin(h / 5.0 + s % 11)
        return {"coin": coin, "fundingRate": _fmt(rate), "premium": _fmt(8 * rate - 1e-4),
                "time": hour_ms + 1 + (h * 37 + s) % 999}

    def _candles(self, req: dict) -> list[dict]:
        coin, interval = req["coin"], req["interval"]
        step = INTERVAL_MS[interval]
        if coin not in self.coins + self.delisted:
            return []
        open_t = self.now_ms - self.now_ms % step
        lo = max(self.first_bar(coin, interval), -(-int(req["startTime"]) // step) * step)
        hi = min(open_t, int(req["endTime"]))
        rows = [self.candle(coin, interval, t) for t in range(lo, hi + 1, step)][: self.candle_cap]
        return [r for r in rows for _ in range(1 + self.repeat_rows)]

    def _funding(self, body: dict) -> list[dict]:
        coin = body["coin"]
        if coin not in self.coins + self.delisted:
            return []
        start = int(body["startTime"])
        end = min(int(body.get("endTime") or self.now_ms), self.now_ms)
        first = self.funding_since_ms
        if first is None:
            first = self.now_ms - self.now_ms % HOUR_MS - 10_000 * HOUR_MS
        if coin in self.listed_since:
            first = max(first, self.listed_since[coin])
        out = []
        h = max(first - first % HOUR_MS, start - start % HOUR_MS - HOUR_MS)
        while h <= end and len(out) < self.funding_cap:
            rec = self.funding_record(coin, h)
            if start <= rec["time"] <= end and h >= first:
                out.append(rec)
            h += HOUR_MS
        return out

    def _meta(self) -> dict:
        universe = [{"name": c, "szDecimals": 3, "maxLeverage": 20, "marginTableId": 20}
                    for c in self.coins]
        universe += [{"name": c, "szDecimals": 2, "maxLeverage": 3, "marginTableId": 3,
                      "isDelisted": True} for c in self.delisted]
        return {"universe": universe, "marginTables": []}

    def open_interest(self, coin: str, t_ms: int) -> float:
        """Open interest in coins: about $2M to $40M of notional, moving with the hour."""
        h = t_ms // HOUR_MS
        usd = 2e6 * 20 ** (0.5 + 0.5 * math.sin(h / 3.0 + self._seed(coin) % 7))
        return float(_fmt(usd / self.price(coin, t_ms)))

    def impact_half(self, coin: str) -> float:
        """Half the impact spread as a fraction of the mid: 0.5 to 8 bps by coin."""
        return (0.5 + self._seed(coin) % 16 / 2) * 1e-4

    def _ctx(self, coin: str) -> dict:
        p = self.price(coin, self.now_ms)
        px, half = _fmt(p), self.impact_half(coin)
        rate = self.funding_record(coin, self.now_ms - self.now_ms % HOUR_MS)["fundingRate"]
        return {"funding": rate, "openInterest": _fmt(self.open_interest(coin, self.now_ms)),
                "markPx": px, "oraclePx": px, "midPx": px, "premium": "0.0001",
                "dayNtlVlm": "1000000.0", "impactPxs": [_fmt(p * (1 - half)), _fmt(p * (1 + half))],
                "prevDayPx": _fmt(self.price(coin, self.now_ms - 24 * HOUR_MS))}

    def book(self, coin: str) -> tuple[list, list]:
        """20 levels a side around the price now, one tick (1e-4 of it) apart, sizes 1 to 4."""
        p, h, s = self.price(coin, self.now_ms), self.now_ms // HOUR_MS, self._seed(coin)
        tick = p * 1e-4
        size = [1.0 + ((s + 7 * i + h) % 13) / 4 for i in range(40)]
        bids = [(p - tick * (i + 0.5), size[i]) for i in range(20)]
        asks = [(p + tick * (i + 0.5), size[20 + i]) for i in range(20)]
        return bids, asks

    def _l2(self, coin: str) -> dict | None:
        if coin not in self.coins:
            return None
        bids, asks = self.books.get(coin) or self.book(coin)
        side = [[{"px": _fmt(px), "sz": _fmt(sz), "n": 1 + i % 3} for i, (px, sz) in enumerate(lv)]
                for lv in (bids, asks)]
        return {"coin": coin, "time": self.now_ms, "levels": side}

    def answer(self, body: dict):
        kind = body.get("type")
        if kind == "meta":
            return self._meta()
        if kind == "spotMeta":
            return {"universe": [{"name": "PURR/USDC", "tokens": [1, 0], "index": 0,
                                  "isCanonical": True}],
                    "tokens": [{"name": "USDC", "szDecimals": 8, "weiDecimals": 8, "index": 0,
                                "tokenId": "0x" + "0" * 32, "isCanonical": True},
                               {"name": "PURR", "szDecimals": 0, "weiDecimals": 5, "index": 1,
                                "tokenId": "0x" + "1" * 32, "isCanonical": True}]}
        if kind == "metaAndAssetCtxs":
            return [self._meta(), [self._ctx(c) for c in self.coins + self.delisted]]
        if kind == "allMids":
            return {c: _fmt(self.price(c, self.now_ms)) for c in self.coins}
        if kind == "candleSnapshot":
            return self._candles(body["req"])
        if kind == "fundingHistory":
            return self._funding(body)
        if kind == "l2Book":
            return self._l2(body.get("coin"))
        return None

    def _take_fault(self, kind: str | None) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.match is None or f.match == kind:
                    f.times -= 1
                    if f.times <= 0:
                        self.faults.remove(f)
                    return f
        return None

    # ---- the HTTP server ---------------------------------------------------------------
    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _send(self, status: int, text: str, ctype: str = "application/json") -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                fault = fake._take_fault(body.get("type")) if self.path == "/info" else None
                if fault and fault.delay:
                    time.sleep(fault.delay)
                if self.path != "/info":
                    status, text = 404, "Not Found"
                elif fault and fault.status:
                    status = fault.status
                    text = fault.body or ("Too Many Requests" if status == 429
                                          else "Internal Server Error")
                else:
                    result = fake.answer(body)
                    status, text = (422, "Failed to deserialize the JSON body into the target type") \
                        if result is None else (200, json.dumps(result))
                with fake._lock:
                    fake.requests.append({"body": body, "status": status})
                try:
                    self._send(status, text, "application/json" if status == 200 else "text/plain")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout)

        return Handler

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake server is not running: use `with server:` or start()")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> str:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> FakeHyperliquid:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@pytest.fixture
def hl_server():
    """A running FakeHyperliquid (BTC, ETH) for one test; stopped afterwards."""
    server = FakeHyperliquid()
    with server:
        yield server
