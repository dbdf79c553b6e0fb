"""What the thin dbt Python models share: turning refs into pandas frames, reading config.

dbt-duckdb hands a Python model DuckDB relations; dbt-snowflake hands it Snowpark
DataFrames (upper-case column names). The library works on pandas, so models convert here.
"""

from __future__ import annotations

import json
import math
import re
import threading

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pa_types

from proactive_recs.data.instants import utc_instant
from proactive_recs.memory import return_freed_memory  # noqa: F401 (each model calls it first)


def to_pandas(frame, columns=None) -> pd.DataFrame:
    """A DuckDB relation, a Snowpark DataFrame or a pandas frame, as pandas (lower-case columns).

    ``columns``: read only these (projected in the warehouse, before any row is fetched).
    """
    if columns is not None and not isinstance(frame, pd.DataFrame):
        frame = frame.select(*columns)  # DuckDB and Snowpark alike; names are case-insensitive
    if isinstance(frame, pd.DataFrame):
        result = frame
    elif hasattr(frame, "to_pandas"):  # Snowpark DataFrame
        result = frame.to_pandas()
    elif hasattr(frame, "fetch_df_chunk"):  # DuckDB relation
        result = duckdb_to_pandas(frame)
    elif hasattr(frame, "df"):
        result = frame.df()
    else:
        raise TypeError(f"cannot read a {type(frame).__name__} as a pandas frame")
    result = result.rename(columns=str.lower)
    return result if columns is None else result[[c.lower() for c in columns]]


# DuckDB vectors (2,048 rows) per chunk: ~0.5M rows, a few hundred MB of Python strings.
_VECTORS_PER_CHUNK = 256
_VECTOR_ROWS = 2048


# The DuckDB types whose round trip through Arrow gives what .df() gives (each one is in
# test_dbt_io's comparison): text, and the types of the package's tables.
_ROUND_TRIPS = re.compile(
    r"VARCHAR|BOOLEAN|TINYINT|SMALLINT|INTEGER|BIGINT|FLOAT|DOUBLE|DATE|TIMESTAMP(_NS)?"
    r"|DECIMAL\(\d+,\d+\)|(FLOAT|DOUBLE)\[\]"
)


def duckdb_to_pandas(relation, vectors_per_chunk: int = _VECTORS_PER_CHUNK) -> pd.DataFrame:
    """``relation.df()``, fetched in chunks, with every text value stored once.

    ``.df()`` creates one Python string per cell: ids repeated over 20M interactions cost
    ~60 bytes a cell (7 GB for int_interactions at the benchmark's size L), and creating
    them is most of the read. Here the rows come as Arrow batches: a text column is
    dictionary-encoded in Arrow and only its distinct values become Python strings, one
    shared object per value (8 bytes a cell); the other columns go back through DuckDB's
    own pandas conversion, so values, dtypes (object for text) and nulls (None) are those
    ``.df()`` gives. At size M this reads int_interactions (2M rows) in 0.6 s instead of
    1.3 s, and a score table (1.5-1.7M rows) in 0.6-0.7 s instead of 1.3-1.6 s.
    """
    types = [str(kind) for kind in relation.types]
    if "VARCHAR" not in types or not all(_ROUND_TRIPS.fullmatch(kind) for kind in types):
        # Nothing to share, or a type not known to come back from Arrow as .df() gives it
        # (zoned timestamps depend on the session's TimeZone, which the converter does not
        # have; UUID, BLOB, structs, ... are not tested): as DuckDB gives it.
        return _duckdb_chunks(relation, vectors_per_chunk)
    names = list(relation.columns)
    text = [name for name, kind in zip(names, types, strict=True) if kind == "VARCHAR"]
    lists = [name for name, kind in zip(names, types, strict=True) if kind == "DOUBLE[]"]
    rest = [name for name in names if name not in text]
    rows = vectors_per_chunk * _VECTOR_ROWS
    reader = (
        relation.to_arrow_reader(rows)
        if hasattr(relation, "to_arrow_reader")  # duckdb >= 1.5; older: fetch_record_batch
        else relation.fetch_record_batch(rows)
    )
    pool: dict = {}
    chunks = []
    for batch in reader:
        list_cells = {name: _list_rows(batch.column(name)) for name in lists}
        converted = [name for name in rest if list_cells.get(name) is None]
        if converted:
            chunk = _converter().from_arrow(pa.Table.from_batches([batch.select(converted)])).df()
        else:
            chunk = pd.DataFrame(index=pd.RangeIndex(batch.num_rows))
        for name, cells in list_cells.items():
            if cells is not None:
                chunk[name] = cells
        for name in text:
            chunk[name] = _shared_text(batch.column(name), pool)
        chunks.append(chunk[names])
    if not chunks:
        return relation.df()  # no rows: the empty frame has the columns and dtypes
    if len(chunks) == 1:
        return chunks[0]
    return pd.concat(chunks, ignore_index=True)


