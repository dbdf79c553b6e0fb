"""The campaign rules live in stg_campaigns (SQL): a bad row stops the build through the test
campaigns_are_valid, naming the campaign, the column and the value; the library's Campaign
config reads that verdict, and on frames built without dbt applies the same rules (kept
equal here, row by row)."""

from __future__ import annotations

import re

import duckdb
import pandas as pd
import pytest

from conftest import DEMO_VARS, run_dbt
from proactive_recs.notifications.campaign import validate_campaigns

COLUMNS = [
    "campaign_id",
    "campaign_type",
    "channel",
    "trigger",
    "trigger_days",
    "item_list",
    "audience_size",
    "min_relevance",
    "priority",
    "items_per_digest",
    "max_sends_per_user_week",
    "is_active",
]
PUSH = dict(campaign_type="item_push", channel="push", trigger="new_items", trigger_days="7",
            audience_size="100", is_active="true")  # fmt: skip
DIGEST = dict(campaign_type="digest", channel="email", items_per_digest="5", is_active="yes")

# campaign id -> (its row, the column whose rule it breaks; None = valid)
CASES = {
    "ok_push": (PUSH, None),
    "ok_digest": (DIGEST | {"priority": "0.5", "max_sends_per_user_week": "2"}, None),
    "ok_list": (PUSH | {"trigger": "Item_List", "item_list": "a, b", "trigger_days": None}, None),
    "bad_type": (PUSH | {"campaign_type": "banner"}, "campaign_type"),
    "bad_channel": (PUSH | {"channel": "sms"}, "channel"),
    "no_channel": (PUSH | {"channel": None}, "channel"),
    "bad_trigger": (PUSH | {"trigger": "weekly"}, "trigger"),
    "no_days": (PUSH | {"trigger_days": None}, "trigger_days"),
    "text_days": (PUSH | {"trigger_days": "a week"}, "trigger_days"),
    "negative_days": (PUSH | {"trigger_days": "-1"}, "trigger_days"),
    "no_audience": (PUSH | {"audience_size": None}, "audience_size"),
    "half_audience": (PUSH | {"audience_size": "2.5"}, "audience_size"),
    "zero_audience": (PUSH | {"audience_size": "0"}, "audience_size"),
    "empty_list": (PUSH | {"trigger": "item_list", "item_list": " , "}, "item_list"),
    "digest_trigger": (DIGEST | {"trigger": "new_items"}, "trigger"),
    "no_items": (DIGEST | {"items_per_digest": None}, "items_per_digest"),
    "text_relevance": (DIGEST | {"min_relevance": "high"}, "min_relevance"),
    "negative_priority": (DIGEST | {"priority": "-2"}, "priority"),
    "half_cap": (DIGEST | {"max_sends_per_user_week": "1.5"}, "max_sends_per_user_week"),
    "blank_active": (DIGEST | {"is_active": " "}, "is_active"),
    "maybe_active": (DIGEST | {"is_active": "maybe"}, "is_active"),
}


def _table() -> pd.DataFrame:
    rows = [{"campaign_id": cid, **row} for cid, (row, _) in CASES.items()]
    rows.append({"campaign_id": "twice", **DIGEST})
    rows.append({"campaign_id": "twice", **DIGEST})
    return pd.DataFrame(rows).reindex(columns=COLUMNS).astype("string")


def _column_named(message: str) -> str:
    return re.search(r"column (\w+)", message).group(1)


@pytest.mark.parametrize("cid", list(CASES))
def test_the_library_applies_the_same_rules_to_a_frame_without_a_verdict(cid):
    row, column = CASES[cid]
    frame = pd.DataFrame([{"campaign_id": cid, **row}])
    if column is None:
        assert [c.campaign_id for c in validate_campaigns(frame)] == [cid]
    else:
        with pytest.raises(ValueError, match=f"campaign '{cid}'") as error:
            validate_campaigns(frame)
        assert _column_named(str(error.value)) == column


@pytest.mark.dbt
def test_stg_campaigns_judges_every_row_and_the_test_names_each_bad_campaign(demo_copy):
    with duckdb.connect(str(demo_copy)) as con:
        con.execute("create schema crm")
        con.register("given", _table())
        con.execute("create table crm.campaigns as select * from given")
    vars_ = {**DEMO_VARS, "proactive_recs_campaigns_table": "crm.campaigns"}
    result = run_dbt(["build", "--select", "stg_campaigns"], demo_copy, vars_)
    out = result.stdout
    assert result.returncode != 0, out[-3000:]
    assert "FAIL" in out and "campaigns_are_valid" in out
    for cid, (_row, column) in CASES.items():
        if column is not None:
            assert f"campaign '{cid}': column {column} " in out, (cid, out[-4000:])
    assert "campaign 'twice': column campaign_id is duplicated" in out
    assert "got 2.5" in out and "got sms" in out  # the value as given

    with duckdb.connect(str(demo_copy), read_only=True) as con:
        staged = con.sql("select * from main.stg_campaigns").df()
    verdict = staged.groupby("campaign_id")["campaign_problem"].first()
    for cid, (_row, column) in CASES.items():
        got = verdict[cid]
        assert (None if pd.isna(got) else _column_named(got)) == column, (cid, got)
    valid = staged[staged["campaign_problem"].isna()]
    typed = valid.set_index("campaign_id")
    assert typed.loc["ok_digest", "priority"] == 0.5 and typed.loc["ok_push", "min_relevance"] == 0
    assert bool(typed.loc["ok_digest", "is_active"])  # "yes"
    # the library reads the verdict: it stops on the first bad campaign, naming it
    with pytest.raises(ValueError, match=r"\(stg_campaigns\)"):
        validate_campaigns(staged)
    assert [c.campaign_id for c in validate_campaigns(valid)] == ["ok_digest", "ok_list", "ok_push"]
