"""`simulate`: many parameter sets' Signals over one Market in one numba kernel call.

The semantics (timing, stops, sizing, funding, risk controls) are written once, in
harness/kernel_nb.py's docstring. This module turns Signals into the kernel's sparse event
arrays (only the bars where direction != 0 or exit is set), runs the sets in bounded chunks, and
builds pandas objects lazily from the arrays when asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness import kernel_layout as L
from harness import kernel_nb as kn
from harness import metrics as mx
from harness.costs import coin_costs
from harness.errors import ConfigError, DataError, SignalsError
from harness.friction import Friction, get_friction
from harness.margin import max_leverage as coin_max_leverage
from harness.market import Market
from harness.metrics import Metrics
from harness.signals import (
    REGIMES,
    RULE_FIELDS,
    SESSIONS,
    VOL_BUCKETS,
    Signals,
    breach,
    check_array,
    first_breach,
)

EXIT_REASONS = L.EXIT_REASONS
TRADE_COLUMNS = (
    "strategy", "coin", "side", "signal_bar", "entry_bar", "exit_bar", "entry_ts", "exit_ts",
    "entry_price", "exit_price", "size", "notional", "stop_distance", "r_multiple", "pnl", "fees",
    "funding", "exit_reason", "partial_taken", "session", "regime", "vol_bucket", "setup",
    "segment", "friction", "entry_fee", "entry_slippage_bps", "partial_ts", "partial_price",
    "partial_qty", "partial_fee", "partial_slippage_bps", "exit_qty", "exit_fee",
    "exit_slippage_bps", "slippage_bps", "slippage_cost", "detail",
)
FILL_COLUMNS = ("signal_bar", "coin", "side", "score", "status")
SIZINGS = ("risk", "fraction")
CHUNK_BYTES = 256 * 2**20  # stacked inputs + trade buffers per kernel call
TRADE_CAP = 1024  # first trade buffer per set; grown (and the set rerun) when it overflows
NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True)
class SimConfig:
    initial_equity: float = 10_000.0
    risk_fraction: float = 0.01  # 1R = this fraction of equity (sizing="risk")
    sizing: str = "risk"  # "risk": notional = equity*risk_fraction/(stop/entry)
    # "fraction": notional*(1+fee) = equity*fraction (vectorbt's SizeType.Percent)
    fraction: float = 1.0
    max_positions: int = 5
    max_leverage: float = 3.0  # cap on gross notional / equity
    position_leverage: float = 10.0  # isolated leverage per position, capped at the coin's max
    daily_loss_halt: float = 0.05  # day's equity 5% below the UTC day's start: flatten, halt the day
    kill_drawdown: float = 0.25  # equity 25% below its peak: flatten, halt for the segment

    def __post_init__(self) -> None:
        if self.sizing not in SIZINGS:
            raise ConfigError(f"SimConfig.sizing must be one of {SIZINGS}, got {self.sizing!r}")
        if not isinstance(self.max_positions, int | np.integer) or self.max_positions < 1:
            raise ConfigError(f"SimConfig.max_positions must be an int >= 1, got {self.max_positions!r}")
        for name in ("initial_equity", "risk_fraction", "fraction", "max_leverage",
                     "position_leverage", "daily_loss_halt", "kill_drawdown"):
            v = getattr(self, name)
            if not (isinstance(v, int | float | np.floating) and v > 0):
                raise ConfigError(f"SimConfig.{name} must be a positive number, got {v!r}")


def _params(config: SimConfig, fr: Friction) -> np.ndarray:
    if not 0 < fr.partial_frac < 1:
        raise ConfigError(f"friction {fr.version}: partial_frac must be in (0, 1), got {fr.partial_frac}")
    for name in ("partial_r", "trail_start_r", "trail_dist_r", "stress"):
        if not getattr(fr, name) > 0:
            raise ConfigError(f"friction {fr.version}: {name} must be positive")
    if fr.fee_bps < 0 or fr.slippage_bps < 0:
        raise ConfigError(f"friction {fr.version}: fee and slippage must be >= 0")
    prm = np.zeros(L.N_PARAMS)
    prm[L.P_INIT] = config.initial_equity
    prm[L.P_RISK] = config.risk_fraction
    prm[L.P_SIZING] = SIZINGS.index(config.sizing)
    prm[L.P_FRACTION] = config.fraction
    prm[L.P_MAXPOS] = config.max_positions
    prm[L.P_MAXLEV] = config.max_leverage
    prm[L.P_POSLEV] = config.position_leverage
    prm[L.P_DAILY] = config.daily_loss_halt
    prm[L.P_KILL] = config.kill_drawdown
    prm[L.P_FEE] = fr.fee_bps * 1e-4
    prm[L.P_SLIP] = fr.slippage_bps * 1e-4
    prm[L.P_FUNDING] = fr.funding
    prm[L.P_NEXT_OPEN] = fr.next_open
    prm[L.P_DEDUP] = fr.dedup
    prm[L.P_PARTIAL] = fr.partial
    prm[L.P_TRAIL] = fr.trail
    prm[L.P_LIQ] = fr.liquidation
    prm[L.P_PART_R] = fr.partial_r
    prm[L.P_PART_FRAC] = fr.partial_frac
    prm[L.P_TRAIL_START] = fr.trail_start_r
    prm[L.P_TRAIL_DIST] = fr.trail_dist_r
    prm[L.P_STRESS] = fr.stress
    if fr.costs is not None:
        prm[L.P_COIN_SLIP] = 1.0
        prm[L.P_SLIP_FLOOR] = fr.costs.floor_bps * 1e-4
        prm[L.P_SLIP_CAP] = fr.costs.cap_bps * 1e-4
    return prm


def _check_segments(segments, n_bars: int) -> np.ndarray:
    segs = np.array([(0, n_bars)] if segments is None else list(segments), dtype=np.int64)
    if segs.ndim != 2 or segs.shape[1] != 2 or len(segs) == 0:
        raise ConfigError("segments must be a non-empty sequence of (start, stop) bar pairs")
    prev = 0
    for a, b in segs:
        if not (0 <= a < b <= n_bars):
            raise ConfigError(f"segment ({a}, {b}) must satisfy 0 <= start < stop <= n_bars={n_bars}")
        if a < prev:
            raise ConfigError(f"segments must be sorted and must not overlap: ({a}, {b}) starts before {prev}")
        prev = b
    return segs


class _Field:
    """One Signals field across the sets: its distinct arrays and which set uses which."""

    def __init__(self, sigs: Sequence[Signals], name: str) -> None:
        arrays = [getattr(s, name) for s in sigs]
        ids = list(map(id, arrays))
        first = {i: n for n, i in reversed(list(enumerate(ids)))}  # id -> first set using it
        index = {i: k for k, i in enumerate(first)}
        self.arrays: list[np.ndarray] = [arrays[n] for n in first.values()]
        self.sets: list[Signals] = [sigs[n] for n in first.values()]  # first user of each array
        self.owner = np.fromiter(map(index.__getitem__, ids), dtype=np.int64, count=len(ids))


def _check_shapes(fields: dict[str, _Field], market: Market) -> None:
    shape = (market.n_bars, market.n_coins)
    for name in Signals.DTYPES:
        for arr, s in zip(fields[name].arrays, fields[name].sets, strict=True):
            check_array(s.strategy, name, arr, shape)


def _nonzero(f: _Field, n_sets: int, cells: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(set index, flat cell index, value, per-set offsets) of the non-zero cells."""
    if len(f.arrays) == 1:
        one = np.flatnonzero(f.arrays[0].reshape(-1) != 0)
        flat = np.tile(one, n_sets)
        p_idx = np.repeat(np.arange(n_sets), len(one))
        values = np.tile(f.arrays[0].reshape(-1)[one], n_sets)
    else:
        stacked = np.stack([f.arrays[k].reshape(-1) for k in f.owner])
        p_idx, flat, values, ptr = kn.nonzero_rows_nb(stacked)
        return p_idx, flat, values, ptr
    ptr = np.zeros(n_sets + 1, dtype=np.int64)
    np.cumsum(np.bincount(p_idx, minlength=n_sets), out=ptr[1:])
    return p_idx, flat.astype(np.int64, copy=False), values, ptr