_CONVERTERS = threading.local()


def _converter():
    """An in-memory DuckDB connection that turns Arrow batches into pandas as ``.df()``
    does (the relation's own connection is not reachable from the relation). One per
    thread: dbt runs Python models side by side with ``--threads 2``, and two threads on one
    connection deadlock (each holds what the other waits for: the connection, the GIL)."""
    connection = getattr(_CONVERTERS, "connection", None)
    if connection is None:
        import duckdb

        connection = _CONVERTERS.connection = duckdb.connect()
    return connection


def _shared_text(column: pa.Array, pool: dict) -> np.ndarray:
    """A text column as an object array, one shared string from ``pool`` per value."""
    if not (pa_types.is_string(column.type) or pa_types.is_large_string(column.type)):
        column = column.cast(pa.large_string())  # e.g. string_view
    encoded = pc.dictionary_encode(column)
    values = encoded.dictionary.to_pylist()
    # A column of mostly distinct values (send ids, raw keys) gains nothing from the pool
    # and looking each value up cost 0.6 s of notification_plan's reads at size M.
    shared = _with_null_slot(values, None if 2 * len(values) > len(column) else pool)
    return shared[encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)]


def _list_rows(column: pa.Array) -> np.ndarray | None:
    """A DOUBLE[] column whose lists all have the same length and no null (a vector per
    row: send-time profiles, factors) as ``.df()`` gives it, a float64 array per cell, each
    cell a row of one 2-D array of the chunk: a million 48-hour profiles took 669 MB read
    this way against 985 MB through ``.df()`` (user_send_times at the benchmark's size L).
    None for any other column (read the plain way)."""
    if not pa_types.is_list(column.type) or not pa_types.is_float64(column.type.value_type):
        return None
    if column.null_count or len(column) == 0:
        return None
    offsets = column.offsets.to_numpy()
    width = int(offsets[1] - offsets[0])
    values = column.flatten()
    if values.null_count or len(values) != width * len(column) or width == 0:
        return None
    if not np.all(np.diff(offsets) == width):
        return None
    block = np.array(values.to_numpy(), dtype=np.float64).reshape(len(column), width)
    cells = np.empty(len(column), dtype=object)
    for position, row in enumerate(block):
        cells[position] = row
    return cells


def _with_null_slot(values: list, pool: dict | None) -> np.ndarray:
    """The distinct ``values`` as an object array to index with codes, code -1 (its last
    slot) meaning null; each value replaced by the equal object already in ``pool`` (and
    added to it), or as it is when ``pool`` is None."""
    shared = np.empty(len(values) + 1, dtype=object)
    shared[:-1] = values if pool is None else [pool.setdefault(value, value) for value in values]
    shared[-1] = None
    return shared


def _duckdb_chunks(relation, vectors_per_chunk: int) -> pd.DataFrame:
    """``relation.df()`` in chunks, equal text cells sharing one object across all chunks
    (:func:`_shared_values`): the path for relations with types outside ``_ROUND_TRIPS``."""
    pool: dict = {}
    chunks = []
    while True:
        chunk = relation.fetch_df_chunk(vectors_per_chunk)
        if chunk.empty:
            break
        for name in chunk.columns:
            if chunk[name].dtype == object:
                chunk[name] = _shared_values(chunk[name].to_numpy(), pool)
        chunks.append(chunk)
    if not chunks:
        return chunk  # no rows: the empty frame has the columns and dtypes
    if len(chunks) == 1:
        return chunks[0]
    return pd.concat(chunks, ignore_index=True)


def _shared_values(values: np.ndarray, pool: dict) -> np.ndarray:
    """``values`` (object) with equal values replaced by one shared object from ``pool``."""
    try:
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
    except TypeError:  # unhashable cells (lists, structs): leave them as they are
        return values
    return _with_null_slot(list(uniques), pool)[codes]


def is_snowpark(session) -> bool:
    """True when a Python model runs on Snowflake (its session is a Snowpark Session)."""
    return type(session).__module__.startswith("snowflake.")


def for_session(table, session):
    """A model's Arrow output as the warehouse takes it: the table itself on DuckDB (which
    scans Arrow without a copy), a pandas frame on Snowpark (whose ``write_pandas`` wants
    plain cells: text as strings, list columns as Python lists, nullable ints and booleans)."""
    if not is_snowpark(session):
        return table
    if isinstance(table, pd.DataFrame):  # a frame built in pandas: the same cell rules apply
        table = pa.Table.from_pandas(table, preserve_index=False)
    frame = table.to_pandas()
    for field in table.schema:
        name, kind = field.name, field.type
        if pa_types.is_list(kind) or pa_types.is_large_list(kind):
            frame[name] = [None if cell is None else cell.tolist() for cell in frame[name]]
        elif pa_types.is_dictionary(kind) or pa_types.is_string(kind) or pa_types.is_null(kind):
            frame[name] = frame[name].astype(object).astype("string")
        elif pa_types.is_integer(kind):
            frame[name] = frame[name].astype("Int64")
        elif pa_types.is_boolean(kind):
            frame[name] = frame[name].astype("boolean")
    return frame


