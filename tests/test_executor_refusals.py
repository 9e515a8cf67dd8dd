"""Bad input is refused with one clear line on stderr and a non-zero exit, before any work."""

from __future__ import annotations

import json
import sys

import pytest
from _executor_helpers import candidates_doc, every_bucket, write_candidates

from executor import cli
from executor.ledger import Ledger
from executor.runner import PaperOptions, open_paper, run
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


def _paper(tmp_path, cands, *extra: str) -> list[str]:
    return ["paper", "--candidates", str(cands), "--ledger", str(tmp_path / "p.sqlite"), *REPLAY,
            "--results", str(tmp_path / "results"), *extra]


def _listing(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("params, what", [
    ({"ema_fast": "abc"}, "ema_fast = 'abc' is not an integer in [5, 40]"),
    ({"ema_fast": 4}, "ema_fast = 4 is not an integer in [5, 40]"),
    ({"stop_atr": 9.5}, "stop_atr = 9.5 is not a number in [0.75, 5.0]"),
    ({"ema_fast": 20.5}, "ema_fast = 20.5 is not an integer"),
    ({"use_ma_gate": "yes"}, "use_ma_gate = 'yes' is not true or false"),
    ({"no_such": 1}, "unknown parameter(s) no_such"),
])
def test_candidate_params_are_checked_against_the_strategy_before_anything_is_written(
        tmp_path, monkeypatch, capsys, params, what):
    """Issue 15 item 6: {"window": "abc"} gave a traceback after the ledger was created."""
    buckets = [dict(b, params=params) for b in _buckets()]
    cands = write_candidates(tmp_path / "c.json", buckets)
    code, err = _main(monkeypatch, capsys, *_paper(tmp_path, cands))
    line = _one_line(err)
    assert code == 2 and what in line and "trend_alpha" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json"], "nothing is created"


def test_nan_evidence_is_refused(tmp_path, monkeypatch, capsys):
    cands = write_candidates(tmp_path / "c.json", _buckets())
    cands.write_text(cands.read_text().replace('"mean_r": 0.4', '"mean_r": NaN', 1))
    code, err = _main(monkeypatch, capsys, *_paper(tmp_path, cands))
    assert code == 2 and "NaN is not a JSON number" in _one_line(err)
    assert not (tmp_path / "p.sqlite").exists()


def _sqlite(path, *statements: str) -> None:
    import sqlite3

    con = sqlite3.connect(path)
    for s in statements:
        con.execute(s)
    con.commit()
    con.close()


@pytest.mark.parametrize("statements, what", [
    (("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)", "INSERT INTO users VALUES (1, 'a')"),
     "a SQLite file of another program (tables users"),
    (("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)", "INSERT INTO meta VALUES ('colour', 'red')"),
     "a SQLite file of another program (tables meta"),
    (("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
      "INSERT INTO meta VALUES ('schema_version', '99')"), "schema v99, newer than this executor"),
    (("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
      "INSERT INTO meta VALUES ('schema_version', 'three')"), "schema_version 'three' is not a version number"),
])
def test_a_file_that_is_not_our_ledger_is_left_untouched(tmp_path, monkeypatch, capsys, statements, what):
    """Issue 15 item 7: another program's SQLite file got 13 tables (exit 0); a v99 ledger was
    switched to WAL although refused; a non-integer version gave a traceback."""
    cands = write_candidates(tmp_path / "c.json", _buckets())
    _sqlite(tmp_path / "p.sqlite", *statements)
    before = _listing(tmp_path)
    for args in (_paper(tmp_path, cands), ["status", "--ledger", str(tmp_path / "p.sqlite")]):
        code, err = _main(monkeypatch, capsys, *args)
        assert code == 2 and what in _one_line(err)
        assert _listing(tmp_path) == before, "no table, no WAL switch, no lock file"
    with open(tmp_path / "p.sqlite", "rb") as fh:
        assert fh.read(16) == b"SQLite format 3\x00" and before["p.sqlite"][18:20] == b"\x01\x01"  # rollback journal


def test_a_file_that_is_not_sqlite_is_refused(tmp_path, monkeypatch, capsys):
    cands = write_candidates(tmp_path / "c.json", _buckets())
    (tmp_path / "p.sqlite").write_text("not a database\n" * 10)
    before = _listing(tmp_path)
    code, err = _main(monkeypatch, capsys, *_paper(tmp_path, cands))
    assert code == 2 and "is not a SQLite database" in _one_line(err) and _listing(tmp_path) == before


@pytest.mark.parametrize("extra, what", [
    (("--equity", "0"), "--equity must be a positive number"),
    (("--max-leverage", "0"), "--max-leverage must be a positive number"),
    (("--risk-fraction", "1.5"), "--risk-fraction must be a fraction"),
    (("--detail", "15m", "--feed", "hyperliquid"), "--detail works with --feed replay only"),
    (("--speed", "-1"), "--speed"),
    (("--start", "someday"), "--start 'someday' is not a date"),
    (("--coins", "NOPE"), "NOPE"),
])
def test_a_refused_option_creates_no_ledger(tmp_path, monkeypatch, capsys, extra, what):
    """Issue 15 item 7: refused runs left empty ledgers behind."""
    cands = write_candidates(tmp_path / "c.json", _buckets())
    code, err = _main(monkeypatch, capsys, *_paper(tmp_path, cands, *extra))
    assert code == 2 and what in _one_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json"]


def test_the_kill_file_is_part_of_the_ledgers_settings(tmp_path):
    """Issue 15 item 4: a restart with another --kill-file started a session that traded while
    the ledger's own kill file still existed."""
    cands = write_candidates(tmp_path / "c.json", _buckets())
    own = tmp_path / "own.KILL"
    opts = PaperOptions(candidates=cands, ledger=tmp_path / "p.sqlite", feed="replay", data="embedded",
                        start="2024-03-01", end="2024-03-02", warmup_bars=50, results=None,
                        kill_file=own)
    engine, _ = open_paper(opts)
    engine.ledger.close()
    own.write_text("stop\n")  # a person (or the drawdown switch) stops trading
    other = PaperOptions(**{**opts.__dict__, "kill_file": tmp_path / "other.KILL"})
    with pytest.raises(Exception, match=f"was started with kill_file={own}.*pass the same --kill-file"):
        open_paper(other)
    engine, feed = open_paper(PaperOptions(**{**opts.__dict__, "kill_file": None}))
    try:
        assert engine.kill.path == own and engine.kill.present()
        assert run(engine, feed, opts, max_ticks=2) == 2
        flags = engine.ledger.frame("SELECT kill_file FROM bars")["kill_file"].tolist()
        assert flags == [1, 1]
    finally:
        engine.ledger.close()
