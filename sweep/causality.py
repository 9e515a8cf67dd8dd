"""The causality gate (DESIGN section 4): no signal or tag at or before bar t may depend on data
after t. Its one home: pytest runs it on every registered strategy (tests/test_causality.py),
`sweep run`, `scan` and `noise` run it before the first trial of strategy code not yet checked on
their data, and `sweep check` runs it on demand. Like freqtrade's lookahead-analysis it judges
what the strategy outputs, not its code.

The check on one market: for the default parameters and a few sets sampled from the search
space, in live and shadow mode, the Signals computed on the whole market must equal, at every bar
<= t, those computed (a) on the market cut after bar t and (b) on the market whose bars after t
are random valid OHLC, volume, funding, premium, open interest and book imbalance; every array
(direction, stop, target, exit, score, session, regime, vol_bucket, setup, hold, trail), compared exactly (NaN
equal to NaN). About half the cut bars are bars that signal (where a peek at t+1 shows), the rest
uniform. Every draw is seeded from the strategy's name, so a verdict is a function of the code
and the data. A strategy with a `fit` is fitted once on the first 30% of the bars, and cut only
after them.

At run time the market is a bounded sample of the study's own data: its last bars before the
lockbox (never the lockbox), about SAMPLE_CELLS cells, every coin (cross-sectional strategies
rank them all). The verdict is kept in the `causality` results table, keyed by the strategy, its
code hash, the data fingerprint, the harness hash and the gate's own hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from harness.errors import ConfigError, HarnessError
from harness.folds import Folds
from harness.manifest import harness_hash
from harness.market import Market
from harness.signals import Signals
from harness.strategy import Strategy
from sweep import results
from sweep.space import search_space

MODES = ("live", "shadow")
TRAIN_FRAC = 0.3  # fitted strategies: fit on the first 30% of the bars, cut only after them
CUTS = 4  # cut bars for the default parameters
SAMPLED_SETS = 2  # parameter sets drawn from the search space
SAMPLED_CUTS = 2  # cut bars for each of them
SAMPLE_CELLS = 120_000  # run-time sample: about this many bars x coins ...
SAMPLE_BARS = (500, 2000)  # ... within these bounds on the bars (fewer when the data is shorter)


class CausalityError(HarnessError):
    """A strategy whose signals at or before a bar change with the data after it."""


@dataclass(frozen=True)
class GateResult:
    """What one run of the check found."""

    signals: int  # signalling cells of the full runs (both modes, every parameter set)
    cuts: int  # cut bars checked, over every parameter set
    param_sets: int
    failure: str | None  # the first difference, one line; None: causal


@dataclass(frozen=True)
class Verdict:
    strategy: str
    code_hash: str
    data_fingerprint: str
    data_label: str
    interval: str
    n_coins: int
    n_bars: int
    result: GateResult
    seconds: float
    cached: bool = False
    checked_at: Any = None

    @property
    def passed(self) -> bool:
        return self.result.failure is None

    def line(self) -> str:
        """A passed verdict as `sweep run` prints it, before its last two lines (a failed one is
        the one-line refusal: `result.failure`)."""
        o = self.result
        what = f"{o.signals:,} signals" if o.signals else "no signal, tags only"
        if self.cached:
            return (f"causality: passed (cached: {self.strategy} code {self.code_hash} checked on "
                    f"this data {self.checked_at:%Y-%m-%d %H:%M} UTC)")
        return (f"causality: passed ({self.strategy} code {self.code_hash}: {o.param_sets} "
                f"parameter sets x live/shadow, {o.cuts} cuts, {what} on {self.n_coins} coins x "
                f"{self.n_bars} bars; {self.seconds:.1f}s)")


@lru_cache(maxsize=1)
def gate_hash() -> str:
    """The gate's own code: a change to it re-checks every strategy."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def seed_of(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


# ---------------------------------------------------------------------------------- the check

def perturb_after(market: Market, t: int, rng: np.random.Generator) -> Market:
    """Same market up to bar t; after it random valid OHLC (a random walk from the last
    close), volume, funding, premium, open interest and book imbalance, on the same listed bars."""
    n, k = market.n_bars - t - 1, market.n_coins
    if n <= 0:
        return market
    last = np.nan_to_num(market.close[t], nan=1.0)
    last = np.where(last > 0, last, 1.0)
    close = last * np.exp(np.cumsum(rng.normal(0, 0.03, (n, k)), axis=0))
    opn = np.vstack([last, close[:-1]]) * np.exp(rng.normal(0, 0.01, (n, k)))
    high = np.maximum(opn, close) * (1 + rng.uniform(0, 0.03, (n, k)))
    low = np.minimum(opn, close) * (1 - rng.uniform(0, 0.03, (n, k)))
    listed = market.listed[t + 1:]
    new = {}
    for name, tail in (("open", opn), ("high", high), ("low", low), ("close", close),
                       ("volume", rng.lognormal(12, 2, (n, k)))):
        arr = getattr(market, name).copy()
        arr[t + 1:] = np.where(listed, tail, np.nan)
        new[name] = arr
    for name, tail in (("funding", np.where(listed, rng.normal(0, 2e-4, (n, k)), 0.0)),
                       ("premium", rng.normal(0, 1e-3, (n, k))),
                       ("open_interest", rng.lognormal(15, 2, (n, k))),
                       ("book_imbalance", rng.uniform(-1, 1, (n, k)))):
        arr = getattr(market, name).copy()
        arr[t + 1:] = tail
        new[name] = arr
    return dataclasses.replace(market, _fingerprint=[], **new)


