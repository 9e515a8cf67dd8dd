"""`sweep promote` must be hard to fool (issue 6): a planted edge is promoted and nothing else,
pure noise promotes nothing, the file is reproducible, and bad inputs give one clear line.

Markets are small synthetic ones written as a candles parquet file (so the CLI's --data path
loads exactly the Market the study ran on); the two strategies are test-only and trade fixed
UTC hours, so their buckets are known in advance.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from scipy import stats as sps
from sweep.promote_stats import KillSpec, kill_criteria, max_drawdown_r, welch_below
from typer.testing import CliRunner

from harness.market import Market
from harness.signals import Signals
from harness.sources import load_market
from schemas.candidates import CandidatesError, Gates, load_candidates, validate_document
from strategies.base import param, register
from sweep import promote_cli, results
from sweep.promote import PromoteError, run_promotion

ROOT = Path(__file__).resolve().parents[1]
EDGE_HOUR, NOISE_LONG_HOUR, NOISE_SHORT_HOUR = 15, 3, 9  # decision-bar close hours (UTC)
EDGE_BUCKET = ("test_promote_planted", "long", "US_MAIN", "NEUTRAL", "mid")
EDIT = {"hold": 0}  # a test sets this to play "the strategy was edited after the sweep"


# ------------------------------------------------------------------ test-only strategies

def _hour_signals(market: Market, name: str, entries: list[tuple[int, int]], hold: int,
                  stop_pct: float) -> Signals:
    """Enter `side` on every coin at the bars whose close is at `hour` UTC; time stop `hold`."""
    sig = Signals.empty(market, name)
    close_hour = ((market.index.asi8 // 10**9 + market.bar_seconds) // 3600) % 24
    for hour, side in entries:
        sig.direction[close_hour == hour, :] = side
    sig.direction[~market.listed] = 0
    active = sig.direction != 0
    sig.stop[active] = (market.close * stop_pct)[active]
    sig.score[active] = 1.0
    sig.hold[:] = hold
    return sig


@dataclass(frozen=True)
class PlantedParams:
    hold: int = param(4, 1, 8, help="time stop in bars")
    stop_pct: float = param(0.02, 0.01, 0.03, help="stop distance / close")


@register("test_promote_planted", PlantedParams, description="test only: long 15h, long 3h, short 9h")
def _planted(market, p, mode="live", fitted=None):
    return _hour_signals(market, "test_promote_planted",
                         [(EDGE_HOUR, 1), (NOISE_LONG_HOUR, 1), (NOISE_SHORT_HOUR, -1)],
                         p.hold + EDIT["hold"], p.stop_pct)


@dataclass(frozen=True)
class FlexParams:
    hour: int = param(12, 0, 23, help="decision close hour")
    side: int = param(1, kind="choice", choices=(1, -1), help="side")
    hold: int = param(4, 1, 12, help="time stop in bars")
    stop_pct: float = param(0.08, 0.03, 0.2, help="stop distance / close")


@register("test_promote_flex", FlexParams, description="test only: any hour, any side")
def _flex(market, p, mode="live", fitted=None):
    return _hour_signals(market, "test_promote_flex", [(p.hour, p.side)], p.hold, p.stop_pct)


# ------------------------------------------------------------------ data and studies

def write_market(path: Path, seed: int, sigma: float, edge: float = 0.0, n_bars: int = 3000,
                 coins: tuple[str, ...] = ("AAA", "BBB", "CCC")) -> Path:
    """A seeded random walk; with `edge`, +edge log return on each of the 4 bars after every
    bar closing at EDGE_HOUR (the planted drift the edge bucket trades)."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2024-01-01", periods=n_bars, freq="h", tz="UTC")
    r = sigma * rng.standard_normal((n_bars, len(coins)))
    if edge:
        for t in np.flatnonzero((idx.hour + 1) % 24 == EDGE_HOUR):
            r[t + 1:t + 5] += edge
    close = 100.0 * np.exp(np.cumsum(r, axis=0))
    opn = np.vstack([np.full((1, len(coins)), 100.0), close[:-1]])
    wick = np.abs(rng.standard_normal((2, *r.shape))) * sigma * 0.5
    high, low = np.maximum(opn, close) * np.exp(wick[0]), np.minimum(opn, close) * np.exp(-wick[1])
    pd.concat([pd.DataFrame({"coin": c, "ts": idx, "open": opn[:, j], "high": high[:, j],
                             "low": low[:, j], "close": close[:, j], "volume": 1e7})  # a liquid coin
               for j, c in enumerate(coins)], ignore_index=True).to_parquet(path)
    return path


