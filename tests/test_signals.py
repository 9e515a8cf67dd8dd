"""`sweep signals`: the same signals as `generate` at that bar, nothing read after --at, the
filter verdicts from generate's own masks, the panels (the half-life quality by hand), the JSON
schema, --params / --incumbent, and one-line errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from _market_from_arrays import market_from_arrays
from _strategy_markets import ROOT, default_market
from test_causality import _peeking

from harness.errors import ConfigError
from harness.folds import FoldSpec
from harness.friction import DEFAULT_FRICTION, get_friction
from harness.manifest import harness_hash
from harness.market import interval_seconds
from harness.resample import resample
from harness.signals import REGIMES, SESSIONS, SIDES, VOL_BUCKETS
from schemas.signals import SignalsDocumentError, validate_document
from strategies import ou_funding as ouf
from strategies.base import RegisteredStrategy, registry
from sweep import results, results_schema
from sweep.causality import perturb_after
from sweep.signals import decision_bar, signals_at, to_document

STRATEGIES = sorted(registry().items())
_MARKETS: dict = {}


def market_for(strategy):
    """The embedded default at the strategy's interval; a sub-hourly strategy runs on the hourly
    bars (the embedded default has none finer): what is compared is the command, not the edge."""
    if strategy.interval not in _MARKETS:
        m = default_market()
        coarser = interval_seconds(strategy.interval) > m.bar_seconds
        _MARKETS[strategy.interval] = resample(m, strategy.interval) if coarser else m
    return _MARKETS[strategy.interval]


def signal_bars(strategy, market, mode, n=2):
    """Up to n bars where generate (fitted on the first 30%, only to find them) signals."""
    p = strategy.default_params()
    lo = int(market.n_bars * 0.3)
    sig = strategy.generate(market, p, mode, strategy.fit(market.slice(0, lo), p))
    fired = np.flatnonzero((sig.direction[lo:] != 0).any(axis=1)) + lo
    rng = np.random.default_rng(len(strategy.name))
    return sorted(rng.choice(fired, min(n, fired.size), replace=False).tolist())


@pytest.mark.parametrize("name,strategy", STRATEGIES, ids=[n for n, _ in STRATEGIES])
def test_signals_equal_generate_at_that_bar(name, strategy):
    market = market_for(strategy)
    p = strategy.default_params()
    compared = 0
    for mode in ("live", "shadow"):
        for t in signal_bars(strategy, market, mode) + [market.n_bars - 1]:
            rep = signals_at(strategy, market, p, mode, t)
            full = strategy.generate(market, p, mode, strategy.fit(market.slice(0, t + 1), p))
            on = np.flatnonzero(full.direction[t])
            got = {r.coin: r for r in rep.rows if r.status == "signal"}
            assert set(got) == {market.coins[c] for c in on}
            for c in on:
                r, side = got[market.coins[c]], int(full.direction[t, c])
                ref, dist, tr = market.close[t, c], full.stop[t, c], full.target[t, c]
                assert (r.side, r.entry_ref, r.stop_distance, r.score) == (
                    SIDES[side], ref, dist, full.score[t, c])
                assert r.stop == ref - side * dist
                assert (r.target_r, r.target) == ((None, None) if np.isnan(tr) else (tr, ref + side * tr * dist))
                assert r.hold == (int(full.hold[t, c]) or None)
                assert (r.session, r.regime, r.vol_bucket) == (
                    SESSIONS[full.session[t, c]], REGIMES[full.regime[t, c]], VOL_BUCKETS[full.vol_bucket[t, c]])
                assert all(v in ("pass", "boost", "n/a") for v in r.gates.values()), r.gates
                compared += 1
            assert set(rep.exits) == {market.coins[c] for c in np.flatnonzero(full.exit[t])}
            assert rep.bar_open == market.index[t]
    assert compared > 0, f"{name} signalled at none of the chosen bars: the comparison checked nothing"


@pytest.mark.parametrize("name,strategy", STRATEGIES, ids=[n for n, _ in STRATEGIES])
def test_signals_never_read_after_at(name, strategy):
    """The causality gate's cut: bars after the decision bar replaced by random ones change
    nothing (signals, verdicts, panels)."""
    market = market_for(strategy)
    p = strategy.default_params()
    t = (signal_bars(strategy, market, "shadow", 1) or [market.n_bars // 2])[0]
    noisy = perturb_after(market, t, np.random.default_rng(t))
    now = pd.Timestamp("2025-01-01", tz="UTC")
    docs = [to_document([signals_at(strategy, m, p, "shadow", t)], "x", True, None, now)
            for m in (market, noisy)]
    assert docs[0] == docs[1]
    assert noisy.close[t + 1:].tolist() != market.close[t + 1:].tolist()


def test_a_peeking_strategy_cannot_see_past_at():
    """The cut is what guarantees it: a strategy that reads the next close (test_causality's
    deliberately broken one) answers at bar t the same whatever follows t."""
    from strategies.momentum import Params

    cheat = RegisteredStrategy("peeking", Params, _peeking)
    market = default_market()
    t = market.n_bars // 2
    noisy = perturb_after(market, t, np.random.default_rng(1))
    a, b = (signals_at(cheat, m, Params(), "live", t) for m in (market, noisy))
    assert a.rows == b.rows
    # without the cut it would differ: on the whole markets the cheat's bar t does
    full, other = (cheat.generate(m, Params()).direction[t] for m in (market, noisy))
    assert (full != other).any()


def test_blocked_candidates_name_the_filter_that_blocked_them():
    """xsection_rank at a rebalance bar of the default: every top coin the efficiency gate (or
    the 200-MA gate) stopped is listed as blocked with that gate's word, never as a signal."""
    s = registry()["xsection_rank"]
    market = default_market()
    p = s.default_params()
    t = int(np.flatnonzero(s.generate(market, p).exit.any(axis=1))[-1])  # a rebalance bar
    rep = signals_at(s, market, p, "live", t)
    from strategies.filters import efficiency_gate, ma_gate
    from strategies.xsection_rank import ranking, top_n_mask

    rk = ranking(market.slice(0, t + 1), p)
    chosen = top_n_mask(rk.composite, p.top_n)[t]
    side = np.sign(np.nan_to_num(rk.momentum[t]))
    eff_ok = efficiency_gate(market.close[:t + 1], p.eff_window)[0][t]
    ma_ok = ma_gate(market.close[:t + 1], np.where(chosen, side, 0)[None, :].repeat(t + 1, 0))[t]
    by_coin = {r.coin: r for r in rep.rows}
    for c in np.flatnonzero(chosen & (side != 0)):
        r = by_coin[market.coins[c]]
        assert r.side == SIDES[int(side[c])]
        assert (r.status == "signal") == bool(eff_ok[c] and ma_ok[c])
        assert (r.gates["efficiency"] == "block") == (not eff_ok[c])
        assert (r.gates["ma200"] == "block") == (not ma_ok[c])
        assert r.gates["oi"] == "n/a"  # no open interest in the data: the gate passes by rule
    assert len(rep.rows) > 0


