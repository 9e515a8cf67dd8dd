"""Compare a kernel SimResult with tests/reference_sim.py's result: trades field by field, the
per-bar equity, every signal's fill status, the metrics and the per-segment counts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from _refsim_records import ReferenceResult, Trade

from harness import kernel_layout as L
from harness.simulate import SimResult

REL = 1e-9


def close(a: float, b: float, scale: float = 1.0) -> bool:
    """Equal to REL relative, or to REL x scale absolute (for values that may be ~0)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return abs(a - b) <= REL * max(abs(a), abs(b), scale)


def ref_row(tr: Trade, index: pd.DatetimeIndex, step: pd.Timedelta, ratio: int = 1) -> dict:
    part = tr.partial
    after = 0 if tr.exit.at_open else 1
    exit_ts = index[tr.exit_bar] + (after * step if tr.exit.sub < 0
                                    else (tr.exit.sub + after) * step / ratio)
    return {
        "side": tr.side, "entry_bar": tr.entry_bar, "exit_bar": tr.exit_bar,
        "exit_reason": tr.exit_reason, "partial_taken": part is not None, "detail": tr.detail,
        "exit_ts": exit_ts,
        "entry_price": tr.entry.price, "exit_price": tr.exit.price, "size": tr.size,
        "notional": tr.notional, "stop_distance": tr.stop_distance, "pnl": tr.pnl,
        "r_multiple": tr.r_multiple, "fees": tr.fees, "funding": tr.funding,
        "entry_fee": tr.entry.fee, "entry_slippage_bps": tr.entry.slippage * 1e4,
        "exit_qty": tr.exit.qty, "exit_fee": tr.exit.fee,
        "exit_slippage_bps": tr.exit.slippage * 1e4, "slippage_cost": tr.slippage_cost,
        **({"partial_ts": index[part.bar], "partial_price": part.price, "partial_qty": part.qty,
            "partial_fee": part.fee, "partial_slippage_bps": part.slippage * 1e4} if part else {}),
    }


EXACT = ("side", "entry_bar", "exit_bar", "exit_reason", "partial_taken", "detail", "exit_ts",
         "partial_ts")


def compare_trades(res: SimResult, ref: ReferenceResult, p: int = 0) -> list[str]:
    """Mismatches (empty: the same trades), the first differing trade described in full."""
    m = res.market
    step = pd.Timedelta(seconds=m.bar_seconds)
    kt = res.trades(p)
    kernel = {(int(r.segment), m.coin_index(r.coin), int(r.signal_bar)): r for r in kt.itertuples()}
    refs = {(tr.segment, tr.coin, tr.signal_bar): tr for tr in ref.trades}
    out = []
    only_k = sorted(set(kernel) - set(refs), key=lambda k: (k[0], kernel[k].entry_bar, k[1]))
    only_r = sorted(set(refs) - set(kernel), key=lambda k: (k[0], refs[k].entry_bar, k[1]))
    if only_k:
        out.append(f"{len(only_k)} trades only in the kernel, first (segment, coin, signal bar) "
                   f"{only_k[0]}: {kernel[only_k[0]]._asdict()}")
    if only_r:
        out.append(f"{len(only_r)} trades only in the reference, first {only_r[0]}: "
                   f"{ref_row(refs[only_r[0]], m.index, step, max(res.detail_ratio, 1))}")
    for key in sorted(set(kernel) & set(refs), key=lambda k: (k[0], refs[k].entry_bar, k[1])):
        k, r = kernel[key]._asdict(), ref_row(refs[key], m.index, step, max(res.detail_ratio, 1))
        scale = max(r["notional"], 1.0)
        bad = [name for name, want in r.items()
               if (k[name] != want if name in EXACT else not close(float(k[name]), float(want), scale))]
        if bad:
            out.append(f"trade {key} ({m.coins[key[1]]}) differs in {bad}: "
                       + "; ".join(f"{n}: kernel {k[n]!r} reference {r[n]!r}" for n in bad))
            break
    return out


def compare_status(res: SimResult, ref: ReferenceResult, p: int = 0) -> list[str]:
    fs = res.fill_status(p)
    m = res.market
    kernel = {(int(r.signal_bar), m.coin_index(r.coin)): r.status for r in fs.itertuples()}
    if set(kernel) != set(ref.status):
        return [f"signal sets differ: {len(kernel)} in the kernel, {len(ref.status)} in the reference"]
    bad = sorted(k for k in kernel if kernel[k] != ref.status[k])
    if not bad:
        return []
    t, c = bad[0]
    return [f"{len(bad)} fill statuses differ, first at bar {t} coin {m.coins[c]}: "
            f"kernel {kernel[(t, c)]!r} reference {ref.status[(t, c)]!r}"]


