"""The embedded default market: deterministic synthetic hourly candles and funding.

It lets every command run on a fresh clone with no network. Coins carry real-looking names
(BTC, ETH, ...) so strategies that look for BTC work, but every Market built from it has
`synthetic=True` and a source saying "embedded synthetic": it is never mistaken for data.

The generator (one seeded numpy Generator, so the same seed gives the same bytes):
- regimes per coin and for the whole market from Markov chains: trend (persistent drift),
  chop (mean reversion to a slow average), reversal (a short sharp move against the last
  trend that usually starts a trend the other way); a coin's drift mixes the market's regime
  and its own;
- shocks: a common factor (cross-coin correlation) plus an idiosyncratic part, Student-t with
  4 degrees of freedom (fat tails), scaled by clustered volatility (AR(1) log-vol);
- OHLC: open = previous close, high/low extend beyond the body by a half-normal amount;
- volume: coin base x volatility x UTC time-of-day x random spikes;
- funding per hour: an Ornstein-Uhlenbeck process (half-life about 5 h, like BTC's) around
  0.00125% per hour pulled up in up-trends and down in down-trends, with rare jumps; premium
  tracks it with noise;
- one coin (HYPE) lists a quarter into the year and the alts miss a few single hours, as in
  the real files, so gaps and listings are exercised.

Generated on first use and cached as a dataset folder under `<store>/.embedded/` (atomic
writes), keyed by GENERATOR_VERSION and seed; bump GENERATOR_VERSION whenever the output changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from harness.atomic import atomic_write_parquet
from harness.store import CANDLE_SCHEMA, FUNDING_SCHEMA, read_parquet

GENERATOR_VERSION = 1
DEFAULT_SEED = 7
START = pd.Timestamp("2024-01-01", tz="UTC")
N_HOURS = 365 * 24
BASE_FUNDING = 0.0000125  # 0.01% per 8 h, Hyperliquid's interest component, per hour

TREND, CHOP, REVERSAL = 0, 1, 2
MEAN_HOURS = np.array([96.0, 72.0, 16.0])  # expected regime durations
TREND_DRIFT = 0.12  # drift per hour in units of the coin's hourly volatility
REVERSAL_DRIFT = 0.30
CHOP_KAPPA = 0.06  # pull per hour towards the slow average in chop
T_DOF = 4.0


@dataclass(frozen=True)
class CoinSpec:
    name: str
    price: float  # first open
    vol: float  # hourly volatility of log returns
    corr: float  # loading on the common factor (correlation of shocks with it)
    follow: float  # weight of the market regime in the coin's drift
    volume: float  # typical hourly volume in coin units
    listed_from: int = 0  # first listed hour
    gappy: bool = True  # misses a few single hours


COINS = (
    CoinSpec("BTC", 42_000.0, 0.0055, 0.90, 0.85, 450.0, gappy=False),
    CoinSpec("ETH", 2_300.0, 0.0075, 0.85, 0.70, 8_000.0, gappy=False),
    CoinSpec("SOL", 100.0, 0.0100, 0.80, 0.55, 45_000.0),
    CoinSpec("DOGE", 0.09, 0.0120, 0.75, 0.50, 5_000_000.0),
    CoinSpec("AVAX", 35.0, 0.0110, 0.80, 0.50, 60_000.0),
    CoinSpec("LINK", 15.0, 0.0100, 0.80, 0.50, 90_000.0),
    CoinSpec("ARB", 1.8, 0.0120, 0.75, 0.45, 700_000.0),
    CoinSpec("HYPE", 5.0, 0.0160, 0.55, 0.30, 300_000.0, listed_from=2_190),
)


def source_label(seed: int) -> str:
    return f"embedded synthetic (seed {seed})"


def _regimes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Markov-chain states and the trend direction (+1/-1) in force at each hour."""
    state = np.empty(n, dtype=np.int8)
    side = np.empty(n, dtype=np.int8)
    u = rng.random((n, 3))
    s, d = TREND, 1 if u[0, 0] < 0.5 else -1
    for t in range(n):
        if u[t, 0] < 1.0 / MEAN_HOURS[s]:
            if s == TREND:
                s = CHOP if u[t, 1] < 0.55 else REVERSAL
            elif s == CHOP:
                s, d = TREND, (1 if u[t, 2] < 0.5 else -1)
            else:  # a reversal usually hands over to a trend the other way
                s = TREND if u[t, 1] < 0.7 else CHOP
                d = -d
        state[t], side[t] = s, d
    return state, side


def _drift(state: np.ndarray, side: np.ndarray) -> np.ndarray:
    """Drift in units of volatility: along the trend, against it in a reversal, 0 in chop."""
    return np.where(state == TREND, TREND_DRIFT * side,
                    np.where(state == REVERSAL, -REVERSAL_DRIFT * side, 0.0))


