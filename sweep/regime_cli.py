"""`python -m sweep regime train|eval`: the Neural CDE regime classifier, its HMMs and baselines.

Both commands cut the data the same way (strategies.regime.heldout.eval_folds): the last
`--holdout` of the bars before the lockbox becomes `--folds` test windows, each fold trains on
everything before its test window (less a purge). `train` fits one CDE per fold on its train
window and writes the checkpoints under `--results` (a fold whose checkpoint exists is skipped,
so a killed run resumes); `eval` scores the baselines, the HMMs and (when every fold has its
checkpoint) the CDE on the same held-out windows, and writes eval.json and eval.parquet.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pyarrow as pa
import typer
from rich.columns import Columns
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from harness.atomic import atomic_write_json, atomic_write_parquet
from harness.errors import ConfigError
from harness.market import Market
from harness.sources import load_market
from strategies.regime.artifacts import DEFAULT_RESULTS_DIR, checkpoint_paths
from strategies.regime.heldout import coin_wins, confusions, eval_folds, held_out, report_rows
from strategies.regime.labels import CLASSES, UNKNOWN, LabelSpec

DEFAULT_COINS = ("BTC", "ETH", "SOL", "XRP", "DOGE", "SUI", "LINK", "AVAX")
MODEL_NAMES = {"majority": "majority", "persistence": "persistence", "hmm": "HMM",
               "hmm_drawdown": "HMM drawdown", "cde": "CDE"}

console = Console()
err = Console(stderr=True)

DataOpt = Annotated[str | None, typer.Option(
    "--data", help="Dataset folder (like ../shared/data/hyperliquid), store root, parquet file or "
                   "'embedded'. "
                   "Default: ./data when it holds data, else the embedded synthetic market.")]
CoinsOpt = Annotated[str | None, typer.Option(
    "--coins", help="Comma-separated coins. Default: " + ",".join(DEFAULT_COINS)
                    + " when the data has them all, else every coin.")]
ResultsOpt = Annotated[Path, typer.Option("--results", help="Folder of checkpoints and eval files.")]
FoldsOpt = Annotated[int, typer.Option("--folds", min=1, max=20, help="Held-out test windows.")]
HoldoutOpt = Annotated[float, typer.Option(
    "--holdout", min=0.05, max=0.8,
    help="Fraction of the bars before the lockbox (the last 15%, never read) cut into the test windows.")]


def load(data: str | None, coins: str | None) -> Market:
    """1h market of the coins asked, or of DEFAULT_COINS when the data has them all."""
    if coins is not None:
        wanted = [c.strip() for c in coins.split(",") if c.strip()]
        if not wanted:
            raise ConfigError("--coins is empty: give coin names such as BTC,ETH")
        return load_market(data, interval="1h", coins=wanted)
    market = load_market(data, interval="1h")
    if set(DEFAULT_COINS) <= set(market.coins):
        return load_market(data, interval="1h", coins=list(DEFAULT_COINS))
    return market


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console)


def _pct(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{100 * x:.1f}%"


def _f(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{x:.3f}"


def train(data: DataOpt = None, coins: CoinsOpt = None, results: ResultsOpt = DEFAULT_RESULTS_DIR,
          folds: FoldsOpt = 3, holdout: HoldoutOpt = 0.3,
          epochs: Annotated[int | None, typer.Option(
              min=1, help="Maximum epochs (early stopping may end sooner). Default: CDEConfig's.")] = None,
          samples: Annotated[int | None, typer.Option(
              min=64, help="Training windows drawn per epoch. Default: CDEConfig's.")] = None,
          threads: Annotated[int, typer.Option(
              min=1, max=64, help="torch CPU threads (1 is fastest on a busy machine).")] = 1,
          seed: Annotated[int, typer.Option(help="Seed of sampling and initialization.")] = 0) -> None:
    """Train one Neural CDE per fold on that fold's train window (existing checkpoints are kept)."""
    from strategies.regime.cde import CDEConfig, train_cde

    market = load(data, coins)
    plan = eval_folds(market.n_bars, folds, holdout).split(market.n_bars)
    given = {"epochs": epochs, "samples_per_epoch": samples}
    cfg = CDEConfig(threads=threads, seed=seed, **{k: v for k, v in given.items() if v is not None})
    console.print(f"[bold]{escape(market.label)}[/]: {market.n_coins} coins, {len(plan.folds)} folds, "
                  f"lockbox from {market.index[plan.lockbox_start]} (not read); checkpoints in "
                  f"{escape(str(results))}")
    table = Table(title="Neural CDE per fold")
    for col in ("fold", "train bars", "train until", "status", "best epoch", "val macro F1", "seconds",
                "checkpoint"):
        table.add_column(col, justify="left" if col in ("status", "checkpoint") else "right")
    with _progress() as bar:
        for j, fold in enumerate(plan.folds):
            train_mkt = market.slice(*fold.train)
            pt, meta = checkpoint_paths(results, train_mkt.fingerprint)
            row = [str(j), str(train_mkt.n_bars), str(train_mkt.index[-1])]
            if pt.is_file() and meta.is_file():
                m = json.loads(meta.read_text())["metrics"]
                table.add_row(*row, "kept", str(m["best_epoch"]), _f(m["val_macro_f1"]),
                              str(m["seconds"]), meta.name)
                continue
            task = bar.add_task(f"fold {j}", total=None, info="")

            def report(step: int, total: int, info: dict, task=task) -> None:
                bar.update(task, completed=step, total=total,
                           info=f"epoch {info['epoch']} loss {info['loss']:.3f}")

            model = train_cde(train_mkt, cfg, LabelSpec(), report)
            _, meta = model.save(results)
            m = model.metrics
            table.add_row(*row, "trained", str(m["best_epoch"]), _f(m["val_macro_f1"]),
                          str(m["seconds"]), meta.name)
    console.print(table)


