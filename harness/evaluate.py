"""Walk-forward evaluation (DESIGN sections 6 and 7): the one way a strategy gets a score.

The lockbox is cut off the market BEFORE any strategy code runs, so without `lockbox=True` no
fit, generate or kernel call can read it. Each fold's model is fitted on its train window only;
its signals are generated on the history up to the end of its test window (indicator warm-up,
generate is causal) and kept for the test window only. The test windows of every set run as
independent segments of one kernel call (simulate chunks it), and the fee-stress run is a second
call on the same signals. A strategy that fits nothing is generated once for all folds.
"""

from __future__ import annotations

import dataclasses
import logging
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import ConfigError, HarnessError, LockboxError
from harness.folds import FoldPlan, Folds, Range
from harness.friction import DEFAULT_FRICTION, FEE_STRESS, get_friction
from harness.manifest import harness_hash
from harness.market import Market
from harness.metrics import Metrics, raw_score, score
from harness.signals import Signals
from harness.simulate import SimConfig, simulate
from harness.strategy import Mode, Strategy

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 2**20  # memory budget for one kernel call's signals in evaluate_batch
_SIGNAL_BYTES_PER_CELL = sum(np.dtype(dt).itemsize for dt in Signals.DTYPES.values())

Member = tuple[Strategy, Any]
_VIEWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _before_lockbox(market: Market, stop: int) -> Market:
    """The market cut at the lockbox, one object per (market, cut): a sweep evaluates many
    batches on one market, and what is derived from a Market object (its fingerprint, the
    cost estimate, columnar arrays, cached indicators) is then derived once, not per batch."""
    views = _VIEWS.setdefault(market, {})
    if stop not in views:
        views[stop] = market.slice(0, stop)
    return views[stop]


@dataclass(frozen=True)
class Evaluation:
    strategy: str  # ensemble: member names joined by "+"
    params: dict  # ensemble: {member name: params dict}
    friction: str  # sim_model_version tag of the base run
    score: float  # -inf when rejected
    rejected: str | None
    base: Metrics  # concatenated out-of-sample segments
    stress: Metrics  # the same with fees and slippage x FEE_STRESS
    folds: tuple[Metrics, ...]  # base metrics per test window
    fold_scores: tuple[float, ...]  # raw score per test window
    worst_fold: float
    daily_returns: pd.Series  # daily out-of-sample returns of the base run
    trades: pd.DataFrame | None
    lockbox: bool
    harness_hash: str
    data_fingerprint: str


def evaluate(strategy: Strategy | Sequence[Member], params: Any = None, market: Market | None = None,
             friction: str = DEFAULT_FRICTION, folds: Folds = Folds(), config: SimConfig = SimConfig(),
             mode: Mode = "live", lockbox: bool = False, record_trades: bool = True,
             detail: Market | None = None) -> Evaluation:
    """Score one strategy (with `params`, None for its defaults) or an ensemble.

    An ensemble is a sequence of (strategy, params) pairs run as one portfolio: at each bar and
    coin the highest score wins (ties: the earlier member), each trade keeps the member that won,
    and v3+ de-duplication makes one setup fired by several members one trade. `lockbox=True`
    (promotion only) fits on the bars before the lockbox and evaluates the lockbox alone.
    `detail` (a lower-interval market of the same coins) turns on the intrabar walk.
    """
    members = _members(strategy, params)
    return _evaluate_sets([members], market, friction, folds, config, mode, lockbox, record_trades,
                          detail)[0]