def _student_t(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.standard_t(T_DOF, size=shape) / np.sqrt(T_DOF / (T_DOF - 2.0))


def _log_vol(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Clustered volatility: exp of a common + own AR(1), normalised to mean square 1."""
    eps = rng.standard_normal((n, k + 1)) * 0.06
    h = np.zeros((n, k + 1))
    for t in range(1, n):
        h[t] = 0.985 * h[t - 1] + eps[t]
    log_v = 0.7 * h[:, :1] + 0.5 * h[:, 1:]
    v = np.exp(log_v)
    return v / np.sqrt(np.mean(v**2, axis=0))


@dataclass(frozen=True)
class Simulation:
    """The frames plus the hidden paths that made them (for tests and curiosity)."""

    candles: pd.DataFrame  # store schema, sorted by coin, ts
    funding: pd.DataFrame
    coin_state: np.ndarray  # (N_HOURS, n_coins) TREND / CHOP / REVERSAL, coins as in COINS
    drift: np.ndarray  # (N_HOURS, n_coins) drift in units of volatility


def generate(seed: int = DEFAULT_SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(candles, funding) frames in the store schema, deterministic for a seed."""
    sim = simulate(seed)
    return sim.candles, sim.funding


def simulate(seed: int = DEFAULT_SEED) -> Simulation:
    rng = np.random.default_rng(seed)
    n, k = N_HOURS, len(COINS)
    vol = np.array([c.vol for c in COINS])
    corr = np.array([c.corr for c in COINS])
    follow = np.array([c.follow for c in COINS])

    m_state, m_side = _regimes(rng, n)
    own = [_regimes(rng, n) for _ in COINS]
    c_state = np.column_stack([s for s, _ in own])
    c_side = np.column_stack([d for _, d in own])
    drift = follow * _drift(m_state, m_side)[:, None] + (1 - follow) * _drift(c_state, c_side)
    chop = follow * (m_state == CHOP)[:, None] + (1 - follow) * (c_state == CHOP)
    v = _log_vol(rng, n, k) * np.where(c_state == REVERSAL, 1.4, np.where(c_state == CHOP, 0.8, 1.0))
    shock = corr * _student_t(rng, (n, 1)) + np.sqrt(1 - corr**2) * _student_t(rng, (n, k))

    log_c = np.empty((n, k))
    prev = np.log([c.price for c in COINS])
    slow = prev.copy()
    alpha = 2.0 / (48 + 1)
    for t in range(n):  # chop pulls towards a slow average of the coin's own path
        r = vol * v[t] * (drift[t] + shock[t]) - CHOP_KAPPA * chop[t] * (prev - slow)
        prev = prev + r
        slow = slow + alpha * (prev - slow)
        log_c[t] = prev
    close = np.exp(log_c)
    open_ = np.vstack([[c.price for c in COINS], close[:-1]])
    wick = vol * v * 0.35
    high = np.maximum(open_, close) * np.exp(np.abs(rng.standard_normal((n, k))) * wick)
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.standard_normal((n, k))) * wick)

    hours = np.arange(n) % 24
    daily = 1.0 + 0.35 * np.sin(2 * np.pi * (hours - 9) / 24)  # busiest around 15:00 UTC
    spikes = np.where(rng.random((n, k)) < 0.015, rng.uniform(2.0, 6.0, (n, k)), 1.0)
    move = np.abs(log_c - np.log(open_)) / vol
    volume = (np.array([c.volume for c in COINS]) * v**1.5 * daily[:, None] * (0.6 + 0.4 * move)
              * spikes * np.exp(0.3 * rng.standard_normal((n, k))))

    theta = 0.12  # OU mean reversion per hour: half-life ln2 / 0.128 ~ 5.4 h
    pull = BASE_FUNDING + 2.0e-4 * drift
    jumps = np.where(rng.random((n, k)) < 0.004, rng.normal(0.0, 2.5e-4, (n, k)), 0.0)
    noise = 1.2e-5 * _student_t(rng, (n, k)) + jumps
    funding = np.empty((n, k))
    f = np.full(k, BASE_FUNDING)
    for t in range(n):
        f = f + theta * (pull[t] - f) + noise[t]
        funding[t] = f
    funding = np.clip(funding, -0.04, 0.04)
    premium = 10.0 * (funding - BASE_FUNDING) + 2.5e-4 * rng.standard_normal((n, k))

    listed = np.ones((n, k), dtype=bool)
    for j, c in enumerate(COINS):
        listed[: c.listed_from, j] = False
        if c.gappy:
            holes = rng.random(n) < 0.0006
            holes[: c.listed_from + 1] = False
            holes[-1] = False
            listed[holes, j] = False
    has_funding = np.ones((n, k), dtype=bool)
    for j, c in enumerate(COINS):
        has_funding[: c.listed_from, j] = False

    ts = START.value + np.arange(n, dtype=np.int64) * 3600 * 1_000_000_000
    names = np.array([c.name for c in COINS], dtype=object)

    def frame(mask: np.ndarray, columns: dict[str, np.ndarray]) -> pd.DataFrame:
        order = np.argsort(names)  # sorted by coin, then ts
        rows, cols = np.nonzero(mask[:, order].T)
        cols_idx = order[rows]
        return pd.DataFrame({
            "coin": pd.array(names[cols_idx], dtype="str"),
            "ts": pd.DatetimeIndex(ts[cols].view("datetime64[ns]"), tz="UTC"),
            **{name: a[cols, cols_idx] for name, a in columns.items()},
        })

    candles = frame(listed, {"open": open_, "high": high, "low": low, "close": close,
                             "volume": volume})
    fund = frame(has_funding, {"funding_rate": funding, "premium": premium})
    return Simulation(candles, fund, c_state, drift)


def embedded_frames(store: str | Path = "data", seed: int = DEFAULT_SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cached frames under `<store>/.embedded/`, generated and cached on first use.

    When the store folder cannot be written the frames are generated in memory each time.
    """
    folder = Path(store) / ".embedded" / f"v{GENERATOR_VERSION}-seed{seed}"
    candles_file, funding_file = folder / "candles_1h.parquet", folder / "funding_1h.parquet"
    if candles_file.is_file() and funding_file.is_file():
        return read_parquet(candles_file), read_parquet(funding_file)
    candles, funding = generate(seed)
    try:  # funding first: the cache counts as present only when both files are there
        atomic_write_parquet(pa.Table.from_pandas(funding, FUNDING_SCHEMA, preserve_index=False),
                             funding_file)
        atomic_write_parquet(pa.Table.from_pandas(candles, CANDLE_SCHEMA, preserve_index=False),
                             candles_file)
    except OSError:
        pass
    return candles, funding