def _summary(rows: list[dict[str, Any]], models: list[str], n_folds: int) -> Table:
    wins = coin_wins(rows)
    t = Table(title="Regime models on the held-out windows (all folds, all coins)")
    for col in ["model", "n", "accuracy"] + [f"{c} F1" for c in CLASSES] + ["macro F1", "coin wins"]:
        t.add_column(col, justify="left" if col == "model" else "right")
    for j in range(n_folds):
        t.add_column(f"fold {j} macro F1", justify="right")
    best = max(r["macro_f1"] for r in rows if r["coin"] == "ALL" and r["fold"] == -1)
    for m in models:
        by = {r["fold"]: r for r in rows if r["model"] == m and r["coin"] == "ALL"}
        a = by[-1]
        t.add_row(MODEL_NAMES.get(m, m), str(a["n"]), _pct(a["accuracy"]), *[_f(a[f"{c}_f1"]) for c in CLASSES],
                  _f(a["macro_f1"]), str(wins[m]), *[_f(by[j]["macro_f1"]) for j in range(n_folds)],
                  style="bold" if np.isclose(a["macro_f1"], best) else None)
    return t


def _per_coin(rows: list[dict[str, Any]], models: list[str], coins: tuple[str, ...]) -> Table:
    t = Table(title="Macro F1 per coin (all folds; bold: the best)")
    t.add_column("coin")
    for m in models:
        t.add_column(MODEL_NAMES.get(m, m), justify="right")
    for coin in coins:
        by = {r["model"]: r["macro_f1"] for r in rows if r["coin"] == coin and r["fold"] == -1}
        best = max(by.values())
        t.add_row(coin, *[f"[bold]{_f(by[m])}[/]" if np.isclose(by[m], best) else _f(by[m])
                          for m in models])
    return t


def _confusion(name: str, cm: np.ndarray) -> Table:
    t = Table(title=f"{name}: true (rows) x predicted", title_justify="left")
    t.add_column("")
    for c in (*CLASSES, "unknown"):
        t.add_column(c, justify="right")
    for i, c in enumerate(CLASSES):
        t.add_row(c, *[str(int(v)) for v in cm[i]])
    return t


