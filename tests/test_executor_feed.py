"""The live feed through the real SDK client against a local fake Hyperliquid on 127.0.0.1.

Time is the fake server's: every sleep of the feed (poll waits, retry backoff) advances it, so
hours of polling run in a second. Normal polling, an HTTP 500, a timeout, a gap in one coin's
candles and a long outage: no crash, no duplicate rows, and the stale-feed guard engages during
the outage and releases when fresh candles arrive.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
from _executor_helpers import every_bucket, ledger_table, write_candidates
from fakes.hl_server import DEFAULT_NOW_MS, HOUR_MS, FakeHyperliquid

from executor.health import HealthServer
from executor.runner import Loop, PaperOptions, open_paper, run
from harness import store as st

T0 = pd.Timestamp(DEFAULT_NOW_MS - DEFAULT_NOW_MS % HOUR_MS, unit="ms", tz="UTC")  # 2025-01-01 00:00
GAP = T0 + pd.Timedelta(hours=5)


class GappyFake(FakeHyperliquid):
    """Never serves ETH's candle opening at GAP (a hole in the exchange's history)."""

    def _candles(self, req: dict) -> list[dict]:
        return [c for c in super()._candles(req)
                if not (c["s"] == "ETH" and c["t"] == int(GAP.value // 1_000_000))]


def _get(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _until(engine, feed, opts, health, last: pd.Timestamp, max_ticks: int = 400) -> None:
    loop = Loop()

    def stop(e, n) -> None:
        if e.last_ts >= last:
            loop.stop = True

    run(engine, feed, opts, loop, health, on_bar=stop, max_ticks=max_ticks)
    assert engine.last_ts == last


def test_polling_faults_gap_and_stale_guard(tmp_path):
    fake = GappyFake(coins=("BTC", "ETH"))
    with fake:
        opts = PaperOptions(candidates=write_candidates(tmp_path / "c.json",
                                                        every_bucket("ema_pullback", ("BTC", "ETH"))),
                            ledger=tmp_path / "p.sqlite", feed="hyperliquid", base_url=fake.url,
                            warmup_bars=300, poll_seconds=300, results=None,
                            store=str(tmp_path / "store"))
        engine, feed = open_paper(opts, now_ms=lambda: fake.now_ms,
                                  sleep=lambda s: fake.advance(s / 3600), timeout=0.5, max_tries=2,
                                  backoff=1.0, weight_per_minute=10**6)
        health = HealthServer(0).start()
        try:
            led = engine.ledger
            assert engine.settings.first_bar == T0  # the bar still open at start is the first traded
            assert len(ledger_table(led.path, "candles", "ts")) == 2 * 300

            # normal polling: a bar per hour, handed over once it closed
            _until(engine, feed, opts, health, T0 + pd.Timedelta(hours=2))
            assert _get(health.port, "/health")[0] == 200

            # an HTTP 500: retried, the bar arrives
            fake.fail(500, times=1, match="candleSnapshot")
            _until(engine, feed, opts, health, T0 + pd.Timedelta(hours=3))
            assert fake.count("candleSnapshot", 500) == 1

            # a timeout (the server answers after the client gave up): retried, the bar arrives
            fake.delay(1.5, times=1, match="candleSnapshot")
            _until(engine, feed, opts, health, T0 + pd.Timedelta(hours=4))
            assert feed.client.retries == 2  # the 500 and the timeout, each retried once

            # a gap: ETH has no 05:00 candle; the bar is processed without it once ETH moved on
            _until(engine, feed, opts, health, T0 + pd.Timedelta(hours=6))
            bars = ledger_table(led.path, "bars", "ts")
            assert bars.set_index("ts").loc["2025-01-01T05:00:00Z", "n_candles"] == 1
            eth = ledger_table(led.path, "candles", "ts").query("coin == 'ETH'")
            assert "2025-01-01T05:00:00Z" not in set(eth.ts)
            m = engine.window.market(engine._row(engine.last_ts) + 1)
            assert not m.listed[engine._row(GAP), m.coin_index("ETH")]
            assert m.listed[engine._row(GAP), m.coin_index("BTC")]
            assert not bars.stale.any() and not any(
                ledger_table(led.path, "events", "id").kind == "feed_error")

            # an outage of three hours: every request fails, the feed goes stale
            fake.fail(500, times=10**6)
            run(engine, feed, opts, Loop(), health, max_ticks=40)
            assert engine.last_ts == T0 + pd.Timedelta(hours=6)
            code, doc = _get(health.port, "/health")
            assert code == 503 and doc["feed_stale"] and "500" in doc["feed_error"]
            status = _get(health.port, "/status")[1]
            assert status["halts"]["stale_feed"] is False and status["last_candle"].startswith("2025-01-01T06")

            # recovery: the missed bars arrive at once; those older than two intervals are stale
            fake.faults.clear()
            newest = pd.Timestamp(fake.now_ms - fake.now_ms % HOUR_MS, unit="ms", tz="UTC") - pd.Timedelta(hours=1)
            _until(engine, feed, opts, health, newest)
            bars = ledger_table(led.path, "bars", "ts")
            caught_up = bars[pd.to_datetime(bars.ts) > T0 + pd.Timedelta(hours=6)]
            assert len(caught_up) >= 3 and caught_up.stale.iloc[:-1].all() and not caught_up.stale.iloc[-1]
            assert _get(health.port, "/health")[0] == 200
            kinds = ledger_table(led.path, "events", "id").kind.tolist()
            assert kinds.index("feed_error") < kinds.index("stale_feed") < kinds.index("feed_ok")

            # no duplicates, no holes: one row per hour everywhere
            hours = pd.date_range(T0, newest, freq="h", tz="UTC")
            assert list(pd.to_datetime(bars.ts)) == list(hours)
            assert len(ledger_table(led.path, "equity", "ts")) == len(hours)
            candles = ledger_table(led.path, "candles", "coin, ts")
            assert not candles.duplicated(["coin", "ts"]).any()
            assert (candles.coin == "BTC").sum() == 300 + len(hours)
            assert (candles.coin == "ETH").sum() == 300 + len(hours) - 1
            fr = ledger_table(led.path, "funding_rates", "coin, ts")
            assert not fr.duplicated(["coin", "ts"]).any() and len(fr) >= 2 * (300 + len(hours) - 1)
            # the funding records match what the server says, floored to the hour
            btc = fr[fr.coin == "BTC"].set_index("ts").funding_rate
            ms = int(T0.value // 1_000_000)
            assert abs(btc["2025-01-01T00:00:00Z"] - float(fake.funding_record("BTC", ms)["fundingRate"])) < 1e-15

            # a snapshot of its coins' contexts and books with every batch of bars, one per
            # coin and hour, in the ledger and in the store, the outage hours missing
            ctx = ledger_table(led.path, "asset_ctxs", "coin, ts")
            books = ledger_table(led.path, "books", "coin, ts, side, level")
            assert set(ctx.coin) == {"BTC", "ETH"} and not ctx.duplicated(["coin", "ts"]).any()
            hours_seen = set(ctx.ts[ctx.coin == "BTC"])
            assert 6 <= len(hours_seen) < len(hours) + 1  # none recorded while the API was down
            assert len(books) == 40 * len(ctx)  # 20 levels a side per snapshot
            row = ctx.iloc[0]
            taken = int(pd.Timestamp(row.time).value // 1_000_000)
            assert row.open_interest == pytest.approx(fake.open_interest(row.coin, taken), rel=1e-5)
            stored = st.read_asset_ctxs(tmp_path / "store")
            assert len(stored) == len(ctx) and len(st.read_books(tmp_path / "store")) == len(books)
            np.testing.assert_allclose(stored.sort_values(["coin", "ts"]).open_interest,
                                       ctx.open_interest)

            # a malformed book: the bar still trades, the snapshot is not kept, the error logged
            fake.fail(200, times=1, match="l2Book", body='{"coin": "ETH"}')
            _until(engine, feed, opts, health, newest + pd.Timedelta(hours=1))
            assert len(ledger_table(led.path, "asset_ctxs", "coin, ts")) == len(ctx)
            events = ledger_table(led.path, "events", "id")
            assert events.message[events.kind == "feed_error"].str.contains(
                "snapshot not recorded: Hyperliquid l2Book").any()
        finally:
            health.stop()
            engine.ledger.close()