def _gather(f: _Field, p_idx: np.ndarray, flat: np.ndarray, ptr: np.ndarray) -> np.ndarray:
    """Values of the field at the event cells, one gather per distinct array."""
    if len(f.arrays) == 1:
        return f.arrays[0].reshape(-1)[flat]
    out = np.empty(len(flat), dtype=f.arrays[0].dtype)
    if len(f.arrays) <= 16:
        ev_owner = f.owner[p_idx]
        for k, arr in enumerate(f.arrays):
            sel = np.flatnonzero(ev_owner == k)
            out[sel] = arr.reshape(-1)[flat[sel]]
        return out
    for p, k in enumerate(f.owner):
        a, b = ptr[p], ptr[p + 1]
        if b > a:
            out[a:b] = f.arrays[k].reshape(-1)[flat[a:b]]
    return out


def _events(sigs: Sequence[Signals], market: Market) -> dict[str, np.ndarray]:
    """Sparse kernel inputs of a chunk of sets, validated where it matters (the event cells)."""
    n_coins = market.n_coins
    cells = market.n_bars * n_coins
    fields = {name: _Field(sigs, name) for name in Signals.DTYPES}
    _check_shapes(fields, market)
    p_idx, flat, direction, ptr = _nonzero(fields["direction"], len(sigs), cells)
    ev = {"ev_ptr": ptr, "ev_bar": flat // n_coins, "ev_coin": flat % n_coins, "direction": direction}
    for name in ("setup", *(n for n in RULE_FIELDS if n != "direction")):
        ev[name] = _gather(fields[name], p_idx, flat, ptr)
    bars, coins = ev["ev_bar"], ev["ev_coin"]
    hit = first_breach({**ev, "listed": market.listed[bars, coins]})
    if hit is not None:
        i, what = hit
        raise SignalsError(breach(sigs[int(p_idx[i])].strategy, what, market, int(bars[i]), int(coins[i])))
    for name in ("session", "regime", "vol_bucket"):
        del ev[name]
    _, xflat, _, xptr = _nonzero(fields["exit"], len(sigs), cells)
    ev["ex_ptr"], ev["ex_bar"], ev["ex_coin"] = xptr, xflat // n_coins, xflat % n_coins
    return ev


class SimResult:
    """Arrays from the kernel; Metrics, Series and DataFrames built from them on demand."""

    def __init__(self, market: Market, signals: list[Signals], friction: Friction,
                 config: SimConfig, segments: np.ndarray, max_lev: np.ndarray,
                 mk: dict[str, np.ndarray], seg_slot0: np.ndarray, seg_stats: np.ndarray,
                 coin_expo: np.ndarray, day_eq: np.ndarray, chain_dd: np.ndarray,
                 trades: list[np.ndarray] | None, trade_loc: np.ndarray | None,
                 events: list[dict[str, np.ndarray]], event_loc: np.ndarray) -> None:
        self.market = market
        self.signals = signals
        self.friction = friction
        self.config = config
        self.segments = [(int(a), int(b)) for a, b in segments]
        self._segs = segments
        self._max_lev = max_lev
        self._mk = mk
        self._bar_day = mk["bar_day"]
        self._slot0 = seg_slot0
        self.seg_stats = seg_stats  # (n_sets, n_segments, kernel_layout.N_STATS)
        self._coin_expo = coin_expo
        self._day_eq = day_eq
        self._chain_dd = chain_dd
        self._trades = trades  # trade buffers, one per kernel call
        self._trade_loc = trade_loc  # per set: (buffer, first row, rows)
        self._events = events  # the kernel's event arrays (and fill statuses), one per call
        self._event_loc = event_loc  # per set: (call, first event, end)
        self._equity: dict[int, pd.Series] = {}
        self._all: list[Metrics] | None = None
        self._daily: tuple[pd.DatetimeIndex, np.ndarray] | None = None

    @property
    def detail_ratio(self) -> int:
        """Detail bars per bar of the intrabar walk (0: no detail)."""
        return int(self._mk["ratio"])

    @property
    def n_sets(self) -> int:
        return len(self.signals)

    def _check_set(self, p: int) -> int:
        if not -self.n_sets <= p < self.n_sets:
            raise ConfigError(f"parameter set {p} out of range: this result has {self.n_sets} sets")
        return p % self.n_sets

    # ---- daily returns ------------------------------------------------------------------------
    def _daily_all(self) -> tuple[pd.DatetimeIndex, np.ndarray]:
        """Dates and (n_sets, n_dates) daily returns of the chained segments.

        A segment's first day is measured from initial equity; a UTC day shared by two adjacent
        segments compounds both parts; a day without any bar (data gap) has a zero return (the
        kernel carries the equity over it).
        """
        if self._daily is None:
            eq = self._day_eq
            n_days = eq.shape[1]
            prev = np.empty_like(eq)
            prev[:, 1:] = eq[:, :-1]
            prev[:, self._slot0] = self.config.initial_equity
            growth = eq / prev
            day0 = self._bar_day[self._segs[:, 0]]
            days = np.concatenate([
                np.arange(d0, d0 + (self._slot0[g + 1] if g + 1 < len(self._slot0) else n_days) - s0)
                for g, (d0, s0) in enumerate(zip(day0, self._slot0, strict=True))
            ])
            starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])
            if len(starts) < n_days:
                growth = np.multiply.reduceat(growth, starts, axis=1)
            dates = pd.DatetimeIndex(pd.to_datetime(days[starts] * NS_PER_DAY, utc=True), name="date")
            self._daily = (dates, growth - 1.0)
        return self._daily

    def daily_returns(self, p: int) -> pd.Series:
        dates, r = self._daily_all()
        return pd.Series(r[self._check_set(p)], index=dates, name="return")

    # ---- metrics ------------------------------------------------------------------------------
    def _days(self, bars: np.ndarray | float) -> np.ndarray | float:
        return bars * self.market.bar_seconds / 86_400

    def _segment_daily(self, p: int, g: int) -> np.ndarray:
        eq = self._day_eq[p, self._slot0[g]: (self._slot0[g + 1] if g + 1 < len(self._slot0) else None)]
        prev = np.r_[self.config.initial_equity, eq[:-1]]
        return eq / prev - 1.0

    def segment_metrics(self, p: int) -> list[Metrics]:
        p = self._check_set(p)
        st = self.seg_stats[p]
        init = self.config.initial_equity
        out = []
        for g, (a, b) in enumerate(self.segments):
            daily = self._segment_daily(p, g)
            days = self._days(b - a)
            v = st[g].tolist()
            growth = v[L.S_FINAL] / init
            ann = float(mx.annualized(growth, days))
            dd = v[L.S_MAXDD]
            n = int(v[L.S_NTRADES])
            out.append(Metrics(
                total_return=growth - 1.0, annualized=ann, max_dd=dd,
                sharpe=float(mx.sharpe(daily)[0]), sortino=float(mx.sortino(daily)[0]),
                calmar=float(mx.calmar(ann, dd)), n_trades=n,
                win_rate=v[L.S_WINS] / n if n else float("nan"),
                mean_r=v[L.S_SUMR] / n if n else float("nan"),
                hhi=v[L.S_HHI], exposure=v[L.S_EXPO] / max(v[L.S_BARS], 1.0),
                days=float(days), final_equity=v[L.S_FINAL], fees=v[L.S_FEES],
                funding=v[L.S_FUNDING], slippage=v[L.S_SLIPCOST], liquidations=int(v[L.S_NLIQ]),
                detail_bars=int(v[L.S_DETAIL]), detail_missing=int(v[L.S_DETAIL_MISSING]),
                slip_fallbacks=int(v[L.S_SLIP_FALLBACK]),
            ))
        return out

    def all_metrics(self) -> list[Metrics]:
        """Metrics of the chained segments of every set, vectorized over sets."""
        st = self.seg_stats
        init = self.config.initial_equity
        growth_seg = st[:, :, L.S_FINAL] / init
        growth = np.prod(growth_seg, axis=1)
        chain_start = np.cumprod(np.c_[np.ones(self.n_sets), growth_seg[:, :-1]], axis=1)
        days = self._days(float(sum(b - a for a, b in self.segments)))
        ann = mx.annualized(growth, days)
        dd = self._chain_dd
        _, daily = self._daily_all()
        sharpe, sortino, calmar = mx.sharpe(daily), mx.sortino(daily), mx.calmar(ann, dd)
        n = st[:, :, L.S_NTRADES].sum(axis=1)
        wins = st[:, :, L.S_WINS].sum(axis=1)
        sum_r = st[:, :, L.S_SUMR].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            win_rate = np.where(n > 0, wins / n, np.nan)
            mean_r = np.where(n > 0, sum_r / n, np.nan)
        hhi = mx.hhi(self._coin_expo)
        expo = st[:, :, L.S_EXPO].sum(axis=1) / np.maximum(st[:, :, L.S_BARS].sum(axis=1), 1.0)
        fees = (st[:, :, L.S_FEES] * chain_start).sum(axis=1)
        funding = (st[:, :, L.S_FUNDING] * chain_start).sum(axis=1)
        slippage = (st[:, :, L.S_SLIPCOST] * chain_start).sum(axis=1)
        counts = [st[:, :, f].sum(axis=1).astype(np.int64)
                  for f in (L.S_NLIQ, L.S_DETAIL, L.S_DETAIL_MISSING, L.S_SLIP_FALLBACK)]
        cols = [growth - 1.0, ann, dd, sharpe, sortino, calmar, n.astype(np.int64), win_rate, mean_r,
                hhi, expo, np.full(self.n_sets, days), init * growth, fees, funding, slippage, *counts]
        return [Metrics(*row) for row in zip(*(c.tolist() for c in cols), strict=True)]

    def metrics(self, p: int) -> Metrics:
        """Metrics of the chained segments (a compounding out-of-sample track)."""
        p = self._check_set(p)
        if self._all is None:
            self._all = self.all_metrics()
        return self._all[p]

    # ---- equity and trades --------------------------------------------------------------------
    def equity(self, p: int) -> pd.Series:
        """Equity at each bar close of the chained segments, indexed by the bar's open time.

        Rebuilt by rerunning set p alone (the batch does not keep per-bar equity)."""
        p = self._check_set(p)
        if p not in self._equity:
            eq = _run(self.market, [self.signals[p]], self.friction, self.config, self._segs,
                      self._max_lev, record_trades=False, record_equity=True, mk=self._mk)["eq_out"][0]
            growth = self.seg_stats[p, :, L.S_FINAL] / self.config.initial_equity
            scale = np.repeat(np.r_[1.0, np.cumprod(growth)[:-1]], self._segs[:, 1] - self._segs[:, 0])
            idx = np.concatenate([np.arange(a, b) for a, b in self.segments])
            self._equity[p] = pd.Series(eq * scale, index=self.market.index[idx], name="equity")
        return self._equity[p]

    def trades(self, p: int) -> pd.DataFrame:
        """One row per closed position of set p (columns: TRADE_COLUMNS), every fill included:
        `exit_price` is the last fill's price; a partial take-profit is in the partial_* columns."""
        p = self._check_set(p)
        if self._trades is None or self._trade_loc is None:
            raise ConfigError("trades were not recorded: call simulate(..., record_trades=True)")
        buf, first, n = self._trade_loc[p]
        rows = self._trades[buf][first: first + n]
        sig = self.signals[p]
        m = self.market
        coin = rows[:, L.T_COIN].astype(np.int64)
        sbar = rows[:, L.T_SIGBAR].astype(np.int64)
        ebar = rows[:, L.T_ENTRYBAR].astype(np.int64)
        xbar = rows[:, L.T_EXITBAR].astype(np.int64)
        pbar = rows[:, L.T_PART_BAR].astype(np.int64)
        step = pd.Timedelta(seconds=m.bar_seconds)
        entry_ts = m.index[ebar] + (step * 0 if self.friction.next_open else step)
        # a fill at a bar's open is stamped at it, one inside the bar at its close; inside a
        # detail bar (the intrabar walk), at that detail bar's open or close
        after = np.where(rows[:, L.T_EXIT_AT_OPEN] > 0, 0, 1)
        sub = rows[:, L.T_EXIT_SUB].astype(np.int64)
        ratio = max(self.detail_ratio, 1)
        exit_ts = m.index[xbar] + np.where(sub >= 0, (sub + after) * step / ratio, after * step)
        partial = rows[:, L.T_PARTIAL] > 0
        partial_ts = pd.DatetimeIndex(np.where(partial, m.ts_ns[np.maximum(pbar, 0)], np.iinfo(np.int64).min)
                                      .view("datetime64[ns]"), tz="UTC")
        raw_notional = (rows[:, L.T_NOTIONAL] / (1.0 + rows[:, L.T_SIDE] * rows[:, L.T_ENTRY_SLIP])
                        + np.where(partial, rows[:, L.T_PART_QTY] * rows[:, L.T_PART_PRICE]
                                   / (1.0 - rows[:, L.T_SIDE] * np.nan_to_num(rows[:, L.T_PART_SLIP])), 0.0)
                        + rows[:, L.T_EXIT_QTY] * rows[:, L.T_EXIT]
                        / (1.0 - rows[:, L.T_SIDE] * rows[:, L.T_EXIT_SLIP]))
        coins = np.array(m.coins, dtype=object)
        df = pd.DataFrame({
            "strategy": sig.strategy,
            "coin": coins[coin] if len(coin) else np.array([], dtype=object),
            "side": rows[:, L.T_SIDE].astype(np.int8),
            "signal_bar": sbar, "entry_bar": ebar, "exit_bar": xbar,
            "entry_ts": entry_ts, "exit_ts": exit_ts,
            "entry_price": rows[:, L.T_ENTRY], "exit_price": rows[:, L.T_EXIT],
            "size": rows[:, L.T_SIZE], "notional": rows[:, L.T_NOTIONAL],
            "stop_distance": rows[:, L.T_STOP], "r_multiple": rows[:, L.T_R],
            "pnl": rows[:, L.T_PNL], "fees": rows[:, L.T_FEES], "funding": rows[:, L.T_FUNDING],
            "exit_reason": np.array(EXIT_REASONS, dtype=object)[rows[:, L.T_REASON].astype(np.int64)],
            "partial_taken": partial,
            "session": np.array(SESSIONS, dtype=object)[sig.session[sbar, coin]],
            "regime": np.array(REGIMES, dtype=object)[sig.regime[sbar, coin]],
            "vol_bucket": np.array(VOL_BUCKETS, dtype=object)[sig.vol_bucket[sbar, coin]],
            "setup": sig.setup[sbar, coin],
            "segment": rows[:, L.T_SEG].astype(np.int64),
            "friction": self.friction.version,
            "entry_fee": rows[:, L.T_ENTRY_FEE],
            "entry_slippage_bps": rows[:, L.T_ENTRY_SLIP] * 1e4,
            "partial_ts": partial_ts,
            "partial_price": rows[:, L.T_PART_PRICE],
            "partial_qty": rows[:, L.T_PART_QTY],
            "partial_fee": rows[:, L.T_PART_FEE],
            "partial_slippage_bps": rows[:, L.T_PART_SLIP] * 1e4,
            "exit_qty": rows[:, L.T_EXIT_QTY],
            "exit_fee": rows[:, L.T_EXIT_FEE],
            "exit_slippage_bps": rows[:, L.T_EXIT_SLIP] * 1e4,
            "slippage_bps": np.divide(rows[:, L.T_SLIPCOST] * 1e4, raw_notional,
                                      out=np.zeros(len(rows)), where=raw_notional > 0),
            "slippage_cost": rows[:, L.T_SLIPCOST],
            "detail": rows[:, L.T_DETAIL] > 0,
        }, columns=list(TRADE_COLUMNS))
        return df

    def fill_status(self, p: int) -> pd.DataFrame:
        """Every signal of set p (a non-zero direction cell) and what became of it: `filled`, or
        why not (kernel_layout.FILL_STATUS: no slot, gross cap, dedup, halt, kill, no price...)."""
        p = self._check_set(p)
        ev = self._events_of(p)
        coins = np.array(self.market.coins, dtype=object)
        return pd.DataFrame({
            "signal_bar": ev["bar"], "coin": coins[ev["coin"]], "side": ev["side"],
            "score": ev["score"],
            "status": np.array(L.FILL_STATUS, dtype=object)[ev["status"].astype(np.int64)],
        }, columns=list(FILL_COLUMNS))

    def _events_of(self, p: int) -> dict[str, np.ndarray]:
        part, a, b = self._event_loc[p]
        ev = self._events[part]
        return {"bar": ev["ev_bar"][a:b], "coin": ev["ev_coin"][a:b], "side": ev["direction"][a:b],
                "score": ev["score"][a:b], "status": ev["ev_status"][a:b]}


