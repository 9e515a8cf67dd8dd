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
from harness.costs import (
    BPS,
    ESTIMATORS,
    CostModel,
    coin_costs,
    impact_half_spread,
    impact_notional,
    slippage,
)
from harness.errors import ConfigError, DataError
from harness.friction import V5
from harness.market import INTERVALS, Market
from harness.sources import Frames, load_contexts, load_frames, load_market
from harness.store import import_dataset
from sweep.times import utc_time

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


BOOK_ALWAYS = ("BTC", "ETH")  # recorded with the candidates' coins


def default_book_coins(candidates: Path) -> list[str]:
    """BTC, ETH and the coins of the candidates file (when it exists)."""
    coins = list(BOOK_ALWAYS)
    if candidates.exists():
        from schemas.candidates import load_candidates

        coins += [c for b in load_candidates(candidates).buckets for c in b.coins]
    return list(dict.fromkeys(coins))


def sync_command(
    coins: str | None = typer.Option(None, "--coins", help="Comma-separated perps (BTC,ETH) or "
                                     "'all' (every listed perp in meta). Needed unless "
                                     "--contexts records snapshots only."),
    interval: str = typer.Option("1h", "--interval", help=f"Candle interval: {', '.join(INTERVALS)}."),
    funding: bool = typer.Option(True, "--funding/--no-funding", help="Also record hourly funding."),
    contexts: bool = typer.Option(False, "--contexts", help="Also record one snapshot of every "
                                  "perp's asset context (open interest, mark, oracle, mid, "
                                  "premium, funding, day volume, impact prices) and of the "
                                  "--book coins' L2 books (20 levels a side); one per coin and "
                                  "hour, so run it hourly to build the history."),
    book: str | None = typer.Option(None, "--book", help="With --contexts: comma-separated "
                                    "coins whose book to record, or 'none'. Default: BTC, ETH "
                                    "and the coins of --candidates."),
    candidates: Path = typer.Option(Path("live_candidates.json"), "--candidates",
                                    help="Candidates file whose coins get a book snapshot."),
    since: str | None = typer.Option(None, "--since", help="Fetch from this UTC date when it is "
                                     "later than the last stored bar. Default: the bar after the "
                                     "last stored one, else as far back as the API serves "
                                     "(5,000 candles)."),
    base_url: str | None = typer.Option(None, "--base-url", help="API base URL (default: "
                                        "Hyperliquid mainnet)."),
    testnet: bool = typer.Option(False, "--testnet", help="Use the testnet API."),
    store: Path = StoreOpt,
) -> None:
    """Record closed Hyperliquid candles (and funding, and with --contexts the asset contexts
    and books) into the store; safe to run hourly."""
    names = [c.strip() for c in (coins or "").split(",") if c.strip()]
    if book is not None and not contexts:
        raise ConfigError("--book needs --contexts (books are recorded with the asset contexts)")
    if book is None:
        book_coins = default_book_coins(candidates) if contexts else []
    else:
        book_coins = [] if book.strip().lower() == "none" else [
            c.strip() for c in book.split(",") if c.strip()]
    out, err = _console(), _err()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  MofNCompleteColumn(), console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("syncing", total=None)

        def step(done: int, total: int, coin: str) -> None:
            bar.update(task, completed=done, total=total, description=f"synced {coin}")

        report = hl_sync.sync(store, names, interval=interval, funding=funding, since=since,
                              base_url=base_url, testnet=testnet, progress=step,
                              contexts=contexts, book_coins=book_coins)
    if report.snapshots is not None:
        out.print(snapshot_table(report.snapshots, report.base_url, store))
    if not report.coins:
        return
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


def snapshot_table(snap: hl_sync.SnapshotReport, url: str, store: Path) -> Table:
    """The books recorded by one sync, with the asset-contexts line as the caption."""
    table = Table(title=f"snapshots from {url} into {store}")
    for col, just in (("book", "left"), ("time", "left"), ("bid levels", "right"),
                      ("ask levels", "right"), ("imbalance 5", "right"),
                      ("imbalance 20", "right"), ("recorded", "left")):
        table.add_column(col, justify=just)
    for b in snap.books:
        table.add_row(b.coin, b.time.strftime("%Y-%m-%d %H:%M:%S"), str(b.levels[0]),
                      str(b.levels[1]), f"{b.imbalance_5:+.3f}", f"{b.imbalance_20:+.3f}",
                      "new" if b.added else "this hour's was stored already")
    table.caption = (f"asset contexts of {snap.contexts} perps at "
                     f"{snap.time.strftime('%Y-%m-%d %H:%M:%S')}: {snap.contexts_added} new "
                     f"(one per coin and hour; the rest were stored already)")
    return table


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


