"""The per-coin regime as a strategy input: fitted through the fit hook, applied as a gate.

A strategy whose `regime_gate` parameter is not "off" fits a RegimeModel on the train window
the harness hands its `fit` (`fit_regime`), and in `generate` keeps an entry only where the
regime of its coin at the decision bar is one the gate allows (`apply_gate`). The regime at bar
t is the model's causal forecast of bar t's label: chop / trend / reversal over the next 24
bars (labels.py), from bars <= t only. It is UNKNOWN during the feature warm-up and everywhere
when no model was fitted; an UNKNOWN bar passes no gate but "off".

The model: the Neural CDE when a checkpoint exists for exactly this train window, else the
HMM fallback (hmm.py preset `hmm`), with one log line per fit saying so. Training a CDE costs
minutes per window, so it is never done here; `sweep regime train` makes checkpoints for its
own (anchored) folds, and the sweep's rolling train windows (about 800 bars on the shared
data) are too short for the CDE's 720-bar lookback, so a sweep gets the HMM. This module is the one home of the cost: fits are cached per process by
(train-window fingerprint, model settings, checkpoint present), predictions per fit by market
fingerprint, so a sweep fits once per fold, not once per trial.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.errors import ConfigError
from harness.market import Market
from strategies.regime.artifacts import DEFAULT_RESULTS_DIR, checkpoint_paths
from strategies.regime.hmm import HMM_PRESETS, HMMConfig
from strategies.regime.labels import CHOP, REVERSAL, TREND, UNKNOWN, LabelSpec
from strategies.regime.model import RegimeModel

GATES: dict[str, frozenset[int] | None] = {
    "off": None,
    "trend": frozenset({TREND}),
    "not_chop": frozenset({TREND, REVERSAL}),
    "chop": frozenset({CHOP}),
    "reversal": frozenset({REVERSAL}),
    "not_trend": frozenset({CHOP, REVERSAL}),
}
TREND_GATES = ("off", "trend", "not_chop")  # for entries that need the move to continue
REVERSION_GATES = ("off", "chop", "reversal", "not_trend")  # for fades

GATE_HELP = "enter only in these forecast regimes of the coin (regime/gate.py); off: any"

FIT_CACHE_SIZE = 16
PREDICT_CACHE_SIZE = 4


@dataclass(frozen=True)
class RegimeSettings:
    """What a regime fit depends on besides its train window."""

    results_dir: str = str(DEFAULT_RESULTS_DIR)
    hmm: HMMConfig = HMM_PRESETS["hmm"]
    labels: LabelSpec = LabelSpec()


@dataclass(frozen=True, eq=False)
class RegimeInput:
    """A fitted regime model and its per-market predictions (cached, read-only)."""

    model: RegimeModel
    _codes: OrderedDict = field(default_factory=OrderedDict, repr=False)

    @property
    def label(self) -> str:
        return self.model.label

    def codes(self, market: Market) -> np.ndarray:
        """(n_bars, n_coins) int8 regime codes of `market`, causal (see RegimeModel.predict)."""
        key = market.fingerprint
        hit = self._codes.get(key)
        if hit is None:
            hit = self.model.predict(market)
            hit.flags.writeable = False
            self._codes[key] = hit
            while len(self._codes) > PREDICT_CACHE_SIZE:
                self._codes.popitem(last=False)
        return hit


_FITS: OrderedDict = OrderedDict()


def check_gate(gate: str) -> None:
    if gate not in GATES:
        raise ConfigError(f"regime_gate {gate!r} is not one of {', '.join(GATES)}")


def fit_regime(train: Market, gate: str, settings: RegimeSettings = RegimeSettings()) -> RegimeInput | None:
    """The regime model of this train window (None when the gate is off): cached per process."""
    check_gate(gate)
    if GATES[gate] is None:
        return None
    pt, meta = checkpoint_paths(settings.results_dir, train.fingerprint)
    key = (train.fingerprint, settings, pt.is_file() and meta.is_file())
    hit = _FITS.get(key)
    if hit is None:
        model = RegimeModel(Path(settings.results_dir), hmm_config=settings.hmm,
                            label_spec=settings.labels).fit(train)
        hit = RegimeInput(model)
        _FITS[key] = hit
        while len(_FITS) > FIT_CACHE_SIZE:
            _FITS.popitem(last=False)
    else:
        _FITS.move_to_end(key)
    return hit


def regime_codes(fitted: RegimeInput | None, market: Market) -> np.ndarray:
    """(n_bars, n_coins) int8 codes; UNKNOWN everywhere when nothing was fitted."""
    if fitted is None:
        return np.full((market.n_bars, market.n_coins), UNKNOWN, dtype=np.int8)
    return fitted.codes(market)


def allowed(codes: np.ndarray, gate: str) -> np.ndarray:
    """Bool mask of the bars and coins whose regime the gate lets trade (all True when off)."""
    check_gate(gate)
    classes = GATES[gate]
    if classes is None:
        return np.ones(codes.shape, dtype=bool)
    return np.isin(codes, list(classes))


def apply_gate(direction: np.ndarray, fitted: RegimeInput | None, market: Market, gate: str) -> np.ndarray:
    """`direction` with the entries the gate refuses set to 0 (unchanged when off)."""
    check_gate(gate)
    if GATES[gate] is None:
        return direction
    return np.where(allowed(regime_codes(fitted, market), gate), direction, 0).astype(direction.dtype)


def models_used(gate: str, train_windows: list[Market], settings: RegimeSettings = RegimeSettings()) -> str:
    """The regime models fitted for these train windows ('' when the gate is off), distinct
    labels in fold order; from the cache, so asking after an evaluation costs no fit."""
    labels = [f.label for f in (fit_regime(w, gate, settings) for w in train_windows) if f is not None]
    return ", ".join(dict.fromkeys(labels))