def evaluate_batch(strategy: Strategy, params_list: Sequence[Any], market: Market | None = None,
                   friction: str = DEFAULT_FRICTION, folds: Folds = Folds(),
                   config: SimConfig = SimConfig(), mode: Mode = "live", lockbox: bool = False,
                   record_trades: bool = True, chunk_size: int | None = None,
                   progress: Callable[[int], None] | None = None,
                   detail: Market | None = None) -> list[Evaluation]:
    """`evaluate` for many parameter sets of one strategy, one kernel call per chunk.

    Results equal calling `evaluate` one set at a time. `chunk_size` None sizes chunks so the
    signals of one chunk stay within CHUNK_BYTES; `progress(n_done)` is called after each chunk.
    """
    if not isinstance(strategy, Strategy):
        raise ConfigError("evaluate_batch takes one strategy and a list of its parameter sets; "
                          "evaluate ensembles one at a time with evaluate")
    if chunk_size is not None and chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1 or None, got {chunk_size}")
    sets = [_members(strategy, p) for p in params_list]
    if market is None:
        raise ConfigError("evaluate_batch needs a market")
    if chunk_size is None:
        per_set = market.n_bars * market.n_coins * _SIGNAL_BYTES_PER_CELL + 32 * market.n_bars
        chunk_size = max(1, CHUNK_BYTES // per_set)
    out: list[Evaluation] = []
    for i in range(0, len(sets), chunk_size):
        out += _evaluate_sets(sets[i:i + chunk_size], market, friction, folds, config, mode,
                              lockbox, record_trades, detail)
        if progress is not None:
            progress(len(out))
    return out


def merge_signals(signals: Sequence[Signals]) -> tuple[Signals, np.ndarray]:
    """One Signals per bar and coin from several: the highest score wins, ties the earlier one.

    Returns the merged Signals (named "a+b") and the winner index per cell (-1: nobody fired).
    Where nobody fires, a member's exit flag still closes the coin's position (positions belong
    to the portfolio, so any member can ask to leave).
    """
    first = signals[0]
    arrays = {n: getattr(first, n).copy() for n in first.array_names()}
    winner = np.where(first.direction != 0, 0, -1).astype(np.int16)
    any_exit = first.exit.copy()
    for i, sig in enumerate(signals[1:], start=1):
        take = (sig.direction != 0) & ((arrays["direction"] == 0) | (sig.score > arrays["score"]))
        for n in arrays:
            np.copyto(arrays[n], getattr(sig, n), where=take)
        winner[take] = i
        any_exit |= sig.exit
    arrays["exit"] = np.where(winner >= 0, arrays["exit"], any_exit)
    return Signals("+".join(s.strategy for s in signals), **arrays), winner


# ---------------------------------------------------------------------------------- internals

def _members(strategy: Any, params: Any) -> list[Member]:
    if isinstance(strategy, Strategy):
        return [(strategy, _params(strategy, params))]
    if isinstance(strategy, (str, bytes)) or not isinstance(strategy, Sequence) or not strategy:
        raise ConfigError(f"evaluate takes a Strategy or a non-empty sequence of (strategy, params) "
                          f"pairs, got {type(strategy).__name__}")
    if params is not None:
        raise ConfigError("an ensemble carries its params in its (strategy, params) pairs: "
                          "pass params=None")
    members = []
    for item in strategy:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], Strategy)):
            raise ConfigError(f"ensemble members must be (strategy, params) pairs, got {item!r:.80}")
        members.append((item[0], _params(item[0], item[1])))
    names = [s.name for s, _ in members]
    if len(set(names)) != len(names):
        raise ConfigError(f"ensemble members must have distinct names, got {names}")
    return members


def _params(strategy: Strategy, params: Any) -> Any:
    cls = strategy.params_cls
    if params is None:
        return cls()
    if isinstance(params, dict):
        try:
            return cls(**params)
        except TypeError as e:
            raise ConfigError(f"{strategy.name}: bad parameters {params}: {e}") from None
    if not isinstance(params, cls):
        raise ConfigError(f"{strategy.name}: params must be a {cls.__name__} (or a dict of its "
                          f"fields), got {type(params).__name__}")
    return params


def _windows(plan: FoldPlan, lockbox: bool) -> list[tuple[Range, Range]]:
    """(train, test) per segment; with lockbox=True one segment: the lockbox."""
    if lockbox:
        if plan.lockbox[1] <= plan.lockbox[0]:
            raise LockboxError("lockbox=True but this Folds has no lockbox (lockbox_frac is 0)")
        if plan.lockbox_train[1] <= plan.lockbox_train[0]:
            raise ConfigError(f"no bars to fit on before the lockbox (train {plan.lockbox_train})")
        return [(plan.lockbox_train, plan.lockbox)]
    for f in plan.folds:
        if f.test[1] > plan.lockbox_start or f.train[1] > plan.lockbox_start:
            raise LockboxError(f"fold {f} reaches the lockbox at bar {plan.lockbox_start}: only "
                               "evaluate(..., lockbox=True) may read it")
    return [(f.train, f.test) for f in plan.folds]


def _test_rows(n_bars: int, windows: list[tuple[Range, Range]]) -> np.ndarray:
    rows = np.zeros(n_bars, dtype=bool)
    for _, (a, b) in windows:
        rows[a:b] = True
    return rows


