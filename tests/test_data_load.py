"""harness.sources / resample / synthetic: the Market from every source, checked against pandas."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from _data_frames import candles, funding, need_shared, write_dataset

from harness import synthetic
from harness.errors import DataError
from harness.market import Market
from harness.resample import align_to_base, resample
from harness.sources import build_market, load_market
from harness.validate import validate_candles, validate_funding

# ---- building the Market from frames -------------------------------------------------------


def small_market(tmp_path, **kw):
    c = candles(coins=("BTC", "ETH", "SOL"), n=72, **kw)
    c = c.drop(index=c.index[(c.coin == "ETH") & (c.index % 72 >= 60)])  # ETH stops early
    c = c.drop(index=c.index[(c.coin == "SOL") & (c.index % 72 < 10)])  # SOL lists late
    c = c.drop(index=c.index[(c.coin == "BTC") & (c.index % 72).isin([20, 21, 30])])  # gaps
    f = funding(coins=("BTC", "ETH", "SOL"), n=72)
    folder = write_dataset(tmp_path / "ds", c.reset_index(drop=True), f)
    return c.reset_index(drop=True), f, folder


def pivot(df, col):
    return df.pivot(index="ts", columns="coin", values=col)


def test_dataset_market_matches_pandas_pivot(tmp_path):
    c, f, folder = small_market(tmp_path)
    m = load_market(folder, store=tmp_path / "store")
    assert m.coins == ("BTC", "ETH", "SOL") and m.interval == "1h" and not m.synthetic
    full = pd.date_range("2024-01-01", periods=72, freq="1h", tz="UTC")
    assert m.index.equals(full)
    for col in ("open", "high", "low", "close", "volume"):
        expect = pivot(c, col).reindex(full)[list(m.coins)].to_numpy()
        np.testing.assert_array_equal(getattr(m, col), expect)  # NaN where no bar: never filled
    np.testing.assert_array_equal(m.listed, pivot(c, "close").reindex(full)[list(m.coins)].notna())
    assert not m.listed[20, 0] and not m.listed[65, 1] and not m.listed[5, 2]
    f_hour = f.assign(ts=f.ts.dt.floor("h") - pd.Timedelta(hours=1))  # stamped H: the bar ending at H
    np.testing.assert_allclose(m.funding, pivot(f_hour, "funding_rate").reindex(full).fillna(0.0)
                               [list(m.coins)].to_numpy())
    np.testing.assert_allclose(m.premium, pivot(f_hour, "premium").reindex(full)[list(m.coins)])
    assert np.isnan(m.open_interest).all()
    assert len(m.fingerprint) == 16


def test_funding_over_higher_bars_is_the_sum_of_hours(tmp_path):
    c = candles(coins=("BTC",), n=12, freq="4h")
    f = funding(coins=("BTC",), n=48, jitter_ms=True)
    folder = tmp_path / "ds"
    folder.mkdir()
    c.to_parquet(folder / "candles_4h.parquet")
    f.to_parquet(folder / "funding_1h.parquet")
    m = load_market(folder, interval="4h")
    # a 4h bar carries the hourly records stamped in (open, close]: hours 1..4 of the bar
    hourly = np.r_[f.funding_rate.to_numpy()[1:], 0.0]
    premium = np.r_[f.premium.to_numpy()[1:], np.nan].reshape(12, 4)
    np.testing.assert_allclose(m.funding[:, 0], hourly.reshape(12, 4).sum(axis=1))
    np.testing.assert_allclose(m.premium[:, 0], np.r_[premium[:-1, -1], premium[-1, -2]])


def test_funding_unknown_is_zero_premium_nan(tmp_path):
    c = candles(coins=("BTC", "ETH"), n=10)
    f = funding(coins=("BTC",), n=5)
    m = load_market(write_dataset(tmp_path / "ds", c, f))
    assert (m.funding[5:, 0] == 0).all() and (m.funding[:, 1] == 0).all()
    assert np.isnan(m.premium[5:, 0]).all() and np.isnan(m.premium[:, 1]).all()
    m2 = load_market(write_dataset(tmp_path / "nofunding", c))
    assert (m2.funding == 0).all() and np.isnan(m2.premium).all()


def test_coins_window_and_errors(tmp_path):
    c, f, folder = small_market(tmp_path)
    m = load_market(folder, coins=["SOL", "BTC"], start="2024-01-01 10:00", end="2024-01-02")
    assert m.coins == ("SOL", "BTC")
    assert m.index[0] == pd.Timestamp("2024-01-01 10:00", tz="UTC")
    assert m.index[-1] == pd.Timestamp("2024-01-01 23:00", tz="UTC")
    with pytest.raises(DataError, match=r"unknown coin 'BTX'.*did you mean BTC.*3 coins: BTC, ETH, SOL"):
        load_market(folder, coins=["BTX"])
    with pytest.raises(DataError, match=r"coin 'ETH' has no 1h bars between"):
        load_market(folder, coins=["ETH", "BTC"], start="2024-01-03 13:00")
    m = load_market(folder, start="2024-01-03 13:00")  # ETH dropped when not asked for
    assert m.coins == ("BTC", "SOL")
    with pytest.raises(DataError, match="no bars between"):
        load_market(folder, start="2030-01-01")
    with pytest.raises(DataError, match="is not a date"):
        load_market(folder, start="yesterday-ish")
    with pytest.raises(DataError, match="unknown interval '2h'"):
        load_market(folder, interval="2h")
    with pytest.raises(DataError, match="no such file or folder"):
        load_market(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no market data here"):
        load_market(tmp_path / "empty")


def test_corrupt_parquet_is_a_clear_error(tmp_path):
    folder = write_dataset(tmp_path / "ds", candles())
    (folder / "candles_1h.parquet").write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(DataError, match=r"candles_1h.parquet: cannot read it as parquet.*corrupt"):
        load_market(folder)
    single = tmp_path / "x.parquet"
    single.write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="x.parquet: cannot read it as parquet"):
        load_market(single)


def test_single_file_interval_inferred(tmp_path):
    path = tmp_path / "daily.parquet"
    candles(coins=("EURUSDT", "PAXGUSDT"), n=30, freq="1D").to_parquet(path)
    m = load_market(path)
    assert m.interval == "1d" and m.n_bars == 30 and m.coins == ("EURUSDT", "PAXGUSDT")
    with pytest.raises(DataError, match="holds 1d bars; it cannot give 1h bars"):
        load_market(path, interval="1h")
    hourly = tmp_path / "hourly.parquet"
    candles(n=48).to_parquet(hourly)
    assert load_market(hourly, interval="4h").n_bars == 12  # built from 1h


def test_default_source_is_store_else_embedded(tmp_path):
    from harness.store import upsert_candles

    store = tmp_path / "store"
    m = load_market(store=store)
    assert m.synthetic and m.label.startswith("SYNTHETIC")
    upsert_candles(store, "1h", candles(n=24))
    m = load_market(store=store)
    assert not m.synthetic and m.coins == ("BTC", "ETH") and m.n_bars == 24
    assert load_market(store=store, interval="4h").n_bars == 6  # 4h built from stored 1h
    assert load_market(store / "hyperliquid").n_bars == 24


# ---- the real dataset ------------------------------------------------------------------------


def test_real_hyperliquid_dataset():
    folder = need_shared()
    t0 = time.perf_counter()
    m = load_market(folder)
    elapsed = time.perf_counter() - t0
    assert elapsed < 15, f"loading the real 1h file took {elapsed:.1f} s"
    assert m.n_coins == 172 and m.interval == "1h" and not m.synthetic
    raw = pd.read_parquet(folder / "candles_1h.parquet")
    assert int(m.listed.sum()) == len(raw)
    j = m.coin_index("BTC")
    assert 4_900 <= int(m.listed[:, j].sum()) <= 5_100
    btc = raw[raw.coin == "BTC"].set_index("ts")
    np.testing.assert_array_equal(m.close[m.listed[:, j], j], btc["close"].to_numpy())
    fund = pd.read_parquet(folder / "funding_1h.parquet")
    fb = fund[fund.coin == "BTC"].set_index("ts").reindex(m.index + pd.Timedelta(hours=1))  # at close
    np.testing.assert_array_equal(m.funding[:, j], fb["funding_rate"].fillna(0.0).to_numpy())
    np.testing.assert_array_equal(m.premium[:, j], fb["premium"].to_numpy())
    assert np.isnan(m.premium[:, m.coin_index("SOL")]).all()
    assert np.isnan(m.open_interest).all()
    assert np.all(m.funding[:-1, j] != 0)  # BTC funding known for every hour of the span
    assert m.funding[-1, j] == 0  # the last bar's record (stamped at its close) is not in the file


def test_real_daily_from_hourly_matches_pandas():
    folder = need_shared()
    m = load_market(folder, interval="1d", coins=["BTC", "ETH"])
    assert m.interval == "1d" and "1d from 1h" in m.source
    raw = pd.read_parquet(folder / "candles_1h.parquet", filters=[("coin", "=", "BTC")])
    g = raw.set_index("ts").groupby(pd.Grouper(freq="1D"))
    expect = pd.DataFrame({"open": g.open.first(), "high": g.high.max(), "low": g.low.min(),
                           "close": g.close.last(), "volume": g.volume.sum(), "n": g.close.count()})
    expect = expect[expect.n == 24].reindex(m.index)
    for col in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(getattr(m, col)[:, 0], expect[col].to_numpy())
    np.testing.assert_allclose(m.volume[:, 0], expect["volume"].to_numpy(), rtol=1e-12)
    fund = pd.read_parquet(folder / "funding_1h.parquet", filters=[("coin", "=", "BTC")])
    # a day carries the records stamped in (00:00, 24:00]
    day_sum = (fund.assign(ts=fund.ts - pd.Timedelta(1)).set_index("ts").funding_rate
               .groupby(pd.Grouper(freq="1D")).sum())
    np.testing.assert_allclose(m.funding[:, 0], day_sum.reindex(m.index).to_numpy(), rtol=1e-12)


def test_real_single_file_binance():
    path = need_shared().parent / "binance" / "bear_portfolio_2022_1d.parquet"
    m = load_market(path)
    assert m.interval == "1d" and set(m.coins) == {"EURUSDT", "PAXGUSDT", "TUSDUSDT", "USDCUSDT"}
    assert m.index[0] == pd.Timestamp("2022-05-01", tz="UTC") and (m.funding == 0).all()


# ---- resample and align ----------------------------------------------------------------------


def random_market(n=100, start="2024-01-01 02:00", seed=3, holes=((5, 0), (41, 1))) -> Market:
    c = candles(coins=("BTC", "ETH"), n=n, start=start, seed=seed)
    drop = [ci * n + t for t, ci in holes]
    c = c.drop(index=drop).reset_index(drop=True)
    f = funding(coins=("BTC", "ETH"), n=n, start=start)
    return build_market(validate_candles(c, "t").frame, validate_funding(f, "t").frame, "1h", "t")


def test_resample_matches_pandas_and_drops_incomplete_buckets():
    m = random_market()
    m4 = resample(m, "4h")
    # index starts 02:00: the 00:00 bucket is incomplete (dropped); 100 bars end at 05:00 on day 5
    assert m4.index[0] == pd.Timestamp("2024-01-01 04:00", tz="UTC")
    assert (m4.index[-1] + pd.Timedelta("4h")) <= (m.index[-1] + pd.Timedelta("1h"))
    for j in range(m.n_coins):
        s = pd.DataFrame({k: getattr(m, k)[:, j] for k in ("open", "high", "low", "close",
                                                           "volume", "funding")}, index=m.index)
        g = s.groupby(pd.Grouper(freq="4h"))
        exp = pd.DataFrame({"open": g.open.first(), "high": g.high.max(), "low": g.low.min(),
                            "close": g.close.last(), "volume": g.volume.sum(),
                            "funding": g.funding.sum(), "n": g.close.count()}).reindex(m4.index)
        complete = (exp.n == 4).to_numpy()
        np.testing.assert_array_equal(m4.listed[:, j], complete)
        for col in ("open", "high", "low", "close"):
            np.testing.assert_array_equal(getattr(m4, col)[complete, j], exp[col][complete])
            assert np.isnan(getattr(m4, col)[~complete, j]).all()  # a missing hour: unlisted
        np.testing.assert_allclose(m4.volume[complete, j], exp.volume[complete])
        np.testing.assert_allclose(m4.funding[:, j], exp.funding)
    assert not m4.listed.all()  # the two holes made two buckets unlisted
    m1d = resample(m, "1d")
    assert m1d.index[0] == pd.Timestamp("2024-01-02", tz="UTC") and m1d.n_bars == 3
    assert resample(m.slice(0, 3), "4h").n_bars == 0
    with pytest.raises(DataError, match="cannot build 15m bars from 1h"):
        resample(m, "15m")


def test_resample_is_causal_prefix():
    """Bars built from a prefix of the data are exactly the full build's bars closed by then."""
    m = random_market(n=130)
    full = resample(m, "4h")
    closes = full.index + pd.Timedelta("4h")
    for cut in range(1, m.n_bars + 1):
        part = resample(m.slice(0, cut), "4h")
        visible = int(np.sum(closes <= m.index[cut - 1] + pd.Timedelta("1h")))
        assert part.n_bars == visible
        for name in ("open", "high", "low", "close", "volume", "funding", "listed"):
            np.testing.assert_array_equal(getattr(part, name), getattr(full, name)[:visible])


