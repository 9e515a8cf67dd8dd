"""Walk-forward held-out scoring of the regime models: every model on the same test windows.

Folds (`eval_folds`): the last `holdout` fraction of the bars before the lockbox (the sweep's
15%, never read here) is cut into k test windows; each fold trains on every bar before its test
window less a purge of one label horizon (anchored: the CDE needs its 720-bar lookback plus
data to learn from). Per fold, the label barriers and every fit come from the train window only;
predictions are made on the bars up to the end of the test window (causal: warm-ups included,
nothing later) and kept for the test window. Targets are the forward labels of the test bars
with the train barriers; every model is scored on the same labelled bars, and a model that
abstains (UNKNOWN) on one is wrong there.

Models: the baselines (baselines.py), the two HMM presets (hmm.py), and the Neural CDE when
a checkpoint exists for EVERY fold's train window (`sweep regime train` makes them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import ConfigError
from harness.folds import Fold, Folds
from harness.market import Market
from strategies.regime import baselines
from strategies.regime.artifacts import checkpoint_paths
from strategies.regime.hmm import (
    HMM_PRESETS,
    HMMConfig,
    fit_market_hmm,
    fit_state_classes,
    market_proba,
    proba_to_classes,
)
from strategies.regime.labels import CLASSES, UNKNOWN, LabelSpec, fit_barriers, forward_labels
from strategies.regime.metrics import classification_report, confusion

Progress = Callable[[str], None]


def eval_folds(n_bars: int, k: int = 3, holdout: float = 0.3, spec: LabelSpec = LabelSpec()) -> Folds:
    """k anchored folds whose test windows tile the last `holdout` of the pre-lockbox bars."""
    base = Folds()
    pre = base.lockbox_range(n_bars)[0]
    test = int(pre * holdout) // k
    if test < 2 * spec.horizon:
        raise ConfigError(f"{n_bars} bars give {k} test windows of {test} bars (holdout {holdout} "
                          f"of the {pre} bars before the lockbox): use more data or fewer folds")
    folds = Folds(k=k, test_bars=test, anchored=True, purge_bars=spec.horizon, embargo_bars=0,
                  lockbox_frac=base.lockbox_frac)
    folds.split(n_bars)  # a clear error now when the first train window would be empty
    return folds


@dataclass(frozen=True, eq=False)
class HeldOut:
    """Labels and every model's predictions on the test windows of all folds, stacked."""

    coins: tuple[str, ...]
    folds: tuple[Fold, ...]
    index: pd.DatetimeIndex  # bar open time of each held-out row
    fold: np.ndarray  # (n,) fold number of each held-out row
    y: np.ndarray  # (n, n_coins) int8 labels, UNKNOWN where the window is incomplete
    preds: dict[str, np.ndarray]  # model -> (n, n_coins) int8
    absent: dict[str, str] = field(default_factory=dict)  # model -> why it is not scored
    theta: list[dict[str, float]] = field(default_factory=list)  # barriers per fold

    @property
    def models(self) -> list[str]:
        return list(self.preds)  # baselines, HMMs, then the CDE


def _fold_predictions(view: Market, fold: Fold, spec: LabelSpec, hmms: dict[str, HMMConfig],
                      results_dir: Path | None, progress: Progress,
                      ) -> tuple[np.ndarray, dict[str, np.ndarray], str | None, np.ndarray]:
    (a, b), (t0, t1) = fold.train, fold.test
    train, hist = view.slice(a, b), view.slice(0, t1)
    theta = fit_barriers(train, spec)
    train_labels = forward_labels(train, theta, spec)
    y = forward_labels(view, theta, spec)[t0:t1]
    preds = {"majority": baselines.majority(train_labels, t1 - t0),
             "persistence": baselines.persistence(hist, theta, spec)[t0:t1]}
    for name, cfg in hmms.items():
        progress(name)
        hmm = fit_market_hmm(train, cfg)
        classes = fit_state_classes(market_proba(hmm, train), train_labels)
        preds[name] = proba_to_classes(market_proba(hmm, hist), classes)[t0:t1]
    missing = None
    pt, meta = checkpoint_paths(results_dir, train.fingerprint) if results_dir else (None, None)
    if meta is not None and meta.is_file() and pt.is_file():
        from strategies.regime.cde import load_cde

        progress("cde")
        cde = load_cde(meta)
        if not np.allclose(cde.theta, theta):
            raise ConfigError(f"{meta}: its label barriers differ from this train window's; "
                              "retrain with `python -m sweep regime train`")
        preds["cde"] = cde.predict(hist, start=t0)[t0:t1]
    else:
        missing = f"no CDE checkpoint for train data {train.fingerprint}"
    return y, preds, missing, theta


