"""`sweep backtest`: one fixed parameter set on chosen data and dates, scored by
harness.evaluate (base and fee stress), with per-bar equity, daily returns and every trade.

Two ways to cut the chosen span [start, end):
- walk-forward (default): the span is the market a study would see, with the folds and the
  lockbox `sweep run` uses (a trial's own with --trial), so the score is the walk-forward
  score of DESIGN section 6 for these parameters on that span: what `sweep run` would record;
- one segment (--no-folds): the whole span is one out-of-sample segment, warmed up (and, for a
  strategy that fits, fitted) on the data's bars before --start. The score is the same formula
  on that one segment, not a walk-forward score: out of sample only when the parameters were
  chosen on other data (e.g. a study that ended before --start).

The score is harness.evaluate's. The equity curves come from simulating the very Signals
evaluate scored (built by its own helpers) and are checked against its metrics.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from harness.atomic import atomic_write_json, atomic_write_parquet
from harness.errors import ConfigError, HarnessError
from harness.evaluate import Evaluation, evaluate
from harness.folds import Folds, FoldSpec
from harness.friction import DEFAULT_FRICTION, FEE_STRESS, get_friction
from harness.manifest import harness_hash
from harness.market import Market
from harness.simulate import SimResult, simulate
from strategies.base import get_strategy
from sweep import results
from sweep.backtest_inputs import Recorded, run_market
from sweep.backtest_lockbox import guard
from sweep.times import utc_time

KIND = "hlquant-backtest"
FILES = ("trades.parquet", "daily_returns.parquet", "equity.parquet")
MANIFEST = "backtest.json"  # written last: a folder without it is not a finished backtest
MEANING = {
    "folds": "walk-forward score (DESIGN section 6) of the chained out-of-sample test windows, "
             "as `sweep run` records it",
    "one": "one-segment score: the same formula over the whole span, not a walk-forward score; "
           "out of sample only if the parameters were chosen on other data",
}

# (field of harness.metrics.Metrics, label, format): "%" prints a fraction as a percentage
METRIC_ROWS = (
    ("total_return", "total return", "%"), ("annualized", "annualized", "%"),
    ("max_dd", "max drawdown", "%"), ("sharpe", "Sharpe (daily, 365)", "f"),
    ("sortino", "Sortino", "f"), ("calmar", "Calmar", "f"), ("n_trades", "closed trades", "d"),
    ("win_rate", "win rate", "%"), ("mean_r", "mean R", "f"), ("hhi", "HHI of exposure", "f"),
    ("exposure", "gross exposure / equity", "%"), ("final_equity", "final equity", "$"),
    ("fees", "fees paid", "$"), ("slippage", "slippage paid", "$"), ("funding", "funding paid", "$"),
    ("liquidations", "liquidations", "d"), ("days", "days out of sample", "f"),
    ("detail_bars", "bars walked in detail", "d"), ("detail_missing", "detail bars missing", "d"),
    ("slip_fallbacks", "v5 flat-rate fallbacks", "d"),
)


def trial_note(m: dict) -> str:
    """How a backtest of a recorded trial relates to what the trial recorded."""
    rec, now = m["recorded_score"], m["score"]
    head = f"trial {m['study']}#{m['trial']} recorded score {fmt(rec)}"
    if not m["reproduces_trial"]:
        return f"{head}: not comparable with this run (other harness, data, dates, folds or friction)"
    if rec == now or abs(now - rec) <= 1e-12 * max(1.0, abs(rec)):
        return f"{head}: reproduced (same harness, data, folds, friction and mode, same score)"
    return (f"{head}: same inputs, another score ({fmt(now)}): the strategy code changed since "
            f"the sweep (now {m['code_hash']})")


def fmt(v: Any, kind: str = "f") -> str:
    """A number for people: "%" a fraction as a percentage, "$" money, "d" a count."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if kind == "%":
        return f"{v:.2%}"
    if kind == "$":
        return f"{v:,.2f}"
    if kind == "d":
        return f"{int(v):,}"
    return f"{v:.4g}"


@dataclass(frozen=True)
class BacktestSpec:
    strategy: str
    params: Any  # the strategy's Params
    source: str  # "--params" | "trial S#N" | "incumbent S#N"
    data: str | None = None
    interval: str | None = None  # None: the trial's, else the strategy's own
    coins: tuple[str, ...] | None = None
    start: str | None = None
    end: str | None = None
    friction: str = DEFAULT_FRICTION
    detail: str | None = None
    folds: Folds | None = Folds()  # None: one segment over the span (--no-folds)
    mode: str = "live"
    recorded: Recorded | None = None  # the trial the parameters come from
    results: Path = results.DEFAULT_RESULTS  # where studies (and their lockboxes) are recorded
    touch_lockbox: bool = False  # evaluate inside a study's lockbox (logged first)


