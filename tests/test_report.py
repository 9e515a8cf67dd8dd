"""`sweep report`: one offline HTML file that opens in a real headless Chromium without errors,
holds the equity chart and the trades table, says SYNTHETIC wherever the data is, and for a
study shows Optuna's own parameter importances."""

from __future__ import annotations

import math

import _chromium
import _sweep_helpers as h
import optuna
import pytest

from harness.folds import Folds
from harness.sources import load_market
from sweep import report as rp
from sweep import results
from sweep.backtest import BacktestSpec, run_backtest
from sweep.report import figures
from sweep.report.study import history_figure, importance_figure, load_study, pair_figure
from sweep.storage import open_storage, storage_url
from sweep.study import StudyConfig, run_study

CHROMIUM = _chromium.find()


@pytest.fixture(scope="module")
def study(tmp_path_factory, strategy):
    data = h.write_dataset(tmp_path_factory.mktemp("data") / "hl")
    res = tmp_path_factory.mktemp("results")
    out = run_study(StudyConfig(strategy=h.NAME, trials=10, sampler="random", folds=2, batch=10,
                                seed=5, data=str(data), results=res))
    return res, out.study, str(data)


@pytest.fixture(scope="module")
def synthetic_record(strategy):
    m = load_market("embedded").slice(0, 2400)
    assert m.synthetic
    spec = BacktestSpec(h.NAME, strategy.params_cls(), "--params")
    return run_backtest(spec, market=m, folds=Folds(k=2))


def _axis_titles(fig) -> list[str]:
    lay = fig.layout
    return [lay[k].title.text for k in lay if k.startswith(("xaxis", "yaxis")) and lay[k].title.text]


def test_synthetic_data_says_so_in_every_title_and_axis(synthetic_record):
    rec = synthetic_record
    figs = [figures.equity_figure(rec), figures.folds_figure(rec), figures.r_figure(rec)]
    for fig in figs:
        assert "SYNTHETIC" in fig.layout.title.text
        titles = _axis_titles(fig)
        assert titles and all("SYNTHETIC" in t for t in titles), titles
    page = rp.render(rec, "a title", None, "").html
    assert "<title>a title · SYNTHETIC</title>" in page and "SYNTHETIC DATA" in page


def test_real_data_is_not_called_synthetic(study):
    res, name, data = study
    rep = rp.for_trial(res, f"{name}#0", data)
    assert not rep.record.synthetic and "SYNTHETIC" not in rep.title
    assert all("SYNTHETIC" not in t for t in _axis_titles(figures.equity_figure(rep.record)))


def test_study_importances_are_optunas_own(study):
    """The report reads the results tables; Optuna's evaluator over the study's own journal
    (the storage the sampler used) must give the same importances."""
    res, name, _ = study
    sd = load_study(res, name)
    journal = optuna.load_study(study_name=name, storage=open_storage(storage_url(None, res, name)))
    want = optuna.importance.get_param_importances(
        journal, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    assert sd.importances.keys() == want.keys()
    for k, v in want.items():
        assert math.isclose(sd.importances[k], v, rel_tol=1e-9, abs_tol=1e-12)
    for fig in (history_figure(sd), importance_figure(sd), pair_figure(sd)):
        assert fig is not None and fig.data
    top2 = list(want)[:2]
    pair = pair_figure(sd)
    assert pair.layout.xaxis.title.text == top2[0] and pair.layout.yaxis.title.text == top2[1]


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: .ci/run installs Debian's chromium; "
                    "`apt-get install -y chromium` here")