def held_out(market: Market, folds: Folds, spec: LabelSpec = LabelSpec(),
             results_dir: str | Path | None = None, hmms: dict[str, HMMConfig] = HMM_PRESETS,
             progress: Callable[[int, str], None] | None = None) -> HeldOut:
    """Fit and predict every model on every fold (the HMMs of `hmms`; the CDE from the
    checkpoints under `results_dir`); `progress(fold, model)` before each fit."""
    plan = folds.split(market.n_bars)
    view = market.slice(0, plan.lockbox_start)  # the lockbox is never read
    ys, fold_no, per_model, absent, thetas = [], [], {}, {}, []
    for j, fold in enumerate(plan.folds):
        y, preds, missing, theta = _fold_predictions(
            view, fold, spec, hmms, None if results_dir is None else Path(results_dir),
            lambda name, j=j: progress(j, name) if progress else None)
        ys.append(y)
        fold_no.append(np.full(y.shape[0], j))
        thetas.append(dict(zip(market.coins, map(float, theta), strict=True)))
        if missing:
            absent.setdefault("cde", f"fold {j}: {missing}")
        for name, p in preds.items():
            per_model.setdefault(name, []).append(p)
    full = {n: np.concatenate(p) for n, p in per_model.items() if len(p) == len(plan.folds)}
    idx = pd.DatetimeIndex(np.concatenate([view.index[f.test[0]:f.test[1]] for f in plan.folds]))
    return HeldOut(tuple(market.coins), plan.folds, idx, np.concatenate(fold_no),
                   np.concatenate(ys), full, absent, thetas)


def report_rows(h: HeldOut) -> list[dict[str, Any]]:
    """One row per (model, coin or ALL, fold or -1 for all folds): accuracy, P/R/F1, macro F1."""
    rows = []
    groups = [(c, [i]) for i, c in enumerate(h.coins)] + [("ALL", list(range(len(h.coins))))]
    for model in h.models:
        pred = h.preds[model]
        for fold in [-1] + list(range(len(h.folds))):
            sel = np.ones(h.y.shape[0], bool) if fold < 0 else h.fold == fold
            for name, cols in groups:
                yy, pp = h.y[sel][:, cols], pred[sel][:, cols]
                ok = yy != UNKNOWN
                rep = classification_report(yy[ok], pp[ok])
                row: dict[str, Any] = {"model": model, "coin": name, "fold": fold, "n": rep["n"],
                                       "accuracy": rep["accuracy"], "macro_f1": rep["macro_f1"],
                                       "abstained": int((pp[ok] == UNKNOWN).sum())}
                for c in CLASSES:
                    for k in ("precision", "recall", "f1", "support", "predicted"):
                        row[f"{c}_{k}"] = rep[c][k]
                rows.append(row)
    return rows


def confusions(h: HeldOut) -> dict[str, np.ndarray]:
    """model -> (3, 4) counts over all folds and coins (rows true, columns predicted + UNKNOWN)."""
    ok = h.y != UNKNOWN
    return {m: confusion(h.y[ok], h.preds[m][ok]) for m in h.models}


def coin_wins(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Coins on which each model has the best macro F1 over all folds (a tie counts for each)."""
    coins = {r["coin"] for r in rows if r["fold"] == -1 and r["coin"] != "ALL"}
    wins = {r["model"]: 0 for r in rows}
    for coin in coins:
        scores = {r["model"]: r["macro_f1"] for r in rows if r["coin"] == coin and r["fold"] == -1}
        best = max(scores.values())
        for m, s in scores.items():
            wins[m] += int(np.isclose(s, best))
    return wins