def test_align_to_base_sees_only_closed_higher_bars():
    m = random_market(n=60, start="2024-01-01 00:00", holes=())
    m4 = resample(m, "4h")
    ids = np.arange(m4.n_bars, dtype=float)
    aligned = align_to_base(ids, m4, m)
    # the 4h bar opening 00:00 closes 04:00: first visible on the 1h bar opening 03:00
    assert np.isnan(aligned[:3]).all() and aligned[3] == 0 and aligned[6] == 0 and aligned[7] == 1
    base_close = m.index + pd.Timedelta("1h")
    higher_close = m4.index + pd.Timedelta("4h")
    for t in range(3, m.n_bars):
        j = int(aligned[t])
        assert higher_close[j] <= base_close[t]
        assert j + 1 == m4.n_bars or higher_close[j + 1] > base_close[t]
    two_d = align_to_base(m4.close, m4, m)
    assert two_d.shape == m.close.shape
    np.testing.assert_array_equal(two_d[7], m4.close[1])
    assert align_to_base(m4.listed, m4, m, fill=False).dtype == bool


def test_resample_then_align_is_causal():
    """A 4h indicator mapped back to 1h never changes when later 1h data changes."""
    m = random_market(n=120, start="2024-01-01 00:00", holes=((50, 0),))
    rng = np.random.default_rng(9)

    def feature(mk):
        m4 = resample(mk, "4h")
        return align_to_base(np.cumsum(np.nan_to_num(m4.close), axis=0), m4, mk)

    full = feature(m)
    for cut in rng.integers(5, m.n_bars, 15):
        np.testing.assert_array_equal(feature(m.slice(0, cut)), full[:cut])
        scale = np.ones_like(m.close)
        scale[cut:] = rng.uniform(0.5, 2.0, scale[cut:].shape)
        shocked = replace(m, _fingerprint=[], **{k: getattr(m, k) * scale
                                                 for k in ("open", "high", "low", "close")})
        np.testing.assert_array_equal(feature(shocked)[:cut], full[:cut])


