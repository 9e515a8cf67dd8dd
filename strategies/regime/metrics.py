"""Classification scores of the regime models: accuracy, per-class precision/recall/F1, macro F1.

A prediction of UNKNOWN (-1) on a labelled bar counts as wrong: a model that abstains does not
get to drop the bars it finds hard. Precision of a class never predicted is 0 (as sklearn's
zero_division=0), so macro F1 penalizes a model that ignores a class.
"""

from __future__ import annotations

import numpy as np

from strategies.regime.labels import CLASSES


def classification_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    y_true = np.asarray(y_true).ravel().astype(np.int64)
    y_pred = np.asarray(y_pred).ravel().astype(np.int64)
    n = y_true.size
    out: dict = {"n": int(n), "accuracy": float((y_true == y_pred).mean()) if n else float("nan")}
    f1s = []
    for c, name in enumerate(CLASSES):
        tp = int(((y_pred == c) & (y_true == c)).sum())
        pred_c, true_c = int((y_pred == c).sum()), int((y_true == c).sum())
        p = tp / pred_c if pred_c else 0.0
        r = tp / true_c if true_c else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        out[name] = {"precision": p, "recall": r, "f1": f, "support": true_c, "predicted": pred_c}
        f1s.append(f)
    out["macro_f1"] = float(np.mean(f1s)) if n else float("nan")
    return out


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """(3, 4) int counts: row = true class, column = predicted class, the last column UNKNOWN."""
    y_true = np.asarray(y_true).ravel().astype(np.int64)
    y_pred = np.asarray(y_pred).ravel().astype(np.int64)
    n = len(CLASSES)
    out = np.zeros((n, n + 1), dtype=np.int64)
    np.add.at(out, (y_true, np.where(y_pred < 0, n, y_pred)), 1)
    return out