def test_half_life_quality_equals_the_formula_on_hand_values():
    # rolling z over 10 bars; the last 10 funding values (x 1e-5) are, per coin:
    #   A: nine 1s and a 3        -> mean 1.2, population sd 0.6, z = (3 - 1.2) / 0.6 = 3
    #   B: eight 1s and two 3s    -> mean 1.4, sd 0.8, z = (3 - 1.4) / 0.8 = 2
    #   C: nine 1s and a -1       -> mean 0.8, sd 0.6, z = -3
    #   D: as A, but not fitted   -> quality unknown, ranked last
    base = np.ones((40, 4))
    base[-1, [0, 3]] = 3.0
    base[-2:, 1] = 3.0
    base[-1, 2] = -1.0
    funding = base * 1e-5
    m = market_from_arrays(np.full((40, 4), 100.0), funding=funding, coins=("A", "B", "C", "D"))
    hl = np.array([12.0, 6.0, 24.0])
    fitted = ouf.OUFit(("A", "B", "C"), np.log(2) / hl, np.array([1e-5, 2e-5, 3e-5]),
                       np.array([4e-6, 5e-6, 6e-6]), hl, 40)
    p = ouf.Params(z_method="rolling", z_window=10)
    (panel,) = ouf.half_life_dashboard(m, p, "live", fitted)
    rows = {r[0]: dict(zip([c.name for c in panel.columns], r, strict=True)) for r in panel.rows}
    want = {"A": math.exp(-12 / 12) * 1.0, "B": math.exp(-6 / 12) * 2 / 3, "C": math.exp(-24 / 12) * 1.0}
    for coin, q in want.items():
        assert rows[coin]["quality"] == pytest.approx(q, rel=1e-9)
    assert rows["A"]["z"] == pytest.approx(3.0) and rows["B"]["z"] == pytest.approx(2.0)
    assert rows["C"]["z"] == pytest.approx(-3.0)
    assert rows["B"]["half_life_h"] == 6.0 and rows["B"]["theta_per_h"] == pytest.approx(np.log(2) / 6)
    assert (rows["C"]["mu"], rows["C"]["sigma"]) == (3e-5, 6e-6)
    assert [r[0] for r in panel.rows] == ["B", "A", "C", "D"] and rows["D"]["quality"] is None