# ---- the embedded synthetic default ----------------------------------------------------------


def test_embedded_default_is_labelled_cached_and_deterministic(tmp_path, monkeypatch):
    t0 = time.perf_counter()
    m = load_market("embedded", store=tmp_path)
    assert time.perf_counter() - t0 < 10
    assert m.synthetic and m.label.startswith("SYNTHETIC") and "embedded synthetic" in m.source
    assert m.n_coins >= 8 and m.n_bars >= 365 * 24 and "BTC" in m.coins
    cache = tmp_path / ".embedded" / f"v{synthetic.GENERATOR_VERSION}-seed{synthetic.DEFAULT_SEED}"
    assert (cache / "candles_1h.parquet").is_file() and (cache / "funding_1h.parquet").is_file()
    mtime = (cache / "candles_1h.parquet").stat().st_mtime_ns

    def no_generation(seed):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(synthetic, "generate", no_generation)
    again = load_market("embedded", store=tmp_path)
    assert again.fingerprint == m.fingerprint
    assert (cache / "candles_1h.parquet").stat().st_mtime_ns == mtime
    m4 = load_market("embedded", interval="4h", store=tmp_path)
    assert m4.synthetic and m4.interval == "4h"


def test_synthetic_generation_is_seeded_and_fast():
    t0 = time.perf_counter()
    a = synthetic.generate(7)
    assert time.perf_counter() - t0 < 2.0
    b = synthetic.generate(7)
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])
    assert not synthetic.generate(8)[0]["close"].equals(a[0]["close"])