def rows_since(frame, column: str, since):
    """The rows of ``frame`` with ``column >= since`` (a naive UTC instant; None = all rows),
    filtered in the warehouse before anything is read: a DuckDB relation, a Snowpark
    DataFrame or a pandas frame."""
    if since is None:
        return frame
    since = pd.Timestamp(since)
    if isinstance(frame, pd.DataFrame):
        return frame[pd.to_datetime(frame[column]) >= since]
    if hasattr(frame, "to_pandas"):  # Snowpark DataFrame
        from snowflake.snowpark.functions import col, lit

        return frame.filter(col(column) >= lit(since.to_pydatetime()))
    return frame.filter(f"{column} >= TIMESTAMP '{since.isoformat(sep=' ')}'")


def rows_in(frame, column: str, values, session=None):
    """The rows of ``frame`` whose text ``column`` is one of ``values``, filtered in the
    warehouse before anything is read (a DuckDB relation, a Snowpark DataFrame or pandas).

    With the model's ``session`` (the DuckDB connection or the Snowpark session that made
    ``frame``) the values become a one-column relation of that session and the filter a
    semi join (:func:`rows_matching`): a run's trigger items can number hundreds of
    thousands, too many for an ``in (...)`` list in the statement's text (Snowflake asks for
    statements under 1 MB and cannot rerun longer ones; Snowpark uploads a large frame to a
    temporary table instead).
    Without it, the values are written into the statement: fine for a few campaign ids."""
    values = sorted({str(value) for value in values})
    if isinstance(frame, pd.DataFrame):
        return frame[frame[column].astype(str).isin(set(values))]
    snowpark = hasattr(frame, "to_pandas")  # else a DuckDB relation
    if session is not None and values:
        keys = (
            session.create_dataframe(pd.DataFrame({column.upper(): values}))
            if snowpark
            else session.from_df(pd.DataFrame({column: pd.Series(values, dtype=object)}))
        )
        return rows_matching(frame, keys, column)
    if snowpark:
        from snowflake.snowpark.functions import col, lit

        return frame.filter(col(column).isin(values) if values else lit(False))
    if not values:
        return frame.filter("false")
    listed = ", ".join("'" + value.replace("'", "''") + "'" for value in values)
    return frame.filter(f"{column} in ({listed})")


def rows_matching(frame, keys, column: str):
    """The rows of ``frame`` whose ``column`` value occurs in ``keys``' ``column`` (a semi
    join, run in the warehouse: both DuckDB relations or both Snowpark DataFrames; pandas
    frames are filtered in memory)."""
    if isinstance(frame, pd.DataFrame):
        return frame[frame[column].isin(set(keys[column]))]
    if hasattr(frame, "to_pandas"):  # Snowpark DataFrame
        from snowflake.snowpark.functions import col

        return frame.filter(col(column).isin(keys.select(column)))
    return frame.join(keys.select(column), column, how="semi")


def read_run_date(run_context) -> pd.Timestamp:
    """The run's instant (naive UTC) from the one-row ``int_run_context`` model.

    The run date has one home, the dbt macro ``run_date()``: a pinned var or, unset, the
    invocation's start. Python models read the value SQL used instead of deciding "now"
    themselves, so every model of a run plans for the same instant.
    """
    frame = to_pandas(run_context, columns=["run_date"])
    if len(frame) != 1 or pd.isna(frame["run_date"].iloc[0]):
        raise ValueError(f"int_run_context must hold one run_date, got {len(frame)} row(s)")
    return utc_instant(frame["run_date"].iloc[0], name="int_run_context.run_date")