def _member_signals(strategy: Strategy, params: Any, view: Market,
                    windows: list[tuple[Range, Range]], mode: Mode) -> Signals:
    """Signals over `view`, active only inside the test windows, each from its own fold's fit."""
    out: dict[str, np.ndarray] | None = None
    for j, (train, test) in enumerate(windows):
        fitted = strategy.fit(view.slice(*train), params)
        if fitted is None and j == 0:
            # nothing fitted: one causal pass serves every window; only direction and exit make
            # events, so masking those two outside the test windows is enough
            sig = strategy.generate(view, params, mode, None).validate(view)
            rows = _test_rows(view.n_bars, windows)[:, None]
            return dataclasses.replace(sig, strategy=strategy.name,
                                       direction=np.where(rows, sig.direction, np.int8(0)),
                                       exit=sig.exit & rows)
        hist = view.slice(0, test[1])
        sig = strategy.generate(hist, params, mode, fitted).validate(hist)
        if out is None:
            empty = Signals.empty(view, strategy.name)
            out = {n: getattr(empty, n) for n in empty.array_names()}
        a, b = test
        for n in out:
            out[n][a:b] = getattr(sig, n)[a:b]
    return Signals(strategy.name, **out)


def _set_signals(members: list[Member], view: Market, windows, mode: Mode,
                 ) -> tuple[Signals, np.ndarray | None]:
    sigs = [_member_signals(s, p, view, windows, mode) for s, p in members]
    if len(sigs) == 1:
        return sigs[0], None
    return merge_signals(sigs)


def _evaluate_sets(sets: list[list[Member]], market: Market | None, friction: str, folds: Folds,
                   config: SimConfig, mode: Mode, lockbox: bool, record_trades: bool,
                   detail: Market | None = None) -> list[Evaluation]:
    if market is None or not isinstance(market, Market):
        raise ConfigError(f"evaluate needs market=<harness.market.Market>, got {type(market).__name__}")
    if lockbox is not True and lockbox is not False:
        raise ConfigError(f"lockbox must be True or False, got {lockbox!r}")
    if mode not in ("live", "shadow"):
        raise ConfigError(f"mode must be 'live' or 'shadow', got {mode!r}")
    base_f = get_friction(friction)
    stress_f = base_f.stressed(FEE_STRESS)
    plan = folds.split(market.n_bars)
    windows = _windows(plan, lockbox)
    if lockbox:
        log.info("lockbox evaluation of %s on bars %s of %s",
                    ", ".join("+".join(s.name for s, _ in m) for m in sets), plan.lockbox, market.label)
        view = market
    else:
        view = _before_lockbox(market, plan.lockbox_start)  # no strategy sees the lockbox
    segments = [test for _, test in windows]

    built = [_set_signals(m, view, windows, mode) for m in sets]
    signals = [s for s, _ in built]
    base = simulate(view, signals, friction=base_f, config=config, segments=segments,
                    record_trades=record_trades, detail=detail)
    stress = simulate(view, signals, friction=stress_f, config=config, segments=segments,
                      record_trades=False, detail=detail)

    h, fp = harness_hash(), market.fingerprint
    out = []
    for p, (members, (sig, winner)) in enumerate(zip(sets, built, strict=True)):
        b, s = base.metrics(p), stress.metrics(p)
        value, reason = score(b, s)
        fold_m = tuple(base.segment_metrics(p))
        fold_scores = tuple(float(raw_score(m)) for m in fold_m)
        trades = base.trades(p) if record_trades else None
        if trades is not None and winner is not None:
            trades = _name_trades(trades, winner, [s.name for s, _ in members], view)
        out.append(Evaluation(
            strategy=sig.strategy,
            params=_params_dict(members),
            friction=base_f.version,
            score=float(value),
            rejected=reason,
            base=b,
            stress=s,
            folds=fold_m,
            fold_scores=fold_scores,
            worst_fold=min(fold_scores),
            daily_returns=base.daily_returns(p),
            trades=trades,
            lockbox=lockbox,
            harness_hash=h,
            data_fingerprint=fp,
        ))
    return out


def _params_dict(members: list[Member]) -> dict:
    if len(members) == 1:
        return dataclasses.asdict(members[0][1])
    return {s.name: dataclasses.asdict(p) for s, p in members}


def _name_trades(trades: pd.DataFrame, winner: np.ndarray, names: list[str],
                 market: Market) -> pd.DataFrame:
    """Give each ensemble trade the member whose signal opened it."""
    if trades.empty:
        return trades
    pos = {c: i for i, c in enumerate(market.coins)}
    coin = np.array([pos[c] for c in trades["coin"]], dtype=np.int64)
    who = winner[trades["signal_bar"].to_numpy(dtype=np.int64), coin]
    if (who < 0).any():
        raise HarnessError("an ensemble trade has no winning member signal: report this bug")
    trades = trades.copy()
    trades["strategy"] = np.asarray(names, dtype=object)[who]
    return trades