def _spans(frame: pd.DataFrame) -> dict[str, tuple[int, pd.Timestamp, pd.Timestamp, float]]:
    """coin -> (snapshots, first, last, % of the hours from first to last that have one)."""
    out = {}
    for coin, ts in frame.groupby("coin", sort=True)["ts"]:
        first, last = ts.iloc[0], ts.iloc[-1]
        hours = int((last - first) / pd.Timedelta(hours=1)) + 1
        out[str(coin)] = (len(ts), first, last, 100.0 * len(ts) / hours)
    return out


def snapshot_coverage_table(frames: Frames) -> Table | None:
    """One row per coin with recorded asset contexts or books: count, first, last, coverage."""
    ctx, books = _spans(frames.contexts), _spans(frames.books)
    if not ctx and not books:
        return None
    table = Table(title=f"{frames.source}: recorded snapshots (asset contexts: {len(ctx)} coins, "
                  f"books: {len(books)} coins)")
    for col, just in (("coin", "left"), ("contexts", "right"), ("first", "left"),
                      ("last", "left"), ("hours %", "right"), ("books", "right"),
                      ("first", "left"), ("last", "left"), ("hours %", "right")):
        table.add_column(col, justify=just)
    for coin in sorted(set(ctx) | set(books)):
        cells = [coin]
        for got in (ctx.get(coin), books.get(coin)):
            cells += (["0", "-", "-", "-"] if got is None else
                      [f"{got[0]:,}", _ts(got[1]), _ts(got[2]), f"{got[3]:.1f}"])
        table.add_row(*cells)
    table.caption = ("one snapshot per coin and hour; hours % = hours with a snapshot between "
                     "the coin's first and last one")
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
    """One row per coin: first bar, last bar, bars, gaps, funding coverage %; then the recorded
    asset contexts and books per coin (count, first, last, coverage %)."""
    if data is not None and store is not None:
        raise typer.BadParameter("give --data or --store, not both")
    with Console(stderr=True).status("loading and validating the data"):
        if store is not None:
            frames = load_frames(str(store), interval)
        else:
            frames = load_frames(data, interval, store="data")
    out = _console()
    out.print(coverage_table(frames))
    snaps = snapshot_coverage_table(frames)
    if snaps is None:
        out.print("no recorded asset contexts or books here (`python -m sweep data sync "
                  "--contexts` records them hourly into a store)")
    else:
        out.print(snaps)


def _usd(x: float) -> str:
    if not np.isfinite(x):
        return "-"
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"${x / scale:.3g}{unit}"
    return f"${x:.0f}"


