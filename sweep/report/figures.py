"""Plotly figures of one backtest: equity and drawdown (base and fee stress, fold boundaries,
the lockbox), the score per fold, and the distribution of R. Every title and axis carries
SYNTHETIC when the data is."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from harness.friction import FEE_STRESS
from sweep.backtest import BacktestRecord

BASE, STRESS, LOCK, GRID = "#1f77b4", "#d62728", "rgba(120,120,120,0.18)", "#9e9e9e"
SERIES = (("base", BASE, "base"), ("stress", STRESS, f"fee stress x{FEE_STRESS:g}"))


def tag(text: str, synthetic: bool) -> str:
    return f"{text} · SYNTHETIC" if synthetic else text


def layout(fig: go.Figure, title: str, synthetic: bool, height: int) -> go.Figure:
    fig.update_layout(title=dict(text=tag(title, synthetic), x=0.01, y=0.99, yanchor="top"),
                      template="plotly_white", height=height, margin=dict(l=70, r=30, t=90, b=50),
                      legend=dict(orientation="h", y=1.01, x=0, xanchor="left", yanchor="bottom"))
    return fig


def drawdown(equity: pd.Series) -> pd.Series:
    """Peak-to-trough of the bar equity (the initial equity is the first peak, as in the metrics)."""
    return equity / np.maximum(equity.cummax(), equity.iloc[0] if len(equity) else 0.0) - 1.0


def equity_figure(rec: BacktestRecord) -> go.Figure:
    syn, m = rec.synthetic, rec.meta
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.68, 0.32],
                        vertical_spacing=0.05)
    for col, color, name in SERIES:
        eq = rec.equity[col]
        fig.add_trace(go.Scatter(x=eq.index, y=eq.to_numpy(), name=f"equity, {name}", mode="lines",
                                 line=dict(color=color, width=1.4)), row=1, col=1)
        dd = drawdown(eq)
        fill = dict(fill="tozeroy", fillcolor="rgba(31,119,180,0.25)") if col == "base" else {}
        fig.add_trace(go.Scatter(x=dd.index, y=dd.to_numpy(), name=f"drawdown, {name}", mode="lines",
                                 line=dict(color=color, width=1), **fill), row=2, col=1)
    starts = [a for a, _ in m["segments"]] + [m["segments"][-1][1]]
    for i, x in enumerate(starts):
        fig.add_shape(type="line", x0=x, x1=x, y0=0, y1=1, xref="x", yref="paper",
                      line=dict(color=GRID, width=1, dash="dot"))
        if i < len(m["segments"]):
            fig.add_annotation(x=x, y=1.0, xref="x", yref="paper", text=f"fold {i}" if m["walk_forward"]
                               else "segment", showarrow=False, xanchor="left", yanchor="top",
                               font=dict(size=10, color="#616161"))
    if m["lockbox"]:
        a, b = m["lockbox"]
        fig.add_shape(type="rect", x0=a, x1=b, y0=0, y1=1, xref="x", yref="paper", fillcolor=LOCK,
                      line=dict(width=0), layer="below")
        fig.add_shape(type="line", x0=a, x1=a, y0=0, y1=1, xref="x", yref="paper",
                      line=dict(color="#424242", width=1.5, dash="dash"))
        fig.add_annotation(x=a, y=0.5, xref="x", yref="paper", text="lockbox start<br>(not evaluated)",
                           showarrow=False, xanchor="left", font=dict(size=11, color="#424242"))
    fig.update_yaxes(title_text=tag("equity (USD)", syn), row=1, col=1)
    fig.update_yaxes(title_text=tag("drawdown", syn), tickformat=".0%", row=2, col=1)
    fig.update_xaxes(title_text=tag("time (UTC)", syn), row=2, col=1)
    return layout(fig, f"Equity and drawdown, base and fee stress x{FEE_STRESS:g}", syn, 640)


def folds_figure(rec: BacktestRecord) -> go.Figure:
    syn, m = rec.synthetic, rec.meta
    labels = [f"{'fold' if m['walk_forward'] else 'segment'} {i}<br>{a[:10]}<br>to {b[:10]}"
              for i, (a, b) in enumerate(m["segments"])]
    scores = [s if np.isfinite(s) else None for s in m["fold_scores"]]
    fm = m["fold_metrics"]
    hover = [f"trades {f['n_trades']}<br>annualized {f['annualized']:.1%}<br>max DD {f['max_dd']:.1%}"
             f"<br>Sharpe {f['sharpe']:.2f}" for f in fm]
    fig = go.Figure(go.Bar(x=labels, y=scores, marker_color=[BASE if (s or 0) >= 0 else STRESS
                                                             for s in scores],
                           hovertext=hover, name="score"))
    fig.update_yaxes(title_text=tag("score", syn))
    fig.update_xaxes(title_text=tag("out-of-sample window", syn), tickangle=0)
    return layout(fig, "Score per window (base, no rejections)", syn, 380)


def r_figure(rec: BacktestRecord) -> go.Figure:
    syn = rec.synthetic
    r = rec.trades["r_multiple"].to_numpy(dtype=float) if len(rec.trades) else np.array([])
    r = r[np.isfinite(r)]
    fig = go.Figure(go.Histogram(x=r, nbinsx=min(80, max(10, len(r) // 4)), marker_color=BASE,
                                 name="trades"))
    if len(r):
        fig.add_vline(x=float(r.mean()), line=dict(color=STRESS, dash="dash"))
        fig.add_annotation(x=float(r.mean()), y=1, yref="paper", text=f"mean R {r.mean():+.3f}",
                           showarrow=False, xanchor="left", yanchor="top", font=dict(color=STRESS))
    fig.update_xaxes(title_text=tag("R multiple per closed trade (base)", syn))
    fig.update_yaxes(title_text=tag("trades", syn))
    return layout(fig, f"Distribution of R ({len(r)} closed trades)", syn, 360)
