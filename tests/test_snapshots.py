"""Recorded asset contexts and L2 books (harness.snapshots): the sync through the REAL SDK
against the fake /info server, validation, the Market's causal alignment, and the gates."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _data_frames import candles, funding
from fakes.hl_server import HOUR_MS, FakeHyperliquid

from harness import hl_sync
from harness import store as st
from harness.errors import DataError
from harness.resample import resample
from harness.snapshots import book_frame, validate_asset_ctxs, validate_books
from harness.sources import build_market, load_market
from harness.validate import validate_candles, validate_funding
from strategies import filters
from strategies import zscore_reversion as zr
from strategies.base import get_strategy

COINS = ("BTC", "ETH", "SOL")


def snap(server: FakeHyperliquid, store: Path, books=("BTC", "ETH")) -> hl_sync.SyncReport:
    return hl_sync.sync(store, [], base_url=server.url, now_ms=lambda: server.now_ms,
                        contexts=True, book_coins=list(books), max_tries=1)


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def hand_rho(bids, asks, depth):
    b = sum(sz for _, sz in bids[:depth])
    a = sum(sz for _, sz in asks[:depth])
    return (b - a) / (b + a)


# ---------------------------------------------------------------- recording


def test_hand_made_book_is_stored_with_the_formula_imbalance(tmp_path):
    server = FakeHyperliquid(coins=COINS)
    bids = [(100.0 - i, float(i + 1)) for i in range(6)]  # sizes 1..6
    asks = [(101.0, 4.0), (102.0, 4.0), (103.0, 4.0)]
    server.books["BTC"] = (bids, asks)
    with server:
        report = snap(server, tmp_path, books=("BTC",))
    got = st.read_books(tmp_path, ["BTC"])
    assert len(got) == 9 and (got["level"].to_numpy() == [1, 2, 3, 4, 5, 6, 1, 2, 3]).all()
    assert (got["side"] == "bid").sum() == 6
    np.testing.assert_allclose(got["imbalance_5"], (15 - 12) / 27)  # bids 1..5 vs asks 3 x 4
    np.testing.assert_allclose(got["imbalance_20"], (21 - 12) / 33)
    b = report.snapshots.books[0]
    assert b.added and b.levels == (6, 3) and b.imbalance_20 == pytest.approx(9 / 33)
    np.testing.assert_array_equal(got["price"], [p for p, _ in bids] + [p for p, _ in asks])


def test_contexts_are_recorded_as_served_and_rerun_adds_nothing(tmp_path):
    server = FakeHyperliquid(coins=COINS, delisted=("OLD",))
    with server:
        first = snap(server, tmp_path)
        before = tree(tmp_path)
        server.advance(0.4)  # same hour: nothing new
        again = snap(server, tmp_path)
        assert tree(tmp_path) == before
        server.advance(1)
        later = snap(server, tmp_path)
    assert first.snapshots.contexts == 3 and first.snapshots.contexts_added == 3  # OLD skipped
    assert again.snapshots.contexts_added == 0 and not any(b.added for b in again.snapshots.books)
    assert later.snapshots.contexts_added == 3 and all(b.added for b in later.snapshots.books)
    ctx = st.read_asset_ctxs(tmp_path)
    assert len(ctx) == 6 and sorted(set(ctx["coin"])) == list(COINS)
    t0 = FakeHyperliquid().now_ms
    row = ctx[(ctx["coin"] == "ETH")].iloc[0]
    assert row["time"] == pd.Timestamp(t0, unit="ms", tz="UTC") and row["ts"] == row["time"].floor("h")
    assert row["open_interest"] == pytest.approx(server.open_interest("ETH", t0), rel=1e-5)
    half = (row["impact_ask_px"] - row["impact_bid_px"]) / 2 / row["mid_px"]
    assert half == pytest.approx(server.impact_half("ETH"), abs=1e-5)  # prices have 6 digits
    assert len(st.read_books(tmp_path)) == 2 * 2 * 40  # 2 coins x 2 hours x 20 levels a side


@pytest.mark.parametrize("case", ["partial contexts", "malformed book", "crossed book",
                                  "negative size", "unknown book coin"])
def test_bad_answer_leaves_the_store_unchanged(tmp_path, case):
    server = FakeHyperliquid(coins=COINS)
    with server:
        snap(server, tmp_path)
        server.advance(1)
        before = tree(tmp_path)
        books = ("BTC", "ETH")
        if case == "partial contexts":
            meta = server._meta()
            server.fail(200, match="metaAndAssetCtxs", body=json.dumps(
                [meta, [server._ctx("BTC")]]))
        elif case == "malformed book":
            server.fail(200, match="l2Book", body='{"coin": "BTC", "time": 1}')
        elif case == "crossed book":
            server.books["ETH"] = ([(101.0, 1.0)], [(100.5, 1.0)])
        elif case == "negative size":
            server.books["ETH"] = ([(100.0, 1.0), (99.0, -2.0)], [(101.0, 1.0)])
        else:
            books = ("BTC", "NOPE")
        with pytest.raises(DataError) as exc:
            snap(server, tmp_path, books=books)
    assert tree(tmp_path) == before
    msg = str(exc.value)
    assert "\n" not in msg
    want = {"partial contexts": "partial answer", "malformed book": "l2Book BTC",
            "crossed book": "crossed book", "negative size": "negative size",
            "unknown book coin": "unknown coin 'NOPE'"}[case]
    assert want in msg
    if case in ("crossed book", "negative size"):
        assert "coin 'ETH', row" in msg


def test_cli_error_is_one_line_and_writes_nothing(tmp_path):
    """The command raises the DataError sweep's main prints as one line (test_data_cli)."""
    from test_data_cli import app
    from typer.testing import CliRunner

    server = FakeHyperliquid(coins=COINS)
    server.books["BTC"] = ([(101.0, 1.0)], [(100.0, 1.0)])
    with server:
        result = CliRunner().invoke(app(), ["data", "sync", "--contexts", "--book", "BTC",
                                            "--base-url", server.url, "--store", str(tmp_path)])
    assert isinstance(result.exception, DataError) and result.exit_code != 0
    assert "crossed book" in str(result.exception) and "\n" not in str(result.exception)
    assert not list(tmp_path.rglob("*.parquet"))


