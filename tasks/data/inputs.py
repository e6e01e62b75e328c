"""Raw inputs: listing the files behind a path, schema inference, bounded-memory Dask reads."""

from __future__ import annotations

import difflib
from typing import Any

import dask.dataframe as dd
import pandas as pd
import pyarrow.parquet as pq

from tasks.errors import TuneflowError
from tasks.objectstore import filesystem, unstrip

SAMPLE_ROWS = 50_000
CSV_BLOCKSIZE = "128MB"  # one Dask partition; shards come out ~30-60 MB of Parquet each


def _read_sample(file_uri: str, storage_options: dict[str, Any]) -> pd.DataFrame:
    fs, path = filesystem(file_uri, storage_options)
    try:
        with fs.open(path, "rb") as f:
            if file_format(file_uri) == "parquet":
                table = pq.ParquetFile(f)
                if table.metadata.num_rows == 0:
                    return table.schema_arrow.empty_table().to_pandas()
                return next(table.iter_batches(batch_size=SAMPLE_ROWS)).to_pandas()
            compression = "gzip" if file_uri.endswith(".gz") else None
            return pd.read_csv(f, nrows=SAMPLE_ROWS, compression=compression)
    except pd.errors.EmptyDataError as exc:
        raise TuneflowError(f"{file_uri} is empty.", "give a file with a header row and data rows.") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        if isinstance(exc, TuneflowError):
            raise
        raise TuneflowError(
            f"Cannot parse {file_uri}: {str(exc).splitlines()[0]}.",
            "check that it is a valid, uncorrupted CSV (comma-separated, header row) or Parquet file.",
        ) from exc


def infer_schema(files: list[dict[str, Any]], target: str, task: str, storage_options: dict[str, Any]) -> dict[str, Any]:
    """Column kinds from a sample of the first file; checks that the target is there."""
    sample = _read_sample(files[0]["uri"], storage_options)
    if len(sample) == 0 and len(files) == 1:
        raise TuneflowError(f"{files[0]['uri']} has no data rows.", "give a dataset with rows under its header.")
    if len(sample.columns) == 0:
        raise TuneflowError(f"{files[0]['uri']} has no columns.", "give a file with a header row.")
    if target not in sample.columns:
        close = difflib.get_close_matches(target, [str(c) for c in sample.columns], n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise TuneflowError(
            f"Target column '{target}' is not in the data (columns: {', '.join(map(str, sample.columns[:20]))}).",
            f"{hint}pass --target with one of the columns above.",
        )
    columns: dict[str, dict[str, str]] = {}
    for name in sample.columns:
        series = sample[name]
        numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
        if name == target:
            kind = "numeric" if numeric and task == "regression" else ("label" if task != "regression" else "text")
        else:
            kind = "numeric" if numeric else "categorical"
        columns[str(name)] = {"kind": kind}
    return {"target": target, "task": task, "columns": columns}


def dask_dtypes(schema: dict[str, Any]) -> dict[str, str]:
    """The dtypes every partition is read with, so partitions always agree."""
    dtypes = {}
    for name, col in schema["columns"].items():
        dtypes[name] = "float64" if col["kind"] == "numeric" else "string"
    return dtypes


def read_dataset(files: list[dict[str, Any]], schema: dict[str, Any], storage_options: dict[str, Any]) -> dd.DataFrame:
    """A lazy Dask frame over all input files, with the schema's dtypes."""
    uris = [f["uri"] for f in files]
    dtypes = dask_dtypes(schema)
    if file_format(uris[0]) == "parquet":
        ddf = dd.read_parquet(uris, storage_options=storage_options)
        missing = [c for c in dtypes if c not in ddf.columns]
        if missing:
            raise TuneflowError(f"Parquet files lack columns {missing}.", "make every file share one schema.")
        return ddf[list(dtypes)].astype(dtypes)
    compression = "gzip" if uris[0].endswith(".gz") else None
    return dd.read_csv(
        uris,
        dtype=dtypes,
        blocksize=None if compression else CSV_BLOCKSIZE,
        compression=compression,
        storage_options=storage_options,
        usecols=list(dtypes),
    )


def expand_inputs(uri: str, storage_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """List the data files behind a file, glob or prefix, with identities for the fingerprint."""
    fs, path = filesystem(uri, storage_options)
    try:
        if any(ch in path for ch in "*?["):
            paths = sorted(fs.glob(path))
        elif fs.isdir(path):
            paths = sorted(p for p in fs.find(path) if p.endswith((".csv", ".parquet", ".csv.gz", ".pq")))
        elif fs.exists(path):
            paths = [path]
        else:
            paths = []
    except PermissionError as exc:
        raise TuneflowError(f"Cannot read {uri}: {exc}.", "check the credentials and the bucket policy.") from exc
    if not paths:
        raise TuneflowError(
            f"No data found at {uri}.",
            "pass an existing CSV/Parquet file, a glob like 'dir/*.csv', or a folder/prefix holding such files.",
        )
    files = []
    for p in paths:
        info = fs.info(p)
        identity = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified")
        files.append({"uri": unstrip(fs, p), "size": int(info.get("size") or 0), "identity": str(identity)})
    formats = {file_format(f["uri"]) for f in files}
    if len(formats) > 1:
        raise TuneflowError(f"{uri} mixes CSV and Parquet files.", "point at one format at a time (use a glob).")
    return files


def file_format(uri: str) -> str:
    """'csv' or 'parquet', from the file name."""
    lower = uri.lower()
    if lower.endswith((".parquet", ".pq")):
        return "parquet"
    if lower.endswith((".csv", ".csv.gz", ".txt")):
        return "csv"
    raise TuneflowError(f"Unknown file type: {uri}.", "use .csv, .csv.gz or .parquet files.")
