"""Bad input is refused with one clear line on stderr and a non-zero exit, before any work."""

from __future__ import annotations

import json
import sys

import pytest
from _executor_helpers import candidates_doc, every_bucket, write_candidates

from executor import cli
from executor.ledger import Ledger
from executor.runner import PaperOptions, open_paper
from harness.simulate import SimConfig

REPLAY = ["--feed", "replay", "--data", "embedded", "--start", "2024-03-01", "--end", "2024-03-02",
          "--warmup-bars", "50"]


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["executor", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    return exc.value.code, capsys.readouterr().err


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def _buckets():
    return every_bucket("trend_alpha", ("BTC",), interval="4h", sides=("long",), sessions=("ASIA",),
                        regimes=("LONG",), vols=("mid",))


def test_malformed_candidates_file(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "c.json"
    bad.write_text('{"schema_version": 1, "buckets": [')
    code, err = _main(monkeypatch, capsys, "paper", "--candidates", str(bad), "--ledger",
                      str(tmp_path / "p.sqlite"), *REPLAY)
    assert code != 0 and "not valid JSON" in _one_line(err)
    doc = candidates_doc(_buckets())
    doc["buckets"][0]["side"] = "sideways"
    bad.write_text(json.dumps(doc))
    code, err = _main(monkeypatch, capsys, "paper", "--candidates", str(bad), "--ledger",
                      str(tmp_path / "p.sqlite"), *REPLAY)
    line = _one_line(err)
    assert code != 0 and "buckets/0/side" in line and "sideways" in line
    assert not (tmp_path / "p.sqlite").exists(), "nothing is created for a refused start"


def test_harness_hash_mismatch(tmp_path, monkeypatch, capsys):
    cands = write_candidates(tmp_path / "c.json", _buckets(), harness="0123456789ab")
    code, err = _main(monkeypatch, capsys, "paper", "--candidates", str(cands), "--ledger",
                      str(tmp_path / "p.sqlite"), *REPLAY)
    line = _one_line(err)
    assert code != 0 and "0123456789ab" in line and "sweep promote" in line


def test_missing_ledger_directory(tmp_path, monkeypatch, capsys):
    cands = write_candidates(tmp_path / "c.json", _buckets())
    ledger = tmp_path / "nope" / "p.sqlite"
    code, err = _main(monkeypatch, capsys, "paper", "--candidates", str(cands), "--ledger",
                      str(ledger), *REPLAY)
    line = _one_line(err)
    assert code != 0 and str(ledger.parent) in line and "does not exist" in line


def test_unknown_strategy_and_missing_status_ledger(tmp_path, monkeypatch, capsys):
    cands = write_candidates(tmp_path / "c.json", every_bucket("no_such", ("BTC",), sides=("long",),
                                                               sessions=("ASIA",), regimes=("LONG",),
                                                               vols=("mid",)))
    code, err = _main(monkeypatch, capsys, "paper", "--candidates", str(cands), "--ledger",
                      str(tmp_path / "p.sqlite"), *REPLAY)
    assert code != 0 and "unknown strategy 'no_such'" in _one_line(err)
    code, err = _main(monkeypatch, capsys, "status", "--ledger", str(tmp_path / "absent.sqlite"))
    assert code != 0 and "no ledger at" in _one_line(err)


def test_restart_with_other_settings_or_a_second_writer(tmp_path):
    cands = write_candidates(tmp_path / "c.json", _buckets())
    opts = PaperOptions(candidates=cands, ledger=tmp_path / "p.sqlite", feed="replay", data="embedded",
                        start="2024-03-01", end="2024-03-02", warmup_bars=50, results=None)
    engine, _ = open_paper(opts)
    with pytest.raises(Exception, match="another executor"):
        Ledger.open(opts.ledger)
    engine.ledger.close()
    other = PaperOptions(**{**opts.__dict__, "sim": SimConfig(risk_fraction=0.02)})
    with pytest.raises(Exception, match="was started with sim="):
        open_paper(other)
    later = PaperOptions(**{**opts.__dict__, "start": "2024-03-05", "end": "2024-03-06"})
    with pytest.raises(Exception, match="was started with first_bar=2024-03-01"):
        open_paper(later)
