"""Shadow trades: the executor's record of what the loose (shadow) net would have done.

The independent side: the strategy's shadow signals over the whole period, unmasked, one
`simulate` call with the executor's SimConfig. The executor instead runs the kernel bar by bar
on the shadow signals it generated; its `shadow_trades` must be the twin's closed trades, and a
restart half-way must add none twice.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from _executor_helpers import backtest, every_bucket, ledger_table, write_candidates

from executor.books import TRADED_FRICTION
from executor.runner import PaperOptions, open_paper, run
from harness.simulate import SimConfig
from strategies.base import get_strategy, make_params

COINS = ("AVAX", "BTC", "DOGE", "ETH", "LINK")
START, MID, END = "2024-03-01", "2024-03-06", "2024-03-11"
SIM = SimConfig(max_positions=3)


def _opts(tmp, end: str) -> PaperOptions:
    # one narrow promoted bucket: the shadow trades do not depend on the buckets
    cands = write_candidates(tmp / "c.json", every_bucket("zscore_reversion", COINS, interval="4h",
                                                          sides=("long",), sessions=("ASIA",),
                                                          regimes=("LONG",), vols=("mid",)))
    return PaperOptions(candidates=cands, ledger=tmp / "p.sqlite", feed="replay", data="embedded",
                        start=START, end=end, warmup_bars=300, sim=SIM, results=None)


def _twin(feed) -> pd.DataFrame:
    m, first = feed.market, feed.first
    strat = get_strategy("zscore_reversion")
    p = make_params(strat.params_cls, {})
    sig = strat.generate(m, p, "shadow", strat.fit(m.slice(0, first), p))
    t = backtest(m, sig, first, SIM).trades(0)
    return t[t.exit_reason != "end_of_data"].sort_values(["entry_ts", "coin", "side"], ignore_index=True)


def test_shadow_trades_match_the_kernel_on_shadow_signals_and_survive_a_restart(tmp_path):
    engine, feed = open_paper(_opts(tmp_path, MID))  # the first half, then a restart
    assert run(engine, feed, _opts(tmp_path, MID)) > 0
    half = len(ledger_table(engine.ledger.path, "shadow_trades", "entry_ts"))
    engine.ledger.close()
    opts = _opts(tmp_path, END)
    engine, feed = open_paper(opts)
    assert run(engine, feed, opts) > 0
    assert run(engine, feed, opts) == 0  # and the same replay again does nothing
    path = engine.ledger.path
    engine.ledger.close()

    got = ledger_table(path, "shadow_trades", "entry_ts, coin, side")
    want = _twin(feed)
    assert 0 < half < len(got), "the case must record shadow trades on both sides of the restart"
    assert len(got) == len(want) >= 10
    assert not got.duplicated(["strategy", "coin", "entry_ts", "side"]).any()
    iso = lambda s: pd.to_datetime(s, utc=True)  # noqa: E731
    assert list(got.coin) == list(want.coin)
    assert (got.side.to_numpy() == want.side.to_numpy()).all()
    assert (iso(got.entry_ts) == iso(want.entry_ts)).all()
    assert (iso(got.exit_ts) == iso(want.exit_ts)).all()
    assert list(got.exit_reason) == list(want.exit_reason)
    for k in ("session", "regime", "vol_bucket"):
        assert list(got[k]) == list(want[k]), k
    for k in ("r_multiple", "pnl", "fees", "funding"):
        np.testing.assert_allclose(got[k].astype(float), want[k], rtol=0, atol=1e-9, err_msg=k)
    assert set(got.friction) == {TRADED_FRICTION.version} and set(got.strategy) == {"zscore_reversion"}
    # unmasked: shadow trades outside the promoted bucket are recorded
    outside = (got.side != 1) | (got.session != "ASIA") | (got.regime != "LONG") | (got.vol_bucket != "mid")
    assert outside.any()
