"""harness.store: idempotent atomic upserts, read-back, and all-or-nothing imports."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from _data_frames import candles, funding, write_dataset

from harness import store as st
from harness.errors import DataError


def tree_hash(root: Path) -> dict[str, str]:
    """Every file under root (hidden ones included) -> sha256 of its bytes."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_upsert_candles_round_trip_and_idempotent(tmp_path):
    df = candles(n=30)
    assert st.upsert_candles(tmp_path, "1h", df) == {"BTC": 30, "ETH": 30}
    path = tmp_path / "hyperliquid" / "candles_1h" / "coin=BTC" / "data.parquet"
    assert path.is_file()
    back = st.read_candles(tmp_path, "1h")
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    assert str(back["ts"].dtype) == "datetime64[ns, UTC]"
    before = tree_hash(tmp_path)
    assert st.upsert_candles(tmp_path, "1h", df) == {"BTC": 0, "ETH": 0}
    assert tree_hash(tmp_path) == before  # nothing rewritten
    assert st.stored_coins(tmp_path, "candles_1h") == ["BTC", "ETH"]
    assert st.stored_intervals(tmp_path) == ["1h"]
    assert st.last_ts(tmp_path, "candles_1h", "ETH") == df["ts"].iloc[-1]
    assert st.last_ts(tmp_path, "candles_1h", "SOL") is None


def test_upsert_adds_new_rows_and_existing_rows_win(tmp_path):
    df = candles(n=30)
    st.upsert_candles(tmp_path, "1h", df.iloc[:20])  # BTC bars 0-19
    newer = df.copy()
    newer.loc[5, ["open", "high", "low", "close"]] *= 2.0  # a conflicting version of bar 5
    added = st.upsert_candles(tmp_path, "1h", newer)
    assert added == {"BTC": 10, "ETH": 30}
    back = st.read_candles(tmp_path, "1h", ["BTC"])
    assert len(back) == 30 and back["ts"].is_monotonic_increasing
    np.testing.assert_array_equal(back["close"], df.loc[df.coin == "BTC", "close"])  # kept


def test_upsert_funding_floors_and_dedups(tmp_path):
    f = funding(n=24)
    assert st.upsert_funding(tmp_path, f) == {"BTC": 24, "ETH": 24}
    again = f.copy()
    again["ts"] = again["ts"] + pd.Timedelta(milliseconds=1)  # other jitter, same hours
    assert st.upsert_funding(tmp_path, again) == {"BTC": 0, "ETH": 0}
    back = st.read_funding(tmp_path)
    assert (back["ts"] == back["ts"].dt.floor("h")).all() and len(back) == 48


def test_upsert_validates_before_writing(tmp_path):
    df = candles(n=10)
    df.loc[3, "high"] = 1e-9
    with pytest.raises(DataError, match="high below max"):
        st.upsert_candles(tmp_path, "1h", df)
    assert not (tmp_path / "hyperliquid").exists()
    bad = candles(coins=("A/B",), n=3)
    with pytest.raises(DataError, match="cannot be stored as a folder name"):
        st.upsert_candles(tmp_path, "1h", bad)


def test_write_failure_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    st.upsert_candles(tmp_path, "1h", candles(n=10))
    before = tree_hash(tmp_path)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", boom)
    with pytest.raises(OSError, match="disk full"):
        st.upsert_candles(tmp_path, "1h", candles(n=20))
    assert tree_hash(tmp_path) == before  # no half-written file, no temp file left over


def test_corrupt_partition_is_a_clear_error(tmp_path):
    st.upsert_candles(tmp_path, "1h", candles(n=10))
    path = tmp_path / "hyperliquid" / "candles_1h" / "coin=ETH" / "data.parquet"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(DataError, match=r"coin=ETH/data.parquet: cannot read it as parquet.*corrupt"):
        st.read_candles(tmp_path, "1h")


def test_import_dataset_then_reimport_adds_nothing(tmp_path):
    ds = write_dataset(tmp_path / "ds", candles(n=48), funding(n=48))
    store = tmp_path / "store"
    tables = {t.table: t for t in st.import_dataset(ds, store)}
    assert tables["candles_1h"].added == 96 and tables["funding_1h"].added == 96
    assert tables["candles_1h"].coins == 2
    before = tree_hash(store)
    assert all(t.added == 0 for t in st.import_dataset(ds, store))
    assert tree_hash(store) == before


def test_failed_import_leaves_store_byte_for_byte_unchanged(tmp_path):
    store = tmp_path / "store"
    st.import_dataset(write_dataset(tmp_path / "old", candles(n=24), funding(n=24)), store)
    before = tree_hash(store)
    # a dataset whose candles are new and valid (they would add rows) but whose funding,
    # validated last, is broken: nothing at all may be written
    bad_funding = funding(coins=("BTC", "ETH", "SOL"), n=96)
    bad_funding.loc[150, "funding_rate"] = np.nan
    ds = write_dataset(tmp_path / "new", candles(coins=("BTC", "ETH", "SOL"), n=96), bad_funding)
    with pytest.raises(DataError, match="funding_1h.parquet: coin 'ETH', row 150: funding_rate is NaN"):
        st.import_dataset(ds, store)
    assert tree_hash(store) == before
    # a corrupt file too
    (ds / "funding_1h.parquet").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read it as parquet"):
        st.import_dataset(ds, store)
    assert tree_hash(store) == before


def test_import_needs_a_dataset_folder(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        st.import_dataset(tmp_path / "missing", tmp_path / "store")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no candles_<interval>.parquet"):
        st.import_dataset(tmp_path / "empty", tmp_path / "store")
