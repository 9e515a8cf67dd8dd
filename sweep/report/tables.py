"""HTML tables of one backtest: the metrics, the buckets (with the promotion evidence when a
promote run judged them) and every trade. A sortable table's cells carry their raw value in
`data-v`, which the page's script sorts by (numbers as numbers)."""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np
import pandas as pd

from harness.friction import FEE_STRESS
from harness.signals import SIDES
from harness.stats import t_stat
from sweep.backtest import METRIC_ROWS, BacktestRecord, fmt

BUCKET_KEY = ("strategy", "side", "session", "regime", "vol_bucket")
# (trades column, header, format); "p" is a price, "t" a time, "s" text
TRADE_COLS = (
    ("coin", "coin", "s"), ("side", "side", "s"), ("entry_ts", "entry (UTC)", "t"),
    ("exit_ts", "exit (UTC)", "t"), ("entry_price", "entry", "p"), ("exit_price", "exit", "p"),
    ("r_multiple", "R", "f"), ("pnl", "PnL", "$"), ("fees", "fees", "$"),
    ("funding", "funding", "$"), ("slippage_bps", "slippage bps", "f"),
    ("exit_reason", "exit reason", "s"), ("partial_taken", "partial", "s"),
    ("session", "session", "s"), ("regime", "regime", "s"), ("vol_bucket", "vol", "s"),
    ("segment", "fold", "d"),
)
# promotions columns shown when present (their names differ between promote versions)
EVIDENCE = (("promoted", "promoted", "s"), ("failed_gate", "first failed gate", "s"),
            ("p_corrected", "corrected p", "f"), ("dsr", "DSR", "f"), ("spa_p", "SPA p", "f"),
            ("p_oos_loss", "P(OOS loss)", "%"), ("pbo", "PBO", "f"),
            ("stress_mean_r", "stress mean R", "f"), ("lockbox_n", "lockbox n", "d"),
            ("lockbox_mean_r", "lockbox mean R", "f"), ("lockbox_mde", "lockbox power (MDE)", "f"),
            ("lockbox_p", "lockbox p", "f"), ("reason", "reason", "s"))


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (
        isinstance(value, float) and math.isnan(value))


def _cell(value: Any, kind: str) -> tuple[str, str]:
    """(shown text, sort key); a missing value shows as "-" and sorts last."""
    if _missing(value):
        return "-", ""
    if kind == "t":
        ts = pd.Timestamp(value)
        return f"{ts:%Y-%m-%d %H:%M}", ts.isoformat()
    if isinstance(value, bool | np.bool_):
        return ("yes", "1") if value else ("no", "0")
    if kind == "s":
        return str(value), str(value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value), str(value)
    if kind == "p":
        return (f"{v:.6g}" if math.isfinite(v) else "-", repr(v))
    return fmt(int(v) if kind == "d" and math.isfinite(v) else v, kind), repr(v) if math.isfinite(v) else ""


def html_table(headers: list[str], rows: list[list[tuple[str, str]]], table_id: str,
               sortable: bool = False, numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    cls = ' class="sortable"' if sortable else ""
    head = "".join(f'<th{" class=num" if i in numeric else ""}>{html.escape(h)}</th>'
                   for i, h in enumerate(headers))
    body = "\n".join(
        "<tr>" + "".join(f'<td{" class=num" if i in numeric else ""} data-v="{html.escape(k)}">'
                         f"{html.escape(v)}</td>" for i, (v, k) in enumerate(r)) + "</tr>"
        for r in rows)
    return f'<table id="{table_id}"{cls}><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>'


def metrics_table(rec: BacktestRecord) -> str:
    m = rec.meta
    rows = [[(label, label), _cell(m["base"][k], kind), _cell(m["stress"][k], kind)]
            for k, label, kind in METRIC_ROWS]
    return html_table(["metric", "base", f"fee stress x{FEE_STRESS:g}"], rows, "metrics",
                      numeric={1, 2})


def folds_table(rec: BacktestRecord) -> str:
    m = rec.meta
    rows = [[_cell(i, "d"), _cell(a, "t"), _cell(b, "t"), _cell(f["n_trades"], "d"),
             _cell(f["annualized"], "%"), _cell(f["max_dd"], "%"), _cell(f["sharpe"], "f"),
             _cell(s, "f")]
            for i, ((a, b), f, s) in enumerate(zip(m["segments"], m["fold_metrics"],
                                                   m["fold_scores"], strict=True))]
    return html_table(["#", "from (UTC)", "to (UTC)", "trades", "annualized", "max DD", "Sharpe",
                       "score"], rows, "folds", numeric={0, 3, 4, 5, 6, 7})


def side_names(side: pd.Series) -> pd.Series:
    return side.map(lambda v: SIDES.get(int(np.sign(v)), "?") if not isinstance(v, str) else v)


def bucket_frame(trades: pd.DataFrame) -> pd.DataFrame:
    """Closed trades grouped by promotion bucket: n, mean R, t-stat, win rate, total R."""
    if trades.empty:
        return pd.DataFrame(columns=[*BUCKET_KEY, "n", "mean_r", "t", "win_rate", "sum_r"])
    t = trades.assign(side=side_names(trades["side"]))
    rows = []
    for key, g in t.groupby(list(BUCKET_KEY), sort=True):
        r = g["r_multiple"].to_numpy(dtype=float)
        rows.append({**dict(zip(BUCKET_KEY, key, strict=True)), "n": len(r), "mean_r": r.mean(),
                     "t": t_stat(r), "win_rate": float((r > 0).mean()), "sum_r": r.sum()})
    return pd.DataFrame(rows).sort_values("n", ascending=False, kind="mergesort")


def buckets_table(rec: BacktestRecord, evidence: pd.DataFrame | None) -> str:
    b = bucket_frame(rec.trades)
    cols = [(k, k.replace("_", " "), "s") for k in BUCKET_KEY] + [
        ("n", "n", "d"), ("mean_r", "mean R", "f"), ("t", "t-stat", "f"),
        ("win_rate", "win rate", "%"), ("sum_r", "total R", "f")]
    if evidence is not None and len(evidence):
        shown = [c for c in EVIDENCE if c[0] in evidence.columns]
        ev = evidence[list(BUCKET_KEY) + [c for c, _, _ in shown]].rename(
            columns={c: f"ev_{c}" for c, _, _ in shown})
        b = b.merge(ev, on=list(BUCKET_KEY), how="outer")
        cols += [(f"ev_{c}", h, k) for c, h, k in shown]
    numeric = {i for i, (_, _, k) in enumerate(cols) if k not in ("s", "t")}
    rows = [[_cell(r[c], k) for c, _, k in cols] for r in b.to_dict("records")]
    return html_table([h for _, h, _ in cols], rows, "buckets", sortable=True, numeric=numeric)


def trades_table(rec: BacktestRecord) -> str:
    t = rec.trades
    if len(t):
        t = t.assign(side=side_names(t["side"]))
    cols = [(c, h, k) for c, h, k in TRADE_COLS if c in t.columns]
    numeric = {i + 1 for i, (_, _, k) in enumerate(cols) if k not in ("s", "t")} | {0}
    rows = [[_cell(i + 1, "d")] + [_cell(r[c], k) for c, _, k in cols]
            for i, r in enumerate(t.to_dict("records"))]
    return html_table(["#"] + [h for _, h, _ in cols], rows, "trades", sortable=True,
                      numeric=numeric)