@dataclass(frozen=True)
class BacktestRecord:
    """A finished backtest as `--out DIR` holds it and `sweep report` reads it."""

    meta: dict[str, Any]  # plain JSON: spec, market, score, metrics, folds, segments, lockbox
    equity: pd.DataFrame  # per bar (open time): base, stress
    daily: pd.DataFrame  # per UTC day: base, stress returns
    trades: pd.DataFrame  # base friction, every column of the harness trade record

    @property
    def synthetic(self) -> bool:
        return bool(self.meta["market"]["synthetic"])


def fold_plan(args: dict[str, Any], interval: str, rec: Recorded | None = None) -> Folds:
    """The walk-forward Folds: a trial's own when no fold option is given; a given option
    (FoldSpec: bar counts or durations) replaces that length only, the others staying the
    trial's (as it typed them, when recorded) or FoldSpec's defaults."""
    given = {k: v for k, v in args.items() if v is not None}
    if rec is not None and not given:
        return rec.folds
    lengths = dataclasses.asdict(FoldSpec())
    if rec is not None:
        r, typed = rec.folds, rec.folds_record.get("given") or {}
        bars = {"train": r.train_bars, "test": r.test_bars, "purge": r.purge_bars,
                "embargo": r.embargo_bars}
        lengths.update({k: typed.get(k, None if v is None else str(v)) for k, v in bars.items()})
        lengths["k"] = r.k
    folds = FoldSpec(**{**lengths, **given}).folds(interval)
    if rec is None:
        return folds
    return dataclasses.replace(rec.folds, k=folds.k, train_bars=folds.train_bars,
                               test_bars=folds.test_bars, purge_bars=folds.purge_bars,
                               embargo_bars=folds.embargo_bars)


def trial_spec(rec: Recorded, source: str, fold_args: dict[str, Any] | None = None,
               no_folds: bool = False, friction: str | None = None, mode: str | None = None,
               detail: str | None = None, **kw: Any) -> BacktestSpec:
    """A recorded trial's parameters with its folds, friction, mode and detail, each unless
    overridden."""
    from sweep.param_values import build_params

    params = build_params(get_strategy(rec.strategy).params_cls, rec.params, rec.strategy,
                          check_range=False, what=f"trial {rec.ref}")
    interval = kw.get("interval") or str(rec.run["interval"])
    folds = None if no_folds else fold_plan(fold_args or {}, interval, rec)
    return BacktestSpec(strategy=rec.strategy, params=params, source=source, folds=folds,
                        friction=friction or rec.friction, mode=mode or str(rec.run["mode"]),
                        detail=detail or rec.detail, recorded=rec, **kw)


# ---------------------------------------------------------------------------------- the span

def span_bars(market: Market, start: str | None, end: str | None) -> tuple[int, int]:
    """[start, end) as bar positions; a date outside the data is an error, not a silent trim."""
    step = pd.Timedelta(seconds=market.bar_seconds)
    first, stop = market.index[0], market.index[-1] + step
    where = f"{market.label} has {market.interval} bars from {first:%Y-%m-%d %H:%M} to {stop:%Y-%m-%d %H:%M} UTC"
    lo, hi = 0, market.n_bars
    if start is not None:
        t = utc_time(start, "--start")
        if not first <= t < stop:
            raise ConfigError(f"--start {start} is outside the data: {where}")
        lo = int(market.index.searchsorted(t, side="left"))
    if end is not None:
        t = utc_time(end, "--end")
        if not first < t <= stop:
            raise ConfigError(f"--end {end} is outside the data: {where}")
        hi = int(market.index.searchsorted(t, side="left"))
    if hi <= lo:
        raise ConfigError(f"--start {start} is not before --end {end}: no bars to run")
    return lo, hi


def one_segment(n_bars: int, first: int) -> Folds:
    """Folds with one test window [first, n_bars) trained on [0, first), no lockbox."""
    first = max(first, 1)
    return Folds(k=1, test_bars=n_bars - first, train_bars=first, purge_bars=0, embargo_bars=0,
                 lockbox_frac=0.0)


def _keeps_trial_span(spec: BacktestSpec) -> bool:
    """Nothing moves the trial off the span, coins, interval and folds it was scored on."""
    rec = spec.recorded
    return (rec is not None and spec.start is None and spec.end is None and spec.coins is None
            and spec.folds == rec.folds
            and (spec.interval or rec.run["interval"]) == rec.run["interval"])


def reproduces(spec: BacktestSpec, market: Market) -> bool:
    """True when this run is the recorded trial's: same harness, data, folds, friction, mode
    and detail."""
    rec = spec.recorded
    return (_keeps_trial_span(spec) and market.fingerprint == rec.run["data_fingerprint"]
            and rec.harness_hash == harness_hash()
            and get_friction(spec.friction).version == rec.friction
            and spec.mode == rec.run["mode"] and spec.detail == rec.detail)


