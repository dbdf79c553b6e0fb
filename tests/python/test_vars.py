"""Settings given as vars: each bad one stops the build naming the var and what was found, and
one setting has one meaning (the horizon)."""

from __future__ import annotations

import json
import re
from dataclasses import fields

import duckdb
import pytest

from conftest import DEMO_VARS, REPO, run_dbt
from proactive_recs.notifications.frequency import FrequencyRules
from proactive_recs.warehouse.dbt_io import evaluation_cutoff, recommender_params


def test_the_horizon_var_reaches_the_served_model_and_a_second_horizon_stops():
    meta = {"horizon_days": "47", "recommender_params": json.dumps({"k_items": 5})}
    assert recommender_params(meta) == {"k_items": 5, "horizon_days": 47.0}
    clash = {"horizon_days": "47", "recommender_params": json.dumps({"horizon_days": 30})}
    with pytest.raises(ValueError, match="proactive_recs_horizon_days instead"):
        recommender_params(clash)
    with pytest.raises(ValueError, match="must be a map"):
        recommender_params({"horizon_days": "30", "recommender_params": "[1, 2]"})
    with pytest.raises(ValueError, match="positive number, got 'soon'"):
        recommender_params({"horizon_days": "soon"})


def test_the_evaluation_cutoff_defaults_to_one_horizon_before_the_run():
    import pandas as pd

    run = pd.Timestamp("2026-11-01 06:00")
    assert evaluation_cutoff({"horizon_days": "30", "eval_cutoff": "None"}, run) == pd.Timestamp(
        "2026-10-02 06:00"
    )
    assert evaluation_cutoff({"horizon_days": "30", "eval_cutoff": "2026-09-01"}, run) == (
        pd.Timestamp("2026-09-01")
    )


@pytest.mark.dbt
def test_the_event_vocabulary_var_replaces_the_seed(demo_copy):
    result = run_dbt(
        ["run", "--select", "stg_event_type_weights"],
        demo_copy,
        {
            **DEMO_VARS,
            "proactive_recs_event_type_weights": {" Play ": 3, "view": "1.5"},
            "proactive_recs_conversion_event_types": "PLAY",
        },
    )
    assert result.returncode == 0, result.stdout[-3000:]
    with duckdb.connect(str(demo_copy), read_only=True) as con:
        rows = con.sql(
            "select event_type, weight, is_conversion from main.stg_event_type_weights order by 1"
        ).fetchall()
    assert rows == [("play", 3.0, True), ("view", 1.5, False)]


@pytest.mark.dbt
@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"view": 1, "play": "lots"}, "the weight of event type 'play' must be a number > 0"),
        ({"view": -1}, "the weight of event type 'view' must be a number > 0"),
        ({"view": 1, "VIEW ": 2}, "names event type 'view' twice"),
        ("view", "must be a non-empty map"),
    ],
)
def test_a_bad_event_weight_stops_naming_the_event_type(demo_copy, weights, message):
    result = run_dbt(
        ["run", "--select", "stg_event_type_weights"],
        demo_copy,
        {**DEMO_VARS, "proactive_recs_event_type_weights": weights},
    )
    assert result.returncode != 0
    assert message in result.stdout, result.stdout[-3000:]


@pytest.mark.dbt
def test_a_conversion_type_that_never_occurs_warns(demo_copy):
    result = run_dbt(
        ["test", "--select", "stg_transactions,test_name:conversion_event_types_occur"],
        demo_copy,
        {**DEMO_VARS, "proactive_recs_conversion_event_types": ["purchase", "refund"]},
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "conversion event type(s) refund (var proactive_recs_conversion_event_types)" in (
        result.stdout
    )
    assert "WARN=1" in result.stdout


@pytest.mark.dbt
def test_a_campaigns_table_that_does_not_exist_stops_naming_the_var(demo_copy):
    result = run_dbt(
        ["run", "--select", "stg_campaigns"],
        demo_copy,
        {**DEMO_VARS, "proactive_recs_campaigns_table": "main.my_campaigns"},
    )
    assert result.returncode != 0
    out = result.stdout
    assert "var proactive_recs_campaigns_table = 'main.my_campaigns'" in out, out[-3000:]
    assert "Found there:" in out and "demo_campaigns" in out


@pytest.mark.dbt
def test_a_campaigns_table_without_a_required_column_stops_naming_it(demo_copy):
    with duckdb.connect(str(demo_copy)) as con:
        con.execute("create schema crm")
        con.execute(
            "create table crm.campaigns as select campaign_id, campaign_type "
            "from main.demo_campaigns"
        )
    result = run_dbt(
        ["run", "--select", "stg_campaigns"],
        demo_copy,
        {**DEMO_VARS, "proactive_recs_campaigns_table": "crm.campaigns"},
    )
    assert result.returncode != 0
    assert "lacks column(s) channel. Found: campaign_id, campaign_type" in result.stdout, (
        result.stdout[-3000:]
    )


@pytest.mark.dbt
def test_an_unknown_frequency_rule_stops_naming_it_and_the_known_rules(demo_copy):
    result = run_dbt(
        ["run", "--select", "notification_plan"],
        demo_copy,
        {**DEMO_VARS, "proactive_recs_frequency_rules": {"email_cap_per_wek": 2}},
    )
    assert result.returncode != 0
    assert "unknown rule(s) ['email_cap_per_wek']; known: [" in result.stdout, result.stdout[-3000:]


@pytest.mark.dbt
def test_a_var_under_its_old_name_is_named_with_its_new_one(demo_copy):
    result = run_dbt(
        ["run", "--select", "int_run_context"],
        demo_copy,
        {**DEMO_VARS, "recommender_params": {"k_items": 5}, "push_cap_per_week": 1},
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "recommender_params -> proactive_recs_recommender_params" in result.stdout
    assert "push_cap_per_week -> proactive_recs_frequency_rules: {push_cap_per_week: ...}" in (
        result.stdout
    )


def test_the_renamed_vars_warning_knows_every_frequency_rule():
    """The warning's list of old frequency-rule vars (macros/renamed_vars.sql) is the rules of
    FrequencyRules, so a rule added later is not forgotten there."""
    text = (REPO / "macros" / "renamed_vars.sql").read_text()
    listed = re.search(r"for rule in \[(.*?)\]", text, re.S).group(1)
    assert set(re.findall(r"'([a-z_]+)'", listed)) == {f.name for f in fields(FrequencyRules)}


def test_week_old_stages_are_evaluated_only_when_the_var_says_true():
    from proactive_recs.evaluation.protocol import MODELS
    from proactive_recs.warehouse.dbt_io import evaluated_models

    assert evaluated_models({"week_old_stages": "True"}) == MODELS
    for off in ({"week_old_stages": "False"}, {"week_old_stages": "None"}, {}):
        models = evaluated_models(off)
        assert "served_stages_week_old" not in models
        assert set(models) == set(MODELS) - {"served_stages_week_old"}
    with pytest.raises(ValueError, match="proactive_recs_evaluate_week_old_stages"):
        evaluated_models({"week_old_stages": "weekly"})
