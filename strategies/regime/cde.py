"""Neural CDE classifier of chop / trend / reversal per coin (torchcde, CPU).

Imports torch: only model.py's CDE branch and the regime CLI import this module, so importing
`strategies` never loads torch.

Input at (bar t, coin c): the path of the last `lookback` (720) hours ending AT t, sampled every
`knot_every` hours (91 knots), channels = time, log price relative to the close at t, and the
regime features standardized with the coin's TRAIN mean and std. Missing knots (gaps, before
listing) are carried forward from the previous knot (backward from the first one), so they add
no increment to the CDE integral. A natural cubic spline through the knots drives
dz = f(z) dX (hidden size 64, fixed-step midpoint solver, one step per knot interval: the
model is trained with the discretization it is used with, and CPU time stays small); the class
head reads the final z and the features at t. Nothing after t enters: the window ends at t,
and labels are targets only.

Training: inverse-frequency class weights, label smoothing, AdamW, random subsamples of windows
per epoch, early stopping on a validation split = the last `val_frac` of the train window (a
time split), purged so no train label window reaches into it. The best epoch by validation
macro F1 is kept.
"""

from __future__ import annotations

import io
import json
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchcde
from torch import nn

from harness.atomic import atomic_write, atomic_write_json
from harness.errors import ConfigError, DataError
from harness.market import Market
from strategies.regime.artifacts import TrainSpan, checkpoint_paths
from strategies.regime.features import FEATURES, has_open_interest, regime_features
from strategies.regime.labels import CLASSES, UNKNOWN, LabelSpec, fit_barriers, forward_labels
from strategies.regime.metrics import classification_report

log = logging.getLogger(__name__)

CDE_FEATURES = ("ret_1h", "ret_24h", "vol_24h", "vol_168h", "funding_24h", "volume_trend",
                "range_pct", "drawdown", "hour_sin", "hour_cos", "dow_sin", "dow_cos")  # + OI if any
CHECKPOINT_FORMAT = 1

Progress = Callable[[int, int, dict], None]


@dataclass(frozen=True)
class CDEConfig:
    lookback: int = 720
    knot_every: int = 8
    solver: str = "midpoint"  # fixed-step torchdiffeq method; one step per knot interval
    hidden: int = 64
    field_width: int = 64
    head_width: int = 64
    dropout: float = 0.1
    epochs: int = 10
    samples_per_epoch: int = 4096
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    val_frac: float = 0.15
    patience: int = 3
    max_val_samples: int = 2048
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        if self.lookback % self.knot_every or self.lookback < 2 * self.knot_every:
            raise ConfigError(f"CDEConfig.lookback ({self.lookback}) must be a multiple of "
                              f"knot_every ({self.knot_every}) and at least two knots long")
        if self.solver not in ("euler", "midpoint", "rk4"):
            raise ConfigError(f"CDEConfig.solver must be euler, midpoint or rk4, got {self.solver!r}")
        if not 0 < self.val_frac < 0.5:
            raise ConfigError(f"CDEConfig.val_frac must be in (0, 0.5), got {self.val_frac!r}")

    @property
    def n_knots(self) -> int:
        return self.lookback // self.knot_every + 1


class _VectorField(nn.Module):
    def __init__(self, channels: int, hidden: int, width: int) -> None:
        super().__init__()
        self.channels, self.hidden = channels, hidden
        self.inner = nn.Linear(hidden, width)
        self.outer = nn.Linear(width, hidden * channels)

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        out = torch.tanh(self.outer(torch.relu(self.inner(z))))
        return out.view(*z.shape[:-1], self.hidden, self.channels)


class CDEClassifier(nn.Module):
    def __init__(self, channels: int, n_features: int, cfg: CDEConfig) -> None:
        super().__init__()
        self.solver = cfg.solver
        self.initial = nn.Linear(channels, cfg.hidden)
        self.field = _VectorField(channels, cfg.hidden, cfg.field_width)
        self.norm = nn.LayerNorm(cfg.hidden)  # z_T's scale grows with the path's length
        self.head = nn.Sequential(nn.Linear(cfg.hidden + n_features, cfg.head_width), nn.ReLU(),
                                  nn.Dropout(cfg.dropout), nn.Linear(cfg.head_width, len(CLASSES)))

    def forward(self, coeffs: torch.Tensor, x_last: torch.Tensor) -> torch.Tensor:
        path = torchcde.CubicSpline(coeffs)
        z0 = self.initial(path.evaluate(path.interval[0]))
        z = torchcde.cdeint(X=path, func=self.field, z0=z0, t=path.interval, adjoint=False,
                            method=self.solver, options={"step_size": 1.0})
        return self.head(torch.cat([self.norm(z[:, -1]), x_last], dim=-1))