def config_value(value, default=None):
    """A config value or seed cell with '', 'None' and NaN meaning unset.

    Python models receive dbt vars through ``config.meta`` keys set in yml (a rendered null var
    arrives as '' or 'None'). dbt only ships the config keys a model reads with a literal
    ``dbt.config.get("meta")`` call in its own source, so models call that themselves.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):  # NaN: empty seed cell
        return default
    if isinstance(value, str) and value.strip() in ("", "None", "none"):
        return default
    return value


def recommender_params(meta) -> dict:
    """The recommender settings of a run, from the model's ``config.meta``.

    The var ``proactive_recs_recommender_params`` (a map) with the one horizon of the project,
    the var ``proactive_recs_horizon_days``: the served model, its tuning windows, the
    evaluation and the backtest's weekly model all predict that many days ahead. The horizon
    inside the map would be a second setting with the same meaning, so it stops the build.
    Unknown keys stop it too (``two_stage.resolve_params``).
    """
    params = json.loads(meta.get("recommender_params") or "{}") or {}
    if not isinstance(params, dict):
        raise ValueError(
            "var proactive_recs_recommender_params must be a map of parameter -> value, "
            f"got {params!r}"
        )
    if "horizon_days" in params:
        raise ValueError(
            "var proactive_recs_recommender_params sets horizon_days: set the var "
            "proactive_recs_horizon_days instead (one horizon for the served model, its tuning, "
            "the evaluation and the backtest)"
        )
    return {**params, "horizon_days": horizon_days(meta)}


def horizon_days(meta) -> float:
    """The var ``proactive_recs_horizon_days`` from ``config.meta``, checked."""
    value = config_value(meta.get("horizon_days"))
    try:
        days = float(value)
    except (TypeError, ValueError):
        days = float("nan")
    if not math.isfinite(days) or days <= 0:
        raise ValueError(
            f"var proactive_recs_horizon_days must be a positive number, got {value!r}"
        )
    return days


def evaluation_cutoff(meta, run_date: pd.Timestamp) -> pd.Timestamp:
    """The evaluation's time split: the var ``proactive_recs_eval_cutoff``, or unset, the run
    date less one horizon (the test window is then the last horizon before the run)."""
    value = config_value(meta.get("eval_cutoff"))
    if value is None:
        return run_date - pd.Timedelta(days=horizon_days(meta))
    return utc_instant(str(value), name="var proactive_recs_eval_cutoff")


def evaluated_models(meta) -> tuple[str, ...]:
    """The models evaluation_results scores: every model of the protocol, less
    ``served_stages_week_old`` unless the var ``proactive_recs_evaluate_week_old_stages`` is
    true (a second whole fit, asked for when the weekly schedule is in question)."""
    from proactive_recs.evaluation.protocol import MODELS

    value = config_value(meta.get("week_old_stages"), default=False)
    text = str(value).strip().lower()
    if text not in ("true", "false"):
        raise ValueError(
            f"var proactive_recs_evaluate_week_old_stages must be true or false, got {value!r}"
        )
    if text == "true":
        return MODELS
    return tuple(model for model in MODELS if model != "served_stages_week_old")


# How each third-party package reaches a Snowflake Python model (README "Running on Snowflake").
_ANACONDA_OR_PYPI = (
    "Snowflake's Anaconda channel or PyPI repository: list it in the var "
    "proactive_recs_snowflake_packages"
)
# The distribution that provides each module, where the two names differ.
DISTRIBUTIONS = {"sklearn": "scikit-learn"}
PACKAGE_SOURCES = {
    "numpy": _ANACONDA_OR_PYPI,
    "pandas": _ANACONDA_OR_PYPI,
    "pyarrow": _ANACONDA_OR_PYPI,
    "scipy": _ANACONDA_OR_PYPI,
    "sklearn": _ANACONDA_OR_PYPI + " (as scikit-learn)",
    "threadpoolctl": _ANACONDA_OR_PYPI,
    "numba": _ANACONDA_OR_PYPI,
    "implicit": (
        "not in Snowflake's Anaconda channel. Either (1) from PyPI: run once "
        "ALTER SCHEMA <schema> SET DEFAULT_PYTHON_ARTIFACT_REPOSITORY = "
        "snowflake.snowpark.pypi_shared_repository (the role needs the database role "
        "SNOWFLAKE.PYPI_REPOSITORY_USER), keep the var "
        "proactive_recs_snowflake_use_anonymous_sproc false (anonymous procedures cannot use an "
        "artifact repository) and implicit in the var "
        "proactive_recs_snowflake_recommender_packages; or (2) from a stage: upload a zip of "
        "implicit built for Snowflake's Linux and Python version (snow snowpark package create "
        "implicit) and name it in the var proactive_recs_snowflake_extra_imports. README "
        "'Running on Snowflake' lists the statements"
    ),
}


def require_packages(names) -> None:
    """Fail early, naming the missing package and how to provide it, before any work.

    Without this a Snowflake run lacking a package dies with a bare ImportError deep in the
    library; here the message says which package and where it comes from.
    """
    import importlib.util

    missing = [name for name in names if importlib.util.find_spec(name) is None]
    if missing:
        lines = [f"  - {name}: {PACKAGE_SOURCES.get(name, 'install it')}" for name in missing]
        raise ModuleNotFoundError(
            "proactive_recs needs package(s) this Python environment does not have:\n"
            + "\n".join(lines)
        )
