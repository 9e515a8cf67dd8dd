"""SIGHUP reloads live_candidates.json between bars; an invalid file is refused and the old one kept."""

from __future__ import annotations

import os
import signal

import numpy as np
import pandas as pd
from _executor_helpers import (
    every_bucket,
    ledger_table,
    ohlc_market,
    scripted_strategy,
    write_candidates,
)

from executor.runner import Loop, PaperOptions, open_paper, run, signals_installed
from strategies import base


def test_signals_set_the_loop_flags():
    loop = Loop()
    old = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)}
    with signals_installed(loop):
        os.kill(os.getpid(), signal.SIGHUP)
        assert loop.reload and not loop.stop
        os.kill(os.getpid(), signal.SIGTERM)
        assert loop.stop
    assert {s: signal.getsignal(s) for s in old} == old  # the caller's handlers are back


def test_reload_applies_from_the_next_bar_and_refuses_a_bad_file(tmp_path, monkeypatch):
    n = 24 * 3
    m = ohlc_market(np.full((n, 2), 100.0), coins=("BTC", "C1"))
    candles = pd.DataFrame({
        "coin": np.repeat(np.array(m.coins), n), "ts": np.tile(m.index, 2),
        **{k: getattr(m, k).T.reshape(-1) for k in ("open", "high", "low", "close", "volume")}})
    data = tmp_path / "candles_1h.parquet"
    candles.to_parquet(data)
    script = {ts: {"C1": (1, 0.05)} for ts in m.index[24::3]}
    monkeypatch.setitem(base._REGISTRY, "scripted", scripted_strategy(script))
    cands = write_candidates(tmp_path / "c.json", every_bucket("scripted", ("BTC",)))
    opts = PaperOptions(candidates=cands, ledger=tmp_path / "p.sqlite", feed="replay", data=str(data),
                        start="2024-01-02", end="2024-01-04", warmup_bars=24, coins=("C1",),
                        results=None)  # C1 in the universe from the start: a reload adds buckets, not coins
    engine, feed = open_paper(opts)
    loop = Loop()

    def on_bar(e, k) -> None:
        if e.last_ts == pd.Timestamp("2024-01-02 10:00", tz="UTC"):
            write_candidates(cands, every_bucket("scripted", ("BTC", "C1")))
            loop.reload = True
        if e.last_ts == pd.Timestamp("2024-01-02 20:00", tz="UTC"):
            cands.write_text("{not json")
            loop.reload = True

    run(engine, feed, opts, loop, on_bar=on_bar)
    live = ledger_table(engine.ledger.path, "decisions", "ts").query("kind == 'live'").set_index("ts")
    assert live.loc["2024-01-02T09:00:00Z", "reason"] == "no_bucket"
    assert live.loc["2024-01-02T12:00:00Z", "reason"] == "accepted"
    assert live.loc["2024-01-03T09:00:00Z", "reason"] == "accepted"  # the bad file changed nothing
    events = ledger_table(engine.ledger.path, "events", "id")
    assert events.kind.tolist().count("reload") == 1
    refused = events[events.kind == "reload_refused"].message.tolist()
    assert len(refused) == 1 and "not valid JSON" in refused[0]
    shas = ledger_table(engine.ledger.path, "bars", "ts").candidates
    assert shas.nunique() == 2  # the sha of the file each bar was decided under
    engine.ledger.close()
