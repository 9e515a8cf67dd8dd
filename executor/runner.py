"""`executor paper` end to end: open the ledger, build the feed, loop over its ticks.

SIGHUP reloads the candidates file (an invalid one is refused with an event and the old set
stays); SIGTERM and SIGINT stop after the bar in flight (its transaction is either committed or
rolled back, so a stop or a kill never leaves half a bar).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from executor import report
from executor.books import TRADED_FRICTION, Loaded, load_books
from executor.engine import Engine
from executor.feeds import HyperliquidFeed, ReplayFeed
from executor.health import HealthServer
from executor.ledger import Ledger, LedgerError, identify, read_meta
from executor.risk import check_sim, is_stale
from executor.settings import (
    Settings,
    check_restart,
    check_universe,
    default_kill_file,
    settings_for,
)
from harness.errors import ConfigError, HarnessError
from harness.manifest import harness_hash
from harness.market import interval_seconds
from harness.simulate import SimConfig
from harness.sources import load_market
from schemas.ledgers import register_ledger


@dataclass(frozen=True)
class PaperOptions:
    candidates: Path
    ledger: Path
    feed: str = "hyperliquid"
    data: str | None = None
    start: str | None = None
    end: str | None = None
    speed: float = 0.0
    interval: str | None = None
    coins: tuple[str, ...] = ()
    sim: SimConfig = field(default_factory=SimConfig)
    warmup_bars: int = 500
    kill_file: Path | None = None
    base_url: str | None = None
    testnet: bool = False
    poll_seconds: float = 20.0
    store: str = "data"
    results: Path | None = Path("results")
    detail: str | None = None  # replay: intrabar detail bars (e.g. 15m), as in the backtest


@dataclass
class Loop:
    """Flags the signal handlers set; the loop acts on them between bars."""

    stop: bool = False
    reload: bool = False

    def sleep(self, seconds: float) -> None:
        """The feeds' sleep: cut short by a stop, so SIGTERM never waits out a poll interval."""
        end = time.monotonic() + seconds
        while not self.stop and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.2))


def check_options(opts: PaperOptions) -> None:
    """Every option on its own, before any file is read or written (ConfigError, one line)."""
    if opts.feed not in ("replay", "hyperliquid"):
        raise ConfigError(f"--feed must be replay or hyperliquid, got {opts.feed!r}")
    if opts.warmup_bars < 1:
        raise ConfigError(f"--warmup-bars must be >= 1, got {opts.warmup_bars}")
    if opts.feed == "replay" and not (opts.data and opts.start and opts.end):
        raise ConfigError("--feed replay needs --data PATH (or 'embedded'), --start DATE and --end DATE")
    if opts.detail is not None and opts.feed != "replay":
        raise ConfigError("--detail works with --feed replay only: the live feed polls closed "
                          "candles of the candidates' interval; drop --detail")
    if not opts.speed >= 0:
        raise ConfigError(f"--speed must be >= 0 (0 plays as fast as possible), got {opts.speed}")
    if not opts.poll_seconds > 0:
        raise ConfigError(f"--poll-seconds must be > 0, got {opts.poll_seconds}")
    check_sim(opts.sim)
    if opts.results is not None and opts.results.exists() and not opts.results.is_dir():
        raise ConfigError(f"--results {opts.results} is not a folder: pass the results folder "
                          "of `python -m sweep` (or a new one)")
    if opts.kill_file is not None and opts.kill_file.is_dir():
        raise ConfigError(f"--kill-file {opts.kill_file} is a folder: pass a file path")