def run_study(tmp: Path, strategy: str, data: Path, trials: int) -> Path:
    """A random-sampler study through the sweep's own driver; returns the results folder.

    The Optuna journal goes to /dev/shm when there is one: its per-trial fsyncs are the slow
    part on a busy disk, and the journal is not what these tests are about."""
    from sweep.study import StudyConfig, run_study

    shm = Path("/dev/shm")
    jdir = Path(tempfile.mkdtemp(dir=shm if shm.is_dir() else tmp))
    try:
        cfg = StudyConfig(strategy=strategy, trials=trials, sampler="random", seed=1,
                          data=str(data), results=tmp / "results", batch=trials,
                          storage=str(jdir / "study.journal"))
        out = run_study(cfg, market=load_market(str(data), interval="1h"))
    finally:
        shutil.rmtree(jdir, ignore_errors=True)
    assert out.status == "finished" and out.done_now == trials
    return tmp / "results"


def cli(*args: str):
    app = typer.Typer()
    promote_cli.register(app)
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("planted")
    data = write_market(tmp / "market.parquet", seed=0, sigma=0.004, edge=0.002)
    res = run_study(tmp, "test_promote_planted", data, trials=24)
    out = tmp / "live_candidates.json"
    r = cli("--results", str(res), "--data", str(data), "--out", str(out))
    assert r.exit_code == 0, r.output
    return tmp, data, res, out, r.output


# ------------------------------------------------------------------ 1. planted edge

def test_planted_edge_is_promoted_and_nothing_else(planted):
    tmp, data, res, out, output = planted
    c = load_candidates(out)
    assert [b.key for b in c.buckets] == [EDGE_BUCKET]
    b = c.buckets[0]
    assert b.coins == ("AAA", "BBB", "CCC")
    assert c.data_fingerprint == load_market(str(data), interval="1h").fingerprint
    ev = b.evidence
    assert ev.n >= 30 and ev.t_stat >= 3 and ev.dsr >= 0.95 and ev.pbo <= 0.5
    assert ev.stress.mean_r > 0 and ev.lockbox.passed and ev.lockbox.n >= 5
    assert ev.stress.mean_r < ev.mean_r  # 1.5x costs cost something
    assert ev.n_trials == 24

    # the bucket's n, mean R and t recomputed in SQL straight from the trades table: top 5
    # trials by score, one trade per (coin, entry_ts, side) kept from the best-ranked trial
    sql = """
        WITH top AS (
            SELECT study, trial, row_number() OVER (ORDER BY score DESC, study, trial) AS rk
            FROM trials WHERE strategy = 'test_promote_planted' AND status = 'complete'
            QUALIFY rk <= 5),
        one AS (
            SELECT t.*, row_number() OVER (PARTITION BY coin, entry_ts, side ORDER BY top.rk) AS k
            FROM trades t JOIN top USING (study, trial))
        SELECT count(*) AS n, avg(r_multiple) AS m, stddev_samp(r_multiple) AS sd FROM one
        WHERE k = 1 AND side = 1 AND session = 'US_MAIN' AND regime = 'NEUTRAL'
          AND vol_bucket = 'mid'"""
    row = results.query(res, sql).iloc[0]
    assert ev.n == row["n"]
    assert ev.mean_r == pytest.approx(row["m"], rel=1e-12)
    assert ev.t_stat == pytest.approx(row["m"] / (row["sd"] / math.sqrt(row["n"])), rel=1e-9)

    # every bucket considered is logged, with the first failed gate; the noise ones fail early
    prom = results.query(res, "SELECT * FROM promotions")
    assert len(prom) == 3 and prom["promoted"].sum() == 1
    noise = prom[~prom["promoted"]]
    assert set(zip(noise["side"], noise["session"], strict=True)) == {("long", "ASIA"), ("short", "EU_OPEN")}
    assert set(noise["failed_gate"]) <= {"n", "t", "dsr"}
    # the lockbox was read once, for the one bucket that reached it, and that read is logged
    touches = results.query(res, "SELECT * FROM lockbox_touches")
    assert len(touches) == 1 and touches["session"].iloc[0] == "US_MAIN"
    assert touches["n"].iloc[0] == ev.lockbox.n
    assert "PROMOTED" in output and "US_MAIN" in output