def test_the_report_opens_in_headless_chromium(tmp_path, study):
    res, name, data = study
    rep = rp.for_study(res, name, data)
    path, rec = rp.write(rep, tmp_path / "report.html"), rep.record
    browser = _chromium.Browser(CHROMIUM)
    try:
        page = browser.open(path)
        assert page.errors == []
        assert all(u.startswith("file://") for u in page.requests), page.requests  # offline: no CDN
        assert browser.eval("document.getElementById('equity-chart').data.length") == 4
        assert browser.eval("document.querySelectorAll('#equity-chart .main-svg').length") >= 1
        for chart in ("folds-chart", "r-chart", "history-chart", "importance-chart", "pair-chart"):
            assert browser.eval(f"!!document.querySelector('#{chart} .main-svg')"), chart
        n = browser.eval("document.querySelectorAll('#trades tbody tr').length")
        assert n == len(rec.trades) > 0
        # sorting by R (click its header) puts the smallest R first
        col = browser.eval("Array.from(document.querySelectorAll('#trades th')).findIndex(t => t.textContent === 'R')")
        browser.eval(f"document.querySelectorAll('#trades th')[{col}].click()")
        first = browser.eval(f"document.querySelector('#trades tbody tr').cells[{col}].getAttribute('data-v')")
        assert float(first) == pytest.approx(rec.trades["r_multiple"].min(), rel=1e-12)
        shot = browser.screenshot(tmp_path / "report.png")
        assert page.errors == []
    finally:
        browser.close()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000


def test_report_commands_and_bad_input(tmp_path, study):
    from typer.testing import CliRunner

    from sweep.cli import _register, app

    if not any(c.name == "report" for c in app.registered_commands):
        _register()
    run = CliRunner().invoke
    res, name, data = study
    bt = tmp_path / "bt"
    r = run(app, ["backtest", "--trial", f"{name}#1", "--data", data, "--results", str(res), "--out", str(bt)])
    assert r.exit_code == 0, r.output
    r = run(app, ["report", "--backtest", str(bt), "--results", str(res), "--out", str(tmp_path / "a.html")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "a.html").stat().st_size > 1_000_000 and "MiB" in r.stdout  # plotly.js inlined
    for args, says in ((["--trial", f"{name}#77"], "has no trial 77"),
                       (["--study", "nope"], "no study 'nope'"),
                       (["--backtest", str(tmp_path)], "is not a backtest folder"),
                       ([], "give exactly one of --trial")):
        r = run(app, ["report", *args, "--data", data, "--results", str(res), "--out", str(tmp_path / "b.html")])
        assert r.exit_code == 2 and says in r.stderr, r.output
        assert r.stderr.count("\n") == 1 and not (tmp_path / "b.html").exists()
    assert results.has_rows(res, "trials")


def test_buckets_carry_the_newest_promotion_evidence(tmp_path, study):
    """The bucket table joins the newest promote run's row of each bucket of the trial."""
    import pandas as pd

    import sweep.promote  # noqa: F401  (declares the promotions table)
    from sweep.report import tables

    res, name, data = study
    rep = rp.for_trial(res, f"{name}#0", data)
    b = tables.bucket_frame(rep.record.trades)
    assert len(b) and b["n"].sum() == len(rep.record.trades)
    key = b.iloc[0][list(tables.BUCKET_KEY)].to_dict()
    spec = results.TABLES["promotions"]
    for when, gate in (("2025-01-01", "t"), ("2025-02-01", "lockbox")):
        row = {c: None for c in spec.names if c != "batch"}
        row.update(key, run_id=f"run-{gate}", harness_hash="h", data_fingerprint="d",
                   sim_model_version="v", git_commit="c", seed=0, study=name, trial=0,
                   generated_at=pd.Timestamp(when, tz="UTC"), promoted=False, failed_gate=gate,
                   reason=f"failed {gate}", n=int(b.iloc[0]["n"]))
        df = pd.DataFrame([row])
        for c, kind, _ in spec.columns:
            if c in df and df[c].isna().all() and kind in ("int", "float", "bool"):
                df[c] = pd.array(df[c], dtype={"int": "Int64", "float": "Float64", "bool": "boolean"}[kind])
        results.write_batch(res, "promotions", df)
    ev, note = rp.promotion_evidence(res, name, 0)
    assert list(ev["failed_gate"]) == ["lockbox"] and "0 of 1 buckets promoted" in note
    html = tables.buckets_table(rep.record, ev)
    assert "first failed gate" in html and "failed lockbox" in html and "failed t<" not in html
