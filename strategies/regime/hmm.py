"""Gaussian HMM regimes, fitted with hmmlearn and used CAUSALLY through our own forward filter.

hmmlearn's EM fits the parameters on the train window (several random restarts, the best
log-likelihood kept). Its predict/Viterbi and smoothed posteriors look at the whole sequence,
so they are never used for decisions: `filtered_proba` runs the forward recursion over the
fitted parameters, and the probability at t reads X[:t+1] only.

States are named by ascending mean of one feature (`order_by`: state 0 has the lowest mean).
Features are standardized per coin with the train window's mean and std, and one model is fitted
on all coins' sequences (split at gaps), so every coin speaks the same state vocabulary.
States become classes through the map, fitted on the train window, that scores best there.

Two configurations (HMM_PRESETS): `hmm`, on the day's return, its volatility against the
week's and the mean bar range (features whose scale moves less from month to month than a
drawdown's: with ret_24h, vol_24h and drawdown the states of a test window spent below the
train drawdowns collapsed into one, and every bar was called "reversal");
and `hmm_drawdown`, the nodrama model: one feature d_t = log p_t - running max of log p, K = 3
states named by ascending mean (deep drawdown, middle, near the high). Its feature drifts: a
test window spent below every train drawdown sits in one state, so it is the weaker model.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from dataclasses import dataclass

import numpy as np

from harness.errors import ConfigError, DataError
from harness.market import Market
from strategies.regime.artifacts import TrainSpan
from strategies.regime.features import FEATURES, regime_features
from strategies.regime.hmm_nb import forward_filter_nb
from strategies.regime.labels import CLASSES, UNKNOWN

log = logging.getLogger(__name__)

HMM_FEATURES = ("ret_24h", "vol_ratio", "range_pct")


@dataclass(frozen=True)
class HMMConfig:
    n_states: int = 3
    n_restarts: int = 4
    n_iter: int = 60
    tol: float = 1e-3
    seed: int = 0
    features: tuple[str, ...] = HMM_FEATURES
    order_by: str = "ret_24h"  # states are named by ascending mean of this feature
    min_covar: float = 1e-3
    max_rows: int = 40_000  # EM sees the coins of a seeded draw up to this many rows

    def __post_init__(self) -> None:
        if self.n_states not in (2, 3):
            raise ConfigError(f"HMMConfig.n_states must be 2 or 3, got {self.n_states!r}")
        if self.n_restarts < 1:
            raise ConfigError(f"HMMConfig.n_restarts must be >= 1, got {self.n_restarts!r}")
        unknown = [f for f in self.features if f not in FEATURES]
        if unknown or not self.features:
            raise ConfigError(f"HMMConfig.features: unknown {unknown}; known: {', '.join(FEATURES)}")
        if self.order_by not in self.features:
            raise ConfigError(f"HMMConfig.order_by {self.order_by!r} must be one of the features "
                              f"{self.features} (states are named by its mean)")

    def describe(self) -> str:
        return f"HMM K={self.n_states} ({', '.join(self.features)})"


HMM_PRESETS = {
    "hmm": HMMConfig(),
    "hmm_drawdown": HMMConfig(features=("drawdown",), order_by="drawdown"),
}


@dataclass(frozen=True, eq=False)
class GaussianHMMParams:
    """A fitted Gaussian HMM (full covariances), states sorted by ascending mean of `order_by`."""

    features: tuple[str, ...]
    startprob: np.ndarray  # (K,)
    transmat: np.ndarray  # (K, K)
    means: np.ndarray  # (K, d)
    covars: np.ndarray  # (K, d, d)
    log_likelihood: float
    restart_log_likelihoods: tuple[float, ...]

    @property
    def n_states(self) -> int:
        return self.startprob.shape[0]


@dataclass(frozen=True, eq=False)
class FittedHMM:
    params: GaussianHMMParams
    coins: tuple[str, ...]
    center: np.ndarray  # (n_coins, d) train mean per coin and feature
    scale: np.ndarray  # (n_coins, d) train std
    span: TrainSpan


def fit_hmm(sequences: list[np.ndarray], cfg: HMMConfig = HMMConfig()) -> GaussianHMMParams:
    """EM from `n_restarts` random starts on finite (n_i, d) sequences; the best LL wins."""
    from hmmlearn.hmm import GaussianHMM
    from threadpoolctl import threadpool_limits

    seqs = [s for s in sequences if s.shape[0] >= 2]
    if not seqs:
        raise DataError("fit_hmm: no sequence of at least 2 finite rows to fit on; give the "
                        "HMM a longer train window (features need a 168-bar warm-up)")
    X = np.concatenate(seqs)
    lengths = [s.shape[0] for s in seqs]
    k, d = cfg.n_states, X.shape[1]
    if X.shape[0] < 10 * k * (d + 1):
        raise DataError(f"fit_hmm: {X.shape[0]} rows are too few for {k} states x {d} features; "
                        "use a longer train window")
    best, lls = None, []
    logging.getLogger("hmmlearn").setLevel(logging.ERROR)
    cov = np.cov(X, rowvar=False).reshape(d, d) + cfg.min_covar * np.eye(d)
    for r in range(cfg.n_restarts):
        # a random start: k distinct data rows as means, the data covariance for every state,
        # random start and (sticky) transition probabilities
        rng = np.random.default_rng(cfg.seed + r)
        m = GaussianHMM(n_components=k, covariance_type="full", n_iter=cfg.n_iter, tol=cfg.tol,
                        random_state=cfg.seed + r, init_params="", params="stmc",
                        min_covar=cfg.min_covar)
        m.startprob_ = rng.dirichlet(np.ones(k))
        m.transmat_ = 0.5 * np.eye(k) + 0.5 * rng.dirichlet(np.ones(k), size=k)
        m.means_ = X[rng.choice(X.shape[0], k, replace=False)]
        m.covars_ = np.repeat(cov[None], k, axis=0)
        with warnings.catch_warnings(), threadpool_limits(1):  # tiny matrices: threads only spin
            warnings.simplefilter("ignore")
            m.fit(X, lengths)
            ll = float(m.score(X, lengths))
        lls.append(ll)
        if np.isfinite(ll) and (best is None or ll > best[0]):
            best = (ll, m)
    if best is None:
        raise DataError("fit_hmm: every restart ended with a non-finite likelihood; check the "
                        "features for constant or degenerate columns")
    ll, m = best
    order = np.argsort(m.means_[:, cfg.features.index(cfg.order_by)])
    return GaussianHMMParams(
        features=tuple(cfg.features),
        startprob=m.startprob_[order].copy(),
        transmat=m.transmat_[np.ix_(order, order)].copy(),
        means=m.means_[order].copy(),
        covars=np.asarray(m.covars_)[order].copy(),
        log_likelihood=ll,
        restart_log_likelihoods=tuple(lls),
    )


def log_emission(model: GaussianHMMParams, X: np.ndarray) -> np.ndarray:
    """(n, K) Gaussian log densities; NaN rows stay NaN (a missing observation)."""
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    out = np.empty((n, model.n_states))
    for j in range(model.n_states):
        chol = np.linalg.cholesky(model.covars[j])
        z = np.linalg.solve(chol, (X - model.means[j]).T)
        out[:, j] = (-0.5 * np.sum(z * z, axis=0) - np.log(np.diag(chol)).sum()
                     - 0.5 * d * np.log(2 * np.pi))
    return out


def filtered_proba(model: GaussianHMMParams, X: np.ndarray) -> np.ndarray:
    """(n, K) forward probabilities P(state_t | X[:t+1]); NaN rows where X has a NaN."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(model.features):
        raise ConfigError(f"filtered_proba: X must be (n, {len(model.features)}) with columns "
                          f"{', '.join(model.features)}; got shape {X.shape}")
    return forward_filter_nb(log_emission(model, X), model.startprob, model.transmat)


