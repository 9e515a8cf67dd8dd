"""`python -m sweep.bench` (`make bench`): the ratios of DESIGN section 12 measured side by side
in one run (absolute times differ from one machine to the next; the ratios are what count).

Kernel (sweep/bench_kernel.py has the case): ours against vectorbt
(`kernel_speedup_vs_vectorbt`, target >= 100), against a bare numba loop on the same case
(`kernel_vs_bare_loop`, <= 1.5) and with 15m detail against without
(`kernel_detail_overhead`). Each is timed after a warm-up call, best of a few runs. Compile time
is measured apart, in fresh processes: one with an empty numba cache, one with the cache it left
(`kernel_cached_first_call_seconds`, < 1 s); peak RSS in a child so vectorbt's memory does not
count. Sweep (sweep/bench_sweep.py): trials/s, `sweep_efficiency` (its coin-bar-steps per second
over the kernel's bar-steps per second measured here, >= 0.5), peak RSS (< 2 GB), the indicator
cache. Start-up (sweep/bench_startup.py): a fresh clone's first progress (< 30 s), `--help` and
`strategies` (< 1 s).

Prints `name: value` lines and merges them into the --out JSON (atomic write).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress

from harness.atomic import atomic_write_json
from harness.errors import HarnessError

REPEATS = 3

err = Console(stderr=True)
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  help="Benchmark the kernel against vectorbt and a bare loop, the sweep, start-up.")


def _child_json(mode: str, cache_dir: str | None = None) -> dict:
    env = dict(os.environ)
    if cache_dir:
        env["NUMBA_CACHE_DIR"] = cache_dir
    out = subprocess.run([sys.executable, "-m", "sweep.bench", "--child", mode], env=env,
                         capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parents[1])
    if out.returncode != 0:
        raise RuntimeError(f"bench child {mode} failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def child(mode: str) -> None:
    """Measurements that need a fresh process (first call, peak RSS); prints one JSON line."""
    from sweep.bench_kernel import kernel_case, run_kernel

    if mode == "first-call":
        market, sigs, _ = kernel_case(n_sets=4, with_vectorbt=False)
        import harness.simulate  # noqa: F401  (numba import is not compile time)

        seconds = run_kernel(market, sigs)
        print(json.dumps({"seconds": seconds}))
    elif mode == "rss":
        market, sigs, _ = kernel_case(with_vectorbt=False)
        run_kernel(market, sigs[:4])
        run_kernel(market, sigs)
        print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    else:
        raise typer.BadParameter(f"unknown --child mode {mode!r}")


def _best(fn, *args) -> float:
    fn(*args)  # warm-up (numba cache, cost estimate, vectorbt's jit)
    return min(fn(*args) for _ in range(REPEATS))


def kernel_section(progress: Progress) -> dict[str, float]:
    from sweep.bench_kernel import (
        N_BARS,
        N_SETS,
        detail_market,
        kernel_case,
        run_bare,
        run_kernel,
        run_vectorbt,
    )

    task = progress.add_task("kernel benchmark", total=7)
    with tempfile.TemporaryDirectory(prefix="numba_cache_") as cache:
        first = _child_json("first-call", cache)["seconds"]
        progress.advance(task)
        cached = _child_json("first-call", cache)["seconds"]
        progress.advance(task)
    rss = _child_json("rss")["peak_rss_mb"]
    progress.advance(task)
    market, sigs, inp = kernel_case()
    kernel = _best(run_kernel, market, sigs)
    progress.advance(task)
    bare = _best(run_bare, market, sigs)
    progress.advance(task)
    detail = _best(run_kernel, market, sigs, detail_market(market))
    progress.advance(task)
    vectorbt = _best(run_vectorbt, inp)
    progress.advance(task)
    return {
        "kernel_speedup_vs_vectorbt": vectorbt / kernel,
        "kernel_vs_bare_loop": kernel / bare,
        "kernel_detail_overhead": detail / kernel,
        "kernel_seconds": kernel,
        "kernel_detail_seconds": detail,
        "bare_loop_seconds": bare,
        "vectorbt_seconds": vectorbt,
        "kernel_bar_steps_per_s": N_BARS * N_SETS / kernel,
        "kernel_peak_rss_mb": rss,
        "kernel_first_call_seconds": first,
        "kernel_cached_first_call_seconds": cached,
    }


def write_merged(path: Path, values: dict[str, float]) -> None:
    """Merge into the JSON at `path`, atomically."""
    data = json.loads(path.read_text()) if path.is_file() else {}
    atomic_write_json({**data, **values}, path)


@app.command()
def main(
    shared: Path = typer.Option(Path("../shared/data"), help="Real data folder (for the sweep section)."),
    only: str = typer.Option("", help="Run one section only: kernel, sweep or startup."),
    out: Path = typer.Option(Path("results/bench.json"), help="JSON to merge the numbers into."),
    child_mode: str = typer.Option("", "--child", hidden=True),
) -> None:
    """Benchmark the kernel (against vectorbt and a bare loop), the sweep and the start-up.

    Prints `name: value` lines and merges them into --out (atomic write). The sweep's efficiency
    needs the kernel's rate of the same run: with --only sweep it is read from --out.
    """
    if child_mode:
        child(child_mode)
        return
    if only not in ("", "kernel", "sweep", "startup"):
        err.print(f"error: --only must be kernel, sweep or startup, got {only!r}")
        raise typer.Exit(2)
    values: dict[str, float] = {}
    try:
        with Progress(console=err, transient=True) as progress:
            if only in ("", "kernel"):
                values.update(kernel_section(progress))
            if only in ("", "sweep"):
                from sweep import bench_sweep

                rate = values.get("kernel_bar_steps_per_s")
                if rate is None and out.is_file():
                    rate = json.loads(out.read_text()).get("kernel_bar_steps_per_s")
                values.update(bench_sweep.run(shared, kernel_rate=rate))
            if only in ("", "startup"):
                from sweep import bench_startup

                values.update(bench_startup.run())
    except (HarnessError, RuntimeError, OSError) as exc:
        err.print(f"error: {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    for name, value in values.items():
        print(f"{name}: {value:.6g}")
    write_merged(out, values)


if __name__ == "__main__":
    app()
