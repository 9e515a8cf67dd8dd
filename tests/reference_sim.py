"""A plain-Python reference of the portfolio simulator, written from the spec only.

Sources: the module docstring of harness/kernel_nb.py, DESIGN.md section 5, harness/friction.py,
the public API of harness/simulate.py and harness/margin.py's liquidation formula. Nothing here is
shared with the kernel: it is one readable per-bar, per-position loop, slow on purpose, used by
tests/test_reference_sim.py to check the kernel trade by trade.

Where the spec leaves a choice open, the choice is written next to the code as "ASSUMED"
("kernel agrees": the kernel, probed as a black box on tiny markets, made the same choice).
The records (fills, positions, trades, counts) live in tests/_refsim_records.py.
Only next-open frictions (v2..v5) are covered; the legacy close fill is out of scope.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from _refsim_records import Counters, Fill, Position, ReferenceResult, Trade

from harness.friction import Friction
from harness.margin import backstop_price, liquidation_price
from harness.margin import max_leverage as coin_max_leverage
from harness.market import Market
from harness.signals import Signals
from harness.simulate import SimConfig

NS_PER_DAY = 86_400 * 10**9


class _Segment:
    """One independent run over bars [start, stop) from initial equity."""

    def __init__(self, sim: ReferenceSimulator, g: int, start: int, stop: int) -> None:
        self.sim, self.g, self.start, self.stop = sim, g, start, stop
        self.cash = sim.config.initial_equity
        self.positions: dict[int, Position] = {}
        self.last_setup: dict[int, int] = {}
        self.peak = self.cash
        self.day: int | None = None
        self.day_start_equity = self.cash
        self.halted_day: int | None = None
        self.killed = False
        self.counters = Counters()
        self.sub = -1  # the detail bar being walked
        self.trades: list[Trade] = []
        self.equity = np.empty(stop - start)

    # ---- prices ------------------------------------------------------------------------------
    def has_price(self, t: int, c: int) -> bool:
        m = self.sim.market
        return bool(m.listed[t, c]) and math.isfinite(m.open[t, c])

    def last_close(self, t: int, c: int) -> float:
        """The coin's last known close at or before bar t."""
        close = self.sim.market.close[:, c]
        for u in range(t, -1, -1):
            if math.isfinite(close[u]):
                return float(close[u])
        raise AssertionError("position on a coin that never had a close")

    def marked_equity(self, t: int) -> float:
        """Cash plus open positions marked at their last close (at or before bar t)."""
        eq = self.cash
        for p in self.positions.values():
            eq += p.side * p.size * (self.last_close(t, p.coin) - p.entry_price)
        return eq

    def gross_notional(self, t: int) -> float:
        return sum(p.size * self.last_close(t, p.coin) for p in self.positions.values())

    # ---- friction ----------------------------------------------------------------------------
    def slippage(self, c: int, fill_bar: int, raw_notional: float) -> float:
        """Fraction against you: flat, or friction v5's per-coin estimate known at the close of
        the bar before the fill bar (flat where unknown, counted)."""
        sim = self.sim
        if sim.half_spread is None:
            return sim.flat_slippage
        hs = sim.half_spread[fill_bar - 1, c]
        k = sim.impact_coef[fill_bar - 1, c]
        if not (math.isfinite(hs) and math.isfinite(k)):
            self.counters.slippage_fallbacks += 1
            return sim.flat_slippage
        costs = sim.friction.costs
        rate = hs + k * math.sqrt(raw_notional)
        rate = min(max(rate, costs.floor_bps * 1e-4), costs.cap_bps * 1e-4)
        return rate * sim.friction.stress

    def fill(self, p: Position, qty: float, raw: float, bar: int, at_open: bool) -> tuple[Fill, float]:
        """Sell back `qty` of p at `raw` (slippage against you, fee). Returns (fill, cash change)."""
        slip = self.slippage(p.coin, bar, qty * raw)
        price = raw * (1.0 - p.side * slip)
        fee = self.sim.fee * qty * price
        self.counters.fees += fee
        self.counters.slippage_cost += qty * abs(raw - price)
        return (Fill(bar, price, qty, fee, slip, raw, at_open, self.sub),
                p.side * qty * (price - p.entry_price) - fee)

    # ---- closing -----------------------------------------------------------------------------
    def close(self, p: Position, raw: float, bar: int, reason: str, at_open: bool) -> None:
        """Close what is left of p at `raw` and book the trade."""
        exit_fill, cash_change = self.fill(p, p.size, raw, bar, at_open)
        if reason == "liquidation":
            self.counters.liquidations += 1
            # the isolated position never loses more than its margin (what is left of it)
            floor = -p.margin * p.size / p.entry.qty
            if cash_change < floor:  # ASSUMED: the cap applies to the closing leg
                cash_change = floor
        self.cash += cash_change
        p.cash_flow += cash_change
        self.book(p, exit_fill, reason)

    def backstop(self, p: Position, o: float, bar: int) -> None:
        """The backstop takes the whole isolated margin (what is left of it): no fill, no fee,
        no slippage. ASSUMED (kernel agrees): the exit price recorded is the bar's open, and a
        backstop counts among the liquidations too."""
        self.counters.backstops += 1
        self.counters.liquidations += 1
        margin_left = p.margin * p.size / p.entry.qty
        self.cash -= margin_left
        p.cash_flow -= margin_left
        self.book(p, Fill(bar, o, p.size, 0.0, 0.0, o, True), "backstop")

    def book(self, p: Position, exit_fill: Fill, reason: str) -> None:
        fills = [p.entry] + ([p.partial] if p.partial else []) + [exit_fill]
        pnl = p.cash_flow - p.funding
        self.trades.append(Trade(
            coin=p.coin, side=p.side, signal_bar=p.signal_bar, entry_bar=p.entry.bar,
            exit_bar=exit_fill.bar, segment=self.g, entry=p.entry, partial=p.partial,
            exit=exit_fill, exit_reason=reason, size=p.entry.qty,
            notional=p.entry.qty * p.entry_price, stop_distance=p.stop_distance, pnl=pnl,
            r_multiple=pnl / (p.entry.qty * p.stop_distance), fees=sum(f.fee for f in fills),
            funding=p.funding, slippage_cost=sum(f.slippage_cost for f in fills), detail=p.detail,
        ))
        del self.positions[p.coin]

    def take_partial(self, p: Position, raw: float, bar: int, at_open: bool) -> None:
        qty = self.sim.friction.partial_frac * p.entry.qty
        part, cash_change = self.fill(p, qty, raw, bar, at_open)
        self.cash += cash_change
        p.cash_flow += cash_change
        p.partial = part
        p.size -= qty
        p.partial_level = math.nan
        p.stop, p.stop_reason = p.entry_price, "partial"  # breakeven: the entry fill price

    # ---- inside a bar ------------------------------------------------------------------------
    def at_open(self, p: Position, o: float, bar: int) -> bool:
        """Step 1 for one position: a bar (or detail bar) opening beyond a level fills at the
        open, adverse first. Returns True when the position is closed.

        A fill inside a detail bar is stamped with that detail bar's open (at its open) or
        close (inside it)."""
        s = p.side
        if self.sim.friction.liquidation:
            if s * (o - p.backstop) <= 0:
                self.backstop(p, o, bar)
                return True
            if s * (o - p.liq) <= 0:
                self.close(p, o, bar, "liquidation", True)
                return True
        if s * (o - p.stop) <= 0:
            self.close(p, o, bar, p.stop_reason, True)
            return True
        if math.isfinite(p.target) and s * (o - p.target) >= 0:
            self.close(p, o, bar, "target", True)
            return True
        if math.isfinite(p.partial_level) and s * (o - p.partial_level) >= 0:
            self.take_partial(p, o, bar, True)
        return False

    def nearest_adverse(self, p: Position) -> tuple[float, str]:
        """The adverse level met first on the way from the open to the adverse extreme."""
        if self.sim.friction.liquidation and p.side * (p.liq - p.stop) > 0:
            return p.liq, "liquidation"
        return p.stop, p.stop_reason

    def favourable_levels(self, p: Position) -> list[tuple[float, str]]:
        """Partial and target, in the order the price meets them moving away from the entry."""
        levels = []
        if math.isfinite(p.partial_level):
            levels.append((p.partial_level, "partial"))
        if math.isfinite(p.target):
            levels.append((p.target, "target"))
        return sorted(levels, key=lambda lv: p.side * lv[0])

    def trailed_stop(self, p: Position, best: float) -> float | None:
        """The trailing stop for this best price, or None when trailing is off or not started."""
        if not math.isfinite(p.trail_distance):
            return None
        if p.side * (best - p.entry_price) < self.sim.friction.trail_start_r * p.stop_distance:
            return None
        return best - p.side * p.trail_distance

    def in_range(self, p: Position, high: float, low: float, close: float, bar: int) -> bool:
        """Step 2 for one position: open -> adverse extreme -> favourable extreme -> close.
        Returns True when the position is closed."""
        s = p.side
        adverse_extreme, favourable_extreme = (low, high) if s > 0 else (high, low)
        level, reason = self.nearest_adverse(p)
        if s * (adverse_extreme - level) <= 0:
            self.close(p, level, bar, reason, False)
            return True
        stop_before = p.stop
        for level, kind in self.favourable_levels(p):
            if s * (favourable_extreme - level) >= 0:
                if kind == "target":
                    self.close(p, level, bar, "target", False)
                    return True
                self.take_partial(p, level, bar, False)
        if s * (favourable_extreme - p.best) > 0:
            p.best = favourable_extreme
        trailed = self.trailed_stop(p, p.best)
        if trailed is not None and s * (trailed - p.stop) > 0:
            p.stop, p.stop_reason = trailed, "trail"
        if p.stop != stop_before and s * (close - p.stop) <= 0:
            self.close(p, p.stop, bar, p.stop_reason, False)  # the close is the last trade
            return True
        return False

    def order_matters(self, p: Position, high: float, low: float) -> bool:
        """Does bar (high, low) reach an adverse and a favourable level, or does a stop raised on
        the way lie inside it? Then only detail bars can say what came first."""
        s = p.side
        adverse_extreme, favourable_extreme = (low, high) if s > 0 else (high, low)
        adverse = s * (adverse_extreme - self.nearest_adverse(p)[0]) <= 0
        levels = self.favourable_levels(p)
        favourable = any(s * (favourable_extreme - lv) >= 0 for lv, _ in levels)
        if adverse and favourable:
            return True
        # the stops raised on the way up to the favourable extreme, or up to the target when the
        # bar reaches it (the target closes the position: nothing raised beyond it matters)
        stop, best = p.stop, favourable_extreme
        for level, kind in levels:
            if s * (favourable_extreme - level) >= 0:
                if kind == "target":
                    best = level
                    break
                stop = p.entry_price  # the partial moves the stop to breakeven
        if s * (best - p.best) < 0:
            best = p.best
        trailed = self.trailed_stop(p, best)
        if trailed is not None and s * (trailed - stop) > 0:
            stop = trailed
        return s * (stop - p.stop) > 0 and s * (adverse_extreme - stop) <= 0

    def bar_range(self, p: Position, t: int) -> None:
        """Step 2, or step 3 (the detail walk) where the order inside the bar matters."""
        m = self.sim.market
        c = p.coin
        high, low, close = float(m.high[t, c]), float(m.low[t, c]), float(m.close[t, c])
        d = self.sim.detail_bars
        if d is not None and self.order_matters(p, high, low):
            rows = d[t, :, c, :]  # (ratio, 4): open, high, low, close
            if not np.isfinite(rows).all():
                self.counters.detail_fallbacks += 1
            else:
                self.counters.detail_walks += 1
                p.detail = True
                try:
                    for j, (o, h, lo, cl) in enumerate(rows):
                        self.sub = j
                        if j > 0 and self.at_open(p, float(o), t):
                            return
                        if self.in_range(p, float(h), float(lo), float(cl), t):
                            return
                finally:
                    self.sub = -1
                return
        self.in_range(p, high, low, close, t)

    # ---- entries -----------------------------------------------------------------------------
    def enter(self, s_bar: int, t: int, c: int, equity: float) -> str:
        """Try to fill the signal of bar s_bar on coin c at the open of t, sized on `equity`.
        Returns its status."""
        sim = self.sim
        sig = sim.signals
        side = int(sig.direction[s_bar, c])
        if self.killed:
            return "kill_switch"
        if self.halted_day == sim.bar_day[t]:
            return "daily_halt"
        if c in self.positions:  # ASSUMED (kernel agrees): before no_price, e.g. for an
            return "position_open"  # opposite signal whose close waits for a price
        if not (self.has_price(t, c) and math.isfinite(sim.market.close[s_bar, c])):
            return "no_price"
        setup = int(sig.setup[s_bar, c])
        if sim.friction.dedup and setup != 0 and self.last_setup.get(c) == setup:
            return "dedup"
        if len(self.positions) >= sim.config.max_positions:
            return "no_slot"
        if equity <= 0:
            return "no_equity"
        o = float(sim.market.open[t, c])
        stop_distance = float(sig.stop[s_bar, c])
        cfg = sim.config
        cap = cfg.max_leverage * equity
        room = cap - self.step_gross
        if room <= 1e-9 * cap:  # a rounding residue of a used-up cap is no room (no dust)
            return "gross_cap"
        if cfg.sizing == "risk":
            size = equity * cfg.risk_fraction / stop_distance
            slip = self.slippage(c, t, min(size * o, room))  # the intended notional, capped
            price = o * (1.0 + side * slip)
        else:  # notional * (1 + fee) = equity * fraction, the notional at the fill price
            slip = self.slippage(c, t, min(equity * cfg.fraction / (1.0 + sim.fee), room))
            price = o * (1.0 + side * slip)
            size = equity * cfg.fraction / ((1.0 + sim.fee) * price)
        # ASSUMED (kernel agrees): the cap is on the notional at the fill price; the open
        # positions count at their last close (the gross of the mark)
        size = min(size, room / price)
        self.step_gross += size * price
        fee = sim.fee * size * price
        self.cash -= fee
        self.counters.fees += fee
        self.counters.slippage_cost += size * abs(price - o)
        fr = sim.friction
        lev = min(cfg.position_leverage, float(sim.max_lev[c]))
        target_r = float(sig.target[s_bar, c])
        trail_r = float(sig.trail[s_bar, c])
        hold = int(sig.hold[s_bar, c])
        self.positions[c] = Position(
            coin=c, side=side, signal_bar=s_bar, segment=self.g, setup=setup,
            stop_distance=stop_distance, entry=Fill(t, price, size, fee, slip, o, True), size=size,
            stop=price - side * stop_distance, stop_reason="stop",
            target=price + side * target_r * stop_distance if math.isfinite(target_r) else math.nan,
            partial_level=price + side * fr.partial_r * stop_distance if fr.partial else math.nan,
            trail_distance=(trail_r if math.isfinite(trail_r) else fr.trail_dist_r) * stop_distance
            if fr.trail else math.nan,
            best=price,
            liq=liquidation_price(price, side, size, lev, float(sim.max_lev[c])) if fr.liquidation else math.nan,
            backstop=backstop_price(price, side, size, lev, float(sim.max_lev[c])) if fr.liquidation else math.nan,
            margin=size * price / lev,
            hold_until=t + hold if hold > 0 else None,
            cash_flow=-fee,
        )
        self.last_setup[c] = setup
        return "filled"

    # ---- the bar loop ------------------------------------------------------------------------
    def run(self) -> None:
        sim = self.sim
        for t in range(self.start, self.stop):
            day = int(sim.bar_day[t])
            if day != self.day:
                self.day = day
                self.day_start_equity = self.equity[t - 1 - self.start] if t > self.start else self.cash
            self.open_at_start = bool(self.positions)
            if t > self.start:
                self.open_step(t)
            for p in list(self.positions.values()):
                if self.has_price(t, p.coin):
                    self.bar_range(p, t)
            self.close_step(t)

    def open_step(self, t: int) -> None:
        """Step 1: levels at the open, then the requested closes, then the entries."""
        sim = self.sim
        s_bar = t - 1
        for p in list(self.positions.values()):
            if p.entry.bar < t and self.has_price(t, p.coin):
                self.at_open(p, float(sim.market.open[t, p.coin]), t)
        for c in sim.signal_coins[s_bar]:  # an opposite signal closes the open position
            p = self.positions.get(c)
            if p is not None and p.side != sim.signals.direction[s_bar, c] and p.close_request is None:
                p.close_request = "signal"
        for c in sim.exit_coins[s_bar]:
            p = self.positions.get(c)
            if p is not None and p.close_request is None:
                p.close_request = "signal"
        for p in list(self.positions.values()):  # ASSUMED (kernel agrees): signal before time
            if p.close_request is None and p.hold_until is not None and t >= p.hold_until:
                p.close_request = "time"
            if p.close_request is not None and self.has_price(t, p.coin):
                self.close(p, float(sim.market.open[t, p.coin]), t, p.close_request, True)
        coins = sorted(sim.signal_coins[s_bar], key=lambda c: (-sim.signals.score[s_bar, c], c))
        # ASSUMED (kernel agrees): one equity for every entry of this open, after its closes
        equity = self.marked_equity(t - 1)
        self.step_gross = self.gross_notional(t - 1)
        for c in coins:
            sim.status[(s_bar, c)] = self.enter(s_bar, t, c, equity)

    def close_step(self, t: int) -> None:
        """Step 4: funding, the mark, risk controls; the segment's last bar closes everything."""
        sim = self.sim
        m = sim.market
        if sim.friction.funding:
            for p in self.positions.values():
                rate = float(m.funding[t, p.coin])
                # a bar without a candle still pays its hour, at the last known close
                if rate != 0.0:
                    pay = p.side * p.size * self.last_close(t, p.coin) * rate
                    p.funding += pay
                    self.cash -= pay
                    self.counters.funding += pay
        held = [(p.coin, p.size * self.last_close(t, p.coin)) for p in self.positions.values()]
        if t == self.stop - 1:
            for p in list(self.positions.values()):
                self.close(p, self.last_close(t, p.coin), t, "end_of_data", False)
            for c in sim.signal_coins[t]:  # ASSUMED (kernel agrees): the kill is named first
                sim.status[(t, c)] = "kill_switch" if self.killed else "end_of_segment"
        equity = self.marked_equity(t)
        self.equity[t - self.start] = equity
        for c, notional in held:  # exposure held through this close, on the bar's equity
            self.counters.coin_notional[c] += notional
            self.counters.exposure += notional / equity
        if t == self.stop - 1:  # ASSUMED (kernel agrees): nothing left to control
            return
        cfg = sim.config
        self.peak = max(self.peak, equity)
        if not self.killed and equity <= self.peak * (1.0 - cfg.kill_drawdown):
            self.killed = True
            self.counters.killed = True
            for p in self.positions.values():
                p.close_request = "kill_switch"
            return  # ASSUMED (kernel agrees): the close that kills counts no daily halt
        if self.killed and not self.open_at_start:
            return  # ASSUMED (kernel agrees): once killed and flat, nothing is checked any more
        if self.halted_day != self.day and equity <= self.day_start_equity * (1.0 - cfg.daily_loss_halt):
            self.halted_day = self.day
            self.counters.halts += 1


