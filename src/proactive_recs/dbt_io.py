"""What the thin dbt Python models share: turning refs into pandas frames, reading config.

dbt-duckdb hands a Python model DuckDB relations; dbt-snowflake hands it Snowpark
DataFrames (upper-case column names). The library works on pandas, so models convert here.
"""

from __future__ import annotations

import math

import pandas as pd


def to_pandas(frame) -> pd.DataFrame:
    """A DuckDB relation, a Snowpark DataFrame or a pandas frame, as pandas (lower-case columns)."""
    if isinstance(frame, pd.DataFrame):
        result = frame
    elif hasattr(frame, "to_pandas"):  # Snowpark DataFrame
        result = frame.to_pandas()
    elif hasattr(frame, "df"):  # DuckDB relation
        result = frame.df()
    else:
        raise TypeError(f"cannot read a {type(frame).__name__} as a pandas frame")
    return result.rename(columns=str.lower)


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


# How each third-party package reaches a Snowflake Python model (README "Running on Snowflake").
PACKAGE_SOURCES = {
    "numpy": "Snowflake's Anaconda channel: list it in the model config `packages`",
    "pandas": "Snowflake's Anaconda channel: list it in the model config `packages`",
    "scipy": "Snowflake's Anaconda channel: list it in the model config `packages`",
    "sklearn": "Snowflake's Anaconda channel (scikit-learn): list it in `packages`",
    "threadpoolctl": "Snowflake's Anaconda channel: list it in the model config `packages`",
    "implicit": (
        "not in Snowflake's Anaconda channel: create the procedure with "
        "ARTIFACT_REPOSITORY = snowflake.snowpark.pypi_shared_repository and PACKAGES = "
        "('implicit') (see README 'Running on Snowflake'), or run the recommender models on "
        "DuckDB and load their outputs"
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
