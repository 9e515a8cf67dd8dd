"""live_candidates.json: the schema, its example, typed loading and the atomic write."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from harness.market import INTERVALS
from harness.signals import REGIMES, SESSIONS, SIDES, VOL_BUCKETS
from schemas.candidates import (
    EXAMPLE_PATH,
    SCHEMA_PATH,
    Candidates,
    CandidatesError,
    load_candidates,
    load_example,
    load_schema,
    to_document,
    validate_document,
    write_candidates,
)


@pytest.fixture()
def example_doc() -> dict:
    return json.loads(EXAMPLE_PATH.read_text())


def test_example_is_valid_and_loads_typed(example_doc):
    validate_document(example_doc)
    c = load_candidates(EXAMPLE_PATH)
    assert isinstance(c, Candidates) and len(c.buckets) == 1
    b = c.buckets[0]
    assert b.key == ("momentum", "long", "US_MAIN", "LONG", "mid")
    assert b.coins == ("BTC", "ETH")
    assert b.evidence.lockbox.passed and b.evidence.stress.fee_mult == 1.5
    assert b.kill.window_trades == 30
    with pytest.raises(TypeError):
        b.params["ema_fast"] = 3  # read-only view: the executor cannot change what was promoted
    assert to_document(c) == example_doc  # lossless round trip


def test_example_params_build_the_strategy_params():
    from strategies.base import get_strategy, make_params

    b = load_example().buckets[0]
    p = make_params(get_strategy(b.strategy).params_cls, dict(b.params))
    assert p.ema_fast == b.params["ema_fast"]


def test_example_restamped_for_a_demo():
    assert load_example("0123456789ab").harness_hash == "0123456789ab"


def test_find_matches_only_the_bucket_and_its_coins():
    c = load_example()
    assert c.find("momentum", "BTC", "long", "US_MAIN", "LONG", "mid") is c.buckets[0]
    assert c.find("momentum", "SOL", "long", "US_MAIN", "LONG", "mid") is None
    assert c.find("momentum", "BTC", "short", "US_MAIN", "LONG", "mid") is None
    assert c.find("momentum", "BTC", "long", "ASIA", "LONG", "mid") is None
    assert c.for_strategy("mean_reversion") == ()


def test_schema_vocabularies_are_the_harness_ones():
    """The schema is a static file for other programs; its enums must not drift from harness."""
    props = load_schema()["$defs"]["bucket"]["properties"]
    assert props["session"]["enum"] == list(SESSIONS)
    assert props["regime"]["enum"] == list(REGIMES)
    assert props["vol_bucket"]["enum"] == list(VOL_BUCKETS)
    assert sorted(props["side"]["enum"]) == sorted(SIDES.values())
    assert props["interval"]["enum"] == list(INTERVALS)


def test_empty_bucket_list_is_valid(example_doc):
    example_doc["buckets"] = []
    validate_document(example_doc)


@pytest.mark.parametrize("breakage, where", [
    (lambda d: d.pop("harness_hash"), "(top level)"),
    (lambda d: d.update(schema_version=99), "schema_version"),
    (lambda d: d["buckets"][0].update(session="NY"), "buckets/0/session"),
    (lambda d: d["buckets"][0].update(side="flat"), "buckets/0/side"),
    (lambda d: d["buckets"][0].update(coins=[]), "buckets/0/coins"),
    (lambda d: d["buckets"][0]["evidence"].pop("dsr"), "buckets/0/evidence"),
    (lambda d: d["buckets"][0]["kill"].update(min_win_rate=1.5), "buckets/0/kill/min_win_rate"),
    (lambda d: d["buckets"][0].update(surprise=1), "buckets/0"),
    (lambda d: d.update(generated_at="yesterday"), "generated_at"),
])
def test_invalid_documents_are_refused_naming_where(example_doc, breakage, where):
    doc = copy.deepcopy(example_doc)
    breakage(doc)
    with pytest.raises(CandidatesError) as e:
        validate_document(doc)
    assert f" at {where}:" in str(e.value)
    assert "\n" not in str(e.value)


def test_load_refuses_bad_files(tmp_path):
    with pytest.raises(CandidatesError, match="cannot read"):
        load_candidates(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 1, ')
    with pytest.raises(CandidatesError, match="not valid JSON"):
        load_candidates(bad)
    bad.write_text('{"schema_version": 1}')
    with pytest.raises(CandidatesError, match="does not match"):
        load_candidates(bad)


def test_write_is_atomic_and_validated_before_the_rename(tmp_path):
    c = load_example()
    out = tmp_path / "sub" / "live_candidates.json"
    write_candidates(c, out)
    assert load_candidates(out) == c
    before = out.read_bytes()

    broken = replace(c, buckets=(replace(c.buckets[0], side="sideways"),))
    with pytest.raises(CandidatesError, match="side"):
        write_candidates(broken, out)
    nan = replace(c, buckets=(replace(c.buckets[0], evidence=replace(c.buckets[0].evidence,
                                                                      mean_r=math.nan)),))
    with pytest.raises(CandidatesError):
        write_candidates(nan, out)
    assert out.read_bytes() == before  # the good file is untouched
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temp files left


def test_schema_file_is_draft_2020_12():
    import jsonschema

    schema = json.loads(Path(SCHEMA_PATH).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)


def test_evidence_carries_every_field_design_section_9_names():
    """n, mean R, t, corrected p, DSR, SPA p, P(OOS loss), PBO, Sharpe, max DD, lockbox n,
    mean R and power: required, so no promote can leave one out."""
    ev = load_schema()["$defs"]["evidence"]
    assert {"n", "mean_r", "t_stat", "p_corrected", "correction", "dsr", "spa_p", "p_oos_loss",
            "pbo", "sharpe", "max_dd_r", "lockbox"} <= set(ev["required"])
    assert {"n", "mean_r", "mde"} <= set(ev["properties"]["lockbox"]["required"])
