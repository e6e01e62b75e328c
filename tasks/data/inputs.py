"""Raw inputs: listing the files behind a path, schema inference, bounded-memory Dask reads.

Refused here, at plan time, before anything is written:
- a column named like tuneflow's internal shard columns (`__label__`, any `__NAME__`);
- a symbolic link in a local folder (or glob) that resolves outside it, a broken one, or one that
  points at a file the listing already holds (its rows would count twice);
- files whose partition folders disagree.

Hive-partitioned folders (`key=value/part-*.parquet`, as Spark writes them) give their keys as
columns: in the schema, in every read (`read_columns`: validation, shard and scoring) and in the
header check. A folder listing skips names starting with `_` or `.` (`_SUCCESS`, `_temporary/`,
`.crc` files), as Spark and pyarrow do.
"""

from __future__ import annotations

import difflib
import os
import re
from typing import Any
from urllib.parse import unquote

import dask.dataframe as dd
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from tasks.contracts import LABEL_COLUMN
from tasks.errors import TuneflowError
from tasks.objectstore import check_reachable, file_link, filesystem, not_utf8, unreachable_reason, unstrip

SAMPLE_ROWS = 50_000
CSV_BLOCKSIZE = "128MB"  # one Dask partition; shards come out ~30-60 MB of Parquet each
DATA_SUFFIXES = (".csv", ".parquet", ".csv.gz", ".pq")
MOSTLY_NUMERIC = 0.95  # a sampled column whose values parse as numbers this often (but not always) is numeric with stray text
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"  # Spark's and pyarrow's folder name for a missing partition value
PATH_COLUMN = "__tuneflow_path__"  # CSV reads of partitioned folders: the file of each row (reserved, like every __NAME__)
_HIVE_SEGMENT = re.compile(r"[^=/]+=[^/]+")


def reserved_columns(names: list[str]) -> list[str]:
    """The names tuneflow keeps for its own columns: `__label__` (the encoded target in every shard)
    and, for columns to come, every `__NAME__`."""
    return [n for n in names if n == LABEL_COLUMN or (len(n) > 4 and n.startswith("__") and n.endswith("__"))]


def _read_sample(file_uri: str, storage_options: dict[str, Any]) -> pd.DataFrame:
    fs, path = filesystem(file_uri, storage_options)
    try:
        with fs.open(path, "rb") as f:
            if file_format(file_uri) == "parquet":
                table = pq.ParquetFile(f)
                if table.metadata.num_rows == 0:
                    return table.schema_arrow.empty_table().to_pandas()
                return next(table.iter_batches(batch_size=SAMPLE_ROWS)).to_pandas()
            compression = compression_of(file_uri)
            return pd.read_csv(f, nrows=SAMPLE_ROWS, compression=compression)
    except pd.errors.EmptyDataError as exc:
        raise TuneflowError(f"{file_uri} is empty.", "give a file with a header row and data rows.") from exc
    except UnicodeDecodeError as exc:  # a ValueError: before the generic message
        raise not_utf8(file_uri, "The --data file", exc, "then point --data at the converted file(s).") from None
    except (pd.errors.ParserError, OSError, ValueError) as exc:
        if isinstance(exc, TuneflowError):
            raise
        raise TuneflowError(
            f"Cannot parse {file_uri}: {str(exc).splitlines()[0]}.",
            "check that it is a valid, uncorrupted CSV (comma-separated, header row) or Parquet file.",
        ) from exc


