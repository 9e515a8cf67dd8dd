"""`sweep calibrate`: does the gate say no to noise and yes to a real edge? Markets with a known
truth, the normal `sweep run` + `sweep promote` pipeline on each, and the share promoted.

Markets: `n_coins` x `n_bars` hourly bars of independent coins, each with its own volatility
(0.4% to 1.0% an hour), slowly clustering volatility (log-vol AR(1)) and Student-t(4)
innovations: fat tails. A planted edge adds a drift over the `EDGE_HOLD` bars after every bar
closing at one UTC hour, on every coin, on one side (hour and side drawn per run); its size is
set so that trading exactly that (the oracle) has the asked annual Sharpe on the whole market
after its round-trip costs: per coin Sharpe / sqrt(k), k = the coins the portfolio holds at once
(min(n_coins, SimConfig.max_positions): every coin signals on the same bar), since the coins are
independent. The costs are MEASURED, not assumed: friction v5 prices each fill per coin (tick
half spread + square-root impact on the coin's ADV, harness/costs.py), so the drift adds, per
coin, the oracle's mean round trip (fees + slippage + funding, over its notional) on the same
market without the plant. The oracle's measured OOS Sharpe is reported beside the label, so the
label can be checked.

Each run writes its market as a dataset folder and its results under the scratch folder, runs an
Optuna study of the strategy (TPE, the default sampler) through sweep.study, and promote through
sweep.promote, exactly as the commands do. Strength 0 is pure noise: any promoted bucket is a
false promotion. Above 0 a run counts as promoted when a bucket is promoted whose params trade
the planted side and hold through at least one of the planted bars; other promoted buckets are
counted as false. Run k of every strength uses seed + k for the
market noise and the sampler, so strengths differ only by the plant.

On pure noise the costs alone sink nearly every trial (the harness rejects them), so the gate
is barely asked. The null row (`null=True`) asks it: the plant's drift pays exactly the round
trip costs, a true net Sharpe of 0 that scores well in some trials; any promotion is false.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from harness.errors import ConfigError
from harness.evaluate import evaluate
from harness.folds import Folds
from harness.friction import DEFAULT_FRICTION
from harness.market import Market
from harness.metrics import DAYS_PER_YEAR
from harness.simulate import SimConfig
from harness.sources import build_market
from schemas.candidates import Gates
from strategies.base import get_strategy, make_params

EDGE_HOLD = 4  # bars the planted drift lasts after the edge hour's close
T_DOF = 4  # Student-t innovations
PLANTED = ("hour_of_day",)
SHM = Path("/dev/shm")  # strategies whose edge this module knows how to plant


@dataclass(frozen=True)
class CalibrationConfig:
    strategy: str = "hour_of_day"
    strengths: tuple[float, ...] = (0.0, 6.0, 12.0)  # true annual Sharpe of the edge; 0: noise
    null: bool = True  # also the cost-neutral null (a planted drift with net Sharpe 0)
    runs: int = 10
    seed: int = 0
    n_coins: int = 15
    n_bars: int = 5000
    trials: int = 60
    gates: Gates = field(default_factory=Gates)
    scratch: Path = Path("results/calibrate")

    def __post_init__(self) -> None:
        if self.strategy not in PLANTED:
            raise ConfigError(f"calibrate knows how to plant an edge for {', '.join(PLANTED)}, not "
                              f"{self.strategy!r}: pass --strategy {PLANTED[0]}")
        if self.runs < 1 or self.trials < 1:
            raise ConfigError(f"--runs and --trials must be >= 1 (got {self.runs}, {self.trials})")
        if not self.strengths or any(not (math.isfinite(s) and s >= 0) for s in self.strengths):
            raise ConfigError(f"--strengths must be annual Sharpe ratios >= 0, got {self.strengths}")
        if self.n_coins < 1 or self.n_bars < 500:
            raise ConfigError(f"--coins must be >= 1 and --bars >= 500 (got {self.n_coins}, {self.n_bars})")


@dataclass(frozen=True)
class Plant:
    hour: int  # UTC close hour of the decision bar
    side: int  # +1 long, -1 short
    sharpe: float  # asked annual Sharpe of the oracle over the whole market (0: the null)

    def captured_by(self, params: dict) -> bool:
        """Do these hour_of_day params hold the planted side through a planted bar?"""
        planted = {(self.hour + j) % 24 for j in range(1, EDGE_HOLD + 1)}  # close hours of drift bars
        held = {(int(params["hour"]) + j) % 24 for j in range(1, int(params["hold"]) + 1)}
        return params["side"] == ("long" if self.side > 0 else "short") and bool(planted & held)


@dataclass(frozen=True)
class RunResult:
    kind: str  # noise | null | edge
    strength: float
    seed: int
    plant: Plant | None
    promoted: bool  # the planted bucket (or, on noise, any bucket) was promoted
    false_buckets: int  # promoted buckets that are not the planted edge
    best_score: float
    dsr: float
    spa_p: float
    oracle_sharpe: float  # the oracle's measured OOS Sharpe (NaN on noise)


def make_market_frames(n_coins: int, n_bars: int, seed: int,
                       plant: Plant | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(candles, funding) frames of a market with a known truth (see the module doc)."""
    cost = None if plant is None else round_trip_costs(n_coins, n_bars, seed, plant)
    return _frames(n_coins, n_bars, seed, plant, cost)


