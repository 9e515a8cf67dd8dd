"""`python -m sweep.bench`: the kernel benchmark (DESIGN section 12), side by side with vectorbt.

Kernel case: 17,520 hourly bars x 1,000 parameter sets on one coin (a seeded synthetic path:
Student-t returns with clustered volatility, so stops and targets fire as on real data). Set i
trades an EMA(fast_i)/EMA(slow_i) cross both ways with an ATR stop (k_i x ATR14) and a 3R
target. Ours: `simulate` under v4 (fees, slippage, funding, partial, trailing, liquidation,
risk controls) plus `all_metrics()`. vectorbt: `Portfolio.from_signals` on the same entries
(fees, slippage, sl_stop, tp_stop, next-open prices) plus `.sharpe_ratio()` and
`.max_drawdown()`. Both are timed after a warm-up call (best of a few runs); compile time is
measured apart, in fresh processes: one with an empty numba cache, one with the cache it left.
Peak RSS is measured in a child process so vectorbt's memory does not count.

Prints `name: value` lines and merges them into the --out JSON (atomic write). A sweep section
comes from `sweep.bench_sweep.run(shared)` when that module exists.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.progress import Progress

from harness.atomic import atomic_write_json
from harness.errors import HarnessError

N_BARS = 17_520
N_SETS = 1_000
SEED = 20_240_101
REPEATS = 3

err = Console(stderr=True)
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  help="Benchmark the portfolio kernel against vectorbt (and the sweep, if present).")


def kernel_case(n_bars: int = N_BARS, n_sets: int = N_SETS, seed: int = SEED,
                with_vectorbt: bool = True):
    """(market, signals, vectorbt inputs or None) of the benchmark case."""
    from harness.market import Market
    from harness.signals import Signals

    rng = np.random.default_rng(seed)
    log_vol = np.zeros(n_bars)
    shocks = rng.normal(0, 0.08, n_bars)
    for t in range(1, n_bars):
        log_vol[t] = 0.98 * log_vol[t - 1] + shocks[t]
    ret = 0.005 * np.exp(log_vol) * rng.standard_t(4, n_bars) / np.sqrt(2.0)
    close = 40_000.0 * np.exp(np.cumsum(ret))
    open_ = np.r_[40_000.0, close[:-1]]
    wick = 0.002 * np.exp(log_vol)
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 1, n_bars)) * wick)
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 1, n_bars)) * wick)
    funding = 1.25e-5 + 2e-5 * rng.standard_normal(n_bars)
    index = pd.date_range("2023-01-01", periods=n_bars, freq="h", tz="UTC")

    def col(x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x[:, None])

    nan = np.full((n_bars, 1), np.nan)
    market = Market(index, ("BTC",), "1h", col(open_), col(high), col(low), col(close),
                    np.ones((n_bars, 1)), col(funding), nan, nan.copy(),
                    np.ones((n_bars, 1), dtype=bool), source=f"bench synthetic (seed {seed})",
                    synthetic=True)
    atr = pd.Series(high - low).rolling(14, min_periods=1).mean().to_numpy()
    ema_cache: dict[int, np.ndarray] = {}

    def ema(n: int) -> np.ndarray:
        if n not in ema_cache:
            ema_cache[n] = pd.Series(close).ewm(span=n, adjust=False).mean().to_numpy()
        return ema_cache[n]

    base = Signals.empty(market, "bench_ema_cross")
    target = np.full((n_bars, 1), 3.0)
    score = np.ones((n_bars, 1))
    mults = (1.5, 2.0, 2.5, 3.0)
    stops = {k: col(k * atr) for k in mults}
    sigs, long_e, short_e, sl = [], [], [], []
    for i in range(n_sets):
        fast = 5 + i % 50
        slow = fast + 5 * (1 + (i // 50) % 20)
        above = ema(fast) > ema(slow)
        up = above & ~np.r_[True, above[:-1]]
        down = ~above & np.r_[False, above[:-1]]
        direction = np.zeros((n_bars, 1), dtype=np.int8)
        direction[up, 0] = 1
        direction[down, 0] = -1
        k = mults[i % len(mults)]
        sigs.append(Signals(base.strategy, direction, stops[k], target, base.exit, score,
                            base.session, base.regime, base.vol_bucket, base.setup, base.hold,
                            base.trail))
        if with_vectorbt:
            long_e.append(np.r_[False, up[:-1]])  # filled at the next open
            short_e.append(np.r_[False, down[:-1]])
            sl.append(np.r_[np.nan, (k * atr / close)[:-1]])
    if not with_vectorbt:
        return market, sigs, None
    vbt_inputs = {"open": col(open_), "high": col(high), "low": col(low), "close": col(close),
                  "entries": np.column_stack(long_e), "short_entries": np.column_stack(short_e),
                  "sl_stop": np.column_stack(sl)}
    return market, sigs, vbt_inputs


def run_kernel(market, sigs) -> float:
    from harness.simulate import simulate

    t0 = time.perf_counter()
    res = simulate(market, sigs, friction="v4")
    res.all_metrics()
    return time.perf_counter() - t0


def run_vectorbt(inp: dict, columns: slice = slice(None)) -> float:
    import vectorbt as vbt

    from harness.friction import V4

    t0 = time.perf_counter()
    sl = inp["sl_stop"][:, columns]
    pf = vbt.Portfolio.from_signals(
        close=inp["close"], entries=inp["entries"][:, columns],
        short_entries=inp["short_entries"][:, columns], price=inp["open"], open=inp["open"],
        high=inp["high"], low=inp["low"], size=1.0, size_type="percent",
        upon_opposite_entry="close", fees=V4.fee_bps * 1e-4, slippage=V4.slippage_bps * 1e-4,
        sl_stop=sl, tp_stop=3.0 * sl, init_cash=10_000.0, freq="1h",
    )
    pf.sharpe_ratio()
    pf.max_drawdown()
    return time.perf_counter() - t0


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


def kernel_section(progress: Progress) -> dict[str, float]:
    task = progress.add_task("kernel benchmark", total=6)
    with tempfile.TemporaryDirectory(prefix="numba_cache_") as cache:
        first = _child_json("first-call", cache)["seconds"]
        progress.advance(task)
        cached = _child_json("first-call", cache)["seconds"]
        progress.advance(task)
    rss = _child_json("rss")["peak_rss_mb"]
    progress.advance(task)
    market, sigs, inp = kernel_case()
    run_kernel(market, sigs[:4])  # warm-up (numba cache)
    kernel = min(run_kernel(market, sigs) for _ in range(REPEATS))
    progress.advance(task)
    run_vectorbt(inp, slice(0, 4))  # warm-up (vectorbt's jit)
    progress.advance(task)
    vectorbt = min(run_vectorbt(inp) for _ in range(REPEATS))
    progress.advance(task)
    return {
        "kernel_speedup_vs_vectorbt": vectorbt / kernel,
        "kernel_seconds": kernel,
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
    only: str = typer.Option("", help="Run one section only: kernel or sweep."),
    out: Path = typer.Option(Path("results/bench.json"), help="JSON to merge the numbers into."),
    child_mode: str = typer.Option("", "--child", hidden=True),
) -> None:
    """Benchmark the kernel against vectorbt (and the sweep when sweep/bench_sweep.py exists).

    Prints `name: value` lines and merges them into --out (atomic write).
    """
    if child_mode:
        child(child_mode)
        return
    if only not in ("", "kernel", "sweep"):
        err.print(f"error: --only must be kernel or sweep, got {only!r}")
        raise typer.Exit(2)
    values: dict[str, float] = {}
    try:
        with Progress(console=err, transient=True) as progress:
            if only in ("", "kernel"):
                values.update(kernel_section(progress))
            if only in ("", "sweep"):
                try:
                    from sweep import bench_sweep
                except ImportError:
                    bench_sweep = None
                if bench_sweep is not None:
                    values.update(bench_sweep.run(shared))
                elif only == "sweep":
                    raise RuntimeError("sweep/bench_sweep.py is not there yet")
    except (HarnessError, RuntimeError, OSError) as exc:
        err.print(f"error: {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    for name, value in values.items():
        print(f"{name}: {value:.6g}")
    write_merged(out, values)


if __name__ == "__main__":
    app()
