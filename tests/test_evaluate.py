"""evaluate: walk-forward isolation, the lockbox, batch == one-by-one, ensembles."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from harness import evaluate as ev_mod
from harness.errors import ConfigError, LockboxError, SignalsError
from harness.evaluate import Evaluation, evaluate, evaluate_batch, merge_signals
from harness.folds import Folds
from harness.friction import V5
from harness.manifest import harness_hash
from harness.market import Market
from harness.signals import Signals, setup_key
from harness.simulate import SimConfig

N_BARS = 2400  # default Folds: lockbox [2040, 2400), tests of 408 bars from 408, train 360


def make_market(n_bars: int = N_BARS, n_coins: int = 3, seed: int = 0, vol: float = 0.006) -> Market:
    rng = np.random.default_rng(seed)
    shape = (n_bars, n_coins)
    trend = np.repeat(rng.normal(0, vol / 3, (n_bars // 100 + 1, n_coins)), 100, axis=0)[:n_bars]
    close = 100.0 * np.exp(np.cumsum(trend + rng.normal(0, vol, shape), axis=0))
    opn = np.vstack([close[:1], close[:-1]])
    wick = np.abs(rng.normal(0, vol / 2, shape)) * close
    return Market(
        index=pd.date_range("2024-01-01", periods=n_bars, freq="h", tz="UTC"),
        coins=("BTC", "ETH", "SOL")[:n_coins], interval="1h",
        open=opn, high=np.maximum(opn, close) + wick, low=np.minimum(opn, close) - wick,
        close=close, volume=np.full(shape, 1e6), funding=np.full(shape, 1e-5),
        premium=np.full(shape, np.nan), open_interest=np.full(shape, np.nan),
        listed=np.ones(shape, bool), source="test", synthetic=True,
    )


@pytest.fixture(scope="module")
def market() -> Market:
    return make_market()


# ---------------------------------------------------------------------------- test strategies

@dataclass(frozen=True)
class MomParams:
    lookback: int = 24
    stop_pct: float = 0.02
    target: float = 3.0


def momentum_signals(market: Market, p: MomParams, name: str) -> Signals:
    """Enter when close crosses its value `lookback` bars ago; causal by construction."""
    sig = Signals.empty(market, name)
    c = market.close
    diff = np.full_like(c, np.nan)
    diff[p.lookback:] = c[p.lookback:] - c[:-p.lookback]
    side = np.sign(np.nan_to_num(diff)).astype(np.int8)
    prev = np.vstack([np.zeros((1, c.shape[1]), np.int8), side[:-1]])
    fire = (side != 0) & (side != prev)
    sig.direction[fire] = side[fire]
    sig.stop[:] = c * p.stop_pct
    sig.target[:] = p.target
    sig.score[:] = np.abs(np.nan_to_num(diff)) / c
    bars, coins = np.nonzero(fire)
    sig.setup[bars, coins] = setup_key(bars, coins, side[fire], 1)
    return sig


class Momentum:
    name = "mom"
    interval = "1h"
    params_cls = MomParams

    def fit(self, market, params):
        return None

    def generate(self, market, params, mode="live", fitted=None):
        return momentum_signals(market, params, self.name)


class Recorder(Momentum):
    """Fits something (so every fold is fitted) and records what each call saw."""

    name = "rec"

    def __init__(self, full: Market):
        self.full = full
        self.fits: list[tuple[int, int, object]] = []
        self.gens: list[tuple[int, int, object]] = []

    def _span(self, market: Market) -> tuple[int, int]:
        pos = self.full.index.get_indexer(market.index)
        assert (pos >= 0).all() and (np.diff(pos) == 1).all()
        return int(pos[0]), int(pos[-1])

    def fit(self, market, params):
        model = object()
        self.fits.append((*self._span(market), model))
        return model

    def generate(self, market, params, mode="live", fitted=None):
        self.gens.append((*self._span(market), fitted))
        return momentum_signals(market, params, self.name)


class NoFitRecorder(Recorder):
    """Fits nothing (the one-pass path) and records what each call saw."""

    name = "nofit"

    def fit(self, market, params):
        self.fits.append((*self._span(market), None))
        return None


# ---------------------------------------------------------------------------- isolation

def test_fold_models_never_see_their_test_window_or_the_lockbox(market):
    rec = Recorder(market)
    folds = Folds()
    e = evaluate(rec, MomParams(), market=market, folds=folds)
    lock0 = N_BARS - 360
    tests = [(408 * (k + 1), 408 * (k + 2)) for k in range(4)]  # by hand: 2040 // 5 = 408
    assert folds.split(N_BARS).segments == tuple(tests)
    assert len(rec.fits) == 4 and len(rec.gens) == 4
    for k, ((t0, t1), (f0, f1, model)) in enumerate(zip(tests, rec.fits, strict=True)):
        assert f1 < t0 - folds.purge_bars, f"fold {k} fit saw bar {f1}, test starts {t0}"
        assert (f0, f1) == (408 * k + 24, t0 - 24 - 1)  # 360 rolling bars, purge 24
        assert f1 < lock0
        g0, g1, used = rec.gens[k]
        assert (g0, g1) == (0, t1 - 1)  # history up to the end of its own test window
        assert used is model  # the model fitted for this fold generates this fold
    assert max(g1 for _, g1, _ in rec.gens) < lock0
    assert not e.lockbox
    assert (e.daily_returns.index < market.index[lock0].normalize()).all()


def test_one_pass_generate_never_sees_the_lockbox(market):
    rec = NoFitRecorder(market)
    evaluate(rec, MomParams(), market=market)
    lock0 = N_BARS - 360
    assert [(f0, f1) for f0, f1, _ in rec.fits] == [(24, 383)]  # asked once, on fold 0's train
    assert [(g0, g1) for g0, g1, _ in rec.gens] == [(0, lock0 - 1)]  # one pass, no lockbox
    rec = NoFitRecorder(market)
    evaluate(rec, MomParams(), market=market, lockbox=True)
    assert [(g0, g1) for g0, g1, _ in rec.gens] == [(0, N_BARS - 1)]


def test_lockbox_only_with_the_flag(market):
    rec = Recorder(market)
    e = evaluate(rec, MomParams(), market=market, lockbox=True)
    lock0 = N_BARS - 360
    assert e.lockbox and len(e.folds) == 1
    (f0, f1, model), = rec.fits
    assert f1 == lock0 - 24 - 1  # fitted before the lockbox, minus purge
    (g0, g1, used), = rec.gens
    assert g1 == N_BARS - 1 and used is model
    assert (e.trades["signal_bar"] >= lock0).all() and len(e.trades) > 0


def test_evaluate_refuses_the_lockbox_without_the_flag(market, monkeypatch):
    for bad in ("yes", 1, None):
        with pytest.raises(ConfigError, match="lockbox must be True or False"):
            evaluate(Momentum(), market=market, lockbox=bad)
    with pytest.raises(LockboxError, match="no lockbox"):
        evaluate(Momentum(), market=market, folds=Folds(lockbox_frac=0.0), lockbox=True)
    # a fold plan that reached into the lockbox (a bug in Folds) is refused, not evaluated
    plan = Folds().split(N_BARS)
    last = dataclasses.replace(plan.folds[-1], test=(plan.folds[-1].test[0], N_BARS))
    leaky = dataclasses.replace(plan, folds=plan.folds[:-1] + (last,))
    monkeypatch.setattr(Folds, "split", lambda self, n: leaky)
    with pytest.raises(LockboxError, match="only evaluate"):
        evaluate(Momentum(), market=market)


def test_fast_path_equals_per_fold_path(market):
    # generate is causal and ignores `fitted`, so one pass and per-fold passes must agree
    fast = evaluate(Momentum(), MomParams(lookback=12), market=market)
    slow = evaluate(Recorder(market), MomParams(lookback=12), market=market)
    assert_same(fast, dataclasses.replace(slow, strategy=fast.strategy,
                                          trades=slow.trades.assign(strategy=fast.strategy)))


# ---------------------------------------------------------------------------- fields

def test_evaluation_fields_are_sane(market):
    folds = Folds()
    e = evaluate(Momentum(), {"stop_pct": 0.04}, market=market, folds=folds)
    assert isinstance(e, Evaluation)
    assert e.strategy == "mom" and e.params == {"lookback": 24, "stop_pct": 0.04, "target": 3.0}
    assert e.friction == V5.version and e.harness_hash == harness_hash()  # v5: the default
    assert e.data_fingerprint == market.fingerprint
    assert len(e.folds) == len(e.fold_scores) == 4
    assert e.worst_fold == min(e.fold_scores)
    assert e.base.n_trades == sum(m.n_trades for m in e.folds) == len(e.trades) > 30
    assert e.rejected is None  # the score of the chained test windows, DESIGN section 6:
    damp = 1 / (1 + max(0.0, e.base.max_dd - 0.15)) ** 2
    assert e.score == pytest.approx(e.base.annualized * damp * (1 + 0.1 * (1 - e.base.hhi)))
    for m, s in zip(e.folds, e.fold_scores, strict=True):  # per fold: raw, never rejected
        assert s == pytest.approx(m.annualized / (1 + max(0.0, m.max_dd - 0.15)) ** 2
                                  * (1 + 0.1 * (1 - m.hhi)))
    assert e.stress.fees > e.base.fees  # fees x 1.5
    plan = folds.split(market.n_bars)
    in_test = np.zeros(market.n_bars, bool)
    for a, b in plan.segments:
        in_test[a:b] = True
    assert in_test[e.trades["signal_bar"]].all()
    assert (e.trades["entry_bar"] > e.trades["signal_bar"]).all()
    assert set(e.trades["segment"]) <= {0, 1, 2, 3}
    days = pd.date_range(market.index[plan.segments[0][0]].normalize(),
                         market.index[plan.segments[-1][1] - 1].normalize(), freq="D")
    assert e.daily_returns.index.equals(pd.DatetimeIndex(days, name="date"))


def test_rejection_is_reported(market):
    e = evaluate(Momentum(), MomParams(lookback=12, stop_pct=0.01), market=market)
    assert e.score == -np.inf and e.rejected == "annualized < -50%"
    assert e.base.annualized < -0.5
    assert np.isfinite(e.fold_scores).all() and e.worst_fold == min(e.fold_scores)


def test_bad_signals_name_the_strategy(market):
    class Broken(Momentum):
        name = "broken"

        def generate(self, market, params, mode="live", fitted=None):
            sig = super().generate(market, params)
            sig.stop[:] = 0.0
            return sig

    with pytest.raises(SignalsError, match="broken: stop must be"):
        evaluate(Broken(), market=market)
    with pytest.raises(ConfigError, match="params must be a MomParams"):
        evaluate(Momentum(), params=3, market=market)
    with pytest.raises(ConfigError, match="needs market"):
        evaluate(Momentum())


# ---------------------------------------------------------------------------- batch

def assert_same(a: Evaluation, b: Evaluation) -> None:
    assert (a.strategy, a.params, a.friction, a.rejected, a.lockbox) == \
        (b.strategy, b.params, b.friction, b.rejected, b.lockbox)
    np.testing.assert_equal(a.score, b.score)
    for x, y in [(a.base, b.base), (a.stress, b.stress), *zip(a.folds, b.folds, strict=True)]:
        np.testing.assert_equal(dataclasses.asdict(x), dataclasses.asdict(y))
    np.testing.assert_equal(a.fold_scores, b.fold_scores)
    pd.testing.assert_series_equal(a.daily_returns, b.daily_returns)
    pd.testing.assert_frame_equal(a.trades, b.trades)


def test_batch_equals_one_by_one(market):
    params = [MomParams(lookback=lb, stop_pct=sp) for lb, sp in
              [(6, 0.01), (12, 0.02), (24, 0.015), (48, 0.03), (8, 0.005)]]
    done = []
    batch = evaluate_batch(Momentum(), params, market, chunk_size=2, progress=done.append)
    assert done == [2, 4, 5]
    for p, b in zip(params, batch, strict=True):
        assert_same(evaluate(Momentum(), p, market=market), b)
    # fitted strategies and the lockbox go through the same path
    rec = Recorder(market)
    lb = evaluate_batch(rec, params[:2], market, lockbox=True)
    for p, b in zip(params[:2], lb, strict=True):
        assert_same(evaluate(Recorder(market), p, market=market, lockbox=True), b)


def test_batch_chunks_by_memory(market, monkeypatch):
    cells = market.n_bars * market.n_coins  # the pre-lockbox view is smaller: 2 sets per chunk
    monkeypatch.setattr(ev_mod, "CHUNK_BYTES", 2 * (cells * ev_mod._SIGNAL_BYTES_PER_CELL
                                                    + 32 * market.n_bars))
    done = []
    evaluate_batch(Momentum(), [MomParams(lookback=x) for x in (6, 7, 8, 9, 10)], market,
                   progress=done.append, record_trades=False)
    assert done == [2, 4, 5]


# ---------------------------------------------------------------------------- ensembles

@dataclass(frozen=True)
class ScriptParams:
    events: tuple = ()  # (bar, coin, direction, score, setup origin bar)


class Scripted:
    """Fires exactly the scripted events (causal: an event at t depends on nothing after t)."""

    interval = "1h"
    params_cls = ScriptParams

    def __init__(self, name: str):
        self.name = name

    def fit(self, market, params):
        return None

    def generate(self, market, params, mode="live", fitted=None):
        sig = Signals.empty(market, self.name)
        for bar, coin, d, score, origin in params.events:
            if bar < market.n_bars:
                sig.direction[bar, coin] = d
                sig.score[bar, coin] = score
                sig.stop[bar, coin] = market.close[bar, coin] * 0.05
                sig.hold[bar, coin] = 3
                sig.setup[bar, coin] = setup_key(origin, coin, d, 1)
        return sig


def test_merge_signals_by_hand():
    m = make_market(n_bars=4, n_coins=2)
    a, b = Signals.empty(m, "a"), Signals.empty(m, "b")
    a.direction[0, 0], a.score[0, 0], a.stop[0, 0] = 1, 1.0, 1.0  # tie: a wins
    b.direction[0, 0], b.score[0, 0], b.stop[0, 0] = -1, 1.0, 2.0
    a.direction[1, 1], a.score[1, 1], a.stop[1, 1] = 1, 0.5, 1.0  # b scores higher
    b.direction[1, 1], b.score[1, 1], b.stop[1, 1] = -1, 0.7, 3.0
    b.direction[2, 0], b.score[2, 0], b.stop[2, 0] = 1, -5.0, 4.0  # alone: b, whatever its score
    a.exit[3, 1] = True  # nobody fires: any member's exit closes
    b.exit[2, 0] = False
    a.exit[2, 0] = True  # b fired here: b's exit flag (False) wins the cell
    merged, who = merge_signals([a, b])
    assert merged.strategy == "a+b"
    np.testing.assert_array_equal(merged.direction, [[1, 0], [0, -1], [1, 0], [0, 0]])
    np.testing.assert_array_equal(merged.stop[[0, 1, 2], [0, 1, 0]], [1.0, 3.0, 4.0])
    np.testing.assert_array_equal(who, [[0, -1], [-1, 1], [1, -1], [-1, -1]])
    np.testing.assert_array_equal(merged.exit, [[False, False], [False, False], [False, False],
                                                [False, True]])


def _ensemble_run(market, friction):
    a = ScriptParams(events=((250, 0, 1, 1.0, 250), (300, 2, -1, 1.0, 300)))
    b = ScriptParams(events=(
        (250, 0, 1, 1.0, 250),  # tie with A on BTC: A's signal
        (250, 1, 1, 2.0, 250),  # B alone on ETH
        (262, 0, 1, 1.0, 250),  # B re-fires A's setup after A's trade closed
        (300, 2, 1, 5.0, 300),  # B outscores A on SOL
    ))
    folds = Folds(k=1, test_bars=200, train_bars=100, purge_bars=0, embargo_bars=0, lockbox_frac=0.0)
    return evaluate([(Scripted("A"), a), (Scripted("B"), b)], market=market, folds=folds,
                    friction=friction, config=SimConfig(max_positions=5))


def test_ensemble_keeps_trade_owners_and_dedups_a_shared_setup():
    market = make_market(n_bars=400, vol=0.001)
    e = _ensemble_run(market, "v4")
    assert e.strategy == "A+B" and set(e.params) == {"A", "B"}
    t = e.trades.sort_values(["signal_bar", "coin"]).reset_index(drop=True)
    got = list(zip(t["signal_bar"], t["coin"], t["side"], t["strategy"], strict=True))
    assert got == [(250, "BTC", 1, "A"), (250, "ETH", 1, "B"), (300, "SOL", 1, "B")]
    assert (t["exit_reason"] == "time").all()
    # without de-duplication (v2) the re-fired setup is a second trade, owned by B
    t2 = _ensemble_run(market, "v2").trades.sort_values(["signal_bar", "coin"])
    got2 = list(zip(t2["signal_bar"], t2["coin"], t2["strategy"], strict=True))
    assert got2 == [(250, "BTC", "A"), (250, "ETH", "B"), (262, "BTC", "B"), (300, "SOL", "B")]


def test_ensemble_input_errors(market):
    with pytest.raises(ConfigError, match="distinct names"):
        evaluate([(Momentum(), None), (Momentum(), None)], market=market)
    with pytest.raises(ConfigError, match="pass params=None"):
        evaluate([(Momentum(), None)], MomParams(), market=market)
    with pytest.raises(ConfigError, match="pairs"):
        evaluate([Momentum()], market=market)