@dataclass(frozen=True, eq=False)
class Inputs:
    """Standardized features and scaled log prices of one market, ready for window gathering."""

    z: np.ndarray  # (n_bars, n_coins, F)
    logp: np.ndarray  # (n_bars, n_coins) log close / price scale of the coin
    coin_ok: np.ndarray  # (n_coins,) coin has train statistics


@dataclass(eq=False)
class TrainedCDE:
    """A trained CDE plus what rebuilds its inputs (train statistics, label barriers, span)."""

    module: CDEClassifier
    cfg: CDEConfig
    features: tuple[str, ...]
    coins: tuple[str, ...]
    center: np.ndarray  # (n_coins, F) train mean
    scale: np.ndarray  # (n_coins, F) train std
    price_scale: np.ndarray  # (n_coins,) train std of 24h log returns
    label_spec: LabelSpec
    theta: np.ndarray  # (n_coins,) label barriers fitted on train
    span: TrainSpan
    metrics: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ inputs and windows
    def inputs(self, market: Market) -> Inputs:
        feats = regime_features(market).subset(self.features)
        n, m = market.n_bars, market.n_coins
        z = np.full((n, m, len(self.features)), np.nan)
        logp = np.full((n, m), np.nan)
        coin_ok = np.zeros(m, dtype=bool)
        missing = [c for c in market.coins if c not in self.coins]
        if missing:
            log.warning("CDE was not trained on %s: their regime is UNKNOWN", ", ".join(missing))
        with np.errstate(divide="ignore", invalid="ignore"):
            lc = np.log(np.where(market.close > 0, market.close, np.nan))
        for c, coin in enumerate(market.coins):
            if coin not in self.coins:
                continue
            j = self.coins.index(coin)
            z[:, c] = (feats[:, c] - self.center[j]) / self.scale[j]
            logp[:, c] = lc[:, c] / self.price_scale[j]
            coin_ok[c] = True
        return Inputs(z, logp, coin_ok)

    def decidable(self, inp: Inputs) -> np.ndarray:
        """(n_bars, n_coins) bool: a full lookback exists and every input at t is known."""
        ok = np.isfinite(inp.z).all(axis=2) & np.isfinite(inp.logp) & inp.coin_ok[None, :]
        ok[: self.cfg.lookback] = False
        return ok

    def windows(self, inp: Inputs, t: np.ndarray, c: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Spline coefficients (B, K-1, 4C) and features at t (B, F) for the pairs (t, c)."""
        cfg = self.cfg
        k = cfg.n_knots
        idx = t[:, None] - cfg.lookback + cfg.knot_every * np.arange(k)[None, :]
        feats = inp.z[idx, c[:, None]]  # (B, K, F)
        price = inp.logp[idx, c[:, None]] - inp.logp[t, c][:, None]
        x = np.concatenate([np.broadcast_to(np.linspace(0, 1, k), price.shape)[..., None],
                            price[..., None], feats], axis=2)
        x = _fill_knots(x)
        xt = torch.as_tensor(x, dtype=torch.float32)
        coeffs = torchcde.natural_cubic_coeffs(xt)
        return coeffs, torch.as_tensor(inp.z[t, c], dtype=torch.float32)

    # ------------------------------------------------------------------ prediction
    @torch.no_grad()
    def predict_proba(self, market: Market, start: int = 0, batch: int = 512,
                      progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """(n_bars, n_coins, 3) class probabilities for bars >= start; NaN where undecidable.

        `progress(done, total)` is called after each batch of windows.
        """
        torch.set_num_threads(self.cfg.threads)
        self.module.eval()
        inp = self.inputs(market)
        ok = self.decidable(inp)
        ok[:start] = False
        t_all, c_all = np.nonzero(ok)
        out = np.full((market.n_bars, market.n_coins, len(CLASSES)), np.nan)
        for i in range(0, t_all.size, batch):
            t, c = t_all[i:i + batch], c_all[i:i + batch]
            coeffs, x_last = self.windows(inp, t, c)
            out[t, c] = torch.softmax(self.module(coeffs, x_last), dim=-1).double().numpy()
            if progress is not None:
                progress(min(i + batch, t_all.size), t_all.size)
        return out

    def predict(self, market: Market, start: int = 0,
                progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """(n_bars, n_coins) int8 class codes; UNKNOWN before `start` and where undecidable."""
        p = self.predict_proba(market, start, progress=progress)
        ok = np.isfinite(p).all(axis=2)
        return np.where(ok, np.argmax(np.where(ok[..., None], p, 0), axis=2), UNKNOWN).astype(np.int8)

    # ------------------------------------------------------------------ checkpoint
    def metadata(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "model": "neural_cde",
            "classes": list(CLASSES),
            "features": list(self.features),
            "channels": ["time", "log_price_rel_t"] + list(self.features),
            "coins": list(self.coins),
            "center": self.center.tolist(),
            "scale": self.scale.tolist(),
            "price_scale": self.price_scale.tolist(),
            "label": {"spec": asdict(self.label_spec), "definition": self.label_spec.describe(),
                      "theta": dict(zip(self.coins, map(float, self.theta), strict=True))},
            "train_span": self.span.to_dict(),
            "data_fingerprint": self.span.fingerprint,
            "config": asdict(self.cfg),
            "metrics": self.metrics,
        }

    def save(self, results_dir: str | Path) -> tuple[Path, Path]:
        pt, meta = checkpoint_paths(results_dir, self.span.fingerprint)
        buf = io.BytesIO()
        torch.save(self.module.state_dict(), buf)
        atomic_write(pt, buf.getvalue())
        atomic_write_json(self.metadata(), meta)  # written last: its presence marks a whole checkpoint
        return pt, meta


def _fill_knots(x: np.ndarray) -> np.ndarray:
    """Carry each channel's last known knot forward, the first known one backward, 0 if none."""
    b, k, ch = x.shape
    ok = np.isfinite(x)
    pos = np.where(ok, np.arange(k)[None, :, None], -1)
    last = np.maximum.accumulate(pos, axis=1)
    first = np.where(ok.any(axis=1), np.argmax(ok, axis=1), 0)  # (B, C)
    src = np.where(last >= 0, last, first[:, None, :])
    filled = np.take_along_axis(x, src, axis=1)
    return np.where(np.isfinite(filled), filled, 0.0)


def load_cde(meta_path: str | Path) -> TrainedCDE:
    """A checkpoint written by TrainedCDE.save, from its metadata JSON (next to the .pt)."""
    meta_path = Path(meta_path)
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{meta_path}: checkpoint format {meta.get('format')!r}, this code reads "
                          f"{CHECKPOINT_FORMAT}: retrain with `python -m sweep regime train`")
    unknown = set(meta["features"]) - set(FEATURES)
    if unknown:
        raise ConfigError(f"{meta_path}: features {sorted(unknown)} are not computed by this code: "
                          "retrain with `python -m sweep regime train`")
    cfg = CDEConfig(**meta["config"])
    feats = tuple(meta["features"])
    module = CDEClassifier(len(feats) + 2, len(feats), cfg)
    state = torch.load(meta_path.with_suffix(".pt"), map_location="cpu", weights_only=True)
    module.load_state_dict(state)
    module.eval()
    spec = LabelSpec(**meta["label"]["spec"])
    coins = tuple(meta["coins"])
    return TrainedCDE(
        module=module, cfg=cfg, features=feats, coins=coins,
        center=np.asarray(meta["center"], dtype=np.float64),
        scale=np.asarray(meta["scale"], dtype=np.float64),
        price_scale=np.asarray(meta["price_scale"], dtype=np.float64),
        label_spec=spec, theta=np.asarray([meta["label"]["theta"][c] for c in coins], dtype=np.float64),
        span=TrainSpan.from_dict(meta["train_span"]), metrics=meta["metrics"],
    )