def fit_market_hmm(market: Market, cfg: HMMConfig = HMMConfig()) -> FittedHMM:
    """Fit on `market` (pass the TRAIN window only).

    Every coin gets its train mean and std; EM runs on the standardized sequences of all coins,
    or, past `max_rows` rows, of a seeded random draw of whole coins up to that many (on the
    172-coin shared data a fold's fit drops from minutes to seconds; standardized coins speak
    the same state vocabulary, so a few dozen of them pin down a handful of Gaussians).
    """
    raw = regime_features(market).subset(cfg.features)
    ok = np.isfinite(raw).all(axis=2)
    center = np.full((market.n_coins, raw.shape[2]), np.nan)
    scale = np.full_like(center, np.nan)
    seqs: dict[int, list[np.ndarray]] = {}
    for c in range(market.n_coins):
        rows = raw[ok[:, c], c]
        if rows.shape[0] < 2:
            continue
        center[c], scale[c] = rows.mean(axis=0), rows.std(axis=0)
        scale[c][scale[c] <= 0] = 1.0
        z = (raw[:, c] - center[c]) / scale[c]
        breaks = np.flatnonzero(np.diff(ok[:, c].astype(np.int8)) != 0) + 1
        for seg_rows, seg_ok in zip(np.split(z, breaks), np.split(ok[:, c], breaks), strict=True):
            if seg_ok[0]:
                seqs.setdefault(c, []).append(seg_rows)
    coins = sorted(seqs)
    rows = {c: sum(s.shape[0] for s in seqs[c]) for c in coins}
    if sum(rows.values()) > cfg.max_rows:
        drawn = np.random.default_rng(cfg.seed).permutation(coins)
        upto = np.cumsum([rows[c] for c in drawn])
        coins = sorted(drawn[: int(np.searchsorted(upto, cfg.max_rows)) + 1])
    params = fit_hmm([s for c in coins for s in seqs[c]], cfg)
    return FittedHMM(params, tuple(market.coins), center, scale, TrainSpan.of(market))