# ---------------------------------------------------------------- validation


def ctx_frame(**edit) -> pd.DataFrame:
    t = pd.Timestamp("2025-01-01 13:20", tz="UTC")
    row = dict(coin="BTC", ts=t.floor("h"), time=t, open_interest=10.0, mark_px=100.0,
               oracle_px=100.0, mid_px=100.0, premium=1e-4, funding=1e-5, day_ntl_vlm=1e6,
               impact_bid_px=99.9, impact_ask_px=100.1)
    rows = [dict(row, coin="ETH"), dict(row, **edit)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("edit,what", [
    (dict(time=pd.Timestamp("2099-01-01 00:10", tz="UTC"), ts=pd.Timestamp("2099-01-01", tz="UTC")),
     "in the future"),
    (dict(open_interest=-1.0), "negative or non-finite open interest"),
    (dict(impact_bid_px=100.2), "crossed book"),
    (dict(oracle_px=np.nan), "oracle price"),
    (dict(ts=pd.Timestamp("2025-01-01 12:00", tz="UTC")), "not the hour of its time"),
])
def test_asset_context_errors_name_coin_and_row(edit, what):
    with pytest.raises(DataError, match=what) as exc:
        validate_asset_ctxs(ctx_frame(**edit), "ctx.parquet")
    assert "coin 'BTC', row 1" in str(exc.value) and str(exc.value).startswith("ctx.parquet")


def good_book(coin="BTC", t="2025-01-01 13:20") -> pd.DataFrame:
    return book_frame(coin, pd.Timestamp(t, tz="UTC").value, [(100.0, 1.0), (99.0, 2.0)],
                      [(101.0, 3.0), (102.0, 1.0)])


@pytest.mark.parametrize("edit,what", [
    (lambda b: b.assign(size=np.where(b.index == 5, -1.0, b["size"])), "negative size"),
    (lambda b: b.assign(price=np.where(b.index == 6, 99.5, b["price"])), "crossed book"),
    (lambda b: b.assign(time=b["time"] + (b.index >= 4).astype(int) * pd.Timedelta(days=40000),
                        ts=(b["time"] + (b.index >= 4).astype(int) * pd.Timedelta(days=40000)).dt.floor("h")),
     "in the future"),
    (lambda b: b.assign(price=np.where(b.index == 5, 100.5, b["price"])), "do not fall"),
    (lambda b: b.assign(level=np.where(b.index == 5, 3, b["level"])), "without gaps or repeats"),
    (lambda b: b.assign(imbalance_20=0.5), "imbalance_20 is not"),
])
def test_book_errors_name_coin_and_row(edit, what):
    frame = pd.concat([good_book("ETH"), good_book("BTC")], ignore_index=True)  # BTC: rows 4..7
    validate_books(frame, "books.parquet")  # valid as built
    with pytest.raises(DataError, match=what) as exc:
        validate_books(edit(frame), "books.parquet")
    assert "coin 'BTC', row " in str(exc.value)


# ---------------------------------------------------------------- the Market


def frames_with(snapshot_times: list[str]):
    c = validate_candles(candles(coins=("BTC", "ETH"), n=12, start="2025-01-01 10:00"), "c").frame
    f = validate_funding(funding(coins=("BTC", "ETH"), n=12, start="2025-01-01 10:00"), "f").frame
    times = [pd.Timestamp(t, tz="UTC") for t in snapshot_times]
    ctx = pd.concat([ctx_frame().iloc[[0]].assign(coin="BTC", time=t, ts=t.floor("h"),
                                                  open_interest=float(i + 1))
                     for i, t in enumerate(times)], ignore_index=True)
    books = pd.concat([book_frame("BTC", t.value, [(100.0, 1.0 + i)], [(101.0, 1.0)])
                       for i, t in enumerate(times)], ignore_index=True)
    from harness.snapshots import book_snapshots

    return c, f, validate_asset_ctxs(ctx, "ctx"), book_snapshots(validate_books(books, "books"))


def test_a_snapshot_taken_at_h_is_seen_first_by_the_bar_closing_at_or_after_h():
    c, f, ctx, books = frames_with(["2025-01-01 13:00", "2025-01-01 15:00:00.001",
                                    "2025-01-01 17:59:59"])
    m = build_market(c, f, "1h", "t", contexts=ctx, books=books)
    opens = {t.strftime("%H:%M"): i for i, t in enumerate(m.index)}
    oi, obi = m.open_interest[:, 0], m.book_imbalance[:, 0]
    # 13:00 exactly: the bar 12:00-13:00 (its close is 13:00); 15:00:00.001: the 15:00 bar
    want = np.full(m.n_bars, np.nan)
    want[[opens["12:00"], opens["15:00"], opens["17:00"]]] = [1.0, 2.0, 3.0]
    np.testing.assert_array_equal(oi, want)
    np.testing.assert_array_equal(np.isfinite(obi), np.isfinite(want))
    assert obi[opens["15:00"]] == pytest.approx((2.0 - 1.0) / 3.0)  # bid 2 vs ask 1
    assert np.isnan(m.open_interest[:, 1]).all() and np.isnan(m.book_imbalance[:, 1]).all()
    m4 = resample(m, "4h")  # buckets 12-16, 16-20: the last snapshot in each
    np.testing.assert_array_equal(m4.open_interest[:, 0], [2.0, 3.0])


def test_market_without_books_keeps_its_fingerprint():
    c, f, ctx, books = frames_with(["2025-01-01 13:30"])
    plain = build_market(c, f, "1h", "t")
    assert np.isnan(plain.book_imbalance).all()
    old = dataclasses.replace(plain, _fingerprint=[])
    with_books = build_market(c, f, "1h", "t", books=books)
    assert old.fingerprint == plain.fingerprint != with_books.fingerprint


def recorded_store(tmp_path: Path, hours: int = 30) -> tuple[FakeHyperliquid, Path]:
    """A store with 300 hourly candles and, over the last `hours`, one snapshot an hour (taken
    at HH:30, so each belongs to the bar opening at HH:00)."""
    server = FakeHyperliquid(coins=COINS, candle_window=300)
    server.funding_since_ms = server.now_ms - 300 * HOUR_MS
    end = server.now_ms
    with server:
        server.now_ms = end - hours * HOUR_MS
        for _ in range(hours):
            snap(server, tmp_path, books=("BTC", "ETH"))
            server.advance(1)
        server.now_ms = end
        hl_sync.sync(tmp_path, list(COINS), base_url=server.url, now_ms=lambda: server.now_ms)
    return server, tmp_path


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    return recorded_store(tmp_path_factory.mktemp("recorded"))


def test_store_market_carries_what_was_recorded(recorded):
    server, store = recorded
    m = load_market(store)
    for j, coin in enumerate(m.coins):
        for t in range(m.n_bars):
            taken = int(m.ts_ns[t] // 1_000_000) + HOUR_MS // 2  # HH:30 of the bar
            was = server.now_ms - 30 * HOUR_MS <= taken < server.now_ms
            if not was:
                assert np.isnan(m.open_interest[t, j]) and np.isnan(m.book_imbalance[t, j])
                continue
            assert m.open_interest[t, j] == pytest.approx(server.open_interest(coin, taken), rel=1e-5)
            if coin == "SOL":  # no book recorded
                assert np.isnan(m.book_imbalance[t, j])
            else:
                saved, server.now_ms = server.now_ms, taken
                bids, asks = server.book(coin)
                server.now_ms = saved
                sizes = lambda lv: [(p, float(f"{s:.6g}")) for p, s in lv]  # noqa: E731
                assert m.book_imbalance[t, j] == pytest.approx(hand_rho(sizes(bids), sizes(asks), 20))


def test_oi_gate_blocks_exactly_where_recorded_oi_is_thin(recorded):
    server, store = recorded
    m = load_market(store)
    with filters.recording() as verdicts:
        allowed = filters.min_open_interest(m)
    usd = m.open_interest * m.close
    recorded_bars = np.isfinite(usd)
    assert 20 < (recorded_bars & (usd < 10e6)).sum() < recorded_bars.sum()  # the gate bites
    np.testing.assert_array_equal(allowed, ~(recorded_bars & (usd < 10e6)))
    np.testing.assert_array_equal(verdicts[0].known, recorded_bars)


def test_obi_gate_changes_signals_only_on_recorded_books(recorded):
    _, store = recorded
    m = load_market(store)
    s = get_strategy("zscore_reversion")
    p = dataclasses.replace(zr.Params(), window=12)
    base = s.generate(m, p, "shadow").direction
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gated = s.generate(m, dataclasses.replace(p, obi_gate=True), "shadow").direction
    obi = m.book_imbalance
    with np.errstate(invalid="ignore"):
        against = ((base > 0) & (obi < zr.SHADOW.obi_min)) | ((base < 0) & (obi > -zr.SHADOW.obi_min))
    assert against.sum() > 5 and ((base != 0) & np.isnan(obi)).sum() > 50
    np.testing.assert_array_equal(gated, np.where(against, 0, base))


# ---------------------------------------------------------------- the CLI


def invoke(*args: str):
    from test_data_cli import invoke as run

    return run(*args)


def test_info_shows_snapshot_coverage(recorded):
    _, store = recorded
    result = invoke("data", "info", "--store", str(store))
    assert result.exit_code == 0, result.output
    rows = {r[0]: r for r in (line.split("│")[1:-1] for line in result.output.splitlines()
                               if line.startswith("│")) if len(r) == 9}
    assert {k.strip() for k in rows} == set(COINS)
    cells = {k.strip(): [c.strip() for c in v] for k, v in rows.items()}
    assert cells["BTC"][1] == "30" and cells["BTC"][4] == "100.0" and cells["BTC"][5] == "30"
    assert cells["SOL"][1] == "30" and cells["SOL"][5] == "0"


def test_costs_shows_recorded_impact_next_to_v5(tmp_path):
    server = FakeHyperliquid(coins=COINS, candle_window=800)  # 33 days: v5 is known
    server.funding_since_ms = server.now_ms - 10 * HOUR_MS
    with server:
        snap(server, tmp_path, books=())
        server.advance(1)  # the bar holding the snapshot closes
        hl_sync.sync(tmp_path, list(COINS), base_url=server.url, now_ms=lambda: server.now_ms)
    result = invoke("data", "costs", "--data", str(tmp_path), "--notional", "20000",
                    "--notional", "6000")
    assert result.exit_code == 0, result.output
    cells = {r[0]: r for r in ([c.strip() for c in line.split("│")[1:-1]]
                               for line in result.output.splitlines() if line.startswith("│"))}
    # columns: coin, spread, half, sigma, ADV, @20k, @6k, impact notional, recorded, v5, note
    for coin in COINS:
        row = cells[coin]
        assert float(row[8]) == pytest.approx(server.impact_half(coin) / 1e-4, abs=0.1)
        assert row[9] == (row[5] if coin in ("BTC", "ETH") else row[6])  # v5 at that notional
    assert "median v5 / recorded" in result.output


def test_sweep_signals_tallies_the_book_gate(recorded):
    from schemas.signals import validate_document
    from sweep.signals import signals_at, to_document

    _, store = recorded
    m = load_market(store)
    s = get_strategy("zscore_reversion")
    p = dataclasses.replace(zr.Params(), window=12, obi_gate=True)
    report = signals_at(s, m, p, "shadow", m.n_bars - 1)
    tally = {x.gate: x for x in report.tallies}["obi"]
    base = s.generate(m, dataclasses.replace(p, obi_gate=False), "shadow").direction
    obi = m.book_imbalance
    with np.errstate(invalid="ignore"):
        against = ((base > 0) & (obi < zr.SHADOW.obi_min)) | ((base < 0) & (obi > -zr.SHADOW.obi_min))
    on = base != 0
    assert (tally.judged, tally.blocked, tally.unknown) == (on.sum(), against.sum(),
                                                            (on & np.isnan(obi)).sum())
    doc = to_document([report], m.label, m.synthetic, None, pd.Timestamp.now(tz="UTC"))
    validate_document(doc)
    assert doc["strategies"][0]["gate_tallies"][0]["gate"] == "obi"
