"""harness.hl_sync through the REAL SDK `Info` client against the local fake /info server."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fakes.hl_server import HOUR_MS, FakeHyperliquid, hl_server  # noqa: F401  (fixture)

from harness import hl_sync
from harness import store as st
from harness.errors import DataError


class FakeTime:
    """Injectable clock + sleep: sleeping advances the clock, nothing really waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def run_sync(server: FakeHyperliquid, store: Path, coins=("BTC",), fake: FakeTime | None = None,
             now_ms=None, **kw) -> hl_sync.SyncReport:
    """A sync whose clock is the server's (or `now_ms`: a local clock that disagrees)."""
    fake = fake or FakeTime()
    return hl_sync.sync(store, list(coins), base_url=server.url,
                        now_ms=now_ms or (lambda: server.now_ms),
                        sleep=fake.sleep, clock=fake.clock, **kw)


def small(coins=("BTC",), **kw) -> FakeHyperliquid:
    """A server with a 300-candle window and 300 hours of funding: quick to sync."""
    server = FakeHyperliquid(coins=coins, candle_window=300, **kw)
    server.funding_since_ms = server.now_ms - 300 * HOUR_MS
    return server


def tree_hash(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def expected_candles(server: FakeHyperliquid, coin: str, interval="1h") -> pd.DataFrame:
    """What the store must hold: every served candle except the still-open one."""
    step = 3_600_000 if interval == "1h" else 4 * 3_600_000
    open_t = server.now_ms - server.now_ms % step
    rows = [server.candle(coin, interval, t)
            for t in range(server.first_bar(coin, interval), open_t, step)]
    return pd.DataFrame({
        "ts": pd.to_datetime([r["t"] for r in rows], unit="ms", utc=True),
        **{k: [float(r[s]) for r in rows] for k, s in (("open", "o"), ("high", "h"),
                                                        ("low", "l"), ("close", "c"),
                                                        ("volume", "v"))},
    })


def test_first_sync_pages_through_both_limits(tmp_path):
    server = FakeHyperliquid(coins=("BTC", "ETH"), candle_cap=1_200)
    with server:
        report = run_sync(server, tmp_path, coins=("BTC", "ETH"))
    # 4,999 closed candles of the 5,000 served: 5 pages of <= 1,200; funding 5,000 hours: 10+ pages
    assert server.count("candleSnapshot") == 2 * 5
    assert server.count("fundingHistory") >= 2 * 10
    assert [c.candles_added for c in report.coins] == [4_999, 4_999]
    for coin in ("BTC", "ETH"):
        got = st.read_candles(tmp_path, "1h", [coin])
        exp = expected_candles(server, coin)
        assert len(got) == 4_999 and got["ts"].is_unique
        for col in ("ts", "open", "high", "low", "close", "volume"):
            np.testing.assert_array_equal(got[col].to_numpy(), exp[col].to_numpy())
        fund = st.read_funding(tmp_path, [coin])
        assert fund["ts"].is_unique and (fund["ts"] == fund["ts"].dt.floor("h")).all()
        hours = fund["ts"].astype("int64") // 1_000_000
        rates = [float(server.funding_record(coin, int(h))["fundingRate"]) for h in hours]
        np.testing.assert_array_equal(fund["funding_rate"].to_numpy(), rates)  # never / 8
        assert fund["ts"].iloc[0] <= got["ts"].iloc[0]  # funding covers the candles
        assert fund["ts"].iloc[-1] == pd.Timestamp(server.now_ms - server.now_ms % HOUR_MS,
                                                   unit="ms", tz="UTC")
    assert report.requests == server.count("candleSnapshot") + server.count("fundingHistory") + 2


def test_still_open_candle_is_never_stored_and_closes_later(tmp_path):
    server = small()
    with server:
        run_sync(server, tmp_path)
        open_t = server.now_ms - server.now_ms % HOUR_MS
        stored = st.read_candles(tmp_path, "1h")
        assert stored["ts"].max() == pd.Timestamp(open_t - HOUR_MS, unit="ms", tz="UTC")
        partial_close = float(server.candle("BTC", "1h", open_t)["c"])
        server.advance(1)  # the open candle closes; a new one opens
        report = run_sync(server, tmp_path)
        assert report.coins[0].candles_added == 1 and report.coins[0].funding_added == 1
        last = st.read_candles(tmp_path, "1h").iloc[-1]
        assert last["ts"] == pd.Timestamp(open_t, unit="ms", tz="UTC")
        final = server.candle("BTC", "1h", open_t)
        assert last["close"] == float(final["c"]) != partial_close  # the final, not the partial


def test_a_lagging_servers_open_candle_is_not_stored_and_lands_final(tmp_path):
    """Issue 15 item 8: with the local clock 2 h ahead of the server, the server's open candle
    was stored as closed (partial) and never corrected. The server's own clock decides now."""
    server = small()
    ahead = 2 * HOUR_MS
    with server:
        report = run_sync(server, tmp_path, now_ms=lambda: server.now_ms + ahead)
        open_t = server.now_ms - server.now_ms % HOUR_MS
        assert st.read_candles(tmp_path, "1h")["ts"].max() == pd.Timestamp(open_t - HOUR_MS, unit="ms", tz="UTC")
        assert "lags" in report.coins[0].note
        server.advance(1)  # the server closes that candle
        run_sync(server, tmp_path, now_ms=lambda: server.now_ms + ahead)
    got = st.read_candles(tmp_path, "1h").set_index("ts")
    final = server.candle("BTC", "1h", open_t)
    assert got.loc[pd.Timestamp(open_t, unit="ms", tz="UTC"), "volume"] == float(final["v"])


def test_the_trailing_window_lands_late_fixes_and_fills_gaps(tmp_path):
    """Issue 15 item 8: the last 3 stored bars are fetched again on every run; what the server
    fixed or filled there lands (upserts replace), older bars are left as stored."""
    server = small()
    with server:
        run_sync(server, tmp_path)
        path = st.partition_path(tmp_path, "candles_1h", "BTC")
        df = st.read_parquet(path)
        n = len(df)
        wrong = df.copy()
        for i in (n - 2, n - 4):  # inside the window (n-3..n-1), and just outside it
            wrong.loc[i, ["open", "close"]] = wrong.loc[i, "low"]
        wrong = wrong.drop(index=n - 3).reset_index(drop=True)  # a gap inside the window
        pq.write_table(pa.Table.from_pandas(wrong, preserve_index=False), path)
        report = run_sync(server, tmp_path)
    c = report.coins[0]
    assert (c.candles_added, c.candles_fixed) == (1, 1)
    got = st.read_candles(tmp_path, "1h").reset_index(drop=True)
    exp = expected_candles(server, "BTC")
    assert len(got) == n and got["ts"].tolist() == exp["ts"].tolist()
    diff = [i for i in range(n) if got.loc[i, "close"] != exp.loc[i, "close"]]
    assert diff == [n - 4], "only the bar outside the re-fetched window keeps its stored value"


def test_rows_repeated_inside_a_page_are_kept_once(tmp_path):
    server = small()
    server.repeat_rows = True
    with server:
        report = run_sync(server, tmp_path)
    got = st.read_candles(tmp_path, "1h")
    assert report.coins[0].candles_added == len(got) == 299 and got["ts"].is_unique


def test_a_server_with_nothing_new_says_so(tmp_path):
    server = small()
    with server:
        run_sync(server, tmp_path)
        report = run_sync(server, tmp_path, now_ms=lambda: server.now_ms + 10 * HOUR_MS)
    assert report.candles_added == 0
    assert "newest candle opened" in report.coins[0].note and "lags" in report.coins[0].note


def test_second_sync_adds_nothing(tmp_path):
    server = small(coins=("BTC", "ETH"))
    with server:
        run_sync(server, tmp_path, coins=("BTC", "ETH"))
        before = tree_hash(tmp_path)
        report = run_sync(server, tmp_path, coins=("BTC", "ETH"))
    assert report.candles_added == 0 and report.funding_added == 0
    assert tree_hash(tmp_path) == before


def test_429_then_success(tmp_path):
    server = small()
    server.fail(429, match="candleSnapshot")
    fake = FakeTime()
    with server:
        report = run_sync(server, tmp_path, fake=fake, backoff=2.0)
    assert server.count("candleSnapshot", 429) == 1 and report.retries == 1
    assert 2.0 in fake.sleeps  # backed off before retrying
    assert report.coins[0].candles_added == 299


def test_500_then_success(tmp_path):
    server = small()
    server.fail(500, match="fundingHistory")
    server.fail(502, match="meta")
    with server:
        report = run_sync(server, tmp_path)
    assert server.count("fundingHistory", 500) == 1 and server.count("meta", 502) == 1
    assert report.retries == 2 and report.coins[0].funding_added == 300


def test_timeout_then_success(tmp_path):
    server = small()
    server.delay(2.0, match="candleSnapshot")
    with server:
        report = run_sync(server, tmp_path, timeout=0.5)
    assert report.retries == 1 and report.coins[0].candles_added == 299


def test_persistent_errors_give_a_clear_error(tmp_path):
    server = FakeHyperliquid(coins=("BTC",))
    server.fail(500, times=10, match="candleSnapshot")
    fake = FakeTime()
    with server, pytest.raises(DataError, match=r"candleSnapshot BTC 1h .* failed after 4 tries "
                                                r"\(last: HTTP 500.*re-run"):
        run_sync(server, tmp_path, fake=fake, max_tries=4, backoff=1.0)
    assert fake.sleeps[:3] == [1.0, 2.0, 4.0]  # exponential backoff
    assert not (tmp_path / "hyperliquid").exists()


def test_a_password_in_the_base_url_is_never_shown(tmp_path):
    """Issue 15 item 2: a base URL with credentials (a proxy) is masked in reports and errors."""
    server = small()
    with server:
        url = server.url.replace("http://", "http://ann:hunter2@")
        report = hl_sync.sync(tmp_path, ["BTC"], base_url=url, now_ms=lambda: server.now_ms,
                              sleep=FakeTime().sleep, clock=FakeTime().clock)
        assert report.base_url == server.url.replace("http://", "http://ann:***@")
        server.fail(500, times=10, match="candleSnapshot")
        with pytest.raises(DataError) as exc:
            hl_sync.sync(tmp_path, ["BTC"], base_url=url, now_ms=lambda: server.now_ms,
                         sleep=FakeTime().sleep, clock=FakeTime().clock, max_tries=2)
    assert "ann:***@" in str(exc.value) and "hunter2" not in str(exc.value)


def test_weight_budget_keeps_every_minute_under_the_limit(tmp_path, monkeypatch):
    server = FakeHyperliquid(coins=tuple(f"C{i}" for i in range(7)))
    fake = FakeTime()
    log: list[tuple[float, int]] = []
    acquire = hl_sync.WeightBudget.acquire

    def logged(self, weight):
        acquire(self, weight)
        log.append((self.clock(), weight))

    monkeypatch.setattr(hl_sync.WeightBudget, "acquire", logged)
    with server:
        report = run_sync(server, tmp_path, coins=("all",), fake=fake)
    assert report.weight > 3 * hl_sync.WEIGHT_LIMIT_PER_MINUTE  # enough work to need waiting
    assert fake.sleeps and fake.now > 120
    times = np.array([t for t, _ in log])
    weights = np.array([w for _, w in log])
    for t in times:
        in_minute = weights[(times >= t) & (times < t + 60.0)].sum()
        assert in_minute <= hl_sync.WEIGHT_BUDGET_PER_MINUTE < hl_sync.WEIGHT_LIMIT_PER_MINUTE
    # a 5,000-candle request reserves 20 + 5000/60 weight, a 500-row funding page 20 + 25
    assert max(weights) == 20 + int(np.ceil(5_000 / 60))


def test_all_skips_delisted_and_unknown_coin_errors(tmp_path):
    server = small(coins=("BTC", "ETH"), delisted=("OLDCOIN",))
    with server:
        report = run_sync(server, tmp_path, coins=("all",), funding=False)
        assert [c.coin for c in report.coins] == ["BTC", "ETH"]
        assert server.count("fundingHistory") == 0 and st.read_funding(tmp_path).empty
        with pytest.raises(DataError, match=r"unknown coin 'DOGE' on http://127.0.0.1:\d+; "
                                            r"listed perps include BTC, ETH"):
            run_sync(server, tmp_path, coins=("BTC", "DOGE"))


def test_since_and_the_5000_candle_window(tmp_path):
    server = FakeHyperliquid(coins=("BTC",))
    with server:
        since = pd.Timestamp(server.now_ms, unit="ms", tz="UTC") - pd.Timedelta(hours=100)
        report = run_sync(server, tmp_path, since=since.isoformat())
        assert report.coins[0].candles_added == 100  # since floored to its bar: 100 closed bars
        report = run_sync(server, tmp_path / "old", since="2020-01-01")
        assert "not served" in report.coins[0].note and "5,000" in report.coins[0].note
        assert report.coins[0].candles_added == 4_999


def test_4h_interval_and_listing_start(tmp_path):
    listed = FakeHyperliquid().now_ms - 40 * 4 * HOUR_MS
    server = FakeHyperliquid(coins=("NEW",), listed_since={"NEW": listed})
    with server:
        report = run_sync(server, tmp_path, coins=("NEW",), interval="4h")
    got = st.read_candles(tmp_path, "4h")
    exp = expected_candles(server, "NEW", "4h")
    assert report.coins[0].candles_added == len(exp) == len(got) >= 39
    assert report.coins[0].note == ""  # a late listing is not lost history
    np.testing.assert_array_equal(got["close"].to_numpy(), exp["close"].to_numpy())
    assert (got["ts"].astype("int64") // 1_000_000 % (4 * HOUR_MS) == 0).all()


def test_fixture_serves_meta_for_the_sdk(hl_server):  # noqa: F811
    from hyperliquid.info import Info

    info = Info(hl_server.url, skip_ws=True)
    assert info.name_to_coin["BTC"] == "BTC"
    assert {u["name"] for u in info.meta()["universe"]} == {"BTC", "ETH"}
    ctx = info.meta_and_asset_ctxs()
    assert len(ctx[1]) == 2 and float(ctx[1][0]["markPx"]) > 0