def open_paper(opts: PaperOptions, now_ms: Callable[[], int] | None = None,
               sleep: Callable[[float], None] | None = None, **feed_kw: Any) -> tuple[Engine, Any]:
    """Validate everything, then open (or resume) the ledger; HarnessError with one line if not.

    Options, candidates, the ledger file's identity and settings, the feed and the warm-up rows
    are all checked or fetched before the ledger is created, locked or migrated, so a refused
    start leaves no file and changes none. sleep is the feeds' pause (the command passes one
    that a stop cuts short); now_ms and feed_kw (HyperliquidFeed's timeout, max_tries, ...)
    are for tests."""
    harness_hash()  # the freeze first: an edited harness refuses before anything is read
    check_options(opts)
    loaded = load_books(opts.candidates, opts.interval)
    if opts.detail is not None:
        sub, base = interval_seconds(opts.detail), interval_seconds(loaded.interval)
        if sub >= base or base % sub:
            raise ConfigError(f"--detail {opts.detail} must be a lower interval that divides "
                              f"{loaded.interval}: use e.g. --detail 15m on 1h bars")
    version = identify(opts.ledger)
    text = read_meta(opts.ledger, "settings") if version else None
    stored = Settings.from_json(text, str(opts.ledger)) if text else None
    kill_file = opts.kill_file or (Path(stored.kill_file) if stored and stored.kill_file
                                   else default_kill_file(opts.ledger))
    if stored:  # what can be compared before the feed is built
        check_universe(loaded, stored)
        check_restart(opts.ledger, stored, replace(
            stored, sim=opts.sim, feed=opts.feed, harness=harness_hash(), detail=opts.detail,
            friction=TRADED_FRICTION.version, kill_file=str(kill_file.resolve())))
    coins = stored.coins if stored else tuple(sorted(set(loaded.coins) | set(opts.coins) | {"BTC"}))
    kw = {} if sleep is None else {"sleep": sleep}
    history = detail = None
    if opts.feed == "replay":
        feed = ReplayFeed(opts.data, loaded.interval, coins, opts.start, opts.end, opts.warmup_bars,
                          opts.speed, store=opts.store,
                          market_start=stored.market_start if stored else None, **kw)
        market_start, first_bar = feed.market.index[0], feed.first_bar
        if stored is None:
            history = feed.history()
        if opts.detail is not None:
            detail = load_market(opts.data, opts.detail, list(coins), start=market_start,
                                 end=opts.end, store=opts.store)
    else:
        feed = HyperliquidFeed(loaded.interval, coins, opts.base_url, opts.testnet,
                               opts.poll_seconds, now_ms=now_ms, **kw, **feed_kw)
        feed.connect()
        step = pd.Timedelta(seconds=interval_seconds(loaded.interval))
        if stored:
            market_start, first_bar = stored.market_start, stored.first_bar
        else:
            first_bar = feed.last_closed + step
            market_start = first_bar - opts.warmup_bars * step
            history = feed.history(market_start, first_bar)
    settings = settings_for(loaded, coins, market_start, first_bar, opts.sim, opts.feed,
                            feed.source, feed.synthetic, opts.detail, kill_file)
    if stored:
        check_restart(opts.ledger, stored, settings)
    ledger = Ledger.open(opts.ledger)
    try:
        if (ledger.get("settings") is None) != (stored is None):
            raise LedgerError(f"{opts.ledger} was started by another executor while this one was "
                              "starting: run the command again")
        engine = Engine.start(ledger, loaded, settings, history, detail)
    except BaseException:
        ledger.close()
        raise
    if opts.results is not None:
        register_ledger(opts.results, opts.ledger)
    return engine, feed


def publish(engine: Engine, health: HealthServer | None) -> dict:
    """The /status document: the ledger's status plus the feed's clock, lag and error."""
    doc = report.status(engine.ledger, engine.kill.path)
    loaded: Loaded = engine.loaded
    doc["candidates"] = {"path": str(loaded.path), "sha": loaded.sha, "buckets": loaded.n_buckets,
                         "books": [{"id": b.id, "strategy": b.name, "buckets": len(b.buckets)}
                                   for b in loaded.books]}
    now = engine.last_tick
    if now is not None and engine.last_ts is not None:
        doc["feed_lag_seconds"] = (now - (engine.last_ts + engine.step)).total_seconds()
        doc["feed_stale"] = is_stale(engine.last_ts, now, engine.step)
    else:
        doc["feed_lag_seconds"], doc["feed_stale"] = None, False
    doc["feed_clock"] = now.isoformat() if now is not None else None
    doc["feed_error"] = engine.feed_error
    if health is not None:
        health.publish(doc)
    return doc


def run(engine: Engine, feed: Any, opts: PaperOptions, loop: Loop | None = None,
        health: HealthServer | None = None, on_bar: Callable[[Engine, int], None] | None = None,
        max_ticks: int | None = None) -> int:
    """Feed ticks to the engine until the feed ends, a stop is asked, or max_ticks; bars done."""
    loop = loop or Loop()
    done = ticks = 0
    after = engine.last_ts if engine.last_ts is not None else engine.settings.first_bar - engine.step
    for tick in feed.ticks(after):
        if loop.reload:
            loop.reload = False
            try:
                engine.reload(load_books(opts.candidates, engine.settings.interval))
            except HarnessError as exc:
                with engine.ledger.transaction():
                    engine.ledger.event("reload_refused", f"kept the previous candidates: {exc}", engine.last_ts)
        if tick.error and tick.error != engine.feed_error:  # once per streak of the same error
            with engine.ledger.transaction():
                engine.ledger.event("feed_error", tick.error, tick.now)
        engine.feed_error, engine.last_tick = tick.error, tick.now
        for bar in tick.bars:
            n = engine.process(bar)
            done += n
            if on_bar is not None and n:
                on_bar(engine, n)
        if tick.snapshot is not None:
            engine.record_snapshot(tick.snapshot, opts.store)
        stale = engine.last_ts is not None and is_stale(engine.last_ts, tick.now, engine.step)
        if stale != engine.feed_stale:
            with engine.ledger.transaction():
                engine.ledger.event("stale_feed" if stale else "feed_ok",
                                    f"newest candle {engine.last_ts}, clock {tick.now}", tick.now)
            engine.feed_stale = stale
        if health is not None:
            publish(engine, health)
        ticks += 1
        if loop.stop or (max_ticks is not None and ticks >= max_ticks):
            break
    return done


@contextmanager
def signals_installed(loop: Loop) -> Iterator[None]:
    """SIGHUP: reload candidates; SIGTERM / SIGINT: stop after the bar in flight.

    The previous handlers come back when the block ends, so an in-process caller keeps its own.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def hup(signum, frame) -> None:
        loop.reload = True

    def stop(signum, frame) -> None:
        loop.stop = True

    handlers = {signal.SIGHUP: hup, signal.SIGTERM: stop, signal.SIGINT: stop}
    old = {s: signal.signal(s, h) for s, h in handlers.items()}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