_NO_ARRAY = np.zeros((0, 0))


def _market_arrays(market: Market, fr: Friction, costs, detail: Market | None) -> dict[str, np.ndarray]:
    """The kernel's market inputs: prices, funding, friction v5's cost estimates, detail bars."""
    f64 = {n: np.ascontiguousarray(getattr(market, n), dtype=np.float64)
           for n in ("open", "high", "low", "close", "funding")}
    if np.isnan(f64["funding"]).any():
        t, c = np.argwhere(np.isnan(f64["funding"]))[0]
        raise DataError(
            f"market funding is NaN at coin {market.coins[c]} bar {t}: the Market contract is 0 "
            "where funding is unknown; rebuild the Market with the data layer"
        )
    f64["listed"] = np.ascontiguousarray(market.listed, dtype=np.bool_)
    f64["bar_day"] = market.ts_ns // NS_PER_DAY
    f64["half_spread"] = f64["impact"] = _NO_ARRAY
    if fr.costs is not None:
        if costs is None:
            costs = coin_costs_cached(market, fr.costs)
        shape = (market.n_bars, market.n_coins)
        for key, arr in (("half_spread", costs.half_spread), ("impact", costs.impact_coef)):
            if arr.shape != shape:
                raise ConfigError(f"costs.{key} has shape {arr.shape}, the market is {shape}: "
                                  "estimate costs on the market you simulate")
            f64[key] = np.ascontiguousarray(arr, dtype=np.float64)
    f64.update(detail_arrays(market, detail))
    return f64