def evaluate(data: DataOpt = None, coins: CoinsOpt = None, results: ResultsOpt = DEFAULT_RESULTS_DIR,
             folds: FoldsOpt = 3, holdout: HoldoutOpt = 0.3) -> None:
    """Score the baselines, the HMMs and the CDE checkpoints on the same held-out windows."""
    t0 = time.perf_counter()
    market = load(data, coins)
    spec = LabelSpec()
    fold_cfg = eval_folds(market.n_bars, folds, holdout, spec)
    plan = fold_cfg.split(market.n_bars)
    first, last = plan.folds[0].test[0], plan.folds[-1].test[1] - 1
    console.print(f"[bold]{escape(market.label)}[/]: {market.n_coins} coins, {len(plan.folds)} "
                  f"held-out windows {market.index[first]} .. {market.index[last]}, each fold trained "
                  f"on the bars before its window; lockbox from {market.index[plan.lockbox_start]} not read")
    with _progress() as bar:
        task = bar.add_task("fitting", total=len(plan.folds), info="")

        def report(fold: int, model: str) -> None:
            bar.update(task, completed=fold, info=f"fold {fold}: {model}")

        h = held_out(market, fold_cfg, spec, results, progress=report)
        bar.update(task, completed=len(plan.folds), info="done")
    rows = report_rows(h)
    models = h.models
    console.print(_summary(rows, models, len(plan.folds)))
    console.print(_per_coin(rows, models, h.coins))
    cms = confusions(h)
    console.print(Columns([_confusion(MODEL_NAMES.get(m, m), cms[m]) for m in models]))
    for name, why in h.absent.items():
        err.print(f"[yellow]{MODEL_NAMES.get(name, name)} not scored: {escape(why)}; run `python -m sweep regime "
                  "train` with the same --data, --coins, --folds and --holdout[/]")
    ok = h.y != UNKNOWN
    dist = np.bincount(h.y[ok].astype(np.int64), minlength=len(CLASSES)) / max(ok.sum(), 1)
    mix = ", ".join(f"{c} {_pct(p)}" for c, p in zip(CLASSES, dist, strict=True))
    seconds = round(time.perf_counter() - t0, 1)
    console.print(f"held-out label mix: {mix}; label: {escape(spec.describe())}\n"
                  "persistence predicts the newest label whose forward window has closed (bar t-24)")
    out = {
        "data": market.label, "data_fingerprint": market.fingerprint, "coins": list(market.coins),
        "folds": [{"train": [market.index[f.train[0]].isoformat(), market.index[f.train[1] - 1].isoformat()],
                   "test": [market.index[f.test[0]].isoformat(), market.index[f.test[1] - 1].isoformat()],
                   "theta": th} for f, th in zip(plan.folds, h.theta, strict=True)],
        "label": {"spec": spec.__dict__, "definition": spec.describe(),
                  "held_out_mix": dict(zip(CLASSES, map(float, dist), strict=True))},
        "models": models, "absent": h.absent, "coin_wins": coin_wins(rows),
        "confusion": {m: cms[m].tolist() for m in models},
        "rows": rows, "seconds": seconds,
    }
    atomic_write_json(out, Path(results) / "eval.json")
    atomic_write_parquet(pa.Table.from_pylist(rows), Path(results) / "eval.parquet")
    console.print(escape(f"written {Path(results) / 'eval.json'} and {Path(results) / 'eval.parquet'} "
                         f"in {seconds} s"))


def register(app: typer.Typer) -> None:
    regime = typer.Typer(help="Regime models: train the Neural CDE per fold; score it, the HMMs and "
                         "the baselines on held-out windows.",
                         no_args_is_help=True)
    regime.command("train")(train)
    regime.command("eval")(evaluate)
    app.add_typer(regime, name="regime")
