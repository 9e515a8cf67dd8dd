"""Crash safety: SIGKILL the executor mid-replay, restart it, and the ledger equals a clean run's."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from _executor_helpers import every_bucket, ledger_table, write_candidates

from executor.runner import PaperOptions, open_paper, run
from harness.simulate import SimConfig

ROOT = Path(__file__).resolve().parents[1]
COINS = ("AVAX", "BTC", "DOGE", "ETH", "LINK")
START, END = "2024-03-01", "2024-03-11"
ARGS = ("--feed", "replay", "--data", "embedded", "--start", START, "--end", END,
        "--warmup-bars", "300", "--max-positions", "3")
# every table but `events` (start/stop notes with wall-clock times), in a stable order
TABLES = {"meta": "key", "candles": "coin, ts", "funding_rates": "coin, ts", "sessions": "id",
          "bars": "ts", "decisions": "ts, coin, book, kind", "orders": "id", "positions": "id",
          "fills": "id", "funding": "ts, position_id", "equity": "ts",
          "shadow_trades": "strategy, coin, entry_ts, side"}


def _bars(path: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
        try:
            return int(con.execute("SELECT COUNT(*) FROM bars").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _cli(cands: Path, ledger: Path, tmp: Path) -> list[str]:
    return [sys.executable, "-m", "executor", "paper", *ARGS, "--candidates", str(cands),
            "--ledger", str(ledger), "--results", str(tmp / "results"), "--kill-file", str(tmp / "p.KILL")]


def test_sigkill_mid_replay_then_restart_equals_a_clean_run(tmp_path):
    cands = write_candidates(tmp_path / "c.json", every_bucket("zscore_reversion", COINS, interval="4h"))
    clean, crashed = tmp_path / "clean.sqlite", tmp_path / "crashed.sqlite"
    opts = PaperOptions(candidates=cands, ledger=clean, feed="replay", data="embedded",
                        start=START, end=END, warmup_bars=300, sim=SimConfig(max_positions=3),
                        results=None, kill_file=tmp_path / "p.KILL")  # one file: settings equal
    engine, feed = open_paper(opts)
    total = run(engine, feed, opts)
    engine.ledger.close()
    assert total == 60
    assert len(ledger_table(clean, "positions", "id")) >= 5, "the case must trade to prove anything"

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(_cli(cands, crashed, tmp_path), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _bars(crashed) < 10 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _bars(crashed)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert 10 <= done < total, f"the kill must land mid-replay (bars done: {done})"

    # the restart (in this process: the same code path as the command's)
    again = PaperOptions(**{**opts.__dict__, "ledger": crashed})
    engine, feed = open_paper(again)
    assert run(engine, feed, again) == total - done
    engine.ledger.close()
    for table, order in TABLES.items():
        a = ledger_table(clean, table, order)
        b = ledger_table(crashed, table, order)
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=table)
    kinds = ledger_table(crashed, "events", "id")["kind"].tolist()
    assert kinds.count("start") == 1 and kinds.count("resume") == 1, kinds
