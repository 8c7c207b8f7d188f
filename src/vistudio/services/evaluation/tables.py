"""The per-image results files of every evaluation: ``results.parquet`` and ``results.csv``."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from vistudio.storage.atomic import atomic_write_bytes

# a column's type: "int64", "float64", "string", "bool", or a function of the pyarrow module
# that returns the type (nested columns)
ColumnType = str | Callable[[Any], Any]


def write_parquet(dest: Path, rows: list[dict[str, Any]], columns: Sequence[tuple[str, ColumnType]]) -> None:
    """``rows`` as a Parquet file with exactly ``columns`` (name, type), written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    simple = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string(), "bool": pa.bool_()}
    schema = pa.schema([(name, t(pa) if callable(t) else simple[t]) for name, t in columns])
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buf)
    atomic_write_bytes(dest, buf.getvalue())


def write_csv(dest: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A UTF-8 CSV file (``\\n`` line ends) with ``header`` and the formatted ``rows``, written
    atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    atomic_write_bytes(dest, buf.getvalue().encode("utf-8"))
