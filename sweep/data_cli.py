"""`python -m sweep data sync | import | info | costs`: record, import and inspect market data.

Also `describe_market(market)`: a one-row-per-coin summary table of any Market (labelled
SYNTHETIC for the embedded default), for commands that want to show what they run on.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from harness import hl_sync
from harness.costs import BPS, ESTIMATORS, CostModel, coin_costs, slippage
from harness.errors import ConfigError, DataError
from harness.friction import V5
from harness.market import INTERVALS, Market
from harness.sources import Frames, load_frames, load_market
from harness.store import import_dataset

HOURS_PER_YEAR = 365 * 24
StoreOpt = typer.Option(Path("data"), "--store", help="Store root (partitioned parquet under "
                        "<store>/hyperliquid/).")


def _console() -> Console:
    """stdout console; wide when not a terminal so piped tables are not squeezed."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 140)


def _err() -> Console:
    """stderr console for progress; progress is shown on a terminal only (a cron log or a pipe
    gets the result table, and a failure stays one line)."""
    return Console(stderr=True)


def _ts(t) -> str:
    return "-" if t is None else t.strftime("%Y-%m-%d %H:%M")


def sync_command(
    coins: str = typer.Option(..., "--coins", help="Comma-separated perps (BTC,ETH) or 'all' "
                              "(every listed perp in meta)."),
    interval: str = typer.Option("1h", "--interval", help=f"Candle interval: {', '.join(INTERVALS)}."),
    funding: bool = typer.Option(True, "--funding/--no-funding", help="Also record hourly funding."),
    since: str | None = typer.Option(None, "--since", help="Fetch from this UTC date when it is "
                                     "later than the last stored bar. Default: the bar after the "
                                     "last stored one, else as far back as the API serves "
                                     "(5,000 candles)."),
    base_url: str | None = typer.Option(None, "--base-url", help="API base URL (default: "
                                        "Hyperliquid mainnet)."),
    testnet: bool = typer.Option(False, "--testnet", help="Use the testnet API."),
    store: Path = StoreOpt,
) -> None:
    """Record closed Hyperliquid candles (and funding) into the store; safe to run hourly."""
    names = [c.strip() for c in coins.split(",") if c.strip()]
    out, err = _console(), _err()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  MofNCompleteColumn(), console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("syncing", total=None)

        def step(done: int, total: int, coin: str) -> None:
            bar.update(task, completed=done, total=total, description=f"synced {coin}")

        report = hl_sync.sync(store, names, interval=interval, funding=funding, since=since,
                              base_url=base_url, testnet=testnet, progress=step)
    table = Table(title=f"data sync {report.interval} from {report.base_url} into {store}")
    for col, just in (("coin", "left"), ("candles added", "right"), ("candles fixed", "right"),
                      ("funding added", "right"), ("first new bar", "left"),
                      ("last closed bar", "left"), ("note", "left")):
        table.add_column(col, justify=just)
    for c in report.coins:
        table.add_row(c.coin, f"{c.candles_added:,}", f"{c.candles_fixed:,}", f"{c.funding_added:,}",
                      _ts(c.first_new), _ts(c.last_bar), c.note)
    table.caption = (f"{len(report.coins)} coins, {report.candles_added:,} candles and "
                     f"{report.funding_added:,} funding rows added; {report.requests} requests, "
                     f"weight {report.weight:,}, {report.retries} retries")
    out.print(table)


def import_command(
    path: Path = typer.Argument(..., help="Dataset folder laid out like ../shared/data/hyperliquid "
                                "(candles_<interval>.parquet, funding_1h.parquet)."),
    store: Path = StoreOpt,
) -> None:
    """Validate a dataset folder completely, then add it to the store (all or nothing)."""
    out, err = _console(), _err()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"),
                  console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("importing", total=None)
        tables = import_dataset(path, store,
                                progress=lambda msg: bar.update(task, description=msg))
    table = Table(title=f"data import {path} -> {store}")
    for col, just in (("table", "left"), ("file", "left"), ("rows", "right"),
                      ("coins", "right"), ("rows added", "right")):
        table.add_column(col, justify=just)
    for t in tables:
        table.add_row(t.table, t.source.name, f"{t.rows:,}", f"{t.coins:,}", f"{t.added:,}")
    out.print(table)


