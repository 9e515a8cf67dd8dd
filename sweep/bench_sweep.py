"""Sweep benchmark (DESIGN section 12): a 500-trial momentum study on the full-span coins, its
per-coin regime gate fixed off (a gated trial also fits an HMM per fold: a cost of the model,
not of the sweep, measured apart in issue 18's note).

Runs `python -m sweep run` as a subprocess (the way users run it) with 2 jobs into a temporary
results folder and samples the RSS of the whole process tree while it runs. trials/s is the
study's own count over the time its workers ran (market loading and start-up excluded, they are
reported as wall seconds). `sweep_efficiency` = (trials x coins x bars x 2 runs, base and
stress) / that time, over the kernel's bar-steps per second of the same `make bench` run.
The indicator cache's memory (the largest of any worker) comes from the run's summary.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from harness.errors import DataError

FULL_SPAN_FRAC = 0.98  # a coin "spans the period" when it has >= 98% of the longest coin's bars


def full_span_coins(dataset: Path, interval: str = "1h") -> list[str]:
    """Coins with (almost) every bar of the file: 116 of the 172 in ../shared/data."""
    path = dataset / f"candles_{interval}.parquet"
    if not path.exists():
        raise DataError(f"{path} not found: pass the folder that holds ../shared/data/hyperliquid")
    counts = pq.read_table(path, columns=["coin"]).column("coin").value_counts().to_pylist()
    n_max = max(c["counts"] for c in counts)
    return sorted(c["values"] for c in counts if c["counts"] >= FULL_SPAN_FRAC * n_max)


def _tree_rss(proc) -> int:
    import psutil

    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run(shared: Path, trials: int = 500, jobs: int = 2, folds: int = 4,
        kernel_rate: float | None = None) -> dict:
    import psutil

    from sweep import results

    dataset = Path(shared) / "hyperliquid"
    coins = full_span_coins(dataset)
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        cmd = [sys.executable, "-m", "sweep", "run", "--strategy", "momentum", "--trials",
               str(trials), "--data", str(dataset), "--coins", ",".join(coins), "--folds",
               str(folds), "--jobs", str(jobs), "--results", tmp, "--seed", "0",
               "--fix", "regime_gate=off"]  # the sweep itself: a gated trial adds HMM fits
        log = Path(tmp) / "run.log"
        t0 = time.perf_counter()
        with open(log, "w") as fh:
            proc = subprocess.Popen(cmd, cwd=root, stdout=fh, stderr=subprocess.STDOUT)
            ps = psutil.Process(proc.pid)
            peak = 0
            while proc.poll() is None:
                peak = max(peak, _tree_rss(ps))
                time.sleep(0.1)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            tail = log.read_text()[-2000:]
            raise RuntimeError(f"benchmark sweep failed (exit {proc.returncode}):\n{tail}")
        runs = results.query(tmp, "SELECT summary, n_bars, n_coins FROM runs WHERE command = 'run' "
                             "AND finished_at IS NOT NULL")
        summary = json.loads(runs["summary"].iloc[0])
        n_bars, n_coins = int(runs["n_bars"].iloc[0]), int(runs["n_coins"].iloc[0])
        n = int(results.query(tmp, "SELECT count(*) AS n FROM trials")["n"].iloc[0])
    seconds = float(summary["seconds"])
    steps_per_s = n * n_coins * n_bars * 2 / seconds if seconds > 0 else 0.0
    out = {
        "sweep_trials_per_s": round(n / seconds, 3) if seconds > 0 else 0.0,
        "sweep_coin_bar_steps_per_s": steps_per_s,
        "sweep_peak_rss_mb": round(peak / 2**20, 1),
        "sweep_wall_seconds": round(wall, 2),
        "sweep_trials": n,
        "sweep_coins": len(coins),
        "sweep_jobs": jobs,
        "sweep_indicator_cache_mb": summary.get("indicator_cache", {}).get("mb", 0.0),
        "sweep_indicator_cache_hit_rate": summary.get("indicator_cache", {}).get("hit_rate", 0.0),
    }
    if kernel_rate:
        out["sweep_efficiency"] = steps_per_s / kernel_rate
    return out


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shared", type=Path, default=Path("../shared/data"))
    ap.add_argument("--trials", type=int, default=500)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--kernel-rate", type=float, default=None,
                    help="the kernel's bar-steps per second (from `make bench`), for the efficiency")
    a = ap.parse_args()
    for k, v in run(a.shared, a.trials, a.jobs, kernel_rate=a.kernel_rate).items():
        print(f"{k}: {v}")