def pick_cuts(full: list[Signals], lo: int, hi: int, n: int, rng: np.random.Generator) -> list[int]:
    """Up to n distinct cut bars in [lo, hi): up to half on bars where some run signals."""
    if hi <= lo:
        return []
    fired = np.zeros(hi, dtype=bool)
    for sig in full:
        fired |= (sig.direction[:hi] != 0).any(axis=1)
    fired[:lo] = False
    on_signal = np.flatnonzero(fired)
    cuts = set(rng.choice(on_signal, min(n // 2, on_signal.size), replace=False).tolist())
    rest = np.setdiff1d(np.arange(lo, hi), list(cuts))
    cuts |= set(rng.choice(rest, min(n - len(cuts), rest.size), replace=False).tolist())
    return sorted(cuts)


def first_difference(full: Signals, other: Signals, t: int) -> tuple[str, int, int, Any, Any] | None:
    """(array, bar, coin, full value, other value) of the first cell at or before t that differs."""
    for name in full.array_names():
        a, b = getattr(full, name)[: t + 1], getattr(other, name)[: t + 1]
        diff = (~((a == b) | (np.isnan(a) & np.isnan(b)))) if a.dtype.kind == "f" else a != b
        if diff.any():
            bar, coin = np.argwhere(diff)[0]
            return name, int(bar), int(coin), a[bar, coin].item(), b[bar, coin].item()
    return None


def _params_text(params: Any, defaults: Any) -> str:
    if params == defaults:
        return "default params"
    changed = {k: v for k, v in dataclasses.asdict(params).items() if getattr(defaults, k) != v}
    return "sampled params " + " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in changed.items())


def sampled_params(strategy: Strategy, n: int, rng: np.random.Generator) -> list[Any]:
    """n parameter sets drawn uniformly (log-uniformly for log ranges) from the strategy's
    search space (sweep/space.py overrides applied); none when nothing is searched."""
    try:
        space = search_space(strategy.name, strategy.params_cls)
    except ConfigError:
        return []
    out = []
    for _ in range(n):
        values: dict[str, Any] = {}
        for name, d in space.distributions.items():
            if isinstance(d, CategoricalDistribution):
                values[name] = d.choices[int(rng.integers(len(d.choices)))]
            elif isinstance(d, IntDistribution):
                values[name] = d.low + d.step * int(rng.integers((d.high - d.low) // d.step + 1))
            elif isinstance(d, FloatDistribution) and d.log:
                values[name] = float(math.exp(rng.uniform(math.log(d.low), math.log(d.high))))
            elif isinstance(d, FloatDistribution):
                values[name] = float(rng.uniform(d.low, d.high))
        try:
            out.append(space.params(values))
        except (ConfigError, TypeError, ValueError):  # a combination the Params refuses
            continue
    return out


def check(strategy: Strategy, market: Market, *, cuts: int = CUTS, sampled: int = SAMPLED_SETS,
          sampled_cuts: int = SAMPLED_CUTS, seed: int | None = None, base: Any = None) -> GateResult:
    """Run the gate on `market` as it is; stops at the first difference. `base` is the set
    checked first (default: the strategy's defaults), e.g. with an input switched on."""
    rng = np.random.default_rng(seed_of(strategy.name) if seed is None else seed)
    defaults = strategy.params_cls() if base is None else base
    lo = max(int(market.n_bars * TRAIN_FRAC), 1)
    train = market.slice(0, lo)
    sets = [(defaults, cuts)] + [(p, sampled_cuts) for p in sampled_params(strategy, sampled, rng)]
    signals = n_cuts = n_sets = 0
    for params, k in sets:
        try:
            fitted = strategy.fit(train, params)
            full = {mode: strategy.generate(market, params, mode, fitted) for mode in MODES}
        except Exception:
            if params is defaults:
                raise
            continue  # a sampled set the strategy cannot run: the sweep records such trials as failed
        n_sets += 1
        signals += sum(int(np.count_nonzero(s.direction)) for s in full.values())
        for t in pick_cuts(list(full.values()), lo, market.n_bars - 1, k, rng):
            n_cuts += 1
            variants = (("cut", market.slice(0, t + 1)), ("randomized", perturb_after(market, t, rng)))
            for how, variant in variants:
                for mode in MODES:
                    other = strategy.generate(variant, params, mode, fitted)
                    diff = first_difference(full[mode], other, t)
                    if diff is not None:
                        return GateResult(signals, n_cuts, n_sets, _leak_line(
                            strategy.name, market, diff, t, how, mode, _params_text(params, defaults)))
    return GateResult(signals, n_cuts, n_sets, None)


def _leak_line(name: str, market: Market, diff: tuple, t: int, how: str, mode: str,
               params: str) -> str:
    array, bar, coin, a, b = diff
    after = "cut off" if how == "cut" else "randomized"
    return (f"{name} looks ahead: Signals.{array} at bar {bar} ({market.index[bar]:%Y-%m-%d %H:%M}) "
            f"coin {market.coins[coin]} is {a!r} on the full data but {b!r} with the bars after "
            f"cut bar {t} {after} ({mode}, {params}); fix the strategy or discard the change")


# ---------------------------------------------------------------------------------- at run time

def sample(market: Market) -> Market:
    """The run-time gate's data: the last bars before the lockbox, every coin."""
    stop = Folds().lockbox_range(market.n_bars)[0]
    lo, hi = SAMPLE_BARS
    n = min(stop, max(lo, min(hi, SAMPLE_CELLS // max(1, market.n_coins))))
    return market.slice(stop - n, stop)


def run(strategy: Strategy, market: Market, code_hash: str) -> Verdict:
    """The gate on the sample of `market`, timed (not cached: see `ensure`)."""
    part = sample(market)
    t0 = time.perf_counter()
    result = check(strategy, part)
    return Verdict(strategy.name, code_hash, market.fingerprint, market.label, market.interval,
                   part.n_coins, part.n_bars, result, time.perf_counter() - t0,
                   checked_at=results.now())


def lookup(results_dir: Path, strategy: str, code_hash: str, market: Market) -> Verdict | None:
    """The recorded verdict for this strategy, code, data, harness and gate, if any."""
    if not results.has_rows(results_dir, "causality"):
        return None
    df = results.query(
        results_dir,
        "SELECT * FROM causality WHERE strategy = ? AND code_hash = ? AND data_fingerprint = ? "
        "AND harness_hash = ? AND gate = ? ORDER BY checked_at DESC LIMIT 1",
        [strategy, code_hash, market.fingerprint, harness_hash(), gate_hash()])
    if not len(df):
        return None
    r = df.iloc[0]
    failure = r["failure"] if isinstance(r["failure"], str) else None
    result = GateResult(int(r["signals"]), int(r["cuts"]), int(r["param_sets"]), failure)
    return Verdict(strategy, code_hash, market.fingerprint, r["data_label"], r["interval"],
                   int(r["n_coins"]), int(r["n_bars"]), result, float(r["seconds"]), cached=True,
                   checked_at=r["checked_at"])


def record(results_dir: Path, verdict: Verdict, run_id: str) -> None:
    import pandas as pd

    o = verdict.result
    commit, _ = results.git_state()
    results.write_batch(results_dir, "causality", pd.DataFrame([{
        "run_id": run_id, "strategy": verdict.strategy, "code_hash": verdict.code_hash,
        "gate": gate_hash(), "harness_hash": harness_hash(),
        "data_fingerprint": verdict.data_fingerprint, "data_label": verdict.data_label,
        "interval": verdict.interval, "n_coins": verdict.n_coins, "n_bars": verdict.n_bars,
        "cuts": o.cuts, "param_sets": o.param_sets, "signals": o.signals,
        "passed": verdict.passed, "failure": o.failure, "seconds": verdict.seconds,
        "git_commit": commit, "checked_at": verdict.checked_at,
    }]))


def ensure(strategy: Strategy, market: Market, code_hash: str, results_dir: Path,
           run_id: str) -> Verdict:
    """The verdict for this code on this data: recorded, else run now and recorded. Raises
    CausalityError (one line naming the array, bar, coin and cut) when the strategy looks ahead."""
    verdict = lookup(results_dir, strategy.name, code_hash, market)
    if verdict is None:
        try:
            verdict = run(strategy, market, code_hash)
        except HarnessError:
            raise
        except Exception as exc:
            raise CausalityError(f"{strategy.name}: the causality gate could not run it: "
                                 f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
        record(results_dir, verdict, run_id)
    if not verdict.passed:
        raise CausalityError(verdict.result.failure)
    return verdict
