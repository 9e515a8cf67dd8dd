"""Labels, scores, and the Neural CDE: a tiny model learns, stays causal, round-trips through its
checkpoint, and RegimeModel falls back to the HMM (and says so) when no checkpoint exists."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _regime_synth import perturbed_after, planted_market

from harness.market import Market
from strategies.regime.labels import (
    CHOP,
    REVERSAL,
    TREND,
    UNKNOWN,
    LabelSpec,
    fit_barriers,
    forward_labels,
)
from strategies.regime.metrics import classification_report

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- labels


def _path_market(closes: np.ndarray) -> Market:
    """One coin whose bar t has open = close[t-1], high/low = max/min(open, close)."""
    c = np.asarray(closes, dtype=float)[:, None]
    o = np.vstack([c[:1], c[:-1]])
    n = c.shape[0]
    return Market(index=pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"), coins=("X",),
                  interval="1h", open=o, high=np.maximum(o, c), low=np.minimum(o, c), close=c,
                  volume=np.ones((n, 1)), funding=np.zeros((n, 1)), premium=np.full((n, 1), np.nan),
                  open_interest=np.full((n, 1), np.nan), listed=np.ones((n, 1), bool))


SPEC = LabelSpec(horizon=4)
THETA = np.array([0.01])


@pytest.mark.parametrize("moves, want", [
    ([0.002, -0.002, 0.003, -0.001], CHOP),  # no barrier touched
    ([0.005, 0.005, 0.005, 0.0], TREND),  # +1% touched, ends +1.5%
    ([-0.006, -0.006, 0.001, -0.002], TREND),  # -1% touched, ends -1.3%
    ([0.015, -0.01, -0.015, 0.0], REVERSAL),  # +1.5% then -1%: both touched
    ([0.012, -0.006, -0.008, 0.0], REVERSAL),  # +1.2% then back below the anchor
    ([0.012, -0.004, -0.004, 0.0], CHOP),  # +1.2% faded to +0.4%: not kept, not reversed
])
def test_label_cases(moves, want):
    logp = np.log(100.0) + np.concatenate([[0.0], np.cumsum(moves)])
    m = _path_market(np.exp(logp))  # bar 0, then the 4 bars of bar 0's forward window
    lab = forward_labels(m, THETA, SPEC)
    assert lab[0, 0] == want
    assert (lab[1:, 0] == UNKNOWN).all()  # windows reaching past the end


def test_labels_read_only_bars_t_plus_1_to_t_plus_h():
    m, _ = planted_market(n=400, seed=4)
    spec = LabelSpec()
    theta = fit_barriers(m, spec)
    base = forward_labels(m, theta, spec)
    t = 200
    arrays = {f: getattr(m, f).copy() for f in ("open", "high", "low", "close")}
    for f in arrays:  # everything at or before t, and after t + h, replaced
        arrays[f][: t + 1] *= 1.3
        arrays[f][t + spec.horizon + 1:] *= 0.7
    other = Market(**{**m.__dict__, **arrays, "_fingerprint": []})
    assert (forward_labels(other, theta, spec)[t] == base[t]).all()
    gap = Market(**{**m.__dict__, "high": np.where(np.arange(400)[:, None] == t + 3, np.nan, m.high),
                    "_fingerprint": []})
    assert (forward_labels(gap, theta, spec)[t] == UNKNOWN).all()


def test_barriers_are_a_fraction_of_the_median_forward_range():
    m, _ = planted_market(n=300, seed=6)
    h = 24
    want = []
    for c in range(m.n_coins):
        rng = [np.log(m.high[t + 1:t + h + 1, c].max()) - np.log(m.low[t + 1:t + h + 1, c].min())
               for t in range(m.n_bars - h)]
        want.append(0.4 * np.median(rng))
    np.testing.assert_allclose(fit_barriers(m, LabelSpec()), want, rtol=1e-12)


def test_classification_report_matches_sklearn():
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 500)
    p = np.where(rng.random(500) < 0.4, y, rng.integers(-1, 3, 500))  # some UNKNOWN (-1)
    p[p == 2] = 1  # class 2 never predicted: precision 0 by convention
    rep = classification_report(y, p)
    prec, rec, f1, sup = precision_recall_fscore_support(y, p, labels=[0, 1, 2], zero_division=0)
    assert rep["accuracy"] == pytest.approx(accuracy_score(y, p))
    assert rep["macro_f1"] == pytest.approx(f1_score(y, p, labels=[0, 1, 2], average="macro", zero_division=0))
    for i, name in enumerate(("chop", "trend", "reversal")):
        assert rep[name]["precision"] == pytest.approx(prec[i])
        assert rep[name]["recall"] == pytest.approx(rec[i])
        assert rep[name]["f1"] == pytest.approx(f1[i])
        assert rep[name]["support"] == sup[i]


# ---------------------------------------------------------------- the CDE

torch = pytest.importorskip("torch")


def _tiny_cfg(**kw):
    from strategies.regime.cde import CDEConfig

    base = dict(lookback=48, knot_every=8, hidden=8, field_width=16, head_width=16, epochs=4,
                samples_per_epoch=192, batch_size=32, lr=1e-2, val_frac=0.2, patience=10,
                max_val_samples=128, seed=0, threads=1)
    return CDEConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def tiny():
    from strategies.regime.cde import train_cde

    m, _ = planted_market(n=700, seed=1)
    train = m.slice(0, 600)
    return m, train, train_cde(train, _tiny_cfg(), LabelSpec())


def test_tiny_cde_loss_falls_on_a_fixed_batch():
    from strategies.regime.cde import CDEClassifier

    torch.manual_seed(0)
    cfg = _tiny_cfg()
    model = CDEClassifier(channels=3, n_features=2, cfg=cfg)
    gen = torch.Generator().manual_seed(0)
    x = torch.cumsum(torch.randn(32, 7, 3, generator=gen) * 0.3, dim=1)
    y = (x[:, -1, 1] > x[:, 0, 1]).long() + (x[:, -1, 2] > 0).long()  # a rule of the path
    import torchcde

    coeffs = torchcde.natural_cubic_coeffs(x)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        loss = torch.nn.functional.cross_entropy(model(coeffs, x[:, -1, 1:]), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_train_cde_records_falling_loss_and_early_stopping_choice(tiny):
    _, train, model = tiny
    h = model.metrics["history"]
    assert len(h) == 4 and model.metrics["epochs_run"] == 4
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    best = max(h, key=lambda r: r["val_macro_f1"])
    assert model.metrics["best_epoch"] == best["epoch"]
    assert model.span.last == train.index[-1].isoformat() and model.span.n_bars == 600
    # validation is the last 20% of the train window, after every train label window
    assert pd.Timestamp(model.metrics["val_start"]) == train.index[480]


@pytest.mark.parametrize("t", [620, 699])
def test_cde_predictions_causal(tiny, t):
    m, _, model = tiny
    full = model.predict_proba(m, start=600)
    assert np.isfinite(full[600:]).all() and np.isnan(full[:600]).all()
    np.testing.assert_array_equal(model.predict_proba(m.slice(0, t + 1), start=600), full[: t + 1])
    np.testing.assert_array_equal(model.predict_proba(perturbed_after(m, t), start=600)[: t + 1],
                                  full[: t + 1])


def test_checkpoint_round_trip_and_metadata(tiny, tmp_path):
    from strategies.regime.cde import load_cde

    m, train, model = tiny
    pt, meta = model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([pt.name, meta.name])  # no temp left
    info = json.loads(meta.read_text())
    assert info["data_fingerprint"] == train.fingerprint
    assert info["train_span"]["last"] == train.index[-1].isoformat()
    assert "forward 24-bar window" in info["label"]["definition"]
    assert info["features"][:3] == ["ret_1h", "ret_24h", "vol_24h"]
    assert {"val_macro_f1", "val_accuracy", "history"} <= set(info["metrics"])
    again = load_cde(meta)
    np.testing.assert_allclose(again.predict_proba(m, start=650), model.predict_proba(m, start=650),
                               atol=1e-6, equal_nan=True)


def test_regime_model_falls_back_to_hmm_without_checkpoint_and_uses_cde_with_one(tiny, tmp_path, caplog):
    from strategies.regime.gate import RegimeSettings, fit_regime
    from strategies.regime.model import RegimeModel

    m, train, model = tiny
    with caplog.at_level(logging.INFO, logger="strategies.regime"):
        rm = RegimeModel(tmp_path).fit(train)
    assert rm.backend == "hmm" and rm.cde is None and rm.hmm is not None
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        f"regime: no Neural CDE checkpoint for data {train.fingerprint} under {tmp_path}: "
        "using the HMM fallback"]
    codes = rm.predict(m)
    assert codes.shape == (m.n_bars, m.n_coins) and codes.dtype == np.int8
    settings = RegimeSettings(results_dir=str(tmp_path))
    assert fit_regime(train, "trend", settings).model.backend == "hmm"
    model.save(tmp_path)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="strategies.regime.model"):
        rm = RegimeModel(tmp_path).fit(train)
    assert rm.backend == "cde" and rm.hmm is None and not caplog.records
    np.testing.assert_array_equal(rm.predict(m, start=650), model.predict(m, start=650))
    other = m.slice(0, 599)  # different train data: no checkpoint for it
    assert RegimeModel(tmp_path).fit(other).backend == "hmm"
    gated = fit_regime(train, "trend", settings)  # the checkpoint now exists: the gate uses it
    assert gated.model.backend == "cde" and gated.label == f"neural CDE cde_{train.fingerprint}"


def test_importing_strategies_does_not_load_torch():
    code = ("import sys; from strategies.base import registry; registry(); "
            "import strategies.regime.model, strategies.regime.btc, strategies.regime.hmm; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]


# ---------------------------------------------------------------- the CLI


def _write_dataset(m: Market, folder: Path) -> None:
    folder.mkdir(parents=True)
    rows = []
    for c, coin in enumerate(m.coins):
        rows.append(pd.DataFrame({"coin": coin, "ts": m.index, "open": m.open[:, c],
                                  "high": m.high[:, c], "low": m.low[:, c], "close": m.close[:, c],
                                  "volume": m.volume[:, c]}))
    pd.concat(rows).to_parquet(folder / "candles_1h.parquet", index=False)
    fund = [pd.DataFrame({"coin": coin, "ts": m.index, "funding_rate": m.funding[:, c],
                          "premium": np.nan}) for c, coin in enumerate(m.coins)]
    pd.concat(fund).to_parquet(folder / "funding_1h.parquet", index=False)


def test_cli_help_lists_train_and_eval():
    from typer.testing import CliRunner

    from sweep.cli import _register, app

    _register()
    res = CliRunner().invoke(app, ["regime", "--help"])
    assert res.exit_code == 0 and "train" in res.output and "eval" in res.output


def test_cli_eval_scores_baselines_and_hmms_on_the_same_windows(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from sweep import regime_cli
    from sweep.cli import _register, app

    for console in (regime_cli.console, regime_cli.err):
        monkeypatch.setattr(console, "width", 200)
    m, _ = planted_market(n=1600, coins=("AAA", "BBB"), seed=3)
    data = tmp_path / "data"
    _write_dataset(m, data)
    results = tmp_path / "results"
    _register()
    res = CliRunner().invoke(app, ["regime", "eval", "--data", str(data), "--results", str(results),
                                   "--folds", "2"])
    assert res.exit_code == 0, res.output
    for text in ("majority", "persistence", "HMM drawdown", "coin wins", "true (rows) x predicted",
                 "CDE not scored: fold 0: no CDE checkpoint"):
        assert text in res.output
    out = json.loads((results / "eval.json").read_text())
    assert out["models"] == ["majority", "persistence", "hmm", "hmm_drawdown"] and len(out["folds"]) == 2
    table = pd.read_parquet(results / "eval.parquet")
    assert set(table["coin"]) == {"AAA", "BBB", "ALL"} and set(table["fold"]) == {-1, 0, 1}
    # every model is scored on the same bars; the confusion matrices count them all
    n_all = table[(table["coin"] == "ALL") & (table["fold"] == -1)]
    assert n_all["n"].nunique() == 1
    assert all(np.sum(out["confusion"][mdl]) == n_all["n"].iloc[0] for mdl in out["models"])
    # the windows sit before the lockbox (the last 15%), which is never read
    assert pd.Timestamp(out["folds"][-1]["test"][1]) < m.index[1600 - 240]


@pytest.mark.slow
def test_cli_train_then_eval_writes_checkpoint_and_tables(tmp_path):
    m, _ = planted_market(n=2600, coins=("AAA", "BBB"), seed=3)
    data = tmp_path / "data"
    _write_dataset(m, data)
    results = tmp_path / "results"
    base = [sys.executable, "-m", "sweep", "regime"]
    common = ["--data", str(data), "--coins", "AAA,BBB", "--results", str(results), "--folds", "2"]
    res = subprocess.run(base + ["train", *common, "--epochs", "1", "--samples", "64"], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(list(results.glob("cde_*.json"))) == 2 and len(list(results.glob("cde_*.pt"))) == 2
    again = subprocess.run(base + ["train", *common, "--epochs", "1", "--samples", "64"], cwd=ROOT,
                           capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout.count(" kept ") == 2  # resumes, trains nothing
    res = subprocess.run(base + ["eval", *common], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "CDE" in res.stdout and "not scored" not in res.stderr
    out = json.loads((results / "eval.json").read_text())
    assert out["models"][-1] == "cde"
    res = subprocess.run(base + ["eval", *common, "--coins", "AAA"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0 and "no CDE checkpoint" in res.stderr  # other train data: no CDE
