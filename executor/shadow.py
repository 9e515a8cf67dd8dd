"""Shadow trades: what the loose net would have done, the evidence `sweep promote` reads.

After the decisions of bar t, each active book's shadow signals of this session (the Signals
the decisions already generated, not masked by buckets or guards; the cell of bar t itself
dropped, it fills at t+1) go through the same kernel, friction and SimConfig, alone, over
[session start, now]; its closed trades are added to `shadow_trades` once (key: strategy, coin,
entry_ts, side; two books of one strategy: the first book's). The run is skipped on a bar where
nothing can close or open: no shadow trade was open after the previous run and the book had no
shadow signal at t - 1 (after a restart the first bar always runs). Retired books record none.
"""

from __future__ import annotations

from dataclasses import replace

from executor.books import TRADED_FRICTION, Book
from executor.ledger import Ledger, iso_many
from executor.records import Session, ShadowTrade
from executor.settings import Settings
from harness.market import Market
from harness.signals import Signals
from harness.simulate import simulate


def record_shadow_trades(led: Ledger, settings: Settings, session: Session, market: Market,
                         n_real: int, shadows: list[tuple[Book, Signals]],
                         still_open: dict[str, bool], detail: Market | None = None) -> None:
    """Run the kernel on each book's shadow signals of this session; add its closed trades.
    `still_open` (book id -> a shadow trade was open after its last run) is updated."""
    s_idx, t = settings.row(session.start), n_real - 1
    cfg = replace(settings.sim, initial_equity=session.initial_equity)
    for book, shadow in shadows:
        fresh = t - 1 >= s_idx and bool(shadow.direction[t - 1].any())
        if not (fresh or still_open.get(book.id, True)):
            continue
        sig = Signals.empty(market, shadow.strategy)
        for name in sig.array_names():
            getattr(sig, name)[:n_real] = getattr(shadow, name)
        sig.direction[t:] = 0  # bar t's signals fill at t + 1: the next bar's run
        res = simulate(market, sig, TRADED_FRICTION, cfg, segments=[(s_idx, n_real + 1)], detail=detail)
        trades = res.trades(0)
        is_open = (trades["exit_reason"] == "end_of_data") & (trades["exit_bar"] == n_real)
        still_open[book.id] = bool(is_open.any())
        done = trades[~is_open.to_numpy()]
        if not len(done):
            continue
        led.record_shadow_trades(
            ShadowTrade(*row) for row in zip(
                [book.name] * len(done), done["coin"].astype(str), done["side"].astype(int).tolist(),
                [book.id] * len(done), done["session"].astype(str), done["regime"].astype(str),
                done["vol_bucket"].astype(str), iso_many(done["entry_ts"]), iso_many(done["exit_ts"]),
                *(done[k].astype(float).tolist() for k in ("r_multiple", "pnl", "fees", "funding")),
                done["exit_reason"].astype(str), [TRADED_FRICTION.version] * len(done), strict=True))