@pytest.fixture(scope="module")
def sim():
    return synthetic.simulate(synthetic.DEFAULT_SEED)


@pytest.fixture(scope="module")
def syn_market(sim):
    return build_market(validate_candles(sim.candles, "syn").frame,
                        validate_funding(sim.funding, "syn").frame, "1h", "syn", True)


def test_synthetic_ohlc_and_listing(syn_market):
    m = syn_market
    ok = m.listed
    assert (m.high[ok] >= np.maximum(m.open[ok], m.close[ok])).all()
    assert (m.low[ok] <= np.minimum(m.open[ok], m.close[ok])).all()
    assert (m.volume[ok] > 0).all()
    hype = m.coin_index("HYPE")
    assert not m.listed[:1000, hype].any() and m.listed[-1, hype]
    assert (~m.listed[2500:, :]).sum() > 0  # a few single-hour gaps, as in the real files


def test_synthetic_fat_tails_correlation_and_volume_spikes(syn_market):
    m = syn_market
    lr = np.diff(np.log(m.close), axis=0)
    for j in range(m.n_coins):
        r = lr[np.isfinite(lr[:, j]), j]
        assert scipy.stats.kurtosis(r) > 3.0, m.coins[j]  # excess kurtosis: fat tails
        a = np.abs(r)
        assert np.corrcoef(a[1:], a[:-1])[0, 1] > 0.05  # volatility clusters
    both = np.isfinite(lr).all(axis=1)
    corr = np.corrcoef(lr[both].T)[np.triu_indices(m.n_coins, 1)]
    assert corr.mean() > 0.3 and corr.min() > 0.1
    v = pd.DataFrame(m.volume)
    spikes = (v >= 1.5 * v.rolling(20).mean().shift(1)).mean()
    assert (spikes > 0.05).all()


