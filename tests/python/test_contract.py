"""The source contract has one Python copy (proactive_recs.contract) and one dbt copy (the
macro proactive_recs_required_columns); every user of it agrees."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from proactive_recs.contract import CHANNELS, REQUIRED_COLUMNS
from proactive_recs_tools import generate, online_retail, validation

REPO = Path(__file__).resolve().parents[2]


def _macro_columns() -> dict[str, list[str]]:
    text = (REPO / "macros" / "sources.sql").read_text()
    body = re.search(r"macro proactive_recs_required_columns\(\).*?return\((\{.*?\})\)", text, re.S)
    assert body, "macro proactive_recs_required_columns not found"
    return ast.literal_eval(body.group(1))


def test_dbt_macro_and_python_contract_are_the_same():
    assert _macro_columns() == {k: list(v) for k, v in REQUIRED_COLUMNS.items()}


def test_generator_loader_and_checks_start_from_the_contract():
    assert validation.SOURCE_COLUMNS == REQUIRED_COLUMNS
    for source, required in REQUIRED_COLUMNS.items():
        assert generate.COLUMNS[source][: len(required)] == required
        loaded = online_retail.TABLE_COLUMNS[f"raw_{source}"]
        assert loaded[: len(required)] == required
    assert generate.COLUMNS["users"][-1] == "loyalty_group"
    assert online_retail.TABLE_COLUMNS["raw_transactions"][-2:] == ("invoice_no", "unit_price")


def test_dbt_and_python_name_the_same_channels():
    text = (REPO / "macros" / "sources.sql").read_text()
    body = re.search(r"macro proactive_recs_channels\(\).*?return\((\[.*?\])\)", text, re.S)
    assert body, "macro proactive_recs_channels not found"
    assert tuple(ast.literal_eval(body.group(1))) == CHANNELS
    # every other home reads one of the two copies
    assert validation.CHANNELS is CHANNELS and generate.CHANNELS is CHANNELS
