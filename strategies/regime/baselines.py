"""The trivial regime forecasters every model must beat, both causal.

- majority     each coin's most frequent label on the TRAIN window (a coin without train
               labels: the most frequent label over all coins), every bar the same.
- persistence  "tomorrow looks like the last day we know": the label of bar t reads bars
               t+1..t+h, so it is known only once bar t+h has closed. At the close of t the
               newest usable label is that of bar t-h; persistence predicts it (or, when it is
               UNKNOWN because of a gap, the newest known label before it). Labels are computed
               with the TRAIN window's barriers, like the targets.
"""

from __future__ import annotations

import numpy as np

from harness.market import Market
from strategies.regime.labels import CLASSES, UNKNOWN, LabelSpec, forward_labels


def majority(train_labels: np.ndarray, n_bars: int) -> np.ndarray:
    """(n_bars, n_coins) int8: each coin's most frequent train label on every bar."""
    n_cls = len(CLASSES)
    known = train_labels != UNKNOWN
    pooled = np.bincount(train_labels[known].astype(np.int64), minlength=n_cls)
    out = np.empty(train_labels.shape[1], dtype=np.int8)
    for c in range(train_labels.shape[1]):
        counts = np.bincount(train_labels[known[:, c], c].astype(np.int64), minlength=n_cls)
        out[c] = np.argmax(counts if counts.any() else pooled)
    return np.broadcast_to(out, (n_bars, out.size)).copy()


def persistence(market: Market, theta: np.ndarray, spec: LabelSpec = LabelSpec()) -> np.ndarray:
    """(n_bars, n_coins) int8: at bar t the newest known label of a bar <= t - h; UNKNOWN until
    one exists. Reads bars <= t only (the labels of bars <= t - h end at t)."""
    h = spec.horizon
    labels = forward_labels(market, theta, spec)
    out = np.full(labels.shape, UNKNOWN, dtype=np.int8)
    if labels.shape[0] <= h:
        return out
    rows = np.arange(labels.shape[0])[:, None]
    last = np.maximum.accumulate(np.where(labels != UNKNOWN, rows, -1), axis=0)
    src = last[:-h]  # for bar t = s + h: the newest known label at or before s
    got = np.take_along_axis(labels[:-h], np.maximum(src, 0), axis=0)
    out[h:] = np.where(src >= 0, got, UNKNOWN)
    return out
