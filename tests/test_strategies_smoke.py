"""Slow: every registered strategy with default parameters on ../shared/data through the harness
(the default friction v5, walk-forward folds, base and fee stress). Prints the table; asserts sane output
(finite metrics, trades where the strategy must trade), never profitability.

Markets: hourly strategies on the coins listed over (nearly) the whole hourly span (116 coins,
about 5,000 bars); 15m strategies likewise on the 15m file (eight weeks, about 5,000 bars);
daily strategies on the 2022 bear basket (Binance daily).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
from _strategy_markets import full_span_market, real_daily_market
from rich.console import Console
from rich.table import Table

from harness.evaluate import evaluate
from harness.folds import FoldSpec
from strategies.base import registry

pytestmark = pytest.mark.slow

# Strategies expected to close trades out of sample here with their defaults. Not gem_bear: it
# holds only rising safe havens, and in the 2022 basket its growth filter first passes in
# late November (bar ~200 of 245), inside the 15% lockbox that walk-forward never reads.
MUST_TRADE = {"momentum", "mean_reversion", "ema_pullback", "trend_alpha", "zscore_reversion",
              "ou_funding", "xsection_rank", "monday_range", "order_block", "breaker", "sfp",
              "wickflow", "pairflow", "skewflow", "quantflow"}


def _markets():
    hourly, quarter, daily = full_span_market(), full_span_market("15m"), real_daily_market()
    if hourly is None or quarter is None or daily is None:
        pytest.skip("../shared/data not found (set HLQ_SHARED_DATA): strategy smoke test skipped")
    return {"1h": hourly, "15m": quarter, "1d": daily}


def test_every_strategy_evaluates_sanely_on_real_data():
    markets = _markets()
    rows, problems = [], []
    for name, strategy in sorted(registry().items()):
        market = markets.get(strategy.interval)
        if market is None:
            problems.append(f"{name}: no real market for interval {strategy.interval}")
            continue
        folds = FoldSpec().folds(strategy.interval)  # the CLI default: purge and embargo 24h
        ev = evaluate(strategy, None, market, folds=folds)  # the default friction (v5)
        rows.append((name, market, ev))
        for which, m in (("base", ev.base), ("stress", ev.stress)):
            if m.n_trades == 0:
                continue
            nan = [f.name for f in dataclasses.fields(m)
                   if isinstance(getattr(m, f.name), float) and math.isnan(getattr(m, f.name))]
            if nan:
                problems.append(f"{name}: NaN {which} metrics {nan}")
        if name in MUST_TRADE and ev.base.n_trades == 0:
            problems.append(f"{name}: no trade on the real data with default parameters")

    table = Table(title="strategies, default parameters, v4 walk-forward on ../shared/data")
    for col in ("strategy", "market", "trades", "win", "mean R", "annualized", "max DD",
                "sharpe", "stress ann.", "score", "rejected"):
        table.add_column(col, justify="left" if col in ("strategy", "market", "rejected") else "right")
    for name, market, ev in rows:
        b, s = ev.base, ev.stress
        table.add_row(name, f"{market.n_coins}x{market.n_bars} {market.interval}", f"{b.n_trades}",
                      f"{b.win_rate:.2f}", f"{b.mean_r:+.3f}", f"{b.annualized:+.1%}",
                      f"{b.max_dd:.1%}", f"{b.sharpe:+.2f}", f"{s.annualized:+.1%}",
                      f"{ev.score:+.3f}", ev.rejected or "")
    Console(width=160).print(table)
    assert not problems, "\n".join(problems)