def test_synthetic_regimes_drive_returns(sim, syn_market):
    """Hours in up-trends drift up, in down-trends down; all three regimes occur."""
    m = syn_market
    for j, spec in enumerate(synthetic.COINS):
        col = m.coin_index(spec.name)
        r = np.diff(np.log(m.close[:, col])) / spec.vol
        d = sim.drift[1:, j]
        ok = np.isfinite(r)
        up, down = r[ok & (d > 0.05)], r[ok & (d < -0.05)]
        t = scipy.stats.ttest_ind(up, down, equal_var=False)
        assert up.mean() > 0 > down.mean() and t.statistic > 3, spec.name
        shares = np.bincount(sim.coin_state[:, j], minlength=3) / len(sim.coin_state)
        assert shares.min() > 0.01, shares


def test_synthetic_funding_is_ou_with_hours_half_life(syn_market):
    m = syn_market
    for j in range(m.n_coins):
        f = m.funding[m.listed[:, j], j]
        phi = np.corrcoef(f[1:], f[:-1])[0, 1]
        half_life = -np.log(2) / np.log(phi)
        assert 2 <= half_life <= 24
        assert abs(np.median(f) - synthetic.BASE_FUNDING) < 2e-5
        z = (f - f.mean()) / f.std()
        assert (np.abs(z) > 2).mean() > 0.01  # excursions for funding-reversion to trade


def test_synthetic_breakouts_trade_tens_per_quarter(syn_market):
    """A 20-bar breakout on a 1.5x volume spike fires tens of times a quarter per coin."""
    m = syn_market
    h, c, v = (pd.DataFrame(a) for a in (m.high, m.close, m.volume))
    fired = (c > h.rolling(20).max().shift(1)) & (v >= 1.5 * v.rolling(20).mean().shift(1))
    quarters = m.n_bars / (24 * 91)
    per_quarter = fired.sum().to_numpy() / quarters
    assert (per_quarter >= 10).all() and (per_quarter <= 500).all(), per_quarter
