"""One builder for the long tables of the Python models that truly feed several marts.

A dbt Python model returns one table; when one fit feeds several public tables
(``recommendations``: scores, factors, parameters; ``evaluation_results``: metrics,
parameters, calibration curves), its rows carry a ``record_type`` and thin SQL models select
each. Each such model declares its columns once (a name -> Arrow type map whose first column
is ``record_type``); :func:`long_table` builds the Arrow table from ``(record_type, frame)``
parts. Arrow, not pandas: text becomes dictionary-encoded once and the parts are chained
without a copy (at 1M users a score table runs to 30M rows).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = ["TEXT", "long_table", "text_column"]

# Text columns: DuckDB reads a dictionary of strings as VARCHAR.
TEXT = pa.dictionary(pa.int32(), pa.string())


def text_column(values, n: int) -> pa.Array:
    """Text as a dictionary array (one copy of each distinct value; an id repeated over 20M
    score rows costs 4 bytes a row). ``values`` None: all null; a str: that constant."""
    if values is None:
        return pa.DictionaryArray.from_arrays(pa.nulls(n, pa.int32()), pa.array([], pa.string()))
    if isinstance(values, str):
        codes = pa.array(np.zeros(n, dtype=np.int32))
        return pa.DictionaryArray.from_arrays(codes, pa.array([values], pa.string()))
    codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
    codes = pa.array(codes.astype(np.int32), mask=codes < 0)
    return pa.DictionaryArray.from_arrays(codes, pa.array(uniques.astype(str), pa.string()))


def _column(values, kind: pa.DataType, n: int) -> pa.Array:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    if kind == TEXT:
        return text_column(values, n)
    if values is None:
        return pa.nulls(n, kind)
    if np.isscalar(values) or isinstance(values, pd.Timestamp):
        return pa.array([values] * n, type=kind)
    return pa.array(values, type=kind, from_pandas=True)


def long_table(
    types: Mapping[str, pa.DataType],
    parts: Iterable[tuple[str, pd.DataFrame | Mapping]],
    constants: Mapping | None = None,
) -> pa.Table:
    """Rows of every part under one schema: each part's columns in ``types`` (others are
    ignored, absent ones null), its ``record_type``, and ``constants`` on every row. A part
    may give a column as an Arrow array (e.g. a list column sharing a matrix's buffer)."""
    if next(iter(types)) != "record_type":
        raise ValueError("a long table's first declared column must be record_type")
    tables = []
    for record_type, frame in parts:
        columns = frame if isinstance(frame, Mapping) else {c: frame[c] for c in frame.columns}
        n = len(frame) if isinstance(frame, pd.DataFrame) else len(next(iter(columns.values())))
        given = {"record_type": record_type, **(constants or {})}
        arrays = {}
        for name, kind in types.items():
            if name in given:
                arrays[name] = _column(given[name], kind, n)
            else:
                arrays[name] = _column(columns.get(name), kind, n)
        tables.append(pa.table(arrays, schema=pa.schema(list(types.items()))))
    # Each part keeps its own dictionaries (same type): chaining them copies nothing.
    return pa.concat_tables(tables)
