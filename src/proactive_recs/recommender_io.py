"""Shaping frames between the dbt models and :func:`proactive_recs.serving.score`.

The dbt side hands over context tables (int_user_context, int_item_context) and the
evaluated filters/boosters (user_targeting, item_targeting); the scorer wants one frame per
side with eligibility, filter and boost. Its result goes back to dbt as one long frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # serving imports implicit; dbt models check for it first (require_packages)
    from .serving import ScoreResult

SCORES_TARGET = "scores"  # the targeting rows that come from the vars, not a campaign

LONG_COLUMNS = [
    "record_type",
    "user_id",
    "item_id",
    "rank",
    "score",
    "is_fallback",
    "because_item_id",
    "basis",
    "reason",
    "factors",
    "parameter",
    "value",
    "stage",
]


def read_interactions(relation) -> pd.DataFrame:
    """int_interactions as the normalised frame the library expects, read once: the
    library's own normalising then returns it as it is, so a model holds one copy of the
    interactions instead of two (a GB each at 20M rows)."""
    from .dbt_io import to_pandas
    from .interactions import normalise_interactions

    return normalise_interactions(to_pandas(relation))


def _targeting_for_scores(targeting: pd.DataFrame, key: str) -> pd.DataFrame:
    rows = targeting[targeting["target"] == SCORES_TARGET]
    return rows[[key, "passes_filter", "boost"]]


def user_frame_for_scoring(user_context: pd.DataFrame, user_targeting: pd.DataFrame):
    """user_id, is_eligible, passes_filter, boost: who may be recommended to, and how much."""
    users = user_context[["user_id", "is_eligible"]].merge(
        _targeting_for_scores(user_targeting, "user_id"), on="user_id", how="left"
    )
    # A user missing from the targeting table was not evaluated: do not serve them.
    users["passes_filter"] = users["passes_filter"].fillna(False).astype(bool)
    users["boost"] = users["boost"].fillna(1.0).astype(float)
    users["is_eligible"] = users["is_eligible"].fillna(False).astype(bool)
    return users


# int_item_context columns that describe this run or the item's history, not the item:
# the scorer computes its own history features, so they are not handed over.
_RUN_COLUMNS = [
    "availability_status",
    "is_available",
    "n_interactions",
    "n_users",
    "days_since_available",
]


def _item_attributes(item_context: pd.DataFrame) -> pd.DataFrame:
    """item_id, title, category, price, availability and every extra attribute column
    (the day-0 model learns from them; see proactive_recs.coldstart)."""
    return item_context.drop(columns=[c for c in _RUN_COLUMNS if c in item_context])


def item_frame_for_scoring(item_context: pd.DataFrame, item_targeting: pd.DataFrame):
    """item_id, its attributes (title, category, price, extras), available_from,
    available_until, passes_filter, boost."""
    items = _item_attributes(item_context).merge(
        _targeting_for_scores(item_targeting, "item_id"), on="item_id", how="left"
    )
    items["passes_filter"] = items["passes_filter"].fillna(False).astype(bool)
    items["boost"] = items["boost"].fillna(1.0).astype(float)
    return items


def _factor_rows(
    factors: pd.DataFrame, id_col: str, record_type: str, as_arrays: bool
) -> pd.DataFrame:
    value_cols = [c for c in factors.columns if c != id_col]
    matrix = factors[value_cols].to_numpy(dtype=np.float64)
    # One float64 array per row (views of the matrix) where the warehouse reads them as
    # lists (DuckDB); Python lists of Python floats cost ~2 GB at 1M users.
    vectors = list(matrix) if as_arrays else [row.tolist() for row in matrix]
    return pd.DataFrame(
        {"record_type": record_type, id_col: factors[id_col].to_numpy(), "factors": vectors}
    )


def long_recommendation_frame(result: ScoreResult, factor_arrays: bool = True) -> pd.DataFrame:
    """Every output of one scoring run as rows of one frame (see LONG_COLUMNS).
    ``factor_arrays``: factor vectors as numpy arrays (DuckDB) or Python lists (Snowpark,
    whose DataFrame conversion does not take arrays in cells)."""
    parts = [
        result.user_item_scores.assign(record_type="user_item"),
        result.item_user_scores.assign(record_type="item_user"),
        result.prelaunch_item_user_scores.assign(record_type="prelaunch_item_user"),
        result.unscored_items.assign(record_type="unscored_item"),
        _factor_rows(result.user_factors, "user_id", "user_factor", factor_arrays),
        _factor_rows(result.item_factors, "item_id", "item_factor", factor_arrays),
        result.params.assign(record_type="parameter"),
    ]
    # Empty parts (no pre-launch items, nothing unscored) add nothing but a pandas warning;
    # the columns they would have brought are added below.
    long = pd.concat([part for part in parts if len(part)], ignore_index=True)
    for column in LONG_COLUMNS:
        if column not in long:
            long[column] = None
    long["stage"] = result.stage
    long["rank"] = long["rank"].astype("Int64")
    long["score"] = long["score"].astype(float)
    long["is_fallback"] = long["is_fallback"].astype("boolean")
    for column in (
        "record_type",
        "user_id",
        "item_id",
        "because_item_id",
        "basis",
        "reason",
        "parameter",
        "value",
        "stage",
    ):
        long[column] = long[column].astype("string")
    return long[LONG_COLUMNS]


def evaluation_items(item_context: pd.DataFrame) -> pd.DataFrame:
    """Items as the served model sees them in evaluation: availability windows apply (the
    product never recommends outside them), var filters and boosts do not (they are business
    choices of today's run, not part of model quality)."""
    return _item_attributes(item_context).assign(passes_filter=True, boost=1.0)


EVALUATION_COLUMNS = [
    "record_type",
    "model",
    "direction",
    "segment",
    "metric",
    "k",
    "value",
    "parameter",
    "parameter_value",
    "bin",
    "mean_predicted",
    "observed_rate",
    "n",
    "eval_cutoff",
    "horizon_days",
]


MF_PARAMETERS = {"factors": int, "regularization": float, "alpha": float, "iterations": int}


def mf_params_used(params: pd.DataFrame, model: str) -> dict:
    """The matrix-factorization hyper-parameters a model of an evaluation used (typed)."""
    rows = params[params["model"] == model].set_index("parameter")["value"]
    return {name: kind(float(rows[name])) for name, kind in MF_PARAMETERS.items() if name in rows}


def long_evaluation_frame(result, cutoff, horizon_days, extra_metrics=None) -> pd.DataFrame:
    """Metrics (record_type 'metric') and hyper-parameters used ('parameter') in one frame."""
    metrics = pd.concat([result.metrics, extra_metrics], ignore_index=True).assign(
        record_type="metric"
    )
    params = result.params.rename(columns={"value": "parameter_value"}).assign(
        record_type="parameter"
    )
    curves = result.calibration if result.calibration is not None else pd.DataFrame()
    long = pd.concat([metrics, params, curves.assign(record_type="calibration")], ignore_index=True)
    for column in EVALUATION_COLUMNS:
        if column not in long:
            long[column] = None
    long["eval_cutoff"] = pd.Timestamp(cutoff)
    long["horizon_days"] = float(horizon_days)
    for column in ("k", "bin", "n"):
        long[column] = long[column].astype("Int64")
    for column in ("mean_predicted", "observed_rate"):
        long[column] = long[column].astype(float)
    long["value"] = long["value"].astype(float)
    for column in (
        "record_type",
        "model",
        "direction",
        "segment",
        "metric",
        "parameter",
        "parameter_value",
    ):
        long[column] = long[column].astype("string")
    return long[EVALUATION_COLUMNS]
