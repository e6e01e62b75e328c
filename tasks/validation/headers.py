"""One header across files: each file's column names (read from its header or footer) against the first's."""

from __future__ import annotations

import csv
import gzip
import io
from typing import Any

import pyarrow.parquet as pq

from tasks.data.inputs import file_format
from tasks.objectstore import filesystem
from tasks.validation.values import first_line


def file_columns(uri: str, storage_options: dict[str, Any]) -> list[str] | str:
    """The column names of one file, read from its header (CSV) or footer (Parquet); a string on error."""
    try:
        fs, path = filesystem(uri, storage_options)
        with fs.open(path, "rb") as raw:
            if file_format(uri) == "parquet":
                return [str(n) for n in pq.ParquetFile(raw).schema_arrow.names]
            stream = gzip.GzipFile(fileobj=raw) if uri.lower().endswith(".gz") else raw
            text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
            header = next(csv.reader(text), None)
            return [h for h in header] if header else "no header row (the file is empty)"
    except Exception as exc:  # noqa: BLE001 - reported per file, never raised
        return f"cannot read its header: {first_line(exc)}"


def header_problem(header: list[str] | str, reference: list[str] | str, schema_columns: list[str]) -> str | None:
    """What is wrong with a file's header next to the first file's, or None."""
    if isinstance(header, str):
        return header
    missing = [c for c in (reference if isinstance(reference, list) else schema_columns) if c not in header]
    missing += [c for c in schema_columns if c not in header and c not in missing]
    extra = [c for c in header if isinstance(reference, list) and c not in reference]
    parts = []
    if missing:
        parts.append(f"missing columns {missing}")
    if extra:
        parts.append(f"extra columns {extra}")
    return "; ".join(parts) or None
