"""`sweep promote` must say no to noise AND yes to a real edge (DESIGN section 9, issue 12).

Markets come from sweep.calibrate (known truth: fat-tailed noise, optionally a drift planted
after one UTC hour) and are written as dataset folders, so promote finds them again through the
data locator on the `runs` row, as the real command does. The strategy is `hour_of_day` behind
a test-only name whose hold a test can change ("the strategy was edited after the sweep").
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from scipy import stats as sps
from typer.testing import CliRunner

from harness.simulate import SimConfig
from harness.sources import load_market
from schemas.candidates import CandidatesError, Gates, load_candidates, validate_document
from strategies import hour_of_day
from strategies.base import param, register
from sweep import promote_cli, results
from sweep.calibrate import Plant, write_market
from sweep.promote import PromoteError, run_promotion
from sweep.promote import lockbox as lockbox_mod
from sweep.promote.evidence import max_drawdown_r
from sweep.promote.writer import KillSpec, kill_criteria

ROOT = Path(__file__).resolve().parents[1]
NAME = "test_promote_hour"
HELD = SimConfig().max_positions  # every coin signals at once: the portfolio holds this many
EDGE = Plant(hour=15, side=1, sharpe=3.0 * math.sqrt(HELD))  # annual Sharpe 3 on each coin
EDGE_KEY = (NAME, "long", "US_MAIN", "NEUTRAL", "mid")
EDIT = {"hold": 0}  # a test sets this to play "the strategy was edited after the sweep"


@dataclass(frozen=True)
class HourParams:
    hour: int = param(15, 0, 23, help="decision close hour")
    side: str = param("long", choices=("long", "short"), help="side")
    hold: int = param(4, 1, 12, help="time stop in bars")
    stop_atr: float = param(3.0, 1.0, 6.0, help="stop in ATRs")


@register(NAME, HourParams, description="test only: hour_of_day with an editable hold")
def _hour(market, p, mode="live", fitted=None):
    sig = hour_of_day.generate(market, hour_of_day.Params(p.hour, p.side, p.hold + EDIT["hold"],
                                                          p.stop_atr), mode)
    return type(sig)(NAME, **{n: getattr(sig, n) for n in sig.array_names()})


def run_study(tmp: Path, data: Path, trials: int, seed: int = 1, fixed: dict | None = None) -> Path:
    """A random-sampler study through the sweep's own driver (one batch, so one journal fsync;
    the journal stays under results/studies/, where promote counts its finished trials)."""
    from sweep.study import StudyConfig, run_study

    cfg = StudyConfig(strategy=NAME, trials=trials, sampler="random", seed=seed, data=str(data),
                      results=tmp / "results", batch=trials, fixed=fixed or {})
    out = run_study(cfg)
    assert out.status == "finished" and out.done_now == trials
    return tmp / "results"


def cli(*args: str):
    app = typer.Typer()
    promote_cli.register(app)
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """15 coins x 5,000 hourly bars, a long edge after the 15h close; the search is over hold
    and stop at that hour (the hour search is the calibration's job, under -m slow)."""
    tmp = tmp_path_factory.mktemp("planted")
    data = write_market(tmp / "data", 15, 5000, seed=3, plant=EDGE)
    res = run_study(tmp, data, trials=16, fixed={"hour": EDGE.hour, "side": "long"})
    out = tmp / "live_candidates.json"
    r = cli("--results", str(res), "--out", str(out))
    assert r.exit_code == 0, r.output
    return tmp, data, res, out, r.output


# ------------------------------------------------------------------ yes to a real edge

def test_planted_edge_is_promoted_and_nothing_else(planted):
    tmp, data, res, out, output = planted
    c = load_candidates(out)
    assert [b.key for b in c.buckets] == [EDGE_KEY]  # the bucket that carries the edge
    b = c.buckets[0]
    assert len(b.coins) == HELD and b.params["hour"] == 15
    assert c.data_fingerprint == load_market(str(data), interval="1h").fingerprint
    ev = b.evidence
    g = c.gates
    assert ev.n >= g.min_trades and ev.t_stat >= g.min_t and ev.p_corrected <= g.alpha
    assert ev.dsr >= g.min_dsr and ev.spa_p <= g.spa_alpha and ev.p_oos_loss <= g.max_p_oos_loss
    assert ev.stress.mean_r > 0 and ev.lockbox.passed and ev.lockbox.side_mean_r > 0
    assert ev.stress.mean_r < ev.mean_r  # 1.5x costs cost something
    assert ev.n_trials == 16 and ev.correction == "holm"

    # n, mean R, t and the one-sided p recomputed from the trades table in SQL: top 5 trials by
    # score, one trade per (coin, entry_ts, side) kept from the best-ranked trial
    sql = f"""
        WITH top AS (
            SELECT study, trial, row_number() OVER (ORDER BY score DESC, study, trial) AS rk
            FROM trials WHERE strategy = '{NAME}' AND status = 'complete' QUALIFY rk <= 5),
        one AS (
            SELECT t.*, row_number() OVER (PARTITION BY coin, entry_ts, side ORDER BY top.rk) AS k
            FROM trades t JOIN top USING (study, trial))
        SELECT count(*) AS n, avg(r_multiple) AS m, stddev_samp(r_multiple) AS sd FROM one
        WHERE k = 1 AND side = 1 AND session = 'US_MAIN' AND regime = 'NEUTRAL' AND vol_bucket = 'mid'"""
    row = results.query(res, sql).iloc[0]
    t = row["m"] / (row["sd"] / math.sqrt(row["n"]))
    assert (ev.n, ev.mean_r, ev.t_stat) == (row["n"], pytest.approx(row["m"], rel=1e-12), pytest.approx(t, rel=1e-9))
    assert ev.p_value == pytest.approx(sps.t.sf(t, row["n"] - 1), rel=1e-9)
    # Holm over the run's examined buckets: the smallest p is multiplied by m
    prom = results.query(res, "SELECT * FROM promotions")
    assert ev.p_corrected == pytest.approx(min(1.0, ev.p_value * ev.m_tests), rel=1e-9)
    assert ev.m_tests == int((prom["n"] >= g.min_trades).sum())

    # every bucket considered is logged with its first failed gate and the number that failed
    assert prom["promoted"].sum() == 1
    for r in prom[~prom["promoted"]].itertuples():
        assert r.failed_gate in ("n", "t", "p") and r.reason
        if r.failed_gate == "n":
            assert r.failed_value == r.n and r.threshold == g.min_trades
    # the lockbox was read once, for the one candidate, logged before and after the read
    touches = results.query(res, "SELECT * FROM lockbox_touches")
    reads = results.query(res, "SELECT * FROM lockbox_reads")
    assert len(touches) == len(reads) == 1 and touches["trial"].iloc[0] == b.trial
    assert touches["touched_at"].iloc[0] <= reads["read_at"].iloc[0]
    assert "PROMOTED" in output and "short by" in output  # why the others failed, and by how much


def test_runs_record_where_their_data_is(planted):
    _, data, res, _, _ = planted
    loc = json.loads(results.query(res, "SELECT data_locator FROM runs").iloc[0, 0])
    m = load_market(str(data), interval="1h")
    assert loc == {"source": str(data.resolve()), "interval": "1h", "coins": list(m.coins),
                   "start": m.index[0].isoformat(), "end": m.index[-1].isoformat()}


# ------------------------------------------------------------------ no to noise

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noise_promotes_no_bucket(tmp_path, seed):
    """A drift that exactly pays the costs after one hour: a true net Sharpe of 0 that some
    trials score well on by luck, so the gate is asked, and must say no."""
    data = write_market(tmp_path / "data", 4, 3000, seed=seed, plant=Plant(9, 1, 0.0))
    res = run_study(tmp_path, data, trials=40, seed=seed)
    old = tmp_path / "c.json"
    shutil.copy(ROOT / "schemas" / "live_candidates.example.json", old)
    rep = run_promotion(res, out=old)
    assert rep.buckets and not any(b.promoted for b in rep.buckets)
    assert load_candidates(old).buckets == ()  # an empty result from the gates is written
    assert rep.lockbox_reads == 0


# ------------------------------------------------------------------ the lockbox, read once

def test_rerunning_promote_never_rereads_the_lockbox(planted, tmp_path, monkeypatch):
    _, _, res0, out0, _ = planted
    res = tmp_path / "results"
    shutil.copytree(res0, res, ignore=shutil.ignore_patterns("*.duckdb*", "promotions",
                                                             "lockbox_touches", "lockbox_reads"))
    reads = []
    real = lockbox_mod.read_lockbox
    monkeypatch.setattr(lockbox_mod, "read_lockbox", lambda s, ref: reads.append(ref) or real(s, ref))
    first = run_promotion(res, out=tmp_path / "a.json")
    second = run_promotion(res, out=tmp_path / "b.json")
    assert len(reads) == 1 and (first.lockbox_reads, second.lockbox_reads) == (1, 0)
    a, b, c = (json.loads(p.read_text()) for p in (tmp_path / "a.json", tmp_path / "b.json", out0))
    for d in (a, b, c):
        d.pop("generated_at")
    assert a == b == c  # the logged result is reused: the same file, read or not
    assert len(results.query(res, "SELECT * FROM lockbox_touches")) == 1


KILL_AFTER_READ = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import test_promote
from sweep.promote import lockbox, run_promotion
real = lockbox.read_lockbox
def read_then_die(s, ref):
    real(s, ref)
    os.kill(os.getpid(), signal.SIGKILL)
lockbox.read_lockbox = read_then_die
run_promotion({res!r}, out={out!r})
"""


def test_a_lockbox_read_is_logged_even_when_promote_is_killed_right_after(planted, tmp_path):
    _, _, res0, _, _ = planted
    res = tmp_path / "results"
    shutil.copytree(res0, res, ignore=shutil.ignore_patterns("*.duckdb*", "promotions",
                                                             "lockbox_touches", "lockbox_reads"))
    out = tmp_path / "c.json"
    code = KILL_AFTER_READ.format(tests=str(ROOT / "tests"), res=str(res), out=str(out))
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, env={**os.environ, "NUMBA_CACHE_DIR": str(ROOT / ".numba_cache")})
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    assert not out.exists()
    touches = results.query(res, "SELECT strategy, trial FROM lockbox_touches")
    assert touches["strategy"].tolist() == [NAME]
    assert not results.has_rows(res, "lockbox_reads")
    # the lockbox is spent for those params: the next run does not read it again, and refuses
    rep = run_promotion(res, out=out)
    assert rep.lockbox_reads == 0 and rep.candidates.buckets == ()
    (edge,) = [b for b in rep.buckets if b.key == EDGE_KEY]
    assert edge.failed.gate == "lockbox" and "spent" in edge.reason


def test_lockbox_verdict_and_power_by_hand():
    from schemas.candidates import StressResult
    from sweep.promote.evidence import bucket_stats
    from sweep.promote.gates import BucketCase

    oos = np.array([0.8, -1.0, 1.5, 0.2, -0.4, 1.1, 0.6, -0.9] * 5)
    st = bucket_stats(oos, np.array(["2024-01-01"] * len(oos), dtype="datetime64[ns]"),
                      pd.DatetimeIndex(["2024-01-01"]))
    key = ("s", "long", "US_MAIN", "NEUTRAL", "mid")

    def case_with(own: list[float], other_side: list[float]):
        rows = [("AAA", "long", *key[2:], r) for r in own] + [("BBB", "long", *key[2:], r) for r in other_side]
        trades = pd.DataFrame(rows, columns=["coin", "side", "session", "regime", "vol_bucket", "r"])
        c = BucketCase(key, pd.DataFrame(), st, ("AAA",), (), stress=StressResult(1.5, 1, 0.1))
        return c, lockbox_mod.verdict(c, lockbox_mod.Outcome(trades, False, "test"), Gates())

    own = [0.5, -1.0, 0.9, -1.0, 1.2, -1.0]
    c, lb = case_with(own, [0.4, 0.3])
    x = np.array(own)
    t = x.mean() / (x.std(ddof=1) / math.sqrt(len(x)))
    assert lb.n == 6 and lb.t_stat == pytest.approx(t) and lb.p_negative == pytest.approx(sps.t.cdf(t, 5))
    assert lb.mde == pytest.approx((1.6448536 + 0.8416212) * oos.std(ddof=1) / math.sqrt(6), rel=1e-6)
    assert lb.side_n == 8 and lb.passed and c.promoted
    c, lb = case_with([-1.0, -0.9, -1.1, -1.0, -0.8, -1.2], [2.0] * 20)  # side fine, bucket negative
    assert not lb.passed and c.failed.gate == "lockbox" and "significantly negative" in c.reason
    c, lb = case_with([0.5], [-1.0, -1.0])  # the side loses in the lockbox
    assert not lb.passed and c.failed.gate == "lockbox" and lb.mde is None


# ------------------------------------------------------------------ refusals

def test_same_inputs_give_the_same_file(planted):
    tmp, data, res, out, _ = planted
    again = tmp / "again.json"
    r = cli("--results", str(res), "--out", str(again))
    assert r.exit_code == 0, r.output
    a, b = json.loads(out.read_text()), json.loads(again.read_text())
    assert a.pop("generated_at") and b.pop("generated_at")
    assert a == b


def test_a_strategy_edited_after_the_sweep_cannot_borrow_its_evidence(planted, tmp_path, monkeypatch):
    _, _, res, _, _ = planted
    monkeypatch.setitem(EDIT, "hold", 1)
    rep = run_promotion(res, out=tmp_path / "c.json")
    assert rep.candidates.buckets == ()
    (edge,) = [b for b in rep.buckets if b.key == EDGE_KEY]
    assert edge.failed.gate == "stress" and "does not reproduce" in edge.reason
    assert rep.lockbox_reads == 0


def _no_partial_file(folder: Path, out: Path, before: bytes | None) -> None:
    if before is None:
        assert not out.exists()
    else:
        assert out.read_bytes() == before
    assert not [p for p in folder.iterdir() if p.name.startswith(f".{out.name}")]


def test_other_data_is_an_error_and_keeps_the_old_file(planted, tmp_path):
    _, data, res, out, _ = planted
    old = tmp_path / "live_candidates.json"
    old.write_bytes(out.read_bytes())
    other = write_market(tmp_path / "other", 15, 5000, seed=99, plant=None)
    r = cli("--results", str(res), "--data", str(other), "--out", str(old))
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "nothing to judge" in r.stderr and "pass --data" in r.stderr
    _no_partial_file(tmp_path, old, out.read_bytes())
    # the data moved away from where the runs row says it is: the same refusal
    moved = tmp_path / "moved"
    shutil.copytree(res, moved, ignore=shutil.ignore_patterns("*.duckdb*"))
    runs = results.query(moved, "SELECT * FROM runs").drop(columns=["batch"])
    shutil.rmtree(moved / "runs")
    runs["data_locator"] = runs["data_locator"].str.replace(str(data.resolve()), str(tmp_path / "gone"))
    results.write_batch(moved, "runs", runs)
    r = cli("--results", str(moved), "--out", str(old))
    assert r.exit_code == 2 and "cannot be loaded" in r.stderr and r.stderr.count("\n") == 1
    _no_partial_file(tmp_path, old, out.read_bytes())


def test_trials_from_another_harness_are_skipped_with_the_reason(planted, tmp_path):
    _, _, res, out, _ = planted
    mixed = tmp_path / "results"
    shutil.copytree(res, mixed, ignore=shutil.ignore_patterns("*.duckdb*", "promotions"))
    foreign = results.query(mixed, "SELECT * FROM trials").drop(columns=["batch"])
    foreign["harness_hash"] = "0123456789ab"
    foreign["study"] = foreign["study"] + "-old"
    foreign["score"] = foreign["score"] + 100.0  # would top the ranking if it were compared
    results.write_batch(mixed, "trials", foreign)
    new_out = tmp_path / "c.json"
    r = cli("--results", str(mixed), "--out", str(new_out))
    assert r.exit_code == 0, r.output
    assert "harness hash 0123456789ab" in r.output and "never promoted together" in r.output
    a, b = json.loads(out.read_text()), json.loads(new_out.read_text())
    assert a.pop("generated_at") and b.pop("generated_at")
    assert a == b  # same evidence: the foreign trials changed nothing, N included
    # only foreign trials: a configuration error, not an empty file
    only = tmp_path / "only"
    shutil.copytree(mixed, only, ignore=shutil.ignore_patterns("*.duckdb*"))
    for f in (only / "trials").glob("*.parquet"):
        if (pd.read_parquet(f)["harness_hash"] != "0123456789ab").any():
            f.unlink()
    r = cli("--results", str(only), "--out", str(new_out))
    assert r.exit_code == 2 and "harness hash" in r.stderr and r.stderr.count("\n") == 1


def test_empty_results_folder_is_a_clear_error(tmp_path):
    (tmp_path / "results").mkdir()
    out = tmp_path / "c.json"
    r = cli("--results", str(tmp_path / "results"), "--out", str(out))
    assert r.exit_code != 0
    assert r.stderr.strip().startswith("error: no trials in") and r.stderr.count("\n") == 1
    _no_partial_file(tmp_path, out, None)


def test_corrupt_parquet_batch_is_a_clear_error_and_keeps_the_old_file(planted, tmp_path):
    _, _, res, out, _ = planted
    broken = tmp_path / "results"
    shutil.copytree(res, broken, ignore=shutil.ignore_patterns("*.duckdb*"))
    (broken / "trades" / "zz-corrupt.parquet").write_bytes(b"PAR1 this is not parquet")
    old = tmp_path / "live_candidates.json"
    old.write_bytes(out.read_bytes())
    r = cli("--results", str(broken), "--out", str(old))
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
    r = cli("--results", str(tmp_path), "--out", str(tmp_path / "c.json"), "--correction", "bonferroni")
    assert r.exit_code == 2 and "--correction" in r.stderr
    assert not (tmp_path / "c.json").exists()


# ------------------------------------------------------------------ the statistics, by hand

def test_max_drawdown_of_cumulative_r():
    # cumulative: 1, 3, 2, -1, 0, 4 -> peak 3 then trough -1: 4R
    assert max_drawdown_r(np.array([1.0, 2.0, -1.0, -3.0, 1.0, 4.0])) == pytest.approx(4.0)
    assert max_drawdown_r(np.array([-1.0, -1.0])) == pytest.approx(2.0)  # from the start at 0
    assert max_drawdown_r(np.array([0.5, 0.5])) == 0.0


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
    doc = json.loads((ROOT / "schemas" / "live_candidates.example.json").read_text())
    doc["buckets"][0]["evidence"]["lockbox"]["passed"] = False
    with pytest.raises(CandidatesError):
        validate_document(doc)


# ------------------------------------------------------------------ paper shadow trades

def test_paper_shadow_trades_are_pooled_into_their_bucket(planted, tmp_path):
    from executor.ledger import Ledger
    from harness.friction import DEFAULT_FRICTION, get_friction
    from schemas.ledgers import register_ledger

    _, _, res0, _, _ = planted
    res = tmp_path / "results"
    shutil.copytree(res0, res)  # the module's folder stays as the other tests expect it
    base = {b.key: b for b in run_promotion(res, out=tmp_path / "a.json").buckets}
    assert EDGE_KEY in base and all(b.n_shadow == 0 for b in base.values())

    cur = get_friction(DEFAULT_FRICTION).version
    coin = base[EDGE_KEY].coins[0]
    rows = [(f"2031-01-{d:02d}T14:00:00Z", cur) for d in range(1, 8)]  # 7 of the current friction
    rows += [(f"2031-02-{d:02d}T14:00:00Z", "friction_v0_other") for d in range(1, 4)]  # ignored
    with Ledger.open(tmp_path / "p.sqlite") as led:
        led.con.executemany(
            "INSERT INTO shadow_trades (strategy, coin, side, book, session, regime, vol_bucket, "
            "entry_ts, exit_ts, r_multiple, pnl, fees, funding, exit_reason, friction) VALUES "
            "(?, ?, 1, 'b', 'US_MAIN', 'NEUTRAL', 'mid', ?, ?, 0.5, 5.0, 0.1, 0.0, 'stop', ?)",
            [(NAME, coin, ts, ts.replace("T14", "T18"), fr) for ts, fr in rows])
    register_ledger(res, tmp_path / "p.sqlite")

    rep = run_promotion(res, out=tmp_path / "b.json")
    got = {b.key: b for b in rep.buckets}
    assert got[EDGE_KEY].n_shadow == 7
    assert got[EDGE_KEY].stats.n == base[EDGE_KEY].stats.n + 7
    assert rep.studies[NAME].dsr == run_promotion(res, out=tmp_path / "c.json").studies[NAME].dsr
    for k, b in got.items():
        if k != EDGE_KEY:
            assert b.n_shadow == 0 and b.stats.n == base[k].stats.n
    prom = results.query(res, "SELECT n, n_shadow, session, vol_bucket FROM promotions WHERE out LIKE '%b.json'")
    assert prom.loc[(prom["session"] == "US_MAIN") & (prom["vol_bucket"] == "mid"), "n_shadow"].tolist() == [7]


def test_study_evidence_on_the_scale_of_the_trial_sharpes():
    """DSR of the selected trial with SR0 from the trial Sharpes over the same days; the
    variance behind SR0 is the clusters' and at most the null's 1 / (T - 1)."""
    from harness.stats import dsr, trial_clusters
    from sweep.promote.eligible import TrialRef
    from sweep.promote.evidence import study_evidence

    rng = np.random.default_rng(0)
    days = pd.date_range("2024-01-01", periods=300, freq="D")

    def long_format(mat: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame([("s", k, d, mat[i, k]) for k in range(mat.shape[1]) for i, d in enumerate(days)],
                            columns=["study", "trial", "date", "ret"])

    # 20 distinct trials whose true Sharpes differ a lot: observed variance >> 1/(T-1), capped
    mat = rng.normal(0, 0.01, (300, 20)) + np.linspace(-0.004, 0.004, 20)
    ev = study_evidence(long_format(mat), TrialRef("s", 19), n_ledger=25)
    labels = trial_clusters(mat)
    assert ev.n_effective == labels.max() + 5  # clusters here + the ledger's 5 trials elsewhere
    assert ev.sr_var_observed > 1 / 299 and ev.sr_var == pytest.approx(1 / 299)
    assert ev.dsr == pytest.approx(dsr(mat[:, 19], ev.n_effective, 1 / 299), rel=1e-12)
    assert ev.sharpe == pytest.approx(mat[:, 19].mean() / mat[:, 19].std(ddof=1) * math.sqrt(365))
    # near-copies of one noise trial: one cluster, a tiny observed variance, used as it is
    base = rng.normal(0, 0.01, (300, 1))
    copies = base + rng.normal(0, 0.0005, (300, 8))
    ev = study_evidence(long_format(copies), TrialRef("s", 0), n_ledger=8)
    assert ev.n_effective == 1 and ev.sr_var == ev.sr_var_observed == 0.0
    assert ev.dsr == pytest.approx(dsr(copies[:, 0], 1, 0.0), rel=1e-12)  # N = 1: the PSR vs 0
    # a day a trial lacks is dropped for every trial: same days, same scale
    lf = long_format(mat)
    ev_all = study_evidence(lf, TrialRef("s", 19), n_ledger=20)
    ev_cut = study_evidence(lf[~((lf["trial"] == 3) & (lf["date"] == days[0]))], TrialRef("s", 19), n_ledger=20)
    assert ev_cut.days == ev_all.days - 1
    assert ev_cut.sharpe == pytest.approx(mat[1:, 19].mean() / mat[1:, 19].std(ddof=1) * math.sqrt(365))


def test_a_results_folder_missing_finished_trials_is_refused_with_both_counts(planted, tmp_path):
    """Half of the study's rows elsewhere (a worker with its own --results): N would shrink, so
    promote refuses before any evidence and names both counts; a journal that is gone is also
    a refusal, not a silent pass."""
    _, _, res, out, _ = planted
    part = tmp_path / "part"
    shutil.copytree(res, part, ignore=shutil.ignore_patterns("*.duckdb*", "promotions", "lockbox_touches"))
    trials = results.query(part, "SELECT * FROM trials").drop(columns=["batch"])
    shutil.rmtree(part / "trials")
    kept = trials[trials["trial"] % 2 == 0]
    results.write_batch(part, "trials", kept)
    new_out = tmp_path / "c.json"
    r = cli("--results", str(part), "--out", str(new_out))
    assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.output
    assert f"holds {len(trials)} finished trials" in r.stderr
    assert f"rows for only {len(kept)} of them" in r.stderr and "point --results at the shared folder" in r.stderr
    assert not new_out.exists()
    runs = results.query(part, "SELECT * FROM runs").drop(columns=["batch"])
    shutil.rmtree(part / "runs")
    shutil.rmtree(part / "studies", ignore_errors=True)
    results.write_batch(part, "runs", runs.assign(storage=str(tmp_path / "gone.journal")))
    r = cli("--results", str(part), "--out", str(new_out))
    assert r.exit_code == 2 and "is gone" in r.stderr and "--storage" in r.stderr, r.output
    assert not new_out.exists()