def round_trip_costs(n_coins: int, n_bars: int, seed: int, plant: Plant) -> np.ndarray:
    """Per coin: the oracle's mean round-trip cost as a fraction of its notional (fees, v5
    slippage and funding paid), measured on this seed's market without the plant; the plant
    barely moves it (the drift is small beside the noise that sets ATR, notional and ADV)."""
    candles, funding = _frames(n_coins, n_bars, seed, None, None)
    market = build_market(candles, funding, "1h", f"calibration seed {seed}", synthetic=True)
    trades = evaluate(get_strategy("hour_of_day"), oracle_params(plant), market,
                      friction=DEFAULT_FRICTION, folds=Folds(), record_trades=True).trades
    frac = (trades["fees"] + trades["slippage_cost"] + trades["funding"]) / trades["notional"]
    per_coin = frac.groupby(trades["coin"]).mean().reindex(list(market.coins))
    return per_coin.fillna(frac.mean()).to_numpy()


def oracle_params(plant: Plant):
    """hour_of_day trading exactly the plant (the widest stop: the drift, not the stop, decides)."""
    strat = get_strategy("hour_of_day")
    return make_params(strat.params_cls, {"hour": plant.hour, "hold": EDGE_HOLD, "stop_atr": 6.0,
                                          "side": "long" if plant.side > 0 else "short"})


