"""The Signals contract has one set of rules: `Signals.validate` (every signalling cell) and
`simulate` (the event cells it gathers) refuse the same breaches with the same message."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from _kernel_helpers import flat, make_market, signal

from harness.errors import SignalsError
from harness.signals import Signals
from harness.simulate import simulate

BREACHES = {  # field -> (value at the signalling cell, the rule it breaks)
    "direction": (2, "direction must be -1, 0 or +1"),
    "stop": (0.0, "stop must be a positive finite price distance"),
    "stop_inf": (np.inf, "stop must be a positive finite price distance"),
    "score": (np.nan, "score must be finite"),
    "target": (-1.0, "target must be NaN or a positive R multiple"),
    "trail": (0.0, "trail must be NaN or a positive R distance"),
    "hold": (-1, "hold must be >= 0 bars"),
    "session": (4, "session code outside 0..3"),
    "regime": (3, "regime code outside 0..2"),
    "vol_bucket": (-1, "vol_bucket code outside 0..2"),
}


def _one_signal():
    m = make_market({"BTC": flat(5), "ETH": flat(5)})
    sig = Signals.empty(m, "broken")
    signal(sig, 2, +1, stop=1.0, coin=1)
    return m, sig


def _refusals(m, sig) -> tuple[str, str]:
    with pytest.raises(SignalsError) as by_validate:
        sig.validate(m)
    with pytest.raises(SignalsError) as by_simulate:
        simulate(m, [Signals.empty(m, "fine"), sig])  # the breach is in the second set
    return str(by_validate.value), str(by_simulate.value)


@pytest.mark.parametrize("case", sorted(BREACHES))
def test_validate_and_simulate_refuse_the_same_breach(case):
    m, sig = _one_signal()
    value, rule = BREACHES[case]
    getattr(sig, case.removesuffix("_inf"))[2, 1] = value
    a, b = _refusals(m, sig)
    assert a == b
    assert a.startswith(f"broken: {rule}") and a.endswith(f"at coin ETH bar 2 ({m.index[2].isoformat()})")


def test_unlisted_and_wrong_dtype_are_refused_alike():
    m, sig = _one_signal()
    listed = m.listed.copy()
    listed[2, 1] = False
    a, b = _refusals(dataclasses.replace(m, listed=listed, _fingerprint=[]), sig)
    assert a == b and "not listed at coin ETH bar 2" in a
    m, sig = _one_signal()
    a, b = _refusals(m, dataclasses.replace(sig, stop=sig.stop.astype(np.float32)))
    assert a == b and "Signals.stop is (5, 2) float32, expected (5, 2) float64" in a


def test_cells_that_do_not_signal_are_not_judged():
    m, sig = _one_signal()
    sig.stop[0, 0], sig.target[0, 0], sig.hold[0, 0], sig.score[0, 0] = -1.0, -3.0, -2, np.nan
    assert sig.validate(m) is sig
    assert simulate(m, sig).metrics(0).n_trades == 1
