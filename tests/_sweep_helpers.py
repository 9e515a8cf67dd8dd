"""Shared by the sweep tests: a tiny breakout strategy registered for tests only, a small
dataset folder written like ../shared/data/hyperliquid, and a way to run the CLI in a subprocess
with that strategy registered (`python -c` imports this module, then runs sweep's main)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.market import Market
from harness.signals import Signals
from strategies.base import param, register

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HLQ_SHARED_DATA", ROOT.parent / "shared" / "data"))
NAME = "test_breakout"


@dataclass(frozen=True)
class Params:
    lookback: int = param(20, 5, 60, help="breakout window")
    stop_mult: float = param(1.5, 0.5, 4.0, help="stop in rolling ranges")
    target: float = param(3.0, 1.0, 8.0, kind="logfloat", help="target R")
    side: str = param("both", choices=("long", "short", "both"), help="sides traded")
    hold: int = param(24, 0, 96, help="time stop in bars")
    fade: bool = param(False, help="trade the breakout the other way")
    pause: float = param(0.0, 0.0, 1.0, help="seconds of sleep per call: a slow strategy")


def _rolling(a: np.ndarray, n: int, fn) -> np.ndarray:
    out = np.full_like(a, np.nan)
    if len(a) > n:
        w = np.lib.stride_tricks.sliding_window_view(a, n, axis=0)
        out[n - 1:] = fn(w, axis=-1)
    return out


def generate(market: Market, p: Params, mode="live", fitted=None) -> Signals:
    time.sleep(p.pause)
    sig = Signals.empty(market, NAME)
    c, h, lo = market.close, market.high, market.low
    with np.errstate(invalid="ignore"):
        hi_n = np.vstack([np.full((1, c.shape[1]), np.nan), _rolling(h, p.lookback, np.max)[:-1]])
        lo_n = np.vstack([np.full((1, c.shape[1]), np.nan), _rolling(lo, p.lookback, np.min)[:-1]])
        rng = _rolling(h - lo, p.lookback, np.mean)
        up, dn = c > hi_n, c < lo_n
    d = np.zeros(c.shape, np.int8)
    if p.side in ("long", "both"):
        d[up] = 1
    if p.side in ("short", "both"):
        d[dn] = -1
    if p.fade:
        d = -d
    ok = market.listed & np.isfinite(rng) & (rng > 0)
    d[~ok] = 0
    sig.direction[:] = d
    sig.stop[:] = np.where(d != 0, p.stop_mult * np.nan_to_num(rng, nan=1.0), 0.0)
    sig.target[:] = np.where(d != 0, p.target, np.nan)
    sig.score[:] = np.where(d != 0, 1.0, 0.0)
    sig.hold[:] = p.hold
    bars = np.arange(c.shape[0])[:, None] * np.ones((1, c.shape[1]), np.int64)
    coins = np.zeros_like(bars) + np.arange(c.shape[1])[None, :]
    sig.setup[:] = ((bars * 4096 + coins) * 2 + (d > 0)) * 256 + 7
    return sig


def install() -> None:
    """Register the test strategy (not at import: other tests iterate over the registry)."""
    from sweep.space import OVERRIDES

    register(NAME, Params, description="tests only: n-bar breakout with a range stop")(generate)
    OVERRIDES[NAME] = {"pause": 0.0}  # not searched; `--fix pause=...` makes it slow on purpose


PEEK = "test_peeking"


def peeking(market: Market, p: Params, mode="live", fitted=None) -> Signals:
    """test_breakout, plus a long wherever the NEXT close is higher: it looks ahead."""
    sig = generate(market, p, mode, fitted)
    nxt = np.vstack([market.close[1:], np.full((1, market.n_coins), np.nan)])
    with np.errstate(invalid="ignore"):
        up = (nxt > market.close * 1.002) & market.listed & (sig.direction == 0)
    sig.direction[up] = 1
    sig.stop[up] = 0.01 * market.close[up]
    sig.score[up] = 1.0
    sig.setup[up] = np.flatnonzero(up.reshape(-1)) * 256 + 7
    return dataclasses.replace(sig, strategy=PEEK)


def install_peeking() -> None:
    """Register the peeking strategy (tests of the causality gate only)."""
    from sweep.space import OVERRIDES

    register(PEEK, Params, description="tests only: looks one bar ahead")(peeking)
    OVERRIDES[PEEK] = {"pause": 0.0}


def uninstall() -> None:
    import strategies.base as base
    from sweep.space import OVERRIDES

    for name in (NAME, PEEK):
        base._REGISTRY.pop(name, None)
        OVERRIDES.pop(name, None)


def write_dataset(folder: Path, n_bars: int = 2400, n_coins: int = 4, seed: int = 3) -> Path:
    """Random walks with trending stretches, laid out like ../shared/data/hyperliquid."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ts = pd.date_range("2024-01-01", periods=n_bars, freq="h", tz="UTC")
    candles, funding = [], []
    for i in range(n_coins):
        drift = np.repeat(rng.normal(0, 0.0004, n_bars // 150 + 1), 150)[:n_bars]
        r = drift + rng.standard_t(4, n_bars) * 0.006
        close = 50.0 * (i + 1) * np.exp(np.cumsum(r))
        opn = np.concatenate([[close[0]], close[:-1]])
        wick = np.abs(rng.normal(0, 0.003, n_bars)) * close
        candles.append(pd.DataFrame({
            "coin": f"C{i}", "ts": ts, "open": opn, "high": np.maximum(opn, close) + wick,
            "low": np.minimum(opn, close) - wick, "close": close,
            "volume": rng.lognormal(8, 0.5, n_bars)}))
        funding.append(pd.DataFrame({"coin": f"C{i}", "ts": ts,
                                     "funding_rate": rng.normal(1.25e-5, 1e-5, n_bars),
                                     "premium": np.nan}))
    pd.concat(candles).to_parquet(folder / "candles_1h.parquet", index=False)
    pd.concat(funding).to_parquet(folder / "funding_1h.parquet", index=False)
    return folder


BOOT = ("import sys; sys.path.insert(0, {tests!r}); import _sweep_helpers; _sweep_helpers.install(); "
        "{extra}from sweep.cli import main; sys.argv = ['sweep'] + sys.argv[1:]; main()")


def cli_cmd(*args: str, peeking: bool = False) -> list[str]:
    extra = "_sweep_helpers.install_peeking(); " if peeking else ""
    return [sys.executable, "-c", BOOT.format(tests=str(ROOT / "tests"), extra=extra)] + [str(a) for a in args]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e["COLUMNS"] = "200"
    return e


def run_cli(*args: str, timeout: float = 120, check: bool = True,
            peeking: bool = False) -> subprocess.CompletedProcess:
    p = subprocess.run(cli_cmd(*args, peeking=peeking), cwd=ROOT, env=env(), capture_output=True, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\nstdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}")
    return p


def last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def invoke(*args: str, env: dict[str, str] | None = None):
    """`python -m sweep ARGS` in this process (typer's CliRunner): exit_code, stdout, stderr."""
    from typer.testing import CliRunner

    from sweep.cli import _register, app

    if not any(c.name == "sql" for c in app.registered_commands):
        _register()
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200", **(env or {})})


def tree(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under root (and its mode, size and sha256): equal before and after means
    nothing was written, created, removed or chmod-ed."""
    import hashlib

    return {p.relative_to(root).as_posix(): (p.stat().st_mode, p.stat().st_size,
                                             hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(Path(root).rglob("*")) if p.is_file()}


def one_error_line(result) -> str:
    """The single `error: ...` line of a refused command (exit code not 0, nothing on stdout)."""
    assert result.exit_code not in (0, None), result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == "", result.stdout
    return lines[0]