def source_of(spec: BacktestSpec) -> str | None:
    """The data source: --data, else the trial's recorded source, else the default."""
    return spec.recorded.source(spec.data) if spec.recorded else spec.data


def load_span(spec: BacktestSpec) -> tuple[Market, Folds, tuple[int, int]]:
    """The market evaluate runs on, its folds, and the chosen span in its bars.

    With a trial and nothing that moves it (dates, coins, interval, folds), the market is the
    one the trial was scored on (found by its fingerprint); a --data holding other bars then
    runs the trial's parameters on those instead.
    """
    from harness.sources import load_market

    rec = spec.recorded
    if _keeps_trial_span(spec):
        try:
            market = run_market(rec, spec.data)
            return market, spec.folds, (0, market.n_bars)
        except ConfigError:
            if spec.data is None:
                raise
    interval = spec.interval or (rec.run["interval"] if rec else get_strategy(spec.strategy).interval)
    coins = list(spec.coins) if spec.coins else (rec.coins if rec else None)
    full = load_market(source_of(spec), interval=interval, coins=coins)
    lo, hi = span_bars(full, spec.start, spec.end)
    if spec.folds is not None:
        market = full if (lo, hi) == (0, full.n_bars) else full.slice(lo, hi)
        return market, spec.folds, (0, market.n_bars)
    market = full if hi == full.n_bars else full.slice(0, hi)
    strategy = get_strategy(spec.strategy)
    if strategy.fit_fn is not None and lo < 1:
        raise ConfigError(f"{spec.strategy} fits a model on the bars before --start: with "
                          f"--no-folds give a --start after the data's first bar "
                          f"({full.index[0]:%Y-%m-%d %H:%M})")
    return market, one_segment(market.n_bars, lo), (max(lo, 1), hi)


# ---------------------------------------------------------------------------------- the run

def _signals_sims(strategy, params, market: Market, folds: Folds, spec: BacktestSpec,
                  detail: Market | None) -> tuple[SimResult, SimResult]:
    """Base and stress simulations of the Signals evaluate builds for these inputs (its own
    helpers: one definition of what was scored), for the per-bar equity and stress trades."""
    from harness.evaluate import _members, _set_signals, _windows

    plan = folds.split(market.n_bars)
    windows = _windows(plan, False)
    view = market.slice(0, plan.lockbox_start)
    sig, _ = _set_signals(_members(strategy, params), view, windows, spec.mode)
    segments = [test for _, test in windows]
    fr = get_friction(spec.friction)
    base = simulate(view, sig, friction=fr, segments=segments, record_trades=False, detail=detail)
    stress = simulate(view, sig, friction=fr.stressed(FEE_STRESS), segments=segments,
                      record_trades=False, detail=detail)
    return base, stress


def _check_same(ev: Evaluation, base: SimResult, stress: SimResult) -> None:
    for name, m, want in (("base", base.metrics(0), ev.base), ("stress", stress.metrics(0), ev.stress)):
        if (m.n_trades, m.final_equity) != (want.n_trades, want.final_equity):
            raise HarnessError(f"the equity run does not reproduce harness.evaluate's {name} "
                               f"metrics ({m.n_trades} trades, {m.final_equity} vs "
                               f"{want.n_trades}, {want.final_equity}): report this bug")


def _iso(ts: pd.Timestamp) -> str:
    return ts.isoformat()


