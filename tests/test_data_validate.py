"""harness.validate: each bad input gives its documented DataError (file, coin, row, fix)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _data_frames import candles, funding

from harness.errors import DataError
from harness.validate import HOURLY_FUNDING_SINCE, validate_candles, validate_funding

SRC = "test.parquet"


def bad(df, *needles, interval=None):
    with pytest.raises(DataError) as exc:
        validate_candles(df, SRC, interval)
    msg = str(exc.value)
    assert SRC in msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def test_valid_frame_passes_and_infers_interval():
    df = candles(n=30)
    check = validate_candles(df, SRC)
    assert check.interval == "1h"
    assert len(check.frame) == 60
    assert str(check.frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert [g.coin for g in check.gaps] == ["BTC", "ETH"]
    assert all(g.missing == 0 and g.bars == 30 for g in check.gaps)
    for name in ("4h", "1d", "15m"):
        freq = {"4h": "4h", "1d": "1D", "15m": "15min"}[name]
        assert validate_candles(candles(n=10, freq=freq), SRC).interval == name


def test_interleaved_coins_are_grouped_not_rejected():
    df = candles(n=5).sort_values(["ts", "coin"], ignore_index=True)
    frame = validate_candles(df, SRC, "1h").frame
    assert list(frame["coin"]) == ["BTC"] * 5 + ["ETH"] * 5
    assert frame["ts"].is_monotonic_increasing is False  # grouped by coin, each sorted
    assert frame.groupby("coin")["ts"].apply(lambda s: s.is_monotonic_increasing).all()


def test_missing_column():
    bad(candles().drop(columns=["high"]), "missing column(s) high", "rename or add")


def test_wrong_types():
    df = candles()
    df["open"] = df["open"].astype(str)
    bad(df, "column open has type", "astype(float)")
    df = candles()
    df["ts"] = df["ts"].astype("int64") // 1_000_000
    bad(df, "column ts has type int64", "unit='ms'")
    df = candles()
    df["ts"] = df["ts"].dt.tz_localize(None)
    bad(df, "timezone-naive", "tz_localize('UTC')")
    df = candles()
    df["coin"] = 1
    bad(df, "column coin has type", "astype(str)")
    df = candles()
    df.loc[3, "coin"] = None
    bad(df, "row 3", "coin is empty or null")


def test_integer_prices_are_fine():
    df = candles()
    for c in ("open", "high", "low", "close", "volume"):
        df[c] = np.ceil(df[c]).astype("int64")
    df["high"] = df[["open", "close", "high"]].max(axis=1) + 1
    df["low"] = df[["open", "close", "low"]].min(axis=1) - 1
    assert validate_candles(df, SRC).frame["open"].dtype == np.float64


def test_unsorted_timestamps():
    df = candles(n=10)
    df.loc[[3, 4]] = df.loc[[4, 3]].to_numpy()
    bad(df, "coin 'BTC'", "row 4", "out-of-order", "sort the rows by coin, ts")


def test_duplicate_timestamps():
    df = candles(n=10)
    df = pd.concat([df.iloc[:13], df.iloc[[12]], df.iloc[13:]], ignore_index=True)
    bad(df, "coin 'ETH'", "row 13", "duplicate timestamp", "one row per (coin, ts)")


def test_non_positive_price():
    df = candles()
    df.loc[7, "low"] = 0.0
    bad(df, "coin 'BTC'", "row 7", "non-positive price", "low=0")
    df = candles()
    df.loc[50, "close"] = -1.0
    bad(df, "coin 'ETH'", "row 50", "non-positive")


def test_nan_price():
    df = candles()
    df.loc[9, "open"] = np.nan
    bad(df, "coin 'BTC'", "row 9", "NaN", "drop the bar")


def test_high_below_max_open_close():
    df = candles()
    df.loc[5, "high"] = max(df.loc[5, "open"], df.loc[5, "close"]) * 0.999
    bad(df, "coin 'BTC'", "row 5", "high below max(open, close)")


def test_low_above_min_open_close():
    df = candles()
    df.loc[60, "low"] = min(df.loc[60, "open"], df.loc[60, "close"]) * 1.001
    bad(df, "coin 'ETH'", "row 60", "low above min(open, close)")


def test_negative_volume():
    df = candles()
    df.loc[2, "volume"] = -5.0
    bad(df, "row 2", "volume")


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_infinite_or_nan_volume(value):
    """Issue 15 item 10: +inf volume passed validation (and poisoned ADV-based slippage)."""
    df = candles()
    df.loc[7, "volume"] = value
    bad(df, "coin 'BTC'", "row 7", "infinite or negative volume", "finite number >= 0")


def test_mixed_intervals_off_grid():
    df = candles(n=10)
    df.loc[4, "ts"] = df.loc[4, "ts"] - pd.Timedelta(minutes=15)  # a 15m bar in a 1h file
    bad(df, "coin 'BTC'", "row 4", "mixes intervals")


def test_mixed_intervals_wrong_file():
    df = candles(n=10, freq="4h")
    bad(df, "mostly 4h apart but the interval is 1h", interval="1h")


def test_unsupported_spacing_and_empty():
    bad(candles(n=10, freq="2h"), "not a supported interval")
    bad(candles().iloc[:0], "no candles")
    bad(candles(n=1), "cannot infer the bar interval")


def test_gaps_are_reported_not_errors():
    df = candles(n=24)
    df = df.drop(index=[5, 6, 7, 15]).reset_index(drop=True)  # BTC: a 3-bar and a 1-bar gap
    check = validate_candles(df, SRC, "1h")
    btc, eth = check.gaps
    assert (btc.bars, btc.missing, btc.runs, btc.longest) == (20, 4, 2, 3)
    assert (eth.bars, eth.missing, eth.runs) == (24, 0, 0)


# ---- funding ------------------------------------------------------------------------------

def test_funding_ts_floored_to_hour_and_rates_kept():
    df = funding(n=10)
    out = validate_funding(df, SRC).frame
    assert (out["ts"].dt.minute == 0).all() and (out["ts"].dt.second == 0).all()
    assert (out["ts"].dt.microsecond == 0).all()
    assert np.array_equal(out["ts"], df["ts"].dt.floor("h"))
    np.testing.assert_array_equal(out["funding_rate"], df["funding_rate"])  # never / 8


def test_funding_premium_optional():
    out = validate_funding(funding(n=5).drop(columns=["premium"]), SRC).frame
    assert out["premium"].isna().all()


def test_funding_8_hourly_before_cutoff_spread_per_hour():
    t8 = pd.date_range("2023-06-01 08:00", periods=6, freq="8h", tz="UTC")  # all before 06-08
    hourly = pd.date_range("2023-06-08 00:00", periods=5, freq="1h", tz="UTC")
    rates8 = np.array([8e-5, -1.6e-4, 2.4e-4, 0.0, 8e-4, 4e-5])
    df = pd.DataFrame({
        "coin": "BTC",
        "ts": (t8.append(hourly) + pd.Timedelta(milliseconds=42)).as_unit("ns"),
        "funding_rate": np.r_[rates8, [1e-5] * 5],
        "premium": np.r_[[1e-4] * 6, [2e-4] * 5],
    })
    check = validate_funding(df, SRC)
    out = check.frame.set_index("ts")
    assert check.converted_8h == 6
    assert len(out) == 6 * 8 + 5
    for t, r in zip(t8, rates8, strict=True):
        block = out.loc[t - pd.Timedelta(hours=7): t]
        assert len(block) == 8
        np.testing.assert_allclose(block["funding_rate"], r / 8)
        assert block["premium"].iloc[:-1].isna().all() and block["premium"].iloc[-1] == 1e-4
    np.testing.assert_allclose(out.loc[hourly, "funding_rate"], 1e-5)  # hourly: untouched
    assert out.index.min() >= HOURLY_FUNDING_SINCE - pd.Timedelta(days=8)
    assert np.isclose(out["funding_rate"].sum(), rates8.sum() + 5e-5)


def test_funding_hourly_before_cutoff_is_not_divided():
    df = funding(n=24, start="2023-05-01")
    out = validate_funding(df, SRC)
    assert out.converted_8h == 0
    np.testing.assert_array_equal(out.frame["funding_rate"], df["funding_rate"])


def test_funding_duplicate_hour_after_floor():
    df = funding(coins=("SOL",), n=5)
    extra = df.iloc[[2]].copy()
    extra["ts"] = extra["ts"] + pd.Timedelta(milliseconds=3)
    df = pd.concat([df.iloc[:3], extra, df.iloc[3:]], ignore_index=True)
    with pytest.raises(DataError, match=r"coin 'SOL', row 3: duplicate timestamp"):
        validate_funding(df, SRC)


def test_funding_nan_and_percent_units():
    df = funding(n=5)
    df.loc[1, "funding_rate"] = np.nan
    with pytest.raises(DataError, match=r"row 1: funding_rate is NaN.*drop the row"):
        validate_funding(df, SRC)
    df = funding(n=5)
    df.loc[2, "funding_rate"] = 1.5
    with pytest.raises(DataError, match=r"4%/hour cap.*not percent"):
        validate_funding(df, SRC)
