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

from proactive_recs.warehouse.long_tables import TEXT, long_table

if TYPE_CHECKING:  # serving imports implicit; dbt models check for it first (require_packages)
    from proactive_recs.recommender.two_stage import ScoreResult

SCORES_TARGET = "scores"  # the targeting rows that come from the vars, not a campaign


def read_interactions(relation) -> pd.DataFrame:
    """int_interactions as the normalised frame the library expects, read once: the
    library's own normalising then returns it as it is, so a model holds one copy of the
    interactions instead of two (a GB each at 20M rows)."""
    from proactive_recs.data.instants import utc_naive
    from proactive_recs.data.interactions import normalise_interactions
    from proactive_recs.warehouse.dbt_io import to_pandas

    frame = to_pandas(relation)
    if "occurred_at" in frame and pd.api.types.is_datetime64_any_dtype(frame["occurred_at"]):
        # DuckDB hands a TIMESTAMP over in microseconds; the library works in naive UTC
        # nanoseconds. Converting this one column in place keeps the frame normalised, where
        # leaving it made normalising copy every column and re-type 20M text ids (35 s and
        # 1.5 GB at L).
        frame["occurred_at"] = utc_naive(frame["occurred_at"])
    return normalise_interactions(frame)


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


def read_scoring_users(user_context, user_targeting) -> pd.DataFrame:
    """:func:`user_frame_for_scoring` from the warehouse (relations or frames): only
    user_id and is_eligible of int_user_context, only the scores' rows of user_targeting
    (the others are the campaigns'), both cut in the warehouse before anything is read."""
    from proactive_recs.warehouse.dbt_io import rows_in, to_pandas

    return user_frame_for_scoring(
        to_pandas(user_context, columns=["user_id", "is_eligible"]),
        to_pandas(rows_in(user_targeting, "target", [SCORES_TARGET])),
    )


def read_scoring_items(item_context, item_targeting) -> pd.DataFrame:
    """:func:`item_frame_for_scoring` from the warehouse: every column of int_item_context
    (the day-0 model learns from the attributes), the scores' rows of item_targeting."""
    from proactive_recs.warehouse.dbt_io import rows_in, to_pandas

    return item_frame_for_scoring(
        to_pandas(item_context), to_pandas(rows_in(item_targeting, "target", [SCORES_TARGET]))
    )


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


# The recommendations model's long table (warehouse/long_tables.py): one row per score,
# factor vector or parameter, by record_type.
RECOMMENDATION_TYPES = {
    "record_type": TEXT,
    "user_id": TEXT,
    "item_id": TEXT,
    "rank": pa.int64(),
    "score": pa.float64(),
    "is_fallback": pa.bool_(),
    "because_item_id": TEXT,
    "basis": TEXT,
    "reason": TEXT,
    "factors": pa.large_list(pa.float64()),  # 64-bit offsets: users x factors may pass 2^31
    "is_servable": pa.bool_(),
    "boost": pa.float64(),
    "parameter": TEXT,
    "value": TEXT,
    "stage": TEXT,
}
LONG_COLUMNS = list(RECOMMENDATION_TYPES)


def _factor_part(factors: pd.DataFrame, id_col: str) -> dict:
    """Each row's id, factor vector as one list cell (sharing the matrix's buffer), and
    whether the run may serve it, with its boost."""
    columns = [c for c in factors.columns if c.startswith("factor_")]
    matrix = factors[columns].to_numpy(dtype=np.float64)
    n, k = matrix.shape
    offsets = pa.array(np.arange(n + 1, dtype=np.int64) * k)  # k = 0: no factors (fallback)
    part = {
        id_col: factors[id_col],
        "factors": pa.LargeListArray.from_arrays(offsets, pa.array(matrix.ravel())),
    }
    for column in ("is_servable", "boost"):
        if column in factors:
            part[column] = factors[column]
    return part


def long_recommendation_table(result: ScoreResult, extra_params: dict | None = None) -> pa.Table:
    """Every output of one scoring run as rows of one Arrow table (see LONG_COLUMNS).

    Arrow, not pandas: at 1M users the 30M rows would cost ~200 bytes each as a pandas frame
    of object columns (plus the copy a concat makes); here each part becomes dictionary
    encoded columns once and the parts are chained without copying. DuckDB reads the table
    as it is; :func:`proactive_recs.warehouse.dbt_io.for_session` turns it into pandas for Snowpark.
    """
    parts = [
        ("user_item", result.user_item_scores),
        ("item_user", result.item_user_scores),
        ("prelaunch_item_user", result.prelaunch_item_user_scores),
        ("unscored_item", result.unscored_items),
        ("user_factor", _factor_part(result.user_factors, "user_id")),
        ("item_factor", _factor_part(result.item_factors, "item_id")),
        ("parameter", _with_extra_params(result.params, extra_params)),
    ]
    return long_table(RECOMMENDATION_TYPES, parts, constants={"stage": result.stage})


def _with_extra_params(params: pd.DataFrame, extra: dict | None) -> pd.DataFrame:
    """The fit's parameters plus what the dbt model adds about the run (e.g. where the
    stages came from)."""
    if not extra:
        return params
    added = pd.DataFrame({"parameter": list(extra), "value": [str(v) for v in extra.values()]})
    return pd.concat([params, added], ignore_index=True)


def evaluation_items(item_context: pd.DataFrame) -> pd.DataFrame:
    """Items as the served model sees them in evaluation: availability windows apply (the
    product never recommends outside them), var filters and boosts do not (they are business
    choices of today's run, not part of model quality)."""
    return _item_attributes(item_context).assign(passes_filter=True, boost=1.0)


