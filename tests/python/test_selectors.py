"""The two schedules of selectors.yml: every model belongs to exactly one, the daily one holds
everything a send needs, and the weekly one only the training the daily runs reuse and what
retrains at past dates."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import DBT, DEMO_VARS, REPO

WEEKLY = {
    "recommender_stages",
    "evaluation_results",
    "campaign_backtest_results",
    "model_evaluation",
    "model_evaluation_parameters",
    "calibration_curve",
    "campaign_backtest",
    "campaign_backtest_weekly",
    "campaign_lift",
}


def _ls(*args: str) -> list[dict]:
    done = subprocess.run(
        [DBT, "ls", "--quiet", "--output", "json", "--output-keys", "name resource_type tags"]
        + ["--vars", json.dumps(DEMO_VARS), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.mark.dbt
def test_every_model_is_on_exactly_one_schedule():
    models = _ls("--resource-type", "model")
    schedules = {m["name"]: {"daily", "weekly"} & set(m["tags"]) for m in models}
    assert all(len(tags) == 1 for tags in schedules.values()), schedules
    assert {name for name, tags in schedules.items() if tags == {"weekly"}} == WEEKLY


@pytest.mark.dbt
def test_the_daily_selector_holds_everything_a_send_needs_and_nothing_weekly():
    daily = {n["name"] for n in _ls("--selector", "daily", "--resource-type", "model")}
    weekly = {n["name"] for n in _ls("--selector", "weekly", "--resource-type", "model")}
    assert weekly == WEEKLY and not daily & weekly
    # the sync tables and everything upstream of them
    upstream = {
        n["name"]
        for n in _ls("--select", "+notification_sync +email_digest", "--resource-type", "model")
    }
    # the one weekly model upstream is the stored stages, which the daily run reads when they
    # exist and replaces by training itself when not (test_stages_reuse.py)
    assert upstream - daily == {"recommender_stages"}
    # the seeds the daily models read run with them, the demo's seeds never; data tests run
    # with their models, unit tests (fixed inputs) only in their own selector, which CI runs
    kinds = {(n["resource_type"], n["name"]) for n in _ls("--selector", "daily")}
    assert ("seed", "campaigns") in kinds and ("seed", "event_type_weights") in kinds
    assert not {name for kind, name in kinds if kind == "seed"} & {"raw_users", "demo_campaigns"}
    assert any(kind == "test" for kind, _ in kinds)
    assert not any(kind == "unit_test" for kind, _ in kinds)
    every_unit_test = {n["name"] for n in _ls("--resource-type", "unit_test")}
    assert (
        every_unit_test and {n["name"] for n in _ls("--selector", "unit_tests")} == every_unit_test
    )