def compare_equity(res: SimResult, ref: ReferenceResult, p: int = 0) -> list[str]:
    eq = res.equity(p).to_numpy()
    if eq.shape != ref.equity.shape:
        return [f"equity has {eq.shape} bars in the kernel, {ref.equity.shape} in the reference"]
    bad = np.flatnonzero(np.abs(eq - ref.equity) > REL * np.maximum(np.abs(ref.equity), 1.0))
    if len(bad):
        i = bad[0]
        return [f"equity differs on {len(bad)} bars, first at chained bar {i} "
                f"({res.equity(p).index[i]}): kernel {eq[i]!r} reference {ref.equity[i]!r}"]
    return []


COUNTS = (("liquidations", L.S_NLIQ), ("backstops", L.S_NBACKSTOP), ("killed", L.S_KILLED),
          ("halts", L.S_HALTS), ("detail_walks", L.S_DETAIL), ("detail_fallbacks", L.S_DETAIL_MISSING),
          ("slippage_fallbacks", L.S_SLIP_FALLBACK))
SUMS = (("fees", L.S_FEES), ("funding", L.S_FUNDING), ("slippage_cost", L.S_SLIPCOST))


def compare_summary(res: SimResult, ref: ReferenceResult, p: int = 0) -> list[str]:
    out = []
    m = res.market
    met = res.metrics(p)
    trades = ref.trades
    n = len(trades)
    want = {
        "final_equity": ref.final_equity, "max_dd": ref.max_drawdown, "n_trades": n,
        "win_rate": sum(t.pnl > 0 for t in trades) / n if n else math.nan,
        "mean_r": sum(t.r_multiple for t in trades) / n if n else math.nan,
    }
    for name, w in want.items():
        if not close(float(getattr(met, name)), float(w)):
            out.append(f"metric {name}: kernel {getattr(met, name)!r} reference {w!r}")
    bars = sum(b - a for a, b in res.segments)
    notional = np.zeros(m.n_coins)
    for cnt in ref.counters:
        for c, v in cnt.coin_notional.items():
            notional[c] += v
    shares = notional / notional.sum() if notional.sum() > 0 else None
    for name, w in (("exposure", sum(c.exposure for c in ref.counters) / bars),
                    ("hhi", float((shares**2).sum()) if shares is not None else 1.0)):
        if not close(float(getattr(met, name)), w):
            out.append(f"metric {name}: kernel {getattr(met, name)!r} reference {w!r}")
    if len(res.segments) == 1:
        got, want = res.daily_returns(p).to_numpy(), daily_returns(res, ref)
        if got.shape != want.shape or not np.allclose(got, want, rtol=0, atol=REL):
            out.append(f"daily returns differ: kernel {got[:5]}... reference {want[:5]}...")
    init = ref.initial_equity
    for g, cnt in enumerate(ref.counters):
        st = res.seg_stats[p, g]
        for name, idx in COUNTS:
            if float(st[idx]) != float(getattr(cnt, name)):
                out.append(f"segment {g} {name}: kernel {st[idx]!r} reference {getattr(cnt, name)!r}")
        for name, idx in SUMS:
            if not close(float(st[idx]), getattr(cnt, name), init):
                out.append(f"segment {g} {name}: kernel {st[idx]!r} reference {getattr(cnt, name)!r}")
    return out


def daily_returns(res: SimResult, ref: ReferenceResult) -> np.ndarray:
    """Daily returns of a one-segment reference run: equity at the end of each UTC day (by bar
    open time; a day without bars carries the equity), the first day from initial equity."""
    (a, b), = res.segments
    days = res.market.ts_ns[a:b] // (86_400 * 10**9)
    day_end = dict(zip(days.tolist(), ref.equity.tolist(), strict=True))  # the last bar wins
    prev, out = ref.initial_equity, []
    for d in range(int(days[0]), int(days[-1]) + 1):
        cur = day_end.get(d, prev)
        out.append(cur / prev - 1.0)
        prev = cur
    return np.array(out)


def compare(res: SimResult, ref: ReferenceResult, p: int = 0) -> list[str]:
    return (compare_trades(res, ref, p) + compare_status(res, ref, p) + compare_equity(res, ref, p)
            + compare_summary(res, ref, p))
