"""Start-up benchmarks (DESIGN section 12): what a user waits for before anything happens.

- `startup_first_progress_seconds`: a fresh clone's first `make run` (the tracked files copied
  to a temporary folder, an empty numba cache, the same interpreter, then `make setup`'s warm
  step, timed apart as `setup_warm_seconds`): seconds from the start of `sweep run` until its
  first batch of trials is written (the moment the progress bar first moves). The run is then
  stopped with SIGTERM (it resumes on a rerun, like any interrupted study).
- `cli_help_seconds` and `cli_strategies_seconds`: `python -m sweep --help` and
  `python -m sweep strategies`, wall time of a fresh process, best of a few.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPEATS = 3


def _tracked_copy(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def first_progress(timeout: float = 300.0) -> tuple[float, float]:
    """(warm-up seconds, seconds until a fresh clone's `sweep run` writes its first batch)."""
    with tempfile.TemporaryDirectory(prefix="bench_clone_") as tmp:
        clone = Path(tmp)
        _tracked_copy(clone)
        env = {**os.environ, "PYTHONPATH": str(clone), "NUMBA_CACHE_DIR": str(clone / ".numba_cache")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        trials = clone / "results" / "trials"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sweep.warm"], cwd=clone, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "sweep", "run"], cwd=clone, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            while not (trials.is_dir() and any(trials.glob("*.parquet"))):
                if proc.poll() is not None:
                    raise RuntimeError(f"fresh-clone run failed: {proc.stderr.read()[-500:]}")
                if time.perf_counter() - t0 > timeout:
                    raise RuntimeError(f"fresh-clone run wrote no trial within {timeout:.0f}s")
                time.sleep(0.05)
            return warm, time.perf_counter() - t0
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def command_seconds(*args: str) -> float:
    """Best wall time of `python -m sweep ARGS` in a fresh process."""
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sweep", *args], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - t0)
    return best


def run() -> dict[str, float]:
    warm, first = first_progress()
    return {
        "setup_warm_seconds": round(warm, 2),
        "startup_first_progress_seconds": round(first, 2),
        "cli_help_seconds": round(command_seconds("--help"), 3),
        "cli_strategies_seconds": round(command_seconds("strategies"), 3),
    }