def detail_arrays(market: Market, detail: Market | None) -> dict[str, np.ndarray]:
    """Detail bars laid out for the kernel: row t * ratio + j is detail bar j of bar t, NaN where
    the detail market has no such bar (or not that coin)."""
    if detail is None:
        return {"ratio": 0, "d_open": _NO_ARRAY, "d_high": _NO_ARRAY, "d_low": _NO_ARRAY,
                "d_close": _NO_ARRAY}
    base_s, sub_s = market.bar_seconds, detail.bar_seconds
    if sub_s >= base_s or base_s % sub_s:
        raise ConfigError(f"detail {detail.interval} must be a lower interval that divides the "
                          f"bars' {market.interval}: use e.g. --detail 15m on 1h bars")
    ratio = base_s // sub_s
    n, k = market.n_bars, market.n_coins
    out = {name: np.full((n * ratio, k), np.nan) for name in ("d_open", "d_high", "d_low", "d_close")}
    rel = detail.ts_ns - (market.ts_ns[0] if n else 0)
    ok = (rel >= 0) & (rel < n * base_s * 10**9)
    rows = rel[ok] // (sub_s * 10**9)  # = t * ratio + j
    for j_src, coin in enumerate(detail.coins):
        if coin not in market.coins:
            continue
        j_dst = market.coins.index(coin)
        for name, src in (("d_open", detail.open), ("d_high", detail.high), ("d_low", detail.low),
                          ("d_close", detail.close)):
            out[name][rows, j_dst] = src[ok, j_src]
    out["ratio"] = ratio
    return out


