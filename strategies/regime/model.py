"""`RegimeModel`: chop / trend / reversal per coin from ONE model per decision.

`fit(train)` looks for the Neural CDE checkpoint trained on exactly this train window (keyed by
its data fingerprint, see artifacts.py). If it exists the CDE answers; otherwise (unless asked to
train one) a Gaussian HMM is fitted on the same window and answers, and a log line says so. The
two never run together. Call `fit` once per walk-forward fold with that fold's train window.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np

from harness.errors import ConfigError
from harness.market import Market
from strategies.regime.artifacts import DEFAULT_RESULTS_DIR, TrainSpan, checkpoint_paths
from strategies.regime.hmm import (
    FittedHMM,
    HMMConfig,
    fit_market_hmm,
    fit_state_classes,
    market_proba,
    proba_to_classes,
)
from strategies.regime.labels import LabelSpec, fit_barriers, forward_labels

log = logging.getLogger(__name__)

Backend = Literal["cde", "hmm"]


class RegimeModel:
    """Facade over the CDE (checkpoint) and the HMM fallback; sklearn-like fit / predict."""

    def __init__(self, results_dir: str | Path = DEFAULT_RESULTS_DIR, *, train_cde: bool = False,
                 cde_config: Any = None, hmm_config: HMMConfig = HMMConfig(),
                 label_spec: LabelSpec = LabelSpec(), progress: Any = None) -> None:
        self.results_dir = Path(results_dir)
        self.train_cde = train_cde
        self.cde_config = cde_config
        self.hmm_config = hmm_config
        self.label_spec = label_spec
        self.progress = progress
        self.backend: Backend | None = None
        self.span: TrainSpan | None = None  # the bars the fit received
        self.cde: Any = None
        self.hmm: FittedHMM | None = None
        self.state_classes: np.ndarray | None = None

    def fit(self, market: Market) -> RegimeModel:
        """Fit on `market`, the TRAIN window only; returns self."""
        self.backend = self.cde = self.hmm = self.state_classes = None
        pt, meta = checkpoint_paths(self.results_dir, market.fingerprint)
        if pt.is_file() and meta.is_file():
            from strategies.regime.cde import load_cde

            self.cde = load_cde(meta)
            if self.cde.span.fingerprint != market.fingerprint:
                raise ConfigError(f"{meta}: trained on data {self.cde.span.fingerprint}, not "
                                  f"{market.fingerprint}; delete it and retrain")
            self.backend = "cde"
            log.info("regime: using the Neural CDE checkpoint %s", meta)
        elif self.train_cde:
            from strategies.regime.cde import CDEConfig, train_cde

            self.cde = train_cde(market, self.cde_config or CDEConfig(), self.label_spec, self.progress)
            self.cde.save(self.results_dir)
            self.backend = "cde"
        else:
            log.warning("regime: no Neural CDE checkpoint for data %s under %s: using the HMM "
                        "fallback", market.fingerprint, self.results_dir)
            self.hmm = fit_market_hmm(market, self.hmm_config)
            labels = forward_labels(market, fit_barriers(market, self.label_spec), self.label_spec)
            self.state_classes = fit_state_classes(market_proba(self.hmm, market), labels)
            self.backend = "hmm"
        self.span = TrainSpan.of(market)
        return self

    @property
    def label(self) -> str:
        """What answers, for results rows: the CDE checkpoint or the HMM fallback's settings."""
        if self.backend == "cde":
            return f"neural CDE cde_{self.span.fingerprint}"
        if self.backend == "hmm":
            return f"{self.hmm_config.describe()}, no CDE checkpoint"
        return "unfitted"

    def predict(self, market: Market, start: int = 0) -> np.ndarray:
        """(n_bars, n_coins) int8 codes into labels.CLASSES, UNKNOWN (-1) where no decision.

        Causal: the code at bar t uses bars <= t only. Bars before `start` are UNKNOWN (saves
        the CDE's time when only a test window is needed).
        """
        if self.backend is None:
            raise ConfigError("RegimeModel.predict before fit: call fit(train_market) first")
        if self.backend == "cde":
            return self.cde.predict(market, start)
        codes = proba_to_classes(market_proba(self.hmm, market), self.state_classes)
        codes[:start] = -1
        return codes