def _train_stats(market: Market, features: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    """Per coin: feature mean and std, and the std of 24h log returns (NaN mean: no data)."""
    feats = regime_features(market)
    x = feats.subset(features)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN coins give NaN, handled below
        center = np.nanmean(x, axis=0)
        scale = np.nanstd(x, axis=0)
        price_scale = np.nanstd(feats.get("ret_24h"), axis=0)
    scale = np.where(np.isfinite(scale) & (scale > 1e-12), scale, 1.0)
    price_scale = np.where(np.isfinite(price_scale) & (price_scale > 0), price_scale, 1.0)
    return center, scale, price_scale


def train_cde(market: Market, cfg: CDEConfig = CDEConfig(), spec: LabelSpec = LabelSpec(),
              progress: Progress | None = None) -> TrainedCDE:
    """Fit on `market` (pass the TRAIN window only): labels, statistics and early stopping all
    come from inside it."""
    t0 = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    features = CDE_FEATURES + (("oi_change_24h",) if has_open_interest(market) else ())
    center, scale, price_scale = _train_stats(market, features)
    coin_ok = np.isfinite(center).all(axis=1)
    if not coin_ok.any():
        raise DataError(f"train_cde: no coin has finite features in the {market.n_bars} train bars; "
                        "the window must exceed the 168-bar feature warm-up")
    theta = fit_barriers(market, spec)
    model = TrainedCDE(CDEClassifier(len(features) + 2, len(features), cfg), cfg, features,
                       tuple(market.coins), center, scale, price_scale, spec, theta,
                       TrainSpan.of(market))
    inp = model.inputs(market)
    inp = Inputs(inp.z, inp.logp, inp.coin_ok & coin_ok)
    labels = forward_labels(market, theta, spec)
    usable = model.decidable(inp) & (labels != UNKNOWN)
    val_start = int(market.n_bars * (1 - cfg.val_frac))
    tr_t, tr_c = np.nonzero(usable[: max(val_start - spec.horizon, 0)])
    va_t, va_c = np.nonzero(usable)
    keep = va_t >= val_start
    va_t, va_c = va_t[keep], va_c[keep]
    if tr_t.size < cfg.batch_size or va_t.size == 0:
        raise DataError(f"train_cde: {tr_t.size} train and {va_t.size} validation windows in "
                        f"{market.n_bars} bars (lookback {cfg.lookback}, horizon {spec.horizon}); "
                        "give a longer train window or a shorter lookback")
    if va_t.size > cfg.max_val_samples:
        pick = np.sort(rng.choice(va_t.size, cfg.max_val_samples, replace=False))
        va_t, va_c = va_t[pick], va_c[pick]
    y_tr = labels[tr_t, tr_c].astype(np.int64)
    y_va = labels[va_t, va_c].astype(np.int64)
    freq = np.bincount(y_tr, minlength=len(CLASSES)).astype(np.float64)
    weights = y_tr.size / (len(CLASSES) * np.maximum(freq, 1.0))
    loss_fn = nn.CrossEntropyLoss(weight=torch.as_tensor(weights, dtype=torch.float32),
                                  label_smoothing=cfg.label_smoothing)
    opt = torch.optim.AdamW(model.module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = min(cfg.samples_per_epoch, tr_t.size)
    n_batches = -(-per_epoch // cfg.batch_size)
    total = cfg.epochs * n_batches
    val_coeffs = [model.windows(inp, va_t[i:i + 512], va_c[i:i + 512]) for i in range(0, va_t.size, 512)]
    history: list[dict[str, float]] = []
    best = (-np.inf, None, -1)
    bad, step = 0, 0
    for epoch in range(cfg.epochs):
        model.module.train()
        order = rng.choice(tr_t.size, per_epoch, replace=False)
        losses = []
        for b in range(n_batches):
            sel = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            coeffs, x_last = model.windows(inp, tr_t[sel], tr_c[sel])
            loss = loss_fn(model.module(coeffs, x_last), torch.as_tensor(y_tr[sel]))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.module.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
            step += 1
            if progress is not None:
                progress(step, total, {"epoch": epoch + 1, "loss": float(np.mean(losses))})
        model.module.eval()
        with torch.no_grad():
            logits = torch.cat([model.module(cf, xl) for cf, xl in val_coeffs])
            val_loss = float(loss_fn(logits, torch.as_tensor(y_va)))
        pred = logits.argmax(dim=1).numpy()
        rep = classification_report(y_va, pred)
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
                        "val_loss": val_loss, "val_accuracy": rep["accuracy"],
                        "val_macro_f1": rep["macro_f1"]})
        if rep["macro_f1"] > best[0]:
            best = (rep["macro_f1"], {k: v.clone() for k, v in model.module.state_dict().items()}, epoch + 1)
            bad = 0
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    model.module.load_state_dict(best[1])
    model.module.eval()
    best_row = history[best[2] - 1]
    model.metrics = {
        "best_epoch": best[2], "epochs_run": len(history), "history": history,
        "val_macro_f1": best_row["val_macro_f1"], "val_accuracy": best_row["val_accuracy"],
        "val_loss": best_row["val_loss"], "train_windows": int(tr_t.size),
        "val_windows": int(va_t.size), "val_start": market.index[val_start].isoformat(),
        "class_weights": dict(zip(CLASSES, map(float, weights), strict=True)),
        "train_class_freq": dict(zip(CLASSES, map(float, freq / freq.sum()), strict=True)),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return model
