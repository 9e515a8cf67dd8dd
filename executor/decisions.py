"""The decisions at a closed bar: every book asks its strategy for signals with the backtest's
code; each shadow signal becomes a `shadow` decision, each live one a `live` decision, accepted
when it matches a promoted bucket and no guard (kill switch, stale feed, the bucket's own kill
criteria) blocks it, recorded with the reason either way. Accepted ones become orders that
fill at the next bar's open (the kernel decides how; executor/kernel_sync.py)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from executor.books import Book, bucket_key
from executor.kernel_sync import OpenNow
from executor.ledger import Ledger, iso
from executor.records import Decision, ExitDecision
from executor.risk import bucket_kill
from harness.market import Market
from harness.signals import REGIMES, SESSIONS, SIDES, VOL_BUCKETS, Signals


@dataclass(frozen=True)
class Decided:
    n_live: int  # live signals at the bar
    n_accepted: int  # of which accepted (orders placed)
    shadows: list[tuple[Book, Signals]]  # the active books' shadow Signals over the window


def decide(led: Ledger, coins: tuple[str, ...], books: list[tuple[Book, bool]],
           fit: Callable[[Book], Any], real: Market, ts: pd.Timestamp, open_now: OpenNow,
           guard: str | None) -> Decided:
    """Shadow, live and exit decisions at bar ts (the last bar of `real`); `books` pairs each
    book with whether it is active (retired books only close their positions); `guard` is
    the reason every live signal is refused now (kill_switch, stale_feed) or None."""
    t = real.n_bars - 1
    n_live = n_acc = 0
    rows: list[Decision] = []
    exits: list[ExitDecision] = []
    shadows = []
    at = iso(ts)
    for book, active in books:
        fitted = fit(book)
        live = book.strategy.generate(real, book.params, "live", fitted)
        if active:
            shadow = book.strategy.generate(real, book.params, "shadow", fitted)
            shadows.append((book, shadow))
            for c in np.flatnonzero(shadow.direction[t]):
                rows.append(_decision(shadow, book, coins, t, c, at, "shadow", None, 0, "shadow"))
            for c in np.flatnonzero(live.direction[t]):
                n_live += 1
                coin = coins[c]
                bucket = book.match(coin, *tags(live, t, c))
                if bucket is None:
                    reason = "no_bucket"
                elif guard:
                    reason = guard
                else:
                    why = bucket_kill(led.closed_r_multiples(book.id, bucket_key(bucket)), bucket.kill)
                    reason = f"bucket_kill: {why}" if why else "accepted"
                ok = reason == "accepted"
                n_acc += ok
                rows.append(_decision(live, book, coins, t, c, at, "live", bucket, int(ok), reason))
                side = int(live.direction[t, c])
                if ok:
                    led.add_order(at, coin, book.id, book.name, bucket_key(bucket), side,
                                  float(live.score[t, c]), float(live.stop[t, c]))
                elif bucket is not None and open_now.get(coin, (0,))[0] == -side:
                    # a blocked reversal still closes the open position (no new entry)
                    exits.append(ExitDecision(at, coin, book.id, book.name, "reversal_blocked"))
        for c in np.flatnonzero(live.exit[t]):
            coin = coins[c]
            if open_now.get(coin, (0, ""))[1] == book.id:
                exits.append(ExitDecision(at, coin, book.id, book.name, "strategy_exit"))
    led.record_decisions(rows)
    led.record_exits(exits)
    return Decided(n_live, n_acc, shadows)


def tags(sig: Signals, t: int, c: int) -> tuple[str, str, str, str]:
    """(side, session, regime, vol_bucket) names of a signal cell."""
    return (SIDES[int(sig.direction[t, c])], SESSIONS[sig.session[t, c]], REGIMES[sig.regime[t, c]],
            VOL_BUCKETS[sig.vol_bucket[t, c]])


def _decision(sig: Signals, book: Book, coins: tuple[str, ...], t: int, c: int, at: str, kind: str,
              bucket: Any, accepted: int, reason: str) -> Decision:
    tgt, trail = float(sig.target[t, c]), float(sig.trail[t, c])
    return Decision(at, coins[c], book.id, kind, book.name, int(sig.direction[t, c]),
                    float(sig.stop[t, c]), None if math.isnan(tgt) else tgt, float(sig.score[t, c]),
                    *tags(sig, t, c)[1:], int(sig.setup[t, c]), int(sig.hold[t, c]),
                    None if math.isnan(trail) else trail,
                    bucket_key(bucket) if bucket is not None else None, accepted, reason)