_COSTS: dict[tuple[str, object], object] = {}


def coin_costs_cached(market: Market, model) -> object:
    """friction v5's cost estimates of a market, computed once per (contents, model)."""
    key = (market.fingerprint, model)
    if key not in _COSTS:
        if len(_COSTS) >= 8:
            _COSTS.pop(next(iter(_COSTS)))
        _COSTS[key] = coin_costs(market, model)
    return _COSTS[key]


def _run(market: Market, sigs: Sequence[Signals], fr: Friction, config: SimConfig,
         segs: np.ndarray, max_lev: np.ndarray, record_trades: bool, record_equity: bool,
         mk: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One kernel call over `sigs` (callers keep it within the chunk budget)."""
    prm = _params(config, fr)
    ev = _events(sigs, market)
    n = len(sigs)
    bar_day = mk["bar_day"]
    n_days = bar_day[segs[:, 1] - 1] - bar_day[segs[:, 0]] + 1
    slot0 = np.r_[0, np.cumsum(n_days)[:-1]].astype(np.int64)
    counts = np.diff(ev["ev_ptr"])
    caps = np.minimum(counts, TRADE_CAP) if record_trades else np.zeros(n, dtype=np.int64)
    ev["ev_status"] = np.empty(len(ev["ev_bar"]), dtype=np.int8)
    out: dict[str, np.ndarray] = {"slot0": slot0, "events": ev}
    while True:
        trade_ptr = np.r_[0, np.cumsum(caps)].astype(np.int64)
        trades = np.empty((trade_ptr[-1], L.N_TRADE_FIELDS))
        n_trades = np.zeros(n, dtype=np.int64)
        seg_stats = np.zeros((n, len(segs), L.N_STATS))
        coin_expo = np.zeros((n, market.n_coins))
        day_eq = np.full((n, int(n_days.sum())), np.nan)
        n_eq = int((segs[:, 1] - segs[:, 0]).sum()) if record_equity else 0
        eq_out = np.empty((n, n_eq))
        chain_dd = np.zeros(n)
        kn.simulate_nb(
            mk["open"], mk["high"], mk["low"], mk["close"], mk["funding"], mk["listed"], bar_day,
            max_lev, mk["half_spread"], mk["impact"], mk["d_open"], mk["d_high"], mk["d_low"],
            mk["d_close"], mk["ratio"], segs[:, 0].copy(), segs[:, 1].copy(), slot0,
            ev["ev_ptr"], ev["ev_bar"], ev["ev_coin"], ev["direction"], ev["stop"], ev["target"],
            ev["score"], ev["setup"], ev["hold"], ev["trail"], ev["ex_ptr"], ev["ex_bar"],
            ev["ex_coin"], prm, ev["ev_status"], trade_ptr, trades, n_trades, seg_stats, coin_expo,
            day_eq, eq_out, chain_dd,
        )
        if not record_trades or (n_trades <= caps).all():
            break
        caps = np.maximum(caps, n_trades)  # the kernel kept counting: rerun with room for all
    out.update(seg_stats=seg_stats, coin_expo=coin_expo, day_eq=day_eq, eq_out=eq_out,
               chain_dd=chain_dd)
    if record_trades:  # the buffer is kept as it is: rows [trade_ptr[p], + n_trades[p]) of set p
        out.update(trades=trades, trade_first=trade_ptr[:-1], n_trades=n_trades)
    return out


def simulate(market: Market, signals: Sequence[Signals] | Signals, friction: Friction | str = "v5",
             config: SimConfig = SimConfig(), segments: Sequence[tuple[int, int]] | None = None,
             record_trades: bool = True, max_leverage_by_coin: np.ndarray | None = None,
             detail: Market | None = None, costs=None) -> SimResult:
    """Simulate every Signals in `signals` as its own portfolio over `market`.

    All sets run in one parallel kernel call per chunk (chunks keep the stacked inputs and
    trade buffers near CHUNK_BYTES whatever the number of sets). `segments` are independent
    [start, stop) bar ranges, e.g. walk-forward test windows; the default is the whole market.
    `detail` is a lower-interval market of the same coins for the intrabar walk; `costs`
    overrides friction v5's cost estimates (a harness.costs.CoinCosts of this market).
    """
    sigs = [signals] if isinstance(signals, Signals) else list(signals)
    if not sigs:
        raise ConfigError("simulate needs at least one Signals")
    fr = get_friction(friction)
    if not isinstance(config, SimConfig):
        raise ConfigError(f"config must be a SimConfig, got {type(config).__name__}")
    for s in sigs:
        if not isinstance(s, Signals):
            raise SignalsError(f"simulate expects Signals, got {type(s).__name__}")
    segs = _check_segments(segments, market.n_bars)
    if max_leverage_by_coin is None:
        max_lev = coin_max_leverage(market.coins)
    else:
        max_lev = np.ascontiguousarray(max_leverage_by_coin, dtype=np.float64)
        if max_lev.shape != (market.n_coins,) or not (np.isfinite(max_lev) & (max_lev > 0)).all():
            raise ConfigError(
                f"max_leverage_by_coin must be {market.n_coins} positive numbers, one per coin"
            )
    mk = _market_arrays(market, fr, costs, detail)
    cells = market.n_bars * market.n_coins
    per_set = 2 * cells + (TRADE_CAP * L.N_TRADE_FIELDS * 8 if record_trades else 0) + 4096
    chunk = max(1, CHUNK_BYTES // per_set)
    parts = [
        _run(market, sigs[i: i + chunk], fr, config, segs, max_lev, record_trades, False, mk)
        for i in range(0, len(sigs), chunk)
    ]

    def cat(key: str) -> np.ndarray:
        return parts[0][key] if len(parts) == 1 else np.concatenate([q[key] for q in parts])

    trades = trade_loc = None
    if record_trades:
        trades = [q["trades"] for q in parts]
        trade_loc = np.concatenate([
            np.column_stack([np.full(len(q["n_trades"]), i), q["trade_first"], q["n_trades"]])
            for i, q in enumerate(parts)
        ])
    events = [q["events"] for q in parts]
    event_loc = np.concatenate([
        np.column_stack([np.full(len(e["ev_ptr"]) - 1, i), e["ev_ptr"][:-1], e["ev_ptr"][1:]])
        for i, e in enumerate(events)
    ])
    return SimResult(
        market, sigs, fr, config, segs, max_lev, mk, parts[0]["slot0"], cat("seg_stats"),
        cat("coin_expo"), cat("day_eq"), cat("chain_dd"), trades, trade_loc, events, event_loc,
    )