def coverage_table(frames: Frames) -> Table:
    """One row per coin: first bar, last bar, bars, gaps, funding coverage of its span."""
    step_ns = INTERVALS[frames.interval] * 1_000_000_000
    hour_ns = 3_600_000_000_000
    f_codes = frames.funding["coin"].to_numpy(dtype=object) if len(frames.funding) else np.array([])
    f_ts = frames.funding["ts"].array.as_unit("ns").asi8 if len(frames.funding) else np.array([])
    bounds = {}
    if len(f_codes):
        starts = np.flatnonzero(np.r_[True, f_codes[1:] != f_codes[:-1]])
        ends = np.r_[starts[1:], len(f_codes)]
        bounds = {f_codes[s]: (s, e) for s, e in zip(starts, ends, strict=True)}
    label = f"SYNTHETIC {frames.source}" if frames.synthetic else frames.source
    built = (f", {frames.target} built from these" if frames.target != frames.interval else "")
    table = Table(title=f"{label}: {len(frames.gaps)} coins, {frames.interval} bars{built}")
    for col, just in (("coin", "left"), ("first bar", "left"), ("last bar", "left"),
                      ("bars", "right"), ("gaps", "right"), ("missing bars", "right"),
                      ("funding %", "right")):
        table.add_column(col, justify=just)
    for g in frames.gaps:
        lo, hi = g.first.value, g.last.value + step_ns
        s, e = bounds.get(g.coin, (0, 0))
        ts = f_ts[s:e]
        have = int(np.searchsorted(ts, hi, "left") - np.searchsorted(ts, lo, "left"))
        hours = -(-(hi - lo) // hour_ns)
        table.add_row(g.coin, _ts(g.first), _ts(g.last), f"{g.bars:,}", f"{g.runs:,}",
                      f"{g.missing:,}", f"{100.0 * have / hours:.1f}")
    return table


def info_command(
    data: str | None = typer.Option(None, "--data", help="Dataset folder (like "
                                    "../shared/data/hyperliquid), store root, candles parquet "
                                    "file, or 'embedded'."),
    store: Path | None = typer.Option(None, "--store", help="Store root. With neither option: "
                                      "./data, or the embedded synthetic market when ./data "
                                      "holds no candles."),
    interval: str = typer.Option("1h", "--interval", help=f"Candle interval: {', '.join(INTERVALS)}."),
) -> None:
    """One row per coin: first bar, last bar, bars, gaps, funding coverage %."""
    if data is not None and store is not None:
        raise typer.BadParameter("give --data or --store, not both")
    with Console(stderr=True).status("loading and validating the data"):
        if store is not None:
            frames = load_frames(str(store), interval)
        else:
            frames = load_frames(data, interval, store="data")
    _console().print(coverage_table(frames))


def _usd(x: float) -> str:
    if not np.isfinite(x):
        return "-"
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"${x / scale:.3g}{unit}"
    return f"${x:.0f}"


def _bps(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{x / BPS:.1f}"


def costs_table(market: Market, row: int, notionals: list[float], model: CostModel) -> Table:
    """One row per coin: friction v5's spread, volatility, ADV and slippage at `row`,
    cheapest first (at the first notional); coins on the flat fallback last."""
    costs = coin_costs(market, model)
    fallback_bps = V5.slippage_bps
    shown = []
    for j, coin in enumerate(market.coins):
        slips = [slippage(costs, row, j, q, model, fallback_bps) for q in notionals]
        known = bool(costs.known[row, j])
        shown.append((not known, slips[0] if known else 0.0, coin, j, slips))
    shown.sort(key=lambda r: r[:3])
    closes = market.index[row] + pd.Timedelta(seconds=market.bar_seconds)
    table = Table(title=f"{market.label}: friction v5 slippage per coin at the close of the "
                  f"{market.interval} bar opening {_ts(market.index[row])} (daily bars closed "
                  f"by {_ts(closes)})")
    cols = [("coin", "left"), ("spread bps", "right"), ("half spread bps", "right"),
            ("sigma_d", "right"), ("ADV", "right")]
    cols += [(f"slippage @ {_usd(q)} bps", "right") for q in notionals] + [("note", "left")]
    for col, just in cols:
        table.add_column(col, justify=just)
    fallback = 0
    for unknown, _, coin, j, slips in shown:
        half, sigma = costs.half_spread[row, j], costs.sigma_d[row, j]
        if unknown:
            fallback += 1
            note = f"fallback: < {model.min_days} days"
        else:
            note = ", ".join(sorted({"cap" for s in slips if s >= model.cap_bps * BPS}
                                    | {"floor" for s in slips if s <= model.floor_bps * BPS}))
        table.add_row(coin, _bps(2 * half), _bps(half),
                      "-" if not np.isfinite(sigma) else f"{100 * sigma:.2f}%",
                      _usd(costs.adv[row, j]), *(_bps(s) for s in slips), note)
    spread = ("half a price tick" if model.estimator == "tick" else
               f"half spread ({model.estimator}, daily bars, trailing {model.window_days} days)")
    table.caption = (f"{market.n_coins} coins, {fallback} on the flat {fallback_bps:g} bps "
                     f"fallback (fewer than {model.min_days} complete days). slippage = "
                     f"{spread} + {model.impact_k:g} x sigma_d x "
                     f"sqrt(notional / ADV), floor {model.floor_bps:g} bps, cap "
                     f"{model.cap_bps:g} bps")
    return table


def costs_command(
    data: str | None = typer.Option(None, "--data", help="Dataset folder (like "
                                    "../shared/data/hyperliquid), store root, candles parquet "
                                    "file, or 'embedded'. Default: ./data, else the embedded "
                                    "synthetic market."),
    interval: str = typer.Option("1h", "--interval", help=f"Bar interval the costs are "
                                 f"computed on: {', '.join(INTERVALS)}."),
    coins: str | None = typer.Option(None, "--coins", help="Comma-separated coins (default: all)."),
    at: str | None = typer.Option(None, "--at", help="UTC time: the bar opening at or before it "
                                  "(default: the last bar)."),
    notional: list[float] = typer.Option([10_000.0, 100_000.0], "--notional",
                                         help="Order size in USD; repeat for several."),
    estimator: str = typer.Option("tick", "--estimator",
                                  help=f"Spread estimator: {', '.join(ESTIMATORS)} (friction v5 "
                                  "uses tick; the OHLC estimators are shown for comparison)."),
) -> None:
    """Friction v5 per coin: estimated spread, daily volatility, ADV and slippage in bps."""
    if any(not (q > 0) for q in notional):
        raise ConfigError(f"--notional {min(notional):g}: each order size must be a positive "
                          "USD amount, e.g. --notional 10000")
    model = dataclasses.replace(V5.costs, estimator=estimator)
    names = [c.strip() for c in coins.split(",") if c.strip()] if coins else None
    with Console(stderr=True).status("loading the data and estimating costs"):
        market = load_market(data, interval=interval, coins=names)
        row = market.n_bars - 1
        if at is not None:
            try:
                ts = pd.Timestamp(at)
            except ValueError:
                raise DataError(f"--at {at!r} is not a time; use e.g. 2025-03-01 or "
                                "2025-03-01T12:00Z") from None
            ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
            row = int(market.index.searchsorted(ts, side="right")) - 1
            if row < 0:
                raise DataError(f"--at {at}: before the first bar ({_ts(market.index[0])}); "
                                "pick a later time")
        table = costs_table(market, row, notional, model)
    _console().print(table)


def describe_market(market: Market) -> Table:
    """A per-coin summary of a Market: span, bars, gaps, last close, return, vol, funding."""
    per_year = HOURS_PER_YEAR * 3600 / market.bar_seconds
    span = (f"{_ts(market.index[0])} .. {_ts(market.index[-1])}" if market.n_bars else "empty")
    table = Table(title=f"{market.label}: {market.n_coins} coins x {market.n_bars:,} "
                  f"{market.interval} bars, {span} (fingerprint {market.fingerprint})")
    for col, just in (("coin", "left"), ("first bar", "left"), ("last bar", "left"),
                      ("bars", "right"), ("gaps", "right"), ("last close", "right"),
                      ("return %", "right"), ("vol %/yr", "right"), ("funding %/yr", "right")):
        table.add_column(col, justify=just)
    for j, coin in enumerate(market.coins):
        rows = np.flatnonzero(market.listed[:, j])
        if rows.size == 0:
            table.add_row(coin, "-", "-", "0", "-", "-", "-", "-", "-")
            continue
        close = market.close[rows, j]
        inside = market.listed[rows[0]:rows[-1] + 1, j]
        gaps = int(np.count_nonzero(np.diff(inside.astype(np.int8)) == -1))
        logret = np.diff(np.log(close))
        vol = float(np.std(logret) * np.sqrt(per_year)) if logret.size > 1 else float("nan")
        fund = float(np.mean(market.funding[rows[0]:rows[-1] + 1, j]) * per_year)
        table.add_row(coin, _ts(market.index[rows[0]]), _ts(market.index[rows[-1]]),
                      f"{rows.size:,}", f"{gaps:,}", f"{close[-1]:.6g}",
                      f"{100 * (close[-1] / close[0] - 1):+.1f}", f"{100 * vol:.0f}",
                      f"{100 * fund:+.1f}")
    return table


def register(app: typer.Typer) -> None:
    data = typer.Typer(name="data", help="Record (sync), import and inspect market data; per-coin costs.",
                       no_args_is_help=True)
    data.command("sync")(sync_command)
    data.command("import")(import_command)
    data.command("info")(info_command)
    data.command("costs")(costs_command)
    app.add_typer(data, name="data")