def infer_schema(
    files: list[dict[str, Any]], target: str, task: str, storage_options: dict[str, Any], declared: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Column kinds from a sample of the first file (and the partition folders of all files);
    checks that the target is there and that no column takes a reserved name.

    `declared`: the expectations file's `columns:` rules; a column's `kind` (numeric|categorical)
    overrides the inferred one, its `missing_values` are read as missing (and left out of the
    inference)."""
    sample = _read_sample(files[0]["uri"], storage_options)
    keys = partition_keys(files)
    names = [str(c) for c in sample.columns]
    reserved = reserved_columns(names + keys)
    if reserved:
        raise TuneflowError(
            f"{files[0]['uri']} has column{'s' if len(reserved) > 1 else ''} {', '.join(map(repr, reserved))}: names of the form __NAME__ "
            f"are reserved for tuneflow's internal columns ('{LABEL_COLUMN}' holds the encoded target in every shard).",
            f"rename {'them' if len(reserved) > 1 else 'it'} in the data (e.g. '{reserved[0].strip('_') or 'col'}'); the raw data was not modified.",
        )
    clash = [k for k in keys if k in names]
    if clash:
        raise TuneflowError(
            f"{files[0]['uri']} holds column{'s' if len(clash) > 1 else ''} {clash} that {'are' if len(clash) > 1 else 'is'} also a partition folder ({clash[0]}=...).",
            "drop the column from the files or the key=value folder level, so each column has one source.",
        )
    if len(sample) == 0 and len(files) == 1:
        raise TuneflowError(f"{files[0]['uri']} has no data rows.", "give a dataset with rows under its header.")
    if len(sample.columns) == 0:
        raise TuneflowError(f"{files[0]['uri']} has no columns.", "give a file with a header row.")
    for key in keys:  # the first file's values, for the target check; kinds come from every file's folders
        sample[key] = files[0]["partitions"][key]
    if target not in sample.columns:
        close = difflib.get_close_matches(target, [str(c) for c in sample.columns], n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise TuneflowError(
            f"Target column '{target}' is not in the data (columns: {', '.join(map(str, sample.columns[:20]))}).",
            f"{hint}pass --target with one of the columns above.",
        )
    declared = _declarations(declared or {}, [str(c) for c in sample.columns], target)
    columns: dict[str, dict[str, Any]] = {}
    for name in sample.columns:
        rules = declared.get(str(name), {})
        if name in keys:
            series, untyped = pd.Series([f["partitions"][name] for f in files], dtype=object), True
        else:
            series, untyped = sample[name], False
        if rules.get("missing_values"):
            series, untyped = series.astype(object).mask(missing_mask(series, rules["missing_values"])), True
        kind, texts = _kind(series, untyped=untyped)
        if rules.get("kind"):
            kind, texts = rules["kind"], False
        if name == target:
            kind = "numeric" if kind == "numeric" and task == "regression" else ("label" if task != "regression" else "text")
        columns[str(name)] = {"kind": kind}
        if texts and kind == "numeric":  # validation reads it as text and counts the texts over the whole dataset
            columns[str(name)]["text_in_sample"] = True
        if rules.get("missing_values"):
            columns[str(name)]["missing_values"] = list(rules["missing_values"])
    return {"target": target, "task": task, "columns": columns}


def _kind(series: pd.Series, *, untyped: bool) -> tuple[str, bool]:
    """(numeric or categorical, whether the sample holds texts in a numeric column).

    `untyped`: text whose type is to be guessed (partition folder names, a column with declared
    missing values). A column whose values are mostly numbers with a few stray texts (at least
    MOSTLY_NUMERIC of them parse) is numeric with texts: validation then counts the texts over the
    whole dataset and refuses the run, naming them, instead of silently training on a categorical
    column."""
    if pd.api.types.is_bool_dtype(series):
        return "categorical", False
    if pd.api.types.is_numeric_dtype(series):
        return "numeric", False
    present = series.dropna()
    if len(present) == 0:
        return "categorical", False
    share = float(pd.to_numeric(present.astype(str).str.strip(), errors="coerce").notna().mean())
    if untyped and share == 1.0:
        return "numeric", False
    if MOSTLY_NUMERIC <= share < 1.0:
        return "numeric", True
    return "categorical", False


def _declarations(declared: dict[str, dict[str, Any]], names: list[str], target: str) -> dict[str, dict[str, Any]]:
    """The expectations file's `kind` / `missing_values` per column, checked against the data."""
    out = {}
    for name, rules in declared.items():
        given = [k for k in ("kind", "missing_values") if k in (rules or {})]
        if not given:
            continue
        if name not in names:
            close = difflib.get_close_matches(str(name), names, n=1)
            raise TuneflowError(
                f"Expectations: columns.{name} declares {'/'.join(given)} but '{name}' is not in the data (columns: {', '.join(names[:20])}).",
                f"{'did you mean ' + repr(close[0]) + '? ' if close else ''}fix the column name in the expectations file.",
            )
        if name == target:
            raise TuneflowError(
                f"Expectations: columns.{name} declares {'/'.join(given)} for the target '{name}'.",
                "the target's kind follows --task and it cannot have missing values: clean its values in the data, or drop those rows.",
            )
        out[name] = {k: rules[k] for k in given}
    return out


def missing_mask(values: pd.Series, missing: list[str]) -> pd.Series:
    """Where `values` holds one of the declared missing values: the same text, or the same number
    (a declared -999 also matches a Parquet float -999.0)."""
    text = values.astype("string").str.strip()
    mask = text.isin(missing)
    numbers = pd.to_numeric(pd.Series(missing, dtype=object), errors="coerce").dropna()
    if len(numbers):
        mask = mask | pd.to_numeric(text, errors="coerce").isin(numbers.tolist())
    return mask.fillna(False).astype(bool)


def dask_dtypes(schema: dict[str, Any]) -> dict[str, str]:
    """The dtypes every partition is read with, so partitions always agree."""
    dtypes = {}
    for name, col in schema["columns"].items():
        dtypes[name] = "float64" if col["kind"] == "numeric" else "string"
    return dtypes


def read_dataset(files: list[dict[str, Any]], schema: dict[str, Any], storage_options: dict[str, Any]) -> dd.DataFrame:
    """A lazy Dask frame over all input files, with the schema's dtypes."""
    missing = {name: col["missing_values"] for name, col in schema["columns"].items() if col.get("missing_values")}
    return read_columns(files, dask_dtypes(schema), storage_options, missing=missing)


def read_columns(
    files: list[dict[str, Any]],
    dtypes: dict[str, str],
    storage_options: dict[str, Any],
    *,
    missing: dict[str, list[str]] | None = None,
    blocksize: int | str | None = None,
    parquet_options: dict[str, Any] | None = None,
) -> dd.DataFrame:
    """The columns `dtypes` names, in that order and with those dtypes, from every file: the one
    read rule of validation, shard and scoring. Partition folders (key=value) are columns like the
    others; a column's `missing` values are missing (read as text, masked, then converted: a value
    that still is not a number raises ValueError, as any non-number in a numeric column does).
    A dtype of None keeps a file column as read (Parquet: its own type; CSV: pandas' inference)."""
    missing = {c: v for c, v in (missing or {}).items() if c in dtypes}
    uris = [f["uri"] for f in files]
    keys = [k for k in partition_keys(files) if k in dtypes]
    read_as = {c: ("string" if c in missing else t) for c, t in dtypes.items()}
    if file_format(uris[0]) == "parquet":
        dataset = _parquet_partitioning(files, storage_options)
        ddf = dd.read_parquet(uris, storage_options=storage_options, dataset=dataset, **(parquet_options or {}))
        absent = [c for c in dtypes if c not in ddf.columns]
        if absent:
            raise TuneflowError(f"Parquet files lack columns {absent}.", "make every file share one schema.")
        ddf = ddf[list(dtypes)].astype({c: t for c, t in read_as.items() if t is not None})
    else:
        compression = compression_of(uris[0])
        in_files = [c for c in read_as if c not in keys]
        ddf = dd.read_csv(
            uris,
            dtype={c: read_as[c] for c in in_files if read_as[c] is not None},
            blocksize=None if compression else (blocksize or CSV_BLOCKSIZE),  # read at call time: tests and tuning may change it
            compression=compression,
            storage_options=storage_options,
            usecols=in_files,
            include_path_column=PATH_COLUMN if keys else False,
        )
        if keys:
            by_path = _values_by_path(files, keys, storage_options)
            meta = ddf._meta.drop(columns=[PATH_COLUMN]).assign(**{k: pd.Series(dtype=read_as[k]) for k in keys})[list(dtypes)]
            ddf = ddf.map_partitions(_add_partition_values, by_path, keys, read_as, list(dtypes), meta=meta)
    if missing:
        ddf = ddf.map_partitions(_mask_missing, missing, dtypes, meta=ddf._meta.astype({c: dtypes[c] for c in missing}))
    return ddf


def _parquet_partitioning(files: list[dict[str, Any]], storage_options: dict[str, Any]) -> dict[str, Any]:
    """pyarrow dataset options: the partition folders below the listed root as text columns (tuneflow
    converts them by the schema), or none (dask would otherwise take any key=value folder on the
    way to the data, above the folder given too)."""
    keys = partition_keys(files)
    if not keys:
        return {"partitioning": None}
    _, path = filesystem(files[0]["uri"], storage_options)
    base = path.rsplit("/", len(keys) + 1)[0]
    return {"partitioning": {"flavor": "hive", "schema": pa.schema([(k, pa.string()) for k in keys])}, "partition_base_dir": base}


def _values_by_path(files: list[dict[str, Any]], keys: list[str], storage_options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for f in files:
        values = {k: f["partitions"].get(k) for k in keys}
        out[f["uri"]] = values
        out[filesystem(f["uri"], storage_options)[1]] = values
    return out


def _add_partition_values(df: pd.DataFrame, by_path: dict[str, dict[str, Any]], keys: list[str], dtypes: dict[str, str], order: list[str]) -> pd.DataFrame:
    paths = df.pop(PATH_COLUMN).astype(str)
    for key in keys:
        df[key] = pd.Series(paths.map(lambda p: by_path[p][key]), index=df.index, dtype="string").astype(dtypes[key])
    return df[order]


def _mask_missing(df: pd.DataFrame, missing: dict[str, list[str]], dtypes: dict[str, str]) -> pd.DataFrame:
    df = df.copy()
    for col, values in missing.items():
        text = df[col].astype("string")
        df[col] = text.mask(missing_mask(text, values)).astype(dtypes[col])
    return df


def partition_keys(files: list[dict[str, Any]]) -> list[str]:
    """The partition folders' keys (the same for every file: expand_inputs checks it)."""
    return list(files[0].get("partitions", {})) if files else []


def expand_inputs(uri: str, storage_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """List the data files behind a file, glob or prefix, with identities for the fingerprint.

    A file under key=value folders below the folder (or the glob's fixed part) carries them as
    `partitions`. A remote URI is probed first (tasks.objectstore.check_reachable): an endpoint that
    cannot be reached fails in a few seconds with one error, not after botocore's minutes of retries.
    A chained URL (zip://*.csv::s3://bucket/a.zip) keeps its chain in every file's URI."""
    check_reachable(uri, storage_options)
    fs, path = filesystem(uri, storage_options)
    root: str | None = None  # what a folder or a glob lists: partitions, hidden names and links are relative to it
    try:
        if any(ch in path for ch in "*?["):
            root = path[: min(path.index(ch) for ch in "*?[" if ch in path)].rsplit("/", 1)[0]
            paths = sorted(fs.glob(path))
        elif fs.isdir(path):
            root = path.rstrip("/")
            found = [p for p in fs.find(path) if not _hidden(root, p)]
            paths = sorted(p for p in found if p.endswith(DATA_SUFFIXES))
            if isinstance(fs, LocalFileSystem):  # a linked folder is not listed (find does not follow it): refuse one that leads outside
                _check_links(uri, root, [p for p in found if os.path.islink(p) and os.path.isdir(p)], duplicates=False)
        elif fs.exists(path):
            paths = [path]
        else:
            paths = []
    except PermissionError as exc:
        raise TuneflowError(f"Cannot read {uri}: {exc}.", "check the credentials and the bucket policy.") from exc
    except OSError as exc:
        reason = unreachable_reason(exc)
        if reason is None:
            raise
        raise TuneflowError(f"Cannot reach {uri}: {reason} while listing it.", "check the endpoint and the network, then run again.") from None
    if not paths:
        raise TuneflowError(
            f"No data found at {uri}.",
            "pass an existing CSV/Parquet file, a glob like 'dir/*.csv', or a folder/prefix holding such files.",
        )
    if root is not None and isinstance(fs, LocalFileSystem):
        _check_links(uri, root, paths)
    files = []
    for p in paths:
        info = fs.info(p)
        # a zip member (a chained URL) has no mtime: its CRC-32 identifies its content
        identity = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified") or info.get("CRC")
        record: dict[str, Any] = {"uri": unstrip(fs, p, uri), "size": int(info.get("size") or 0), "identity": str(identity)}
        partitions = _partition_values(root, p)
        if partitions:
            record["partitions"] = partitions
        files.append(record)
    formats = {file_format(f["uri"]) for f in files}
    if len(formats) > 1:
        raise TuneflowError(f"{uri} mixes CSV and Parquet files.", "point at one format at a time (use a glob).")
    layouts: dict[tuple[str, ...], str] = {}
    for f in files:
        layouts.setdefault(tuple(f.get("partitions", {})), f["uri"])
    if len(layouts) > 1:
        shown = "; ".join(f"{u} ({', '.join(k) or 'no partition folders'})" for k, u in list(layouts.items())[:3])
        raise TuneflowError(
            f"{uri} mixes partition layouts: {shown}.",
            "point --data at one dataset whose files all sit under the same key=value folders (e.g. country=fr/part-0.parquet).",
        )
    return files


def _hidden(root: str, path: str) -> bool:
    """Below `root`, a name starting with '_' or '.' (Spark's _SUCCESS and _temporary/, .crc files)."""
    return any(part.startswith(("_", ".")) for part in path[len(root):].strip("/").split("/"))


def _partition_values(root: str | None, path: str) -> dict[str, Any]:
    """{key: value} of the key=value folders between `root` and the file (every folder level must be one)."""
    prefix = root.rstrip("/") + "/" if root else ""  # "": the root of an archive (zip://*/*.csv::...)
    if root is None or not path.startswith(prefix):
        return {}
    folders = path[len(prefix) :].split("/")[:-1]
    if not folders or not all(_HIVE_SEGMENT.fullmatch(d) for d in folders):
        return {}
    values: dict[str, Any] = {}
    for folder in folders:
        key, value = folder.split("=", 1)
        value = unquote(value)
        values[unquote(key)] = None if value == HIVE_NULL else value
    return values


def _check_links(uri: str, root: str, paths: list[str], duplicates: bool = True) -> None:
    """Refuse a symbolic link below the folder that resolves outside it (or nowhere), and a link to a
    file the listing holds already. Links to files that stay inside the folder are read like its files."""
    real_root = os.path.realpath(root)
    seen: dict[str, str] = {}
    for p in paths:
        real = os.path.realpath(p)
        link = _first_link(root, p)
        if link is not None:
            where = os.path.realpath(link)
            if not os.path.exists(real):
                raise TuneflowError(f"{link} in {uri} is a symbolic link to {where}, which does not exist.", "remove the link, or restore what it points to.")
            if os.path.commonpath([real_root, real]) != real_root:
                raise TuneflowError(
                    f"{link} in {uri} is a symbolic link to {where}, outside the folder given: tuneflow reads only what lies inside --data.",
                    "copy that data into the folder, or pass its own path as --data.",
                )
        if duplicates and real in seen:
            raise TuneflowError(
                f"{p} and {seen[real]} in {uri} are the same file (through a symbolic link): its rows would be read twice.",
                "remove the link from the folder.",
            )
        seen[real] = p


def _first_link(root: str, path: str) -> str | None:
    current = root.rstrip("/")
    for part in path[len(current) :].strip("/").split("/"):
        current = f"{current}/{part}"
        if os.path.islink(current):
            return current
    return None


def compression_of(uri: str) -> str | None:
    """'gzip' for a .gz file (of a chained URL: its first link, the file itself), else None."""
    return "gzip" if file_link(uri).lower().endswith(".gz") else None


def file_format(uri: str) -> str:
    """'csv' or 'parquet', from the file name (of a chained URL: its first link, the file itself)."""
    lower = file_link(uri).lower()
    if lower.endswith((".parquet", ".pq")):
        return "parquet"
    if lower.endswith((".csv", ".csv.gz", ".txt")):
        return "csv"
    raise TuneflowError(f"Unknown file type: {uri}.", "use .csv, .csv.gz or .parquet files.")