def market_proba(fitted: FittedHMM, market: Market) -> np.ndarray:
    """(n_bars, n_coins, K) filtered probabilities; NaN where unknown or the coin was not fitted."""
    raw = regime_features(market).subset(fitted.params.features)
    out = np.full((market.n_bars, market.n_coins, fitted.params.n_states), np.nan)
    missing = [c for c in market.coins if c not in fitted.coins]
    if missing:
        log.warning("HMM was not fitted on %s: their regime is UNKNOWN", ", ".join(missing))
    for c, coin in enumerate(market.coins):
        if coin in fitted.coins:
            j = fitted.coins.index(coin)
            if np.isfinite(fitted.center[j]).all():
                out[:, c] = filtered_proba(fitted.params, (raw[:, c] - fitted.center[j]) / fitted.scale[j])
    return out


def fit_state_classes(proba: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(K,) class per state: of every map from states to classes, the one with the best macro
    F1 on TRAIN, each bar in its most probable filtered state (first best map on a tie).

    Macro F1 is what the models are scored by, so the map cannot buy accuracy by sending every
    state to the frequent class (a one-class map scores at most about 0.2), and each state is
    judged against the others, not alone.
    """
    k = proba.shape[-1]
    ok = (labels != UNKNOWN) & np.isfinite(proba).all(axis=-1)
    if not ok.any():
        raise DataError("fit_state_classes: no bar has both a label and a filtered probability; "
                        "the train window is too short for the feature warm-up plus the label horizon")
    state = np.argmax(proba[ok], axis=-1)
    y = labels[ok].astype(np.int64)
    n_cls = len(CLASSES)
    counts = np.zeros((k, n_cls))
    np.add.at(counts, (state, y), 1.0)
    true = counts.sum(axis=0)
    best, best_f1 = None, -1.0
    for mapping in itertools.product(range(n_cls), repeat=k):
        onehot = np.eye(n_cls)[list(mapping)]  # (K, C): state s predicts class mapping[s]
        tp = (counts * onehot).sum(axis=0)
        pred = onehot.T @ counts.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(pred + true > 0, 2 * tp / (pred + true), 0.0)
        if f1.mean() > best_f1 + 1e-12:
            best, best_f1 = mapping, float(f1.mean())
    return np.asarray(best, dtype=np.int8)


def proba_to_classes(proba: np.ndarray, state_classes: np.ndarray) -> np.ndarray:
    """(n_bars, n_coins) int8: the class of the most probable filtered state; UNKNOWN where NaN."""
    ok = np.isfinite(proba).all(axis=-1)
    state = np.argmax(np.where(ok[..., None], proba, 0.0), axis=-1)
    return np.where(ok, state_classes[state], UNKNOWN).astype(np.int8)