def _frames(n_coins: int, n_bars: int, seed: int, plant: Plant | None,
            cost: np.ndarray | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2024-01-01", periods=n_bars, freq="h", tz="UTC")
    sigma = rng.uniform(0.004, 0.010, n_coins)
    shocks = rng.normal(0.0, 0.03, (n_bars, n_coins))
    shocks[0] = 0.0
    logvol = lfilter([1.0], [1.0, -0.995], shocks, axis=0)  # AR(1): v_t = 0.995 v_{t-1} + e_t
    vol = sigma * np.exp(logvol - logvol.var(axis=0) / 2)
    eps = rng.standard_t(T_DOF, (n_bars, n_coins)) / math.sqrt(T_DOF / (T_DOF - 2))
    r = vol * eps
    if plant is not None:
        held = min(n_coins, SimConfig().max_positions)
        per_trade = plant.sharpe / math.sqrt(DAYS_PER_YEAR) / math.sqrt(held)  # per coin, per day
        mu = (per_trade * sigma * math.sqrt(EDGE_HOLD) + cost) / EDGE_HOLD
        close_hour = (idx.hour + 1) % 24
        for t in np.flatnonzero(close_hour == plant.hour):
            r[t + 1:t + 1 + EDGE_HOLD] += plant.side * mu
    close = 100.0 * np.exp(np.cumsum(r, axis=0))
    opn = np.vstack([np.full((1, n_coins), 100.0), close[:-1]])
    wick = np.abs(rng.normal(0.0, 0.5, (2, n_bars, n_coins))) * vol
    high, low = np.maximum(opn, close) * np.exp(wick[0]), np.minimum(opn, close) * np.exp(-wick[1])
    volume = rng.lognormal(10.0, 0.5, (n_bars, n_coins))
    coins = [f"SYN{j:02d}" for j in range(n_coins)]
    candles = pd.concat([pd.DataFrame({"coin": c, "ts": idx, "open": opn[:, j], "high": high[:, j],
                                       "low": low[:, j], "close": close[:, j], "volume": volume[:, j]})
                         for j, c in enumerate(coins)], ignore_index=True)
    funding = pd.concat([pd.DataFrame({"coin": c, "ts": idx, "premium": np.nan,
                                       "funding_rate": rng.normal(1.0e-5, 1.0e-5, n_bars)})
                         for c in coins], ignore_index=True)
    return candles, funding


def make_market(n_coins: int, n_bars: int, seed: int, plant: Plant | None) -> Market:
    """The same market in memory (no files): for checking the plant, not for a study."""
    candles, funding = make_market_frames(n_coins, n_bars, seed, plant)
    return build_market(candles, funding, "1h", f"calibration seed {seed}", synthetic=True)


def write_market(folder: Path, n_coins: int, n_bars: int, seed: int, plant: Plant | None) -> Path:
    """The market as a dataset folder (candles_1h.parquet, funding_1h.parquet): what a study
    loads, and what promote finds again through the run's data locator."""
    folder.mkdir(parents=True, exist_ok=True)
    candles, funding = make_market_frames(n_coins, n_bars, seed, plant)
    candles.to_parquet(folder / "candles_1h.parquet", index=False)
    funding.to_parquet(folder / "funding_1h.parquet", index=False)
    return folder


def plant_for(kind: str, strength: float, seed: int) -> Plant | None:
    if kind == "noise":
        return None
    rng = np.random.default_rng([seed, 7])
    return Plant(int(rng.integers(0, 24)), int(rng.choice([1, -1])), strength)


def one_run(cfg: CalibrationConfig, kind: str, strength: float, k: int) -> RunResult:
    """Market, study, promote: one cell of the calibration, in its own scratch folder."""
    from sweep.promote import run_promotion
    from sweep.study import StudyConfig, run_study

    seed = cfg.seed + k
    plant = plant_for(kind, strength, seed)
    where = cfg.scratch / f"{kind}{strength:g}-seed{seed}"
    shutil.rmtree(where, ignore_errors=True)
    data = write_market(where / "data", cfg.n_coins, cfg.n_bars, seed, plant)
    journal = Path(tempfile.mkdtemp(prefix="calibrate-", dir=SHM if SHM.is_dir() else None))
    try:  # the Optuna journal in memory: its fsync per trial is most of a small study's time
        study = StudyConfig(strategy=cfg.strategy, trials=cfg.trials, seed=seed, data=str(data),
                            friction=DEFAULT_FRICTION, results=where / "results",
                            storage=str(journal / "study.journal"),
                            argv=f"sweep calibrate (strength {strength:g}, seed {seed})")
        outcome = run_study(study)
        report = run_promotion(where / "results", out=where / "live_candidates.json",
                               strategy=cfg.strategy, gates=cfg.gates)  # counts the journal's trials
    finally:
        shutil.rmtree(journal, ignore_errors=True)
    st = report.studies.get(cfg.strategy)
    hits = [b for b in report.candidates.buckets if plant is not None and plant.captured_by(dict(b.params))]
    n_promoted = len(report.candidates.buckets)
    edge = kind == "edge"
    return RunResult(kind, strength, seed, plant, bool(hits) if edge else n_promoted > 0,
                     n_promoted - len(hits) if edge else n_promoted, outcome.best_score, st.dsr if st else math.nan,
                     st.spa_p if st else math.nan, _oracle_sharpe(cfg, plant, data) if plant else math.nan)


def cells(cfg: CalibrationConfig) -> list[tuple[str, float]]:
    """(kind, strength) of every row, in table order."""
    rows = [("noise", 0.0)] if 0.0 in cfg.strengths else []
    rows += [("null", 0.0)] if cfg.null else []
    return rows + [("edge", s) for s in cfg.strengths if s > 0]


def _oracle_sharpe(cfg: CalibrationConfig, plant: Plant, data: Path) -> float:
    """The OOS Sharpe of trading exactly the plant, on the run's own market and folds."""
    from harness.sources import load_market

    market = load_market(str(data), interval="1h")
    return float(evaluate(get_strategy(cfg.strategy), oracle_params(plant), market,
                          friction=DEFAULT_FRICTION, folds=Folds(), record_trades=False).base.sharpe)


def calibrate(cfg: CalibrationConfig, progress: Callable[[RunResult], None] | None = None) -> list[RunResult]:
    out = []
    for kind, strength in cells(cfg):
        for k in range(cfg.runs):
            out.append(one_run(cfg, kind, strength, k))
            if progress:
                progress(out[-1])
    return out


def summary(rows: list[RunResult]) -> pd.DataFrame:
    """One row per (kind, strength): runs, promoted share, false buckets, medians."""
    df = pd.DataFrame([vars(r) for r in rows])
    g = df.groupby(["kind", "strength"], sort=False)
    return pd.DataFrame({
        "runs": g.size(), "promoted": g["promoted"].mean(), "false_buckets": g["false_buckets"].sum(),
        "oracle_sharpe": g["oracle_sharpe"].median(), "best_score": g["best_score"].median(),
        "dsr": g["dsr"].median(), "spa_p": g["spa_p"].median(),
        "seeds": g["seed"].agg(lambda s: f"{s.min()}-{s.max()}"),
    }).reset_index()