# ------------------------------------------------------------------ 2. pure noise

def test_pure_noise_promotes_nothing(tmp_path):
    data = write_market(tmp_path / "market.parquet", seed=0, sigma=0.015)
    res = run_study(tmp_path, "test_promote_flex", data, trials=200)
    market = load_market(str(data), interval="1h")
    scored = results.query(res, "SELECT count(*) AS n FROM trials WHERE status = 'complete'")
    assert scored["n"].iloc[0] >= 3  # some lucky trials scored: the gate has something to judge

    rep = run_promotion(res, market=market, out=tmp_path / "c.json")
    assert rep.candidates.buckets == ()
    assert rep.buckets and not any(b.promoted for b in rep.buckets)
    assert load_candidates(tmp_path / "c.json").buckets == ()
    assert rep.studies["test_promote_flex"].n_trials == 200

    # and not only because of the t hurdle: without it, DSR (N = 200) still says no
    relaxed = run_promotion(res, market=market, out=tmp_path / "c2.json", gates=Gates(min_t=0.0))
    assert relaxed.candidates.buckets == ()
    assert {b.failed for b in relaxed.buckets} <= {"n", "dsr"}


# ------------------------------------------------------------------ 3. idempotent

def test_same_inputs_give_the_same_file(planted):
    tmp, data, res, out, _ = planted
    again = tmp / "again.json"
    r = cli("--results", str(res), "--data", str(data), "--out", str(again))
    assert r.exit_code == 0, r.output
    a, b = json.loads(out.read_text()), json.loads(again.read_text())
    assert a.pop("generated_at") and b.pop("generated_at")
    assert a == b
    touches = results.query(res, "SELECT prior_touches FROM lockbox_touches ORDER BY touched_at")
    assert touches["prior_touches"].tolist()[-1] >= 1  # the second read knows about the first


def test_a_strategy_edited_after_the_sweep_cannot_borrow_its_evidence(planted, tmp_path, monkeypatch):
    _, data, res, _, _ = planted
    monkeypatch.setitem(EDIT, "hold", 1)
    rep = run_promotion(res, data=str(data), out=tmp_path / "c.json")
    assert rep.candidates.buckets == ()
    (edge,) = [b for b in rep.buckets if b.key == EDGE_BUCKET]
    assert edge.failed == "stress" and "does not reproduce" in edge.reason
    assert rep.lockbox_touches == 0  # the lockbox is not read for a bucket that failed before it


# ------------------------------------------------------------------ 4. malformed or mixed inputs

def _no_partial_file(folder: Path, out: Path, before: bytes | None) -> None:
    if before is None:
        assert not out.exists()
    else:
        assert out.read_bytes() == before
    assert not [p for p in folder.iterdir() if p.name.startswith(f".{out.name}")]