def run_backtest(spec: BacktestSpec, market: Market | None = None, folds: Folds | None = None,
                 step_done: Callable[[str], None] = lambda what: None) -> BacktestRecord:
    """Evaluate `spec` (or the given market and folds, for notebooks and tests);
    `step_done(next step)` is called as each step starts."""
    from sweep.study import code_hash, load_detail

    strategy = get_strategy(spec.strategy)
    span = None
    if market is None:
        step_done("loading the data")
        market, folds, span = load_span(spec)
    folds = folds or spec.folds or one_segment(market.n_bars, 0)
    plan = folds.split(market.n_bars)
    step = pd.Timedelta(seconds=market.bar_seconds)
    idx = market.index
    segments = [(idx[a], idx[b - 1] + step) for a, b in plan.segments]
    detail = load_detail(source_of(spec), spec.detail, market) if spec.detail else None
    params = dataclasses.asdict(spec.params)
    step_done(f"evaluating on {market.n_coins} coins x {market.n_bars} {market.interval} bars")
    hits, unchecked = guard(spec.results, spec.strategy, params, spec.recorded, spec.data, market,
                            segments, spec.touch_lockbox, get_friction(spec.friction).version)
    ev = evaluate(strategy, spec.params, market, friction=spec.friction, folds=folds,
                  mode=spec.mode, record_trades=True, detail=detail)
    step_done("building the equity curves")
    base, stress = _signals_sims(strategy, spec.params, market, folds, spec, detail)
    _check_same(ev, base, stress)
    lock = None if plan.lockbox[1] <= plan.lockbox[0] else [
        _iso(idx[plan.lockbox[0]]), _iso(idx[plan.lockbox[1] - 1] + step)]
    rec = spec.recorded
    meta = {
        "kind": KIND, "created_at": _iso(results.now()), "strategy": spec.strategy,
        "params": params, "source": spec.source,
        "study": rec.study if rec else None, "trial": rec.trial if rec else None,
        "recorded_score": rec.score if rec else None,
        "reproduces_trial": rec is not None and reproduces(spec, market),
        "data": spec.data, "start": spec.start, "end": spec.end, "interval": market.interval,
        "market": {"label": market.label, "synthetic": bool(market.synthetic),
                   "fingerprint": market.fingerprint, "coins": list(market.coins),
                   "first_bar": _iso(idx[0]), "last_bar": _iso(idx[-1]), "n_bars": market.n_bars},
        "friction": ev.friction, "detail": spec.detail, "mode": spec.mode,
        "walk_forward": spec.folds is not None, "folds": dataclasses.asdict(folds),
        "meaning": MEANING["folds" if spec.folds is not None else "one"],
        "segments": [[_iso(a), _iso(b)] for a, b in segments],
        "span": None if span is None else [_iso(idx[span[0]]), _iso(idx[span[1] - 1] + step)],
        "lockbox": lock, "lockbox_touched": [[b.study, _iso(b.start), _iso(b.end)] for b in hits],
        "lockbox_unchecked": unchecked, "score": ev.score, "rejected": ev.rejected,
        "base": dataclasses.asdict(ev.base), "stress": dataclasses.asdict(ev.stress),
        "fold_metrics": [dataclasses.asdict(m) for m in ev.folds],
        "fold_scores": list(ev.fold_scores), "worst_fold": ev.worst_fold,
        "harness_hash": harness_hash(), "code_hash": code_hash(strategy),
    }
    equity = pd.DataFrame({"base": base.equity(0), "stress": stress.equity(0)})
    equity.index.name = "ts"
    daily = pd.DataFrame({"base": base.daily_returns(0), "stress": stress.daily_returns(0)})
    trades = ev.trades if ev.trades is not None else pd.DataFrame()
    return BacktestRecord(meta, equity, daily, trades.reset_index(drop=True))


# ---------------------------------------------------------------------------------- the folder

def check_out_dir(path: Path) -> None:
    """An --out folder must be new, empty, or a finished backtest (which is replaced)."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is a file: give a folder")
    if path.is_dir() and any(path.iterdir()) and not (path / MANIFEST).is_file():
        raise ConfigError(f"--out {path} holds other files: give a new or empty folder (or a "
                          "backtest folder to replace)")


def write_record(rec: BacktestRecord, path: Path) -> Path:
    """Each file atomically, the manifest last (so a reader sees a whole backtest or none)."""
    check_out_dir(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / MANIFEST).unlink(missing_ok=True)
    frames = {"trades.parquet": rec.trades, "daily_returns.parquet": rec.daily.reset_index(),
              "equity.parquet": rec.equity.reset_index()}
    for name, df in frames.items():
        atomic_write_parquet(pa.Table.from_pandas(df, preserve_index=False), path / name)
    atomic_write_json(results.jsonable(rec.meta), path / MANIFEST)
    return path


_NUMERIC = ("score", "worst_fold", "recorded_score")


def _revive(v: Any) -> Any:
    return float(v) if v in ("nan", "inf", "-inf") else v


def read_record(path: Path) -> BacktestRecord:
    """A folder `sweep backtest --out` wrote; one clear error for anything else."""
    if not (path / MANIFEST).is_file():
        raise ConfigError(f"--backtest {path} is not a backtest folder (no {MANIFEST}): give "
                          "the --out folder of `python -m sweep backtest`")
    try:
        meta = json.loads((path / MANIFEST).read_text())
        frames = [pd.read_parquet(path / name) for name in FILES]
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise ConfigError(f"--backtest {path}: cannot read it ({exc})".splitlines()[0]) from None
    if meta.get("kind") != KIND:
        raise ConfigError(f"--backtest {path}: {MANIFEST} is not a backtest manifest")
    for k in _NUMERIC:
        meta[k] = _revive(meta.get(k))
    for k in ("base", "stress"):
        meta[k] = {n: _revive(v) for n, v in meta[k].items()}
    meta["fold_metrics"] = [{n: _revive(v) for n, v in m.items()} for m in meta["fold_metrics"]]
    meta["fold_scores"] = [_revive(v) for v in meta["fold_scores"]]
    trades, daily, equity = frames
    return BacktestRecord(meta, equity.set_index("ts"), daily.set_index("date"), trades)


