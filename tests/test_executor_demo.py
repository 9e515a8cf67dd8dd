"""The executor's demo path: the shipped example candidates, re-stamped for this harness, are
what a fresh clone trades with `python -m executor paper --demo` (the README's line)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from executor import cli
from executor.books import TRADED_FRICTION, load_books
from harness.manifest import harness_hash
from schemas.candidates import EXAMPLE_PATH, load_candidates, validate_document

ROOT = Path(__file__).resolve().parents[1]


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["executor", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    got = capsys.readouterr()
    return exc.value.code, got.out, got.err


def test_the_example_is_valid_and_traded_once_restamped(tmp_path):
    validate_document(json.loads(EXAMPLE_PATH.read_text()))
    assert load_candidates(EXAMPLE_PATH).friction_version == TRADED_FRICTION.version
    path = cli.demo_candidates(tmp_path / "p.sqlite")
    assert path == tmp_path / "p.sqlite.demo-candidates.json"
    loaded = load_books(path)  # refuses another harness hash or friction version
    assert loaded.n_buckets == 1 and load_candidates(path).harness_hash == harness_hash()


def test_demo_replay_runs_and_a_refused_start_leaves_nothing(tmp_path, monkeypatch, capsys):
    ledger = tmp_path / "p.sqlite"
    code, out, err = _main(monkeypatch, capsys, "paper", "--demo", "--ledger", str(ledger),
                           "--feed", "replay", "--data", "embedded", "--start", "2024-03-01",
                           "--end", "2024-03-02", "--warmup-bars", "50", "--results", str(tmp_path / "r"))
    assert code == 0, err
    assert "re-stamped for harness" in out and "bars processed │ 24" in out
    other = tmp_path / "q.sqlite"
    code, out, err = _main(monkeypatch, capsys, "paper", "--demo", "--ledger", str(other),
                           "--feed", "replay")
    assert code == 2 and err.strip().splitlines() == [
        "error: --feed replay needs --data PATH (or 'embedded'), --start DATE and --end DATE"]
    assert not other.exists() and not (tmp_path / "q.sqlite.demo-candidates.json").exists()
    code, _, err = _main(monkeypatch, capsys, "paper", "--ledger", str(other))
    assert code == 2 and "--candidates FILE" in err and "--demo" in err


@pytest.mark.slow
def test_the_readme_executor_line_works_as_written_on_a_fresh_clone(tmp_path):
    line = next(m.group(1) for m in re.finditer(r"`(python -m executor paper --demo[^`]*)`",
                                                (ROOT / "README.md").read_text()))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(ROOT / ".numba_cache")}
    p = subprocess.run([sys.executable, *line.split()[1:]], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Paper ledger" in p.stdout and (tmp_path / "paper.sqlite").exists()