def _bps(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{x / BPS:.1f}"


IMPACT_LOOKBACK = pd.Timedelta(hours=24)  # how old a recorded impact snapshot may be


def recorded_impact(contexts: pd.DataFrame, coins: tuple[str, ...], close: pd.Timestamp
                    ) -> tuple[np.ndarray, pd.Series]:
    """Per coin, the recorded impact half spread of its latest asset context taken in the 24
    hours up to `close` (NaN without one), and the times of the snapshots used."""
    ctx = contexts[(contexts["time"] <= close) & (contexts["time"] > close - IMPACT_LOOKBACK)]
    ctx = ctx.groupby("coin", sort=False).tail(1).set_index("coin")  # sorted by coin, time
    got = ctx.reindex(list(coins))
    half = impact_half_spread(got["impact_bid_px"], got["impact_ask_px"], got["mid_px"])
    return np.asarray(half, dtype=np.float64), got["time"].dropna()


def costs_table(market: Market, row: int, notionals: list[float], model: CostModel,
                contexts: pd.DataFrame | None = None) -> Table:
    """One row per coin: friction v5's spread, volatility, ADV and slippage at `row`,
    cheapest first (at the first notional); coins on the flat fallback last. With recorded
    asset contexts, also the impact half spread Hyperliquid reported next to v5's slippage at
    the same (impact) notional."""
    costs = coin_costs(market, model)
    closes = market.index[row] + pd.Timedelta(seconds=market.bar_seconds)
    recorded, used = (recorded_impact(contexts, market.coins, closes)
                      if contexts is not None and len(contexts) else (None, None))
    fallback_bps = V5.slippage_bps
    shown = []
    for j, coin in enumerate(market.coins):
        slips = [slippage(costs, row, j, q, model, fallback_bps) for q in notionals]
        known = bool(costs.known[row, j])
        shown.append((not known, slips[0] if known else 0.0, coin, j, slips))
    shown.sort(key=lambda r: r[:3])
    table = Table(title=f"{market.label}: friction v5 slippage per coin at the close of the "
                  f"{market.interval} bar opening {_ts(market.index[row])} (daily bars closed "
                  f"by {_ts(closes)})")
    cols = [("coin", "left"), ("spread bps", "right"), ("half spread bps", "right"),
            ("sigma_d", "right"), ("ADV", "right")]
    cols += [(f"slippage @ {_usd(q)} bps", "right") for q in notionals]
    if recorded is not None:
        cols += [("impact notional", "right"), ("recorded impact half spread bps", "right"),
                 ("v5 slippage @ impact notional bps", "right")]
    cols += [("note", "left")]
    for col, just in cols:
        table.add_column(col, justify=just)
    fallback = 0
    pairs = []
    for unknown, _, coin, j, slips in shown:
        half, sigma = costs.half_spread[row, j], costs.sigma_d[row, j]
        if unknown:
            fallback += 1
            note = f"fallback: < {model.min_days} days"
        else:
            note = ", ".join(sorted({"cap" for s in slips if s >= model.cap_bps * BPS}
                                    | {"floor" for s in slips if s <= model.floor_bps * BPS}))
        impact = []
        if recorded is not None:
            q = impact_notional(coin)
            v5 = slippage(costs, row, j, q, model, fallback_bps)
            impact = [_usd(q), _bps(recorded[j]), _bps(v5)]
            if np.isfinite(recorded[j]) and not unknown:
                pairs.append((recorded[j], v5))
        table.add_row(coin, _bps(2 * half), _bps(half),
                      "-" if not np.isfinite(sigma) else f"{100 * sigma:.2f}%",
                      _usd(costs.adv[row, j]), *(_bps(s) for s in slips), *impact, note)
    spread = ("half a price tick" if model.estimator == "tick" else
               f"half spread ({model.estimator}, daily bars, trailing {model.window_days} days)")
    table.caption = (f"{market.n_coins} coins, {fallback} on the flat {fallback_bps:g} bps "
                     f"fallback (fewer than {model.min_days} complete days). slippage = "
                     f"{spread} + {model.impact_k:g} x sigma_d x "
                     f"sqrt(notional / ADV), floor {model.floor_bps:g} bps, cap "
                     f"{model.cap_bps:g} bps")
    if recorded is not None:
        if pairs:
            rec, v5 = np.array(pairs).T
            table.caption += (
                f". Recorded impact half spread = (impact ask - impact bid) / 2 / mid of the "
                f"latest asset context in the 24 h to the bar's close ({_ts(used.min())} .. "
                f"{_ts(used.max())}), at Hyperliquid's impact notional ($20k BTC/ETH, $6k "
                f"others): {len(pairs)} coins with both, median recorded {np.median(rec) / BPS:.1f} "
                f"bps vs v5 {np.median(v5) / BPS:.1f} bps, median v5 / recorded "
                f"{np.median(v5 / np.maximum(rec, 1e-12)):.2f}")
        else:
            table.caption += (". No coin has both a v5 estimate and an asset context recorded "
                              "in the 24 h to the bar's close")
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
    """Friction v5 per coin: estimated spread, daily volatility, ADV and slippage in bps; where
    asset contexts are recorded (`data sync --contexts`), Hyperliquid's impact half spread next
    to v5's slippage at the same notional (the calibration of the spread estimate)."""
    if any(not (q > 0) for q in notional):
        raise ConfigError(f"--notional {min(notional):g}: each order size must be a positive "
                          "USD amount, e.g. --notional 10000")
    model = dataclasses.replace(V5.costs, estimator=estimator)
    names = [c.strip() for c in coins.split(",") if c.strip()] if coins else None
    with Console(stderr=True).status("loading the data and estimating costs"):
        market = load_market(data, interval=interval, coins=names)
        row = market.n_bars - 1
        if at is not None:
            ts = utc_time(at, "--at")
            row = int(market.index.searchsorted(ts, side="right")) - 1
            if row < 0:
                raise DataError(f"--at {at}: before the first bar ({_ts(market.index[0])}); "
                                "pick a later time")
        contexts = load_contexts(data, interval, names)
        table = costs_table(market, row, notional, model, contexts)
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