def test_trials_from_another_harness_are_skipped_with_the_reason(planted, tmp_path):
    _, data, res, out, _ = planted
    mixed = tmp_path / "results"
    shutil.copytree(res, mixed, ignore=shutil.ignore_patterns("*.duckdb*", "promotions", "lockbox_touches"))
    foreign = results.query(mixed, "SELECT * FROM trials").drop(columns=["batch"])
    foreign["harness_hash"] = "0123456789ab"
    foreign["study"] = foreign["study"] + "-old"
    foreign["score"] = foreign["score"] + 100.0  # would top the ranking if it were compared
    results.write_batch(mixed, "trials", foreign)

    new_out = tmp_path / "c.json"
    r = cli("--results", str(mixed), "--data", str(data), "--out", str(new_out))
    assert r.exit_code == 0, r.output
    assert "harness hash 0123456789ab" in r.output and "never promoted together" in r.output
    a, b = json.loads(out.read_text()), json.loads(new_out.read_text())
    assert a.pop("generated_at") and b.pop("generated_at")
    assert a == b  # same evidence: the foreign trials changed nothing, N included


def test_empty_results_folder_is_a_clear_error(tmp_path):
    (tmp_path / "results").mkdir()
    out = tmp_path / "c.json"
    r = cli("--results", str(tmp_path / "results"), "--out", str(out))
    assert r.exit_code != 0
    assert r.stderr.strip().startswith("error: no trials in") and r.stderr.count("\n") == 1
    _no_partial_file(tmp_path, out, None)


def test_corrupt_parquet_batch_is_a_clear_error_and_keeps_the_old_file(planted, tmp_path):
    _, data, res, out, _ = planted
    broken = tmp_path / "results"
    shutil.copytree(res, broken, ignore=shutil.ignore_patterns("*.duckdb*"))
    (broken / "trades" / "zz-corrupt.parquet").write_bytes(b"PAR1 this is not parquet")
    old = tmp_path / "live_candidates.json"
    old.write_bytes(out.read_bytes())
    r = cli("--results", str(broken), "--data", str(data), "--out", str(old))
    assert r.exit_code == 2
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
    assert "Traceback" not in r.output + r.stderr
    _no_partial_file(tmp_path, old, out.read_bytes())


