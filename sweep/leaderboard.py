"""The leaderboard: the best trials, ranked only against trials they are comparable with.

A group is one harness hash, friction model, data fingerprint and fold layout
(results_schema.COMPARABLE). A request that spans several groups is never merged into one ranking: each
group gets its own table, best group first, titled with what it holds. Returns and drawdowns
print as percentages.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from harness.friction import FRICTIONS
from sweep import results, results_schema

# (column, header, format): pct prints a fraction as a percentage
METRIC_COLS = (
    ("score", "score", "num"), ("base_annualized", "annualized", "pct"),
    ("base_max_dd", "max DD", "pct"), ("base_sharpe", "Sharpe", "num"),
    ("base_n_trades", "trades", "num"), ("worst_fold", "worst fold", "num"),
    ("stress_calmar", "stress Calmar", "num"),
)
SHORT_FRICTION = {f.version: name for name, f in FRICTIONS.items()}


def fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else ("-inf" if v < 0 else "inf")
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    return str(v)


def pct(v: Any) -> str:
    """A fraction as a percentage (0.123 -> 12.3%)."""
    if v is None or not isinstance(v, (int, float)) or math.isnan(v):
        return "-"
    return f"{v:.1%}" if math.isfinite(v) else fmt(float(v))


def cell(v: Any, kind: str) -> str:
    return pct(v) if kind == "pct" else fmt(v)


def friction_name(version: str) -> str:
    """v5 for friction_v5_coin_spread_impact; the tag itself when it is not a known model."""
    return SHORT_FRICTION.get(version, version)


def folds_text(layout: str | None) -> str:
    """'4 folds, test 1234 bars, purge 24, embargo 24' from a fold_layout value."""
    try:
        f = json.loads(layout) if layout else {}
    except ValueError:
        f = {}
    if not f or f.get("k") is None:
        return "unknown folds"
    parts = [f"{f['k']} folds"]
    for key, name in (("train_bars", "train"), ("test_bars", "test")):
        if f.get(key) is not None:
            parts.append(f"{name} {f[key]} bars")
    parts.append(f"purge {f.get('purge_bars')}, embargo {f.get('embargo_bars')}")
    if f.get("anchored"):
        parts.append("anchored")
    if f.get("offset_bars"):
        parts.append(f"offset {f['offset_bars']}")
    return ", ".join(parts)


@dataclass(frozen=True)
class Group:
    """The top trials of one comparable group, best first (rejected trials last)."""

    harness_hash: str
    friction: str  # sim_model_version
    data_fingerprint: str
    data_label: str
    fold_layout: str
    rows: pd.DataFrame

    @property
    def title(self) -> str:
        return (f"harness {self.harness_hash} · friction {friction_name(self.friction)} · data "
                f"{self.data_label} ({self.data_fingerprint}) · {folds_text(self.fold_layout)}")


@dataclass(frozen=True)
class Board:
    groups: list[Group]
    hidden: dict[str, int] = field(default_factory=dict)  # rows each filter left out


def board(results_dir: Path, strategy: str | None = None, study: str | None = None,
          harness: str | None = None, friction: str | None = None,
          data: set[str] | None = None, top: int = 10) -> Board:
    """The top `top` trials of each comparable group among the rows that match. `harness`,
    `friction` (a sim_model_version) and `data` (fingerprints) narrow the rows when given; the
    rows each of them left out are counted in `hidden`."""
    if not results.has_rows(results_dir, "trials"):
        return Board([])
    where, args = ["true"], []
    for col, value in (("strategy", strategy), ("study", study)):
        if value:
            where.append(f"{col} = ?")
            args.append(value)
    filters = [(name, cond, values) for name, cond, values in (
        ("harness", "harness_hash = ?", [harness] if harness else None),
        ("friction", "sim_model_version = ?", [friction] if friction else None),
        ("data", f"data_fingerprint IN ({', '.join('?' * len(data or ()))})",
         sorted(data) if data else None)) if values is not None]
    base = f"SELECT * FROM ({results_schema.comparable_trials_sql()}) WHERE {' AND '.join(where)}"
    hidden: dict[str, int] = {}
    if filters:  # filter i hides the rows that pass the filters before it but not it
        counts, count_args = [], []
        for i, (name, cond, values) in enumerate(filters):
            before = [c for _, c, _ in filters[:i]] or ["true"]
            counts.append(f"count(*) FILTER (WHERE {' AND '.join(before)} AND NOT ({cond})) AS {name}")
            count_args += [x for _, _, v in filters[:i] for x in v] + values
        row = results.query(results_dir, f"SELECT {', '.join(counts)} FROM ({base})",
                            [*count_args, *args])  # in the order of the placeholders
        hidden = {k: int(row[k].iloc[0]) for k in row.columns}
    keep = " AND ".join(c for _, c, _ in filters) or "true"
    keep_args = [x for _, _, v in filters for x in v]
    cols = ", ".join(c for c, _, _ in METRIC_COLS if c != "score")
    part = ", ".join(results_schema.COMPARABLE)
    df = results.query(results_dir, f"""
        WITH kept AS ({base} AND {keep}),
        ranked AS (
            SELECT *, row_number() OVER (PARTITION BY {part}
                                         ORDER BY isfinite(score) DESC, score DESC, trial) AS rank,
                   max(CASE WHEN isfinite(score) THEN score END) OVER (PARTITION BY {part}) AS best
            FROM kept)
        SELECT {part}, data_label, strategy, study, trial, status, rejected, score, {cols}, params
        FROM ranked WHERE rank <= ?
        ORDER BY best DESC NULLS LAST, {part}, rank""", [*args, *keep_args, top])
    groups = []
    for key, rows in df.groupby(list(results_schema.COMPARABLE), sort=False, dropna=False):
        h, fr, fp, layout = key
        label = rows["data_label"].dropna()
        groups.append(Group(h, fr, fp, label.iloc[0] if len(label) else "?", layout,
                            rows.reset_index(drop=True)))
    return Board(groups, hidden)


def _params_text(text: str) -> str:
    try:
        p = json.loads(text)
    except (TypeError, ValueError):
        return ""
    return " ".join(f"{k}={fmt(v)}" for k, v in p.items())


def print_board(out: Console, b: Board, title: str) -> None:
    """One table per group (friction and data columns included: a group is never mixed with
    another); the parameters of each group's top trial below it (too wide for a column)."""
    for i, g in enumerate(b.groups, 1):
        many = g.rows["study"].nunique() > 1
        head = f"{title}, group {i} of {len(b.groups)}" if len(b.groups) > 1 else title
        table = Table(title=f"{head}\n{g.title}", title_justify="left")
        table.add_column("#", justify="right")
        table.add_column("study #trial" if many else "trial", justify="left" if many else "right")
        for _, label, _ in METRIC_COLS:
            table.add_column(label, justify="right")
        table.add_column("friction")
        table.add_column("data")
        table.add_column("rejected")
        for j, r in enumerate(g.rows.itertuples(index=False), 1):
            who = f"{r.study} #{r.trial}" if many else str(r.trial)
            table.add_row(str(j), who, *[cell(getattr(r, c), kind) for c, _, kind in METRIC_COLS],
                          friction_name(g.friction), g.data_fingerprint,
                          r.rejected if isinstance(r.rejected, str) else "")
        out.print(table)
        top = g.rows.iloc[0]
        out.print(f"#1 {top['strategy']} {top['study']} #{top['trial']}: {_params_text(top['params'])}")


def ranked_studies(results_dir: Path, strategy: str | None, study: str | None,
                   harness: str | None) -> list[str]:
    """The Optuna studies (of `sweep run`) whose trials a leaderboard of these filters ranks."""
    if not results.has_rows(results_dir, "trials"):
        return []
    where, args = ["command = 'run'"], []
    for col, v in (("strategy", strategy), ("study", study), ("harness_hash", harness)):
        if v:
            where.append(f"{col} = ?")
            args.append(v)
    df = results.query(results_dir, f"SELECT DISTINCT study FROM trials WHERE {' AND '.join(where)}", args)
    return [str(s) for s in df["study"]]