def test_decision_bar_is_the_last_bar_closed_by_at():
    m = default_market()
    hour = pd.Timedelta("1h")
    assert decision_bar(m, None) == m.n_bars - 1
    assert decision_bar(m, m.index[100] + hour) == 100  # bar 100 closes exactly then
    assert decision_bar(m, m.index[100] + hour + pd.Timedelta("59min")) == 100
    assert decision_bar(m, m.index[-1] + 1.5 * hour) == m.n_bars - 1
    for outside in (m.index[0] + pd.Timedelta("59min"), m.index[-1] + 2 * hour):
        with pytest.raises(ConfigError, match="outside"):
            decision_bar(m, outside)


# ---------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def cli():
    from typer.testing import CliRunner

    from sweep.cli import _register, app

    if not any(c.name == "signals" for c in app.registered_commands):
        _register()
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})

    return invoke


def test_json_of_every_strategy_matches_the_schema(cli):
    r = cli("signals", "--all", "--data", "embedded", "--mode", "shadow", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    validate_document(doc)
    hourly_or_more = [n for n, s in STRATEGIES if interval_seconds(s.interval) >= 3600]
    assert [s["strategy"] for s in doc["strategies"]] == hourly_or_more  # no 15m bars here
    assert "skipped sfp (15m bars)" in r.stderr
    panels = {s["strategy"]: [p["name"] for p in s["panels"]] for s in doc["strategies"]}
    assert panels["ou_funding"] == ["half_life"] and panels["xsection_rank"] == ["composite"]
    assert panels["gem_bear"] == ["momentum"]
    bad = json.loads(r.stdout)
    bad["strategies"][0]["signals"] = [{"coin": "BTC", "status": "maybe"}]
    with pytest.raises(SignalsDocumentError, match="strategies/0/signals/0"):
        validate_document(bad)


def test_tables_render_with_params_and_at(cli):
    s = registry()["zscore_reversion"]
    m = default_market()
    t = signal_bars(s, m, "live", 1)[0]
    at = (m.index[t] + pd.Timedelta("1h")).isoformat()
    r = cli("signals", "-s", "zscore_reversion", "--data", "embedded", "--at", at,
            "--params", '{"window": 48, "stop_pct": 0.02}')
    assert r.exit_code == 0, r.output
    assert f"1h bar {m.index[t]:%Y-%m-%d %H:%M}" in r.stdout and "params: --params" in r.stdout
    assert "signal(s)" in r.stdout and "2.00%" in r.stdout  # risk = stop_pct, as a percentage


def test_incumbent_is_the_best_scored_trial_of_this_harness_and_data(cli, tmp_path):
    m = default_market()
    prov = {"run_id": "r", "harness_hash": harness_hash(), "data_fingerprint": m.fingerprint,
            "sim_model_version": get_friction(DEFAULT_FRICTION).version, "git_commit": "c", "seed": 0}

    def row(trial, score, window, **kw):
        return {**prov, "command": "run", "strategy": "zscore_reversion", "study": "st",
                "trial": trial, "status": "complete", "rejected": None, "score": score,
                "objective": score, "worst_fold": 0.0, "fold_scores": "[]", "folds": "[]",
                "params": json.dumps({"window": window}), "kept": False, "min_trades": 30,
                "duration_s": 0.1, "finished_at": pd.Timestamp.now(tz="UTC"), **kw}

    def run(run_id, k):  # the run a trial belongs to records its folds
        folds = FoldSpec(k).record(FoldSpec(k).folds(m.interval))
        cols = {c: None for c in results_schema.RUNS.names}
        return {**cols, **prov, "run_id": run_id, "command": "run", "strategy": "zscore_reversion",
                "folds": results.to_json(folds), "updated_at": pd.Timestamp.now(tz="UTC")}

    results.write_batch(tmp_path, "runs", pd.DataFrame([run("r", 4), run("r3", 3)]))
    results.write_batch(tmp_path, "trials", pd.DataFrame([
        row(1, 0.5, 30), row(2, 0.9, 60), row(3, 5.0, 90, harness_hash="0ther"),
        row(4, 7.0, 120, data_fingerprint="elsewhere"), row(5, 9.0, 150, run_id="r3")]))
    r = cli("signals", "-s", "zscore_reversion", "--data", "embedded", "--incumbent",
            "--results", tmp_path, "--json")
    assert r.exit_code == 0, r.output
    (s,) = json.loads(r.stdout)["strategies"]
    assert s["params"]["window"] == 60 and s["params_source"].startswith("incumbent st #2")
    r = cli("signals", "-s", "momentum", "--data", "embedded", "--incumbent", "--results", tmp_path)
    assert r.exit_code == 2 and "no scored momentum trial" in r.stderr and r.stderr.count("\n") == 1


@pytest.mark.parametrize("args,what", [
    (("signals", "--at", "2030-01-01"), "outside"),
    (("signals", "--at", "yesterday-ish"), "is not a time"),
    (("signals", "-s", "momentum", "--all"), "not both"),
    (("signals", "-s", "momentum", "--params", '{"no_such": 1}'), "unknown parameter"),
    (("signals", "-s", "momentum", "--params", "[1]"), "JSON object"),
    (("signals", "--params", '{"ema_fast": 5}'), "needs one --strategy"),
    (("run", "-s", "momentum", "--purge", "3y"), "unknown unit 'y'"),
    (("run", "-s", "momentum", "--embargo", "90m"), "not a whole number of 1h bars"),
    (("noise", "-s", "momentum", "--train", "36h30m"), "bar count"),
    (("scan", "-s", "momentum", "-p", "ema_fast", "-v", "5", "--test", "2.5d"), "bar count"),
])
def test_bad_input_is_one_clear_error(cli, tmp_path, args, what):
    r = cli(*args, "--data", "embedded", "--results", tmp_path / "r")
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.output
    assert what in r.stderr and r.stdout == ""
    assert not (tmp_path / "r").exists()  # nothing written


def test_error_exits_nonzero_with_one_line_on_stderr(tmp_path):
    p = subprocess.run([sys.executable, "-m", "sweep", "signals", "--data", "embedded", "--at",
                        "1999-01-01"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = p.stderr.strip().splitlines()
    assert p.returncode != 0 and len(lines) == 1 and "--at 1999-01-01" in lines[0], p.stderr
    assert p.stdout == ""


def test_ranking_panels_show_the_rebalance_bar_in_force():
    """xsection_rank: composite = 0.40 / 0.30 / 0.30 of the three component ranks shown, best
    first, `top` on the top_n; gem_bear: its momentum, r^2 and weights, as rank_at has them."""
    m = default_market()
    xs = registry()["xsection_rank"]
    (panel,) = xs.panels(m, xs.default_params())
    names = [c.name for c in panel.columns]
    rows = [dict(zip(names, r, strict=True)) for r in panel.rows]
    assert len(rows) == m.n_coins and sum(r["top"] for r in rows) == min(10, m.n_coins)
    for r in rows:
        assert r["composite"] == pytest.approx(0.4 * r["rank_momentum"] + 0.3 * r["rank_inv_vol"]
                                               + 0.3 * r["rank_funding_z"], rel=1e-12)
    assert [r["composite"] for r in rows] == sorted((r["composite"] for r in rows), reverse=True)

    from strategies import gem_bear as gb

    daily = resample(m, "1d")
    p = gb.Params(sides="both", top_n=3)
    (panel,) = registry()["gem_bear"].panels(daily, p)
    t = int(np.flatnonzero(gb.rebalance_bars(daily, p.rebalance))[-1])
    table = gb.report(daily, p, bar=t).set_index("coin")
    assert daily.index[t].isoformat() in panel.title
    for row in panel.rows:
        r = dict(zip([c.name for c in panel.columns], row, strict=True))
        want = table.loc[r["coin"]]
        assert r["weight"] == want.weight and r["eligible"] == want.eligible
        assert r["held"] == SIDES.get(int(want.side), "")
        if r["momentum"] is not None:
            assert (r["momentum"], r["r2"]) == (want.momentum, want.r2)