def test_the_real_command_prints_one_line_not_a_traceback(tmp_path):
    (tmp_path / "results" / "trials").mkdir(parents=True)
    (tmp_path / "results" / "trials" / "x.parquet").write_bytes(b"garbage")
    out = tmp_path / "c.json"
    p = subprocess.run([sys.executable, "-m", "sweep", "promote", "--results",
                        str(tmp_path / "results"), "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "NUMBA_CACHE_DIR": str(ROOT / ".numba_cache")})
    assert p.returncode != 0
    assert "Traceback" not in p.stderr and p.stderr.startswith("error: ")
    assert len(p.stderr.strip().splitlines()) == 1
    _no_partial_file(tmp_path, out, None)


def test_bad_thresholds_are_refused_before_anything_is_read(tmp_path):
    with pytest.raises(PromoteError, match="--min-dsr"):
        run_promotion(tmp_path, out=tmp_path / "c.json", gates=Gates(min_dsr=2.0))
    r = cli("--results", str(tmp_path), "--out", str(tmp_path / "c.json"), "--lockbox-alpha", "0")
    assert r.exit_code == 2 and "--lockbox-alpha" in r.stderr
    assert not (tmp_path / "c.json").exists()


# ------------------------------------------------------------------ the statistics, by hand

def test_max_drawdown_of_cumulative_r():
    # cumulative: 1, 3, 2, -1, 0, 4 -> peak 3 then trough -1: 4R
    assert max_drawdown_r(np.array([1.0, 2.0, -1.0, -3.0, 1.0, 4.0])) == pytest.approx(4.0)
    assert max_drawdown_r(np.array([-1.0, -1.0])) == pytest.approx(2.0)  # from the start at 0
    assert max_drawdown_r(np.array([0.5, 0.5])) == 0.0


def test_welch_one_sided_matches_the_formula():
    lock = np.array([0.2, -0.5, 1.1, 0.4, -0.9, 0.3])
    oos = np.array([0.8, 0.1, 1.5, -0.2, 0.9, 1.2, 0.4, 0.6, -0.4, 1.0])
    v1, v2 = lock.var(ddof=1) / len(lock), oos.var(ddof=1) / len(oos)
    t = (lock.mean() - oos.mean()) / math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1**2 / (len(lock) - 1) + v2**2 / (len(oos) - 1))  # Welch-Satterthwaite
    got_t, got_p = welch_below(lock, oos)
    assert got_t == pytest.approx(t, rel=1e-12)
    assert got_p == pytest.approx(sps.t.cdf(t, df), rel=1e-9)
    assert welch_below(np.array([1.0]), oos) == (None, None)


def test_kill_criteria_from_the_binomial_and_the_normal_band():
    r = np.array([1.0, -1.0, 2.0, -1.0, 0.5, 1.5, -1.0, 0.8] * 5)
    k = kill_criteria(r, KillSpec(window_trades=20, confidence=0.95))
    p = (r > 0).mean()
    cdf = np.cumsum([math.comb(20, j) * p**j * (1 - p) ** (20 - j) for j in range(21)])
    assert k.min_win_rate == pytest.approx(int(np.argmax(cdf >= 0.05)) / 20)  # 5% quantile of wins
    half = 1.959963984540054 * r.std(ddof=1) / math.sqrt(20)
    assert (k.expected_r_low, k.expected_r_high) == pytest.approx((r.mean() - half, r.mean() + half))
    assert k.max_drawdown_r >= max_drawdown_r(r)
    assert kill_criteria(r, KillSpec(window_trades=20)) == k  # seeded: reproducible


def test_schema_rejects_what_promote_must_never_write():
    doc = json.loads((ROOT / "schemas" / "live_candidates.example.json").read_text())
    doc["buckets"][0]["evidence"]["n"] = 0
    with pytest.raises(CandidatesError):
        validate_document(doc)


# ------------------------------------------------------------------ paper shadow trades

def test_paper_shadow_trades_are_pooled_into_their_bucket(planted, tmp_path):
    from executor.ledger import Ledger
    from harness.friction import DEFAULT_FRICTION, get_friction
    from schemas.ledgers import register_ledger

    _, data, res0, _, _ = planted
    res = tmp_path / "results"
    shutil.copytree(res0, res)  # the module's folder stays as the other tests expect it
    base = {b.key: b for b in run_promotion(res, data=str(data), out=tmp_path / "a.json").buckets}
    assert EDGE_BUCKET in base and all(b.n_shadow == 0 for b in base.values())

    cur = get_friction(DEFAULT_FRICTION).version
    rows = [(f"2031-01-{d:02d}T14:00:00Z", cur) for d in range(1, 8)]  # 7 of the current friction
    rows += [(f"2031-02-{d:02d}T14:00:00Z", "friction_v0_other") for d in range(1, 4)]  # ignored
    with Ledger.open(tmp_path / "p.sqlite") as led:
        led.con.executemany(
            "INSERT INTO shadow_trades (strategy, coin, side, book, session, regime, vol_bucket, "
            "entry_ts, exit_ts, r_multiple, pnl, fees, funding, exit_reason, friction) VALUES "
            "(?, 'AAA', 1, 'b', 'US_MAIN', 'NEUTRAL', 'mid', ?, ?, 0.5, 5.0, 0.1, 0.0, 'stop', ?)",
            [(EDGE_BUCKET[0], ts, ts.replace("T14", "T18"), fr) for ts, fr in rows])
    register_ledger(res, tmp_path / "p.sqlite")

    rep = run_promotion(res, data=str(data), out=tmp_path / "b.json")
    got = {b.key: b for b in rep.buckets}
    assert got[EDGE_BUCKET].n_shadow == 7
    assert got[EDGE_BUCKET].stats.n == base[EDGE_BUCKET].stats.n + 7
    assert got[EDGE_BUCKET].stats.dsr == base[EDGE_BUCKET].stats.dsr  # study-level: untouched
    for k, b in got.items():
        if k != EDGE_BUCKET:
            assert b.n_shadow == 0 and b.stats.n == base[k].stats.n
    prom = results.query(res, "SELECT n, n_shadow, session FROM promotions WHERE out LIKE '%b.json'")
    assert prom.loc[prom["session"] == "US_MAIN", "n_shadow"].tolist() == [7]