@dataclass
class ReferenceSimulator:
    market: Market
    signals: Signals
    friction: Friction
    config: SimConfig = field(default_factory=SimConfig)
    segments: list[tuple[int, int]] | None = None
    detail: Market | None = None
    half_spread: np.ndarray | None = None  # friction v5 inputs (harness.costs.CoinCosts arrays)
    impact_coef: np.ndarray | None = None
    max_leverage_by_coin: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not self.friction.next_open:
            raise ValueError("the reference covers next-open frictions only (v2..v5)")
        m = self.market
        self.fee = self.friction.fee_bps * 1e-4
        self.flat_slippage = self.friction.slippage_bps * 1e-4
        if self.friction.costs is None:
            self.half_spread = self.impact_coef = None
        elif self.half_spread is None or self.impact_coef is None:
            raise ValueError("friction v5 needs half_spread and impact_coef arrays")
        self.max_lev = (coin_max_leverage(m.coins) if self.max_leverage_by_coin is None
                        else np.asarray(self.max_leverage_by_coin, dtype=np.float64))
        self.bar_day = m.ts_ns // NS_PER_DAY
        self.signal_coins = [list(np.flatnonzero(row)) for row in self.signals.direction]
        self.exit_coins = [list(np.flatnonzero(row)) for row in self.signals.exit]
        self.detail_bars = None if self.detail is None else self._detail_bars()
        self.status: dict[tuple[int, int], str] = {}

    def _detail_bars(self) -> np.ndarray:
        """(n_bars, ratio, n_coins, 4) detail open/high/low/close of each bar, NaN where missing."""
        m, d = self.market, self.detail
        ratio = m.bar_seconds // d.bar_seconds
        out = np.full((m.n_bars, ratio, m.n_coins, 4), np.nan)
        pos = {ts: i for i, ts in enumerate(m.ts_ns.tolist())}
        step = d.bar_seconds * 10**9
        for i, ts in enumerate(d.ts_ns.tolist()):
            for j in range(ratio):
                t = pos.get(ts - j * step)
                if t is not None:
                    break
            else:
                continue
            for c, coin in enumerate(m.coins):
                if coin in d.coins:
                    k = d.coins.index(coin)
                    out[t, j, c] = (d.open[i, k], d.high[i, k], d.low[i, k], d.close[i, k])
        return out

    def run(self) -> ReferenceResult:
        segs = [(0, self.market.n_bars)] if self.segments is None else list(self.segments)
        runs = []
        for g, (a, b) in enumerate(segs):
            seg = _Segment(self, g, a, b)
            seg.run()
            runs.append(seg)
        for t, c in np.argwhere(self.signals.direction != 0):
            self.status.setdefault((int(t), int(c)), "outside")
        init = self.config.initial_equity
        scale, chained = 1.0, []
        for seg in runs:
            chained.append(seg.equity * scale)
            scale *= seg.equity[-1] / init
        trades = [tr for seg in runs for tr in seg.trades]
        return ReferenceResult(
            trades=trades, equity=np.concatenate(chained), segment_equity=[s.equity for s in runs],
            status=dict(self.status), counters=[s.counters for s in runs], initial_equity=init,
        )


def reference_simulate(market: Market, signals: Signals, friction: Friction,
                       config: SimConfig = SimConfig(), segments=None, detail: Market | None = None,
                       half_spread: np.ndarray | None = None, impact_coef: np.ndarray | None = None,
                       max_leverage_by_coin: np.ndarray | None = None) -> ReferenceResult:
    return ReferenceSimulator(market, signals, friction, config, segments, detail, half_spread,
                              impact_coef, max_leverage_by_coin).run()