# The evaluation_results model's long table: one row per metric, hyper-parameter used or
# calibration bin, by record_type.
EVALUATION_TYPES = {
    "record_type": TEXT,
    "model": TEXT,
    "direction": TEXT,
    "segment": TEXT,
    "metric": TEXT,
    "k": pa.int64(),
    "value": pa.float64(),
    "parameter": TEXT,
    "parameter_value": TEXT,
    "bin": pa.int64(),
    "mean_predicted": pa.float64(),
    "observed_rate": pa.float64(),
    "n": pa.int64(),
    "eval_cutoff": pa.timestamp("us"),
    "horizon_days": pa.float64(),
}
EVALUATION_COLUMNS = list(EVALUATION_TYPES)


MF_PARAMETERS = {"factors": int, "regularization": float, "alpha": float, "iterations": int}


def mf_params_used(params: pd.DataFrame, model: str) -> dict:
    """The matrix-factorization hyper-parameters a model of an evaluation used (typed)."""
    rows = params[params["model"] == model].set_index("parameter")["value"]
    return {name: kind(float(rows[name])) for name, kind in MF_PARAMETERS.items() if name in rows}


def long_evaluation_table(
    result, cutoff, horizon_days, extra_metrics=None, extra_params=None
) -> pa.Table:
    """Metrics ('metric'), hyper-parameters used ('parameter') and calibration curves
    ('calibration') of one evaluation, with its cutoff and horizon on every row;
    ``extra_params`` (model, parameter, value) are choices made outside ``evaluate``."""
    metrics = pd.concat([result.metrics, extra_metrics], ignore_index=True)
    params = pd.concat([result.params, extra_params], ignore_index=True)
    params = params.rename(columns={"value": "parameter_value"})
    params["parameter_value"] = params["parameter_value"].astype("string")
    curves = result.calibration if result.calibration is not None else pd.DataFrame()
    parts = [("metric", metrics), ("parameter", params), ("calibration", curves)]
    constants = {"eval_cutoff": pd.Timestamp(cutoff), "horizon_days": float(horizon_days)}
    return long_table(EVALUATION_TYPES, parts, constants)


# ------------------------------------------------------------------ stored stages

STAGES_COLUMNS = [
    "stages_id",
    "fitted_as_of",
    "settings_key",
    "library_version",
    "n_bytes",
    "payload_base64",
]


def stages_row(stages) -> pd.DataFrame:
    """One row of ``recommender_stages``: the weekly fit's trained stages as base64 text (a
    plain text column reads the same on DuckDB and Snowflake)."""
    import base64

    from proactive_recs import __version__

    data = stages.to_bytes()
    return pd.DataFrame(
        {
            "stages_id": [f"{stages.as_of:%Y%m%dT%H%M%S}-{stages.key}"],
            "fitted_as_of": [pd.Timestamp(stages.as_of)],
            "settings_key": [stages.key],
            "library_version": [__version__],
            "n_bytes": [len(data)],
            "payload_base64": [base64.b64encode(data).decode("ascii")],
        }
    )


def read_stages(relation, run_date, settings: dict | None = None) -> tuple:
    """The stored stages to offer this run, and a note saying which (or why none):
    (TrainedStages | None, str).

    Among the rows of ``recommender_stages`` fitted as of the run date or earlier and written
    by this library version: the latest trained with the run's ``settings`` (the resolved
    recommender settings), else the latest of all (the recommender then says which setting
    differs). ``relation`` is None when the table could not be read (first run, dropped).
    Whether the stages fit is the recommender's call
    (proactive_recs.recommender.stages.usable_stages)."""
    import base64

    from proactive_recs import __version__
    from proactive_recs.data.instants import utc_instant, utc_naive
    from proactive_recs.recommender.stages import TrainedStages, settings_key
    from proactive_recs.warehouse.dbt_io import to_pandas

    if relation is None:
        return None, "no recommender_stages table (the weekly selector has not run)"
    try:
        stored = to_pandas(relation)
    except Exception as error:  # noqa: BLE001 - a missing table reads differently per adapter
        return None, f"recommender_stages could not be read: {type(error).__name__}"
    fitted = utc_naive(stored["fitted_as_of"])
    stored = stored[(fitted <= utc_instant(run_date)).to_numpy()]
    same_version = stored[stored["library_version"] == __version__]
    if same_version.empty:
        if stored.empty:
            return None, "no stages in recommender_stages fitted as of the run date or before"
        return None, f"recommender_stages holds no stages written by version {__version__}"
    if settings is not None:
        matching = same_version[same_version["settings_key"] == settings_key(settings)]
        same_version = matching if len(matching) else same_version
    latest = same_version.sort_values(["fitted_as_of", "stages_id"]).iloc[-1]
    try:
        stages = TrainedStages.from_bytes(base64.b64decode(latest["payload_base64"]))
    except ValueError as error:
        # e.g. stages stored in an older layout by the same version during development:
        # not used, and the run trains its own (the caller logs this reason)
        return None, f"recommender_stages {latest['stages_id']} not usable: {error}"
    return stages, f"recommender_stages {latest['stages_id']}"


def category_weight(model_parameters: pd.DataFrame, model: str | None = None) -> float:
    """The user -> category blend weight a recommender fit chose (``category_weight`` in
    model_parameters, or in an evaluation's parameters for ``model``); MF alone, inf, when
    the fit recorded none (e.g. a popularity fallback)."""
    rows = model_parameters
    if model is not None:
        rows = rows[rows["model"] == model]
    values = rows.loc[rows["parameter"] == "category_weight", "value"]
    if values.empty:
        return float("inf")
    try:
        return float(values.iloc[0])
    except ValueError as error:
        raise ValueError(
            f"model_parameters: category_weight must be a number, got {values.iloc[0]!r}"
        ) from error
