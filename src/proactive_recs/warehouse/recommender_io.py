"""Shaping frames between the dbt models and :func:`proactive_recs.recommender.two_stage.score`.

The dbt side hands over context tables (int_user_context, int_item_context) and the
evaluated filters/boosters (user_targeting, item_targeting); the scorer wants one frame per
side with eligibility, filter and boost. Its result goes back to dbt as one long frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

if TYPE_CHECKING:  # serving imports implicit; dbt models check for it first (require_packages)
    from proactive_recs.recommender.two_stage import ScoreResult

SCORES_TARGET = "scores"  # the targeting rows that come from the vars, not a campaign


def read_interactions(relation) -> pd.DataFrame:
    """int_interactions as the normalised frame the library expects, read once: the
    library's own normalising then returns it as it is, so a model holds one copy of the
    interactions instead of two (a GB each at 20M rows)."""
    from proactive_recs.data.interactions import normalise_interactions
    from proactive_recs.warehouse.dbt_io import to_pandas

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


# int_item_context columns that describe the item's history, not the item: the scorer
# computes its own history features, so they are not handed over. SQL's availability flag
# and the instant it holds for (is_available, availability_as_of) are: the library reads the
# flag at that instant instead of deciding availability again (data/availability.py).
_RUN_COLUMNS = [
    "availability_status",
    "n_interactions",
    "n_users",
    "days_since_available",
]


def _item_attributes(item_context: pd.DataFrame) -> pd.DataFrame:
    """item_id, title, category, price, availability and every extra attribute column
    (the day-0 model learns from them; see proactive_recs.estimators.coldstart)."""
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


# The long frame's Arrow types (DuckDB reads them as VARCHAR, BIGINT, DOUBLE, BOOLEAN and
# DOUBLE[]; dictionary-encoded text is read as VARCHAR).
_TEXT = pa.dictionary(pa.int32(), pa.string())
_LONG_TYPES = {
    "record_type": _TEXT,
    "user_id": _TEXT,
    "item_id": _TEXT,
    "rank": pa.int64(),
    "score": pa.float64(),
    "is_fallback": pa.bool_(),
    "because_item_id": _TEXT,
    "basis": _TEXT,
    "reason": _TEXT,
    "factors": pa.large_list(pa.float64()),  # 64-bit offsets: users x factors may pass 2^31
    "parameter": _TEXT,
    "value": _TEXT,
    "stage": _TEXT,
}
LONG_COLUMNS = list(_LONG_TYPES)


def _text_column(values, n: int) -> pa.Array:
    """Text as a dictionary array: one copy of each distinct value (an id repeated over 20M
    score rows costs 4 bytes a row, not a Python string or a copy of its bytes)."""
    if values is None:
        return pa.DictionaryArray.from_arrays(pa.nulls(n, pa.int32()), pa.array([], pa.string()))
    if isinstance(values, str):
        codes = pa.array(np.zeros(n, dtype=np.int32))
        return pa.DictionaryArray.from_arrays(codes, pa.array([values], pa.string()))
    codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
    codes = pa.array(codes.astype(np.int32), mask=codes < 0)
    return pa.DictionaryArray.from_arrays(codes, pa.array(uniques.astype(str), pa.string()))


def _factor_column(factors: pd.DataFrame, id_col: str) -> pa.Array:
    """Each row's factor vector as one list cell, sharing the matrix's buffer."""
    matrix = factors[[c for c in factors.columns if c != id_col]].to_numpy(dtype=np.float64)
    n, k = matrix.shape
    offsets = pa.array(np.arange(n + 1, dtype=np.int64) * k)  # k = 0: no factors (fallback)
    return pa.LargeListArray.from_arrays(offsets, pa.array(matrix.ravel()))


def _arrow_part(frame: pd.DataFrame, record_type: str, stage: str) -> pa.Table:
    """One record type's rows with every long column (absent ones null)."""
    n = len(frame)
    columns = {}
    for name, kind in _LONG_TYPES.items():
        if name == "record_type":
            columns[name] = _text_column(record_type, n)
        elif name == "stage":
            columns[name] = _text_column(stage, n)
        elif name == "factors":
            columns[name] = pa.nulls(n, kind)
        elif name not in frame:
            columns[name] = _text_column(None, n) if kind == _TEXT else pa.nulls(n, kind)
        elif kind == _TEXT:
            columns[name] = _text_column(frame[name].to_numpy(), n)
        else:
            columns[name] = pa.array(frame[name], type=kind, from_pandas=True)
    return pa.table(columns)


def _factor_part(factors: pd.DataFrame, id_col: str, record_type: str, stage: str) -> pa.Table:
    part = _arrow_part(factors[[id_col]], record_type, stage)
    return part.set_column(
        part.schema.get_field_index("factors"), "factors", _factor_column(factors, id_col)
    )


def long_recommendation_table(result: ScoreResult) -> pa.Table:
    """Every output of one scoring run as rows of one Arrow table (see LONG_COLUMNS).

    Arrow, not pandas: at 1M users the 30M rows would cost ~200 bytes each as a pandas frame
    of object columns (plus the copy a concat makes); here each part becomes dictionary
    encoded columns once and the parts are chained without copying. DuckDB reads the table
    as it is; :func:`proactive_recs.warehouse.dbt_io.for_session` turns it into pandas for Snowpark.
    """
    parts = [
        _arrow_part(result.user_item_scores, "user_item", result.stage),
        _arrow_part(result.item_user_scores, "item_user", result.stage),
        _arrow_part(result.prelaunch_item_user_scores, "prelaunch_item_user", result.stage),
        _arrow_part(result.unscored_items, "unscored_item", result.stage),
        _factor_part(result.user_factors, "user_id", "user_factor", result.stage),
        _factor_part(result.item_factors, "item_id", "item_factor", result.stage),
        _arrow_part(result.params, "parameter", result.stage),
    ]
    # Each chunk keeps its own dictionaries (same type): chaining them copies nothing.
    return pa.concat_tables(parts)


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
