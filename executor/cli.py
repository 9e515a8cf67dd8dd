"""`python -m executor`: `paper` trades promoted buckets with paper money; `status` reads a ledger."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from executor import report
from executor.engine import Engine
from executor.graduation import FAIL, PASS
from executor.health import HealthServer, to_json
from executor.ledger import Ledger
from executor.risk import sim_config
from executor.runner import Loop, PaperOptions, open_paper, publish, run, signals_installed
from harness.cli import OneLineGroup
from harness.errors import ConfigError, HarnessError
from harness.manifest import harness_hash
from schemas.candidates import load_example, write_candidates

app = typer.Typer(
    name="executor",
    cls=OneLineGroup,
    help="The paper executor: trades the promoted buckets of live_candidates.json with paper "
         "money, the same signal code and the same v4 friction as the backtest. It never signs "
         "an order: no private key is read anywhere.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console()
VERDICT_STYLE = {PASS: "green", FAIL: "red"}


@app.command("paper")
def paper_command(
    candidates: Path = typer.Option(None, "--candidates", "-c", help="live_candidates.json written by "
                                    "`python -m sweep promote` (reloaded on SIGHUP)."),
    demo: bool = typer.Option(False, "--demo", help="Instead of --candidates: the example "
                              "(schemas/live_candidates.example.json) re-stamped for this harness, "
                              "written beside the ledger as <ledger>.demo-candidates.json. Pair it "
                              "with --feed replay --data embedded for a run with no network."),
    ledger: Path = typer.Option(..., "--ledger", "-l", help="SQLite ledger; created if missing, "
                                "resumed if it exists (its folder must exist)."),
    feed: str = typer.Option("hyperliquid", "--feed", help="hyperliquid (poll closed candles) or "
                             "replay (play --data from --start to --end)."),
    data: str = typer.Option(None, "--data", help="replay: a dataset folder (e.g. "
                             "../shared/data/hyperliquid), a store root, a candles parquet file, or "
                             "'embedded' (synthetic)."),
    start: str = typer.Option(None, "--start", help="replay: first bar to trade (UTC date or time)."),
    end: str = typer.Option(None, "--end", help="replay: bars opening before this time (exclusive)."),
    speed: float = typer.Option(0.0, "--speed", min=0.0, help="replay: X times real time; 0 plays "
                                "as fast as possible."),
    interval: str = typer.Option(None, "--interval", help="Trade the buckets of this interval "
                                 "(needed when the file mixes intervals)."),
    coins: str = typer.Option("", "--coins", help="Extra coins for the market the strategies see "
                              "(comma separated); the buckets' coins and BTC are always in."),
    equity: float = typer.Option(10_000.0, "--equity", min=0.0, help="Paper starting equity (USD)."),
    risk_fraction: float = typer.Option(0.01, "--risk-fraction", help="R sizing: equity risked "
                                        "per trade at the stop."),
    max_positions: int = typer.Option(5, "--max-positions", min=1, help="Concurrent positions."),
    max_leverage: float = typer.Option(3.0, "--max-leverage", min=0.0, help="Gross notional / equity cap."),
    daily_loss_halt: float = typer.Option(0.05, "--daily-loss-halt", help="Day's loss that halts "
                                          "new entries until 00:00 UTC (and flattens)."),
    kill_drawdown: float = typer.Option(0.25, "--kill-drawdown", help="Drawdown from the peak that "
                                        "flattens and writes the kill-switch file."),
    kill_file: Path = typer.Option(None, "--kill-file", help="Kill-switch file (default "
                                   "<ledger>.KILL): while it exists no new entry is taken. Kept "
                                   "in the ledger: a restart must name the same file (or none)."),
    warmup_bars: int = typer.Option(500, "--warmup-bars", min=1, help="Bars before the first "
                                    "traded bar that the strategies see."),
    health_port: int = typer.Option(None, "--health-port", min=0, max=65535, help="Serve /health "
                                    "and /status as JSON on 127.0.0.1:PORT."),
    base_url: str = typer.Option(None, "--base-url", help="hyperliquid: Info API base URL "
                                 "(default mainnet)."),
    testnet: bool = typer.Option(False, "--testnet", help="hyperliquid: use the testnet URL."),
    poll_seconds: float = typer.Option(20.0, "--poll-seconds", min=0.1, help="hyperliquid: seconds "
                                       "between polls while a candle is due."),
    store: str = typer.Option("data", "--store", help="Local store: --data embedded's cache, and "
                              "where the hyperliquid feed records its coins' asset contexts and "
                              "books (as `sweep data sync --contexts`)."),
    detail: str = typer.Option(None, "--detail", help="replay: walk bars whose outcome depends on "
                               "the order inside them through these lower-interval bars (15m, 5m, "
                               "1m where the data has them), as `sweep run --detail` does."),
    results: Path = typer.Option(Path("results"), "--results", help="Results folder: the ledger "
                                 "is registered there for `python -m sweep sql` (paper_* views)."),
) -> None:
    """Trade the promoted buckets with paper money on live or replayed candles."""
    if (candidates is None) == (not demo):
        raise ConfigError("give --candidates FILE (written by `python -m sweep promote`) or --demo")
    health = _health_server(health_port)  # bound first: a port in use is refused before any write
    made = None
    if demo:
        candidates = made = demo_candidates(ledger)
        out.print(f"demo: the example candidates re-stamped for harness {harness_hash()} in "
                  f"{candidates}", style="dim")
    opts = PaperOptions(
        candidates=candidates, ledger=ledger, feed=feed, data=data, start=start, end=end,
        speed=speed, interval=interval,
        coins=tuple(c.strip() for c in coins.split(",") if c.strip()),
        sim=sim_config(equity, risk_fraction, max_positions, max_leverage, daily_loss_halt,
                       kill_drawdown),
        warmup_bars=warmup_bars, kill_file=kill_file, base_url=base_url,
        testnet=testnet, poll_seconds=poll_seconds, store=store, results=results, detail=detail,
    )
    loop = Loop()
    with signals_installed(loop):
        try:
            engine, source = open_paper(opts, sleep=loop.sleep)
        except BaseException:
            if health is not None:
                health.close()
            if made is not None:  # a refused start leaves nothing behind
                made.unlink(missing_ok=True)
            raise
        if health is not None:
            health.start()
        try:
            if health is not None:
                publish(engine, health)
                out.print(f"health: http://127.0.0.1:{health.port}/health and /status", style="dim")
            out.print(f"paper executor: {len(engine.loaded.books)} book(s), {engine.loaded.n_buckets} "
                      f"bucket(s), {engine.settings.interval} on {', '.join(engine.settings.coins)}; "
                      f"ledger {ledger}")
            if feed == "replay":
                with Progress(TextColumn("[bold]replay"), BarColumn(), MofNCompleteColumn(),
                              TextColumn("{task.description}"), TimeRemainingColumn(), console=out,
                              transient=True) as bar:
                    done_before = source.n_bars - _remaining(engine, source)
                    task = bar.add_task("", total=source.n_bars, completed=done_before)

                    def step(e: Engine, n: int) -> None:
                        bar.update(task, advance=n, description=f"{e.last_ts:%Y-%m-%d %H:%M} equity "
                                                                f"{e.last_equity:,.2f}")
                    run(engine, source, opts, loop, health, on_bar=step)
            else:
                def line(e: Engine, n: int) -> None:
                    out.print(f"{e.last_ts:%Y-%m-%d %H:%M} closed: equity {e.last_equity:,.2f}")
                run(engine, source, opts, loop, health, on_bar=line)
            _summary(engine.ledger)
        finally:
            if health is not None:
                health.stop()
            engine.ledger.close()


def demo_candidates(ledger: Path) -> Path:
    """The shipped example candidates, re-stamped for this harness, beside the ledger."""
    if not ledger.parent.is_dir():
        raise ConfigError(f"--ledger {ledger}: folder {ledger.parent} does not exist")
    path = ledger.with_name(ledger.name + ".demo-candidates.json")
    write_candidates(load_example(harness_hash()), path)
    return path
def _health_server(port: int | None) -> HealthServer | None:
    if port is None:
        return None
    try:
        return HealthServer(port)
    except OSError as exc:
        raise ConfigError(f"--health-port {port}: cannot listen on 127.0.0.1:{port} "
                          f"({exc.strerror}); pick a free port or drop --health-port") from None


def _remaining(engine: Engine, source) -> int:
    if engine.last_ts is None:
        return source.n_bars
    return int((source.market.index > engine.last_ts).sum())


def _fmt(v, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    if pct:
        return f"{v:.1%}"
    return f"{v:,.2f}" if isinstance(v, float) else str(v)


def _summary(led: Ledger) -> None:
    s = report.status(led)
    t = Table(title="Paper ledger", show_header=False)
    t.add_column("", style="bold")
    t.add_column("")
    halts = s["halts"]
    rows = [
        ("feed", f"{s['feed']} ({s['source']})"), ("interval", s["interval"]),
        ("last candle", s["last_candle"] or "-"), ("bars processed", str(s["bars"])),
        ("session", str(s["session"])), ("equity", _fmt(s["equity"])),
        ("return", _fmt(s["equity"] / s["initial_equity"] - 1.0, pct=True)),
        ("today's PnL", _fmt(s["today_pnl"])), ("realized PnL", _fmt(s["realized_pnl"])),
        ("closed trades", str(s["closed_trades"])), ("open positions", str(len(s["open_positions"]))),
        ("halts", ", ".join(k for k in ("kill_file", "kill_switch", "daily_halt", "stale_feed")
                            if halts[k]) or "none"),
    ]
    for k, v in rows:
        t.add_row(k, v)
    out.print(t)


def _cell(check, pct: bool = False) -> str:
    if check.name == "sharpe":
        val = f"{check.value:.2f}" if check.value == check.value else "-"
    else:
        val = _fmt(check.value, pct)
    style = VERDICT_STYLE.get(check.verdict, "yellow")
    return f"[{style}]{val} ({check.verdict})[/{style}]"


@app.command("status")
def status_command(
    ledger: Path = typer.Option(..., "--ledger", "-l", help="The paper ledger to read."),
    kill_file: Path = typer.Option(None, "--kill-file", help="Kill-switch file (default: the one "
                                   "the ledger was started with)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Positions, equity, today's PnL, halt flags and the paper-to-live graduation check."""
    led = Ledger.open_readonly(ledger)
    try:
        s = report.status(led, kill_file)
        if not s.get("started"):
            raise HarnessError(f"{ledger} has no paper run yet: start `python -m executor paper`")
        grads = report.graduation(led)
    finally:
        led.close()
    if as_json:
        s["graduation"] = [{"scope": g.scope, "days": g.days, "trades": g.trades, "verdict": g.verdict,
                            "checks": [c.__dict__ for c in g.checks]} for g in grads]
        sys.stdout.write(to_json(s) + "\n")
        return
    led = Ledger.open_readonly(ledger)
    try:
        _summary(led)
    finally:
        led.close()
    pos = Table(title="Open positions")
    for col in ("coin", "side", "bucket", "entry", "price", "size", "1R", "unrealized"):
        pos.add_column(col, justify="left" if col in ("coin", "side", "bucket", "entry") else "right")
    for p in s["open_positions"]:
        pos.add_row(p["coin"], p["side"], p["bucket"], p["entry_ts"], f"{p['entry_price']:.6g}",
                    f"{p['size']:.6g}", f"{p['stop_distance']:.6g}", _fmt(p["unrealized"]))
    if not s["open_positions"]:
        pos.add_row("(none)", *[""] * 7)
    out.print(pos)
    g = Table(title="Graduation: Sharpe > 0.3, max DD < 25%, win rate > 40%, >= 20 trading days")
    for col in ("scope", "days", "trades", "sharpe", "max DD", "win rate", "verdict"):
        g.add_column(col, justify="left" if col in ("scope", "verdict") else "right")
    for gr in grads:
        checks = {x.name: x for x in gr.checks}
        style = VERDICT_STYLE.get(gr.verdict, "yellow")
        g.add_row(gr.scope, str(gr.days), str(gr.trades), _cell(checks["sharpe"]),
                  _cell(checks["max_drawdown"], True), _cell(checks["win_rate"], True),
                  f"[{style}]{gr.verdict}[/{style}]")
    out.print(g)


def main() -> None:
    app()  # OneLineGroup: every failure is one line on stderr and a non-zero exit
