"""`python -m sweep regime train|eval`: the Neural CDE regime classifier and its HMM baseline.

Both commands split the data the same way: the last `--holdout` fraction of bars is held out,
everything before it is the train window (labels on it never read past its last bar). `train`
fits the CDE on the train window and writes the checkpoint under `--results`; `eval` scores the
CDE checkpoint made for that train window and an HMM fitted on the same window, side by side,
on the held-out bars, and writes eval.json and eval.parquet next to the checkpoint.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pyarrow as pa
import typer
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
from strategies.regime.labels import CLASSES, UNKNOWN, LabelSpec, fit_barriers, forward_labels
from strategies.regime.metrics import classification_report

DEFAULT_COINS = ("BTC", "ETH", "SOL", "XRP", "DOGE", "SUI", "LINK", "AVAX")
HOLDOUT_FRAC = 0.15

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
HoldoutOpt = Annotated[float, typer.Option(
    "--holdout", min=0.01, max=0.5, help="Fraction of the last bars held out from training.")]


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


def split_bars(market: Market, holdout: float) -> int:
    """First held-out bar: everything before it is the train window."""
    split = market.n_bars - int(round(market.n_bars * holdout))
    if split < 1000 or split >= market.n_bars:
        raise ConfigError(f"{market.n_bars} bars with --holdout {holdout} leave {split} train bars; "
                          "the CDE needs a 720-bar lookback plus training data: use more data")
    return split


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console)


def _pct(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{100 * x:.1f}%"


def _f(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{x:.3f}"


def train(data: DataOpt = None, coins: CoinsOpt = None, results: ResultsOpt = DEFAULT_RESULTS_DIR,
          holdout: HoldoutOpt = HOLDOUT_FRAC,
          epochs: Annotated[int | None, typer.Option(
              min=1, help="Maximum epochs (early stopping may end sooner). Default: CDEConfig's.")] = None,
          samples: Annotated[int | None, typer.Option(
              min=64, help="Training windows drawn per epoch. Default: CDEConfig's.")] = None,
          threads: Annotated[int, typer.Option(
              min=1, max=64, help="torch CPU threads (1 is fastest on a busy machine).")] = 1,
          seed: Annotated[int, typer.Option(help="Seed of sampling and initialization.")] = 0) -> None:
    """Train the Neural CDE regime classifier on everything before the held-out part."""
    from strategies.regime.cde import CDEConfig, train_cde

    market = load(data, coins)
    split = split_bars(market, holdout)
    train_mkt = market.slice(0, split)
    given = {"epochs": epochs, "samples_per_epoch": samples}
    cfg = CDEConfig(threads=threads, seed=seed, **{k: v for k, v in given.items() if v is not None})
    console.print(f"[bold]{escape(market.label)}[/]: {market.n_coins} coins, train bars 0..{split - 1} "
                  f"({train_mkt.index[0]} .. {train_mkt.index[-1]}), held out {market.n_bars - split}")
    with _progress() as bar:
        task = bar.add_task("training CDE", total=None, info="")

        def report(step: int, total: int, info: dict) -> None:
            bar.update(task, completed=step, total=total,
                       info=f"epoch {info['epoch']} loss {info['loss']:.3f}")

        model = train_cde(train_mkt, cfg, LabelSpec(), report)
    pt, meta = model.save(results)
    m = model.metrics
    table = Table(title=f"Neural CDE training (train data {model.span.fingerprint})")
    for col in ("epoch", "train loss", "val loss", "val accuracy", "val macro F1"):
        table.add_column(col, justify="right")
    for h in m["history"]:
        mark = " *" if h["epoch"] == m["best_epoch"] else ""
        table.add_row(f"{h['epoch']}{mark}", _f(h["train_loss"]), _f(h["val_loss"]),
                      _pct(h["val_accuracy"]), _f(h["val_macro_f1"]))
    console.print(table)
    console.print(f"best epoch {m['best_epoch']} (*), {m['train_windows']} train / "
                  f"{m['val_windows']} validation windows (validation from {m['val_start']}), "
                  f"{m['seconds']} s\ncheckpoint {escape(str(pt))}\nmetadata   {escape(str(meta))}")


def _report_rows(model: str, y: np.ndarray, pred: np.ndarray, coins: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = []
    for name, cols in [(c, [i]) for i, c in enumerate(coins)] + [("ALL", list(range(len(coins))))]:
        yy, pp = y[:, cols], pred[:, cols]
        ok = yy != UNKNOWN
        rep = classification_report(yy[ok], pp[ok])
        row: dict[str, Any] = {"model": model, "coin": name, "n": rep["n"], "accuracy": rep["accuracy"],
                               "macro_f1": rep["macro_f1"]}
        for c in CLASSES:
            for k in ("precision", "recall", "f1", "support"):
                row[f"{c}_{k}"] = rep[c][k]
        row["abstained"] = int((pp[ok] == UNKNOWN).sum())
        rows.append(row)
    return rows


def _model_table(title: str, rows: list[dict[str, Any]]) -> Table:
    t = Table(title=title)
    t.add_column("coin")
    t.add_column("n", justify="right")
    t.add_column("accuracy", justify="right")
    for c in CLASSES:
        t.add_column(f"{c} P/R/F1", justify="right")
    t.add_column("macro F1", justify="right")
    for r in rows:
        t.add_row(r["coin"], str(r["n"]), _pct(r["accuracy"]),
                  *[f"{r[f'{c}_precision']:.2f}/{r[f'{c}_recall']:.2f}/{r[f'{c}_f1']:.2f}" for c in CLASSES],
                  _f(r["macro_f1"]), style="bold" if r["coin"] == "ALL" else None)
    return t


def evaluate(data: DataOpt = None, coins: CoinsOpt = None, results: ResultsOpt = DEFAULT_RESULTS_DIR,
             holdout: HoldoutOpt = HOLDOUT_FRAC) -> None:
    """Score the CDE checkpoint and the HMM side by side on the held-out part."""
    from strategies.regime.hmm import (
        HMMConfig,
        fit_market_hmm,
        fit_state_classes,
        market_proba,
        proba_to_classes,
    )

    t0 = time.perf_counter()
    market = load(data, coins)
    split = split_bars(market, holdout)
    train_mkt = market.slice(0, split)
    spec = LabelSpec()
    theta = fit_barriers(train_mkt, spec)
    y = forward_labels(market, theta, spec)[split:]
    pt, meta = checkpoint_paths(results, train_mkt.fingerprint)
    console.print(f"[bold]{escape(market.label)}[/]: {market.n_coins} coins, train bars 0..{split - 1}, "
                  f"held out {market.n_bars - split} ({market.index[split]} .. {market.index[-1]})")
    preds: dict[str, np.ndarray] = {}
    with _progress() as bar:
        task = bar.add_task("evaluating", total=4, info="HMM fit")
        hmm = fit_market_hmm(train_mkt, HMMConfig())
        classes = fit_state_classes(market_proba(hmm, train_mkt), forward_labels(train_mkt, theta, spec))
        preds["HMM"] = proba_to_classes(market_proba(hmm, market), classes)[split:]
        bar.update(task, advance=1, info="CDE checkpoint")
        if meta.is_file() and pt.is_file():
            from strategies.regime.cde import load_cde

            cde = load_cde(meta)
            if not np.allclose(cde.theta, theta):
                raise ConfigError(f"{meta}: its label barriers differ from this data's train window; "
                                  "retrain with `python -m sweep regime train`")
            bar.update(task, advance=1, info="CDE predict")
            windows = bar.add_task("CDE windows", total=None, info="")
            preds["CDE"] = cde.predict(market, start=split, progress=lambda done, total: bar.update(
                windows, completed=done, total=total))[split:]
        else:
            err.print(f"[yellow]no CDE checkpoint for train data {train_mkt.fingerprint} under "
                      f"{escape(str(results))}: run `python -m sweep regime train` with the same --data, --coins "
                      "and --holdout; showing the HMM only[/]")
            bar.update(task, advance=1)
        bar.update(task, advance=1, info="scoring")
        rows = [r for name in ("CDE", "HMM") if name in preds
                for r in _report_rows(name, y, preds[name], market.coins)]
        bar.update(task, advance=1, info="done")
    held = market.index[split], market.index[-1]
    for name in ("CDE", "HMM"):
        if name in preds:
            console.print(_model_table(f"{name} on the held-out part {held[0]} .. {held[1]}",
                                       [r for r in rows if r["model"] == name]))
    names = [n for n in ("CDE", "HMM") if n in preds]
    side = Table(title="Side by side (held-out part)")
    side.add_column("coin")
    for name in names:
        side.add_column(f"{name} accuracy", justify="right")
    for name in names:
        side.add_column(f"{name} macro F1", justify="right")
    for coin in list(market.coins) + ["ALL"]:
        by = {r["model"]: r for r in rows if r["coin"] == coin}
        side.add_row(coin, *[_pct(by[n]["accuracy"]) for n in names], *[_f(by[n]["macro_f1"]) for n in names],
                     style="bold" if coin == "ALL" else None)
    console.print(side)
    ok = y != UNKNOWN
    dist = np.bincount(y[ok].astype(np.int64), minlength=len(CLASSES)) / max(ok.sum(), 1)
    mix = ", ".join(f"{c} {_pct(p)}" for c, p in zip(CLASSES, dist, strict=True))
    console.print(f"held-out label mix: {mix}; label: {escape(spec.describe())}")
    out = {
        "data": market.label, "data_fingerprint": market.fingerprint,
        "train_fingerprint": train_mkt.fingerprint, "coins": list(market.coins),
        "train": [market.index[0].isoformat(), market.index[split - 1].isoformat()],
        "held_out": [held[0].isoformat(), held[1].isoformat()],
        "label": {"spec": spec.__dict__, "definition": spec.describe(),
                  "theta": dict(zip(market.coins, map(float, theta), strict=True)),
                  "held_out_mix": dict(zip(CLASSES, map(float, dist), strict=True))},
        "checkpoint": str(meta) if "CDE" in preds else None,
        "rows": rows, "seconds": round(time.perf_counter() - t0, 1),
    }
    atomic_write_json(out, Path(results) / "eval.json")
    atomic_write_parquet(pa.Table.from_pylist(rows), Path(results) / "eval.parquet")
    console.print(escape(f"written {Path(results) / 'eval.json'} and {Path(results) / 'eval.parquet'}"))


def register(app: typer.Typer) -> None:
    regime = typer.Typer(help="Regime models: train the Neural CDE, evaluate it against the HMM.",
                         no_args_is_help=True)
    regime.command("train")(train)
    regime.command("eval")(evaluate)
    app.add_typer(regime, name="regime")
