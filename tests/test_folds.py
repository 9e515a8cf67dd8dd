"""Walk-forward fold geometry: lockbox, purge, embargo, rolling and anchored, offsets."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import ConfigError
from harness.folds import Folds, FoldSpec, folds_from_record, to_bars


def test_default_layout_by_hand():
    plan = Folds().split(1000)
    # lockbox: last 15% = 150 bars; 850 before it; test = 850 // 5 = 170
    assert plan.lockbox == (850, 1000)
    assert plan.segments == ((170, 340), (340, 510), (510, 680), (680, 850))
    # rolling default: train = 170 - 24 purge - 24 embargo = 122 bars ending 24 before the test
    assert [f.train for f in plan.folds] == [(24, 146), (194, 316), (364, 486), (534, 656)]
    assert plan.lockbox_train == (704, 826)


def test_anchored_trains_from_bar_zero():
    plan = Folds(anchored=True, k=3, purge_bars=5, lockbox_frac=0.2).split(500)
    assert plan.lockbox == (400, 500)
    assert plan.segments == ((100, 200), (200, 300), (300, 400))
    assert [f.train for f in plan.folds] == [(0, 95), (0, 195), (0, 295)]
    assert plan.lockbox_train == (0, 395)


def test_embargo_cuts_a_rolling_window_that_starts_right_after_a_test_window():
    # test windows [200, 300), [300, 400), [400, 500); train windows by hand
    plan = Folds(k=3, test_bars=100, train_bars=180, purge_bars=10, embargo_bars=30,
                 lockbox_frac=0.0).split(500)
    assert plan.segments == ((200, 300), (300, 400), (400, 500))
    # fold 1: [110, 290); fold 2 would be [210, 390) -> inside test 0, not after an end: kept
    assert plan.folds[1].train == (110, 290)
    assert plan.folds[2].train == (210, 390)
    plan = Folds(k=3, test_bars=100, train_bars=85, purge_bars=5, embargo_bars=30,
                 lockbox_frac=0.0).split(500)
    # fold 2: stop 395, would start 310 = end of test 0 (300) + 10 < 300 + 30 -> starts at 330
    assert plan.folds[2].train == (330, 395)
    assert plan.folds[1].train == (210, 295)  # 210 is 210 - 200 = 10 into test 0: kept


def test_offset_moves_every_boundary_earlier():
    a = Folds(test_bars=100, train_bars=50, lockbox_frac=0.0).split(1000)
    b = Folds(test_bars=100, train_bars=50, lockbox_frac=0.0, offset_bars=7).split(1000)
    for fa, fb in zip(a.folds, b.folds, strict=True):
        assert fb.test == (fa.test[0] - 7, fa.test[1] - 7)
        assert fb.train == (fa.train[0] - 7, fa.train[1] - 7)
    assert b.lockbox == a.lockbox


def test_too_short_names_the_numbers():
    with pytest.raises(ConfigError, match=r"100 bars.*k=4"):
        Folds().split(100)
    with pytest.raises(ConfigError, match="fold 0"):
        Folds(test_bars=100, train_bars=500, lockbox_frac=0.0).split(600)


def test_bad_settings_are_refused():
    for kwargs in ({"k": 0}, {"purge_bars": -1}, {"lockbox_frac": 1.0}, {"test_bars": 0}):
        with pytest.raises(ConfigError):
            Folds(**kwargs)


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(200, 20_000),
    k=st.integers(1, 8),
    train=st.one_of(st.none(), st.integers(1, 3000)),
    test=st.one_of(st.none(), st.integers(1, 3000)),
    purge=st.integers(0, 50),
    embargo=st.integers(0, 50),
    anchored=st.booleans(),
    frac=st.sampled_from([0.0, 0.1, 0.15, 0.3]),
    offset=st.integers(0, 100),
)
def test_fold_invariants(n, k, train, test, purge, embargo, anchored, frac, offset):
    f = Folds(k=k, train_bars=train, test_bars=test, purge_bars=purge, embargo_bars=embargo,
              anchored=anchored, lockbox_frac=frac, offset_bars=offset)
    try:
        plan = f.split(n)
    except ConfigError:
        return
    lb0, lb1 = plan.lockbox
    assert lb1 == n and lb1 - lb0 == round(n * frac)
    assert len(plan.folds) == k
    tests = plan.segments
    assert all(b - a == tests[0][1] - tests[0][0] for a, b in tests)  # equal lengths
    assert all(tests[i][1] == tests[i + 1][0] for i in range(k - 1))  # consecutive
    assert tests[-1][1] == lb0 - offset
    for j, fold in enumerate(plan.folds):
        t0, t1 = fold.train
        assert 0 <= t0 < t1 <= fold.test[0] - purge  # purge before the test, never overlapping
        if anchored:
            assert t0 == 0
        elif train is not None:
            assert t1 - t0 <= train
        for prev in plan.folds[:j]:  # never start inside an earlier embargo zone
            assert not (prev.test[1] <= t0 < prev.test[1] + embargo)
    assert plan.lockbox_train[1] <= lb0 - purge or plan.lockbox_train[1] == plan.lockbox_train[0]


# ---------------------------------------------------------------- lengths in time

BAR_MINUTES = {"15m": 15, "1h": 60, "4h": 240, "1d": 1440}


@pytest.mark.parametrize("interval", list(BAR_MINUTES))
@pytest.mark.parametrize("text,minutes", [("15m", 15), ("24h", 1440), ("90d", 90 * 1440),
                                          ("2w", 2 * 7 * 1440), ("0h", 0), ("240m", 240)])
def test_durations_convert_exactly_to_bars(interval, text, minutes):
    bar = BAR_MINUTES[interval]
    if minutes % bar:
        with pytest.raises(ConfigError, match=f"not a whole number of {interval} bars"):
            to_bars(text, interval, "purge")
    else:
        assert to_bars(text, interval, "purge") == minutes // bar


def test_bar_counts_pass_through_and_bad_lengths_are_one_clear_error():
    assert to_bars("24", "1d") == 24 and to_bars(7, "4h") == 7
    for bad, what in (("3y", "unknown unit 'y'"), ("1.5d", "bar count"), ("-2h", "bar count"),
                      ("", "bar count"), ("h", "bar count")):
        with pytest.raises(ConfigError, match=what) as e:
            to_bars(bad, "1h", "embargo")
        assert "\n" not in str(e.value) and "embargo" in str(e.value)


def test_default_spec_keeps_hourly_folds_and_gives_daily_data_one_bar():
    assert FoldSpec().folds("1h") == Folds()  # 24h = the old default of 24 bars
    assert FoldSpec().folds("15m").purge_bars == 96
    daily = FoldSpec().folds("1d")
    assert (daily.purge_bars, daily.embargo_bars) == (1, 1)
    daily.split(245)  # the 2022 bear basket: 24-bar purge and embargo left no train window


def test_record_holds_the_bars_and_the_lengths_as_given():
    spec = FoldSpec(k=3, train="90d", test="30d", purge="2d", embargo="24h")
    folds = spec.folds("4h")
    assert (folds.train_bars, folds.test_bars, folds.purge_bars, folds.embargo_bars) == (540, 180, 12, 6)
    rec = spec.record(folds)
    assert rec["given"] == {"train": "90d", "test": "30d", "purge": "2d", "embargo": "24h"}
    assert folds_from_record(rec) == folds
    assert folds_from_record({"k": 4, "purge_bars": 24}) == Folds()  # older records: bars only
