"""Shard a validated dataset into Parquet files plus a manifest, under a content fingerprint.

Layout: <store>/datasets/<name>/<fingerprint>/<split>/part-NNNNN.parquet and _manifest.json.
The manifest is written last: a dataset version exists only once its manifest does.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from tasks import objectstore as storage
from tasks.contracts import LABEL_COLUMN, DatasetManifest
from tasks.data import subset
from tasks.engine.encoding import as_categorical
from tasks.errors import TuneflowError

SHARD_CODE_VERSION = "1"  # bump when the shard layout or split rule changes: it changes every fingerprint
MANIFEST = "_manifest.json"
SPLITS = ("train", "valid", "test")
DEFAULT_FRACTIONS = {"train": 0.8, "valid": 0.1, "test": 0.1}


def dataset_name(data_uri: str) -> str:
    """A readable dataset name from the input path: 'data/churn.csv' -> 'churn'."""
    from tasks.objectstore import file_link  # a chained URL: the file's own link (zip://churn.csv::s3://b/a.zip -> churn)

    def named(uri: str) -> list[str]:
        return [p for p in uri.split("://")[-1].split("/") if p and not any(c in p for c in "*?[")]

    parts = named(file_link(data_uri)) or named(data_uri.split("::")[-1])  # zip://::s3://b/churn.zip: the archive's name
    stem = parts[-1] if parts else ""
    stem = re.sub(r"\.(csv|parquet|pq|gz|txt|zip|tar)$", "", stem.lower()).rstrip(".")
    return re.sub(r"[^a-z0-9_-]+", "-", stem).strip("-") or "dataset"


def check_fractions(fractions: dict[str, float]) -> dict[str, float]:
    if set(fractions) != set(SPLITS) or any(v <= 0 for v in fractions.values()) or abs(sum(fractions.values()) - 1) > 1e-9:
        raise TuneflowError(
            f"Bad split fractions {fractions}.", "give positive train/valid/test fractions that add up to 1."
        )
    return fractions


def fingerprint(
    files: list[dict[str, Any]],
    schema: dict[str, Any],
    *,
    seed: int,
    fractions: dict[str, float],
    row_key: str | None,
    sample: str | None = None,
) -> str:
    """Hash of the inputs' identities, the split settings, the sample (only when there is one,
    so a run without --sample keeps its version) and the shard code version."""
    payload: dict[str, Any] = {
        "files": [[f["uri"], f["size"], f["identity"]] for f in files],
        "schema": schema,
        "seed": seed,
        "fractions": fractions,
        "row_key": row_key,
        "code": SHARD_CODE_VERSION,
    }
    if sample is not None:
        payload["sample"] = subset.normalise_sample(sample)
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def version_uri(store: str, name: str, fp: str) -> str:
    return storage.join(store, "datasets", name, fp)


def row_hashes(df: pd.DataFrame, partition: int, row_key: str | None) -> np.ndarray:
    """Unseeded per-row identity the split and the sample hash: the row key's hash, or the row position."""
    if row_key:
        return pd.util.hash_pandas_object(df[row_key], index=False).to_numpy()
    return np.arange(len(df), dtype=np.uint64) + (np.uint64(partition) << np.uint64(40))


def split_of(
    df: pd.DataFrame, partition: int, *, seed: int, fractions: dict[str, float], row_key: str | None, hashes: np.ndarray | None = None
) -> np.ndarray:
    """Deterministic split label per row: a seeded hash of the row key, or of the row position."""
    if hashes is None:
        hashes = row_hashes(df, partition, row_key)
    # hash_array ignores hash_key for numbers, so the seed is mixed in explicitly
    seed_mix = np.uint64(int.from_bytes(hashlib.sha256(str(seed).encode()).digest()[:8], "little"))
    hashes = pd.util.hash_array(hashes ^ seed_mix)
    u = (hashes % np.uint64(1 << 32)).astype(np.float64) / float(1 << 32)
    bounds = np.cumsum([fractions[s] for s in SPLITS])
    return np.array(SPLITS)[np.searchsorted(bounds, u, side="right").clip(0, len(SPLITS) - 1)]


def encode_frame(df: pd.DataFrame, layout: dict[str, Any]) -> pd.DataFrame:
    """Features with fixed categorical dtypes and an encoded label, as stored in every shard."""
    out = {}
    for feat in layout["features"]:
        col = df[feat["name"]]
        if feat["kind"] == "categorical":
            out[feat["name"]] = as_categorical(col, feat["categories"])
        else:
            out[feat["name"]] = col.astype("float32")
    target = df[layout["target"]]
    if layout["classes"] is not None:
        codes = pd.Categorical(target.astype("string"), categories=layout["classes"]).codes
        out[LABEL_COLUMN] = codes.astype("int32")
    else:
        out[LABEL_COLUMN] = target.astype("float32")
    return pd.DataFrame(out, index=df.index)


def write_partition(
    df: pd.DataFrame, partition: int, root: str, layout: dict[str, Any], storage_options: dict[str, Any]
) -> tuple[list[dict[str, Any]], int]:
    """Write one input partition's labelled (and sampled) rows into one part file per split;
    return their records and how many labelled rows the partition had."""
    df = df[df[layout["target"]].notna()]
    labelled = len(df)
    hashes = row_hashes(df, partition, layout["row_key"])
    # the split is decided on all labelled rows, so a sampled row keeps its full-data split
    labels = split_of(df, partition, seed=layout["seed"], fractions=layout["fractions"], row_key=layout["row_key"], hashes=hashes)
    if layout.get("sample_fraction") is not None:
        keep = subset.sample_mask(hashes, seed=layout["seed"], fraction=layout["sample_fraction"])
        df, labels = df[keep], labels[keep]
    encoded = encode_frame(df, layout)
    records = []
    for split in SPLITS:
        part = encoded[labels == split].reset_index(drop=True)
        if part.empty:
            continue
        buf = io.BytesIO()
        part.to_parquet(buf, index=False, compression="zstd")
        data = buf.getvalue()
        rel = f"{split}/part-{partition:05d}.parquet"
        storage.write_bytes_atomic(storage.join(root, rel), data, storage_options)
        records.append({"split": split, "path": rel, "rows": len(part), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    return records, labelled


def shard_layout(schema: dict[str, Any], profile: dict[str, Any], *, seed: int, fractions: dict[str, float], row_key: str | None) -> dict[str, Any]:
    """What every shard holds: feature list with categories, label classes, split rule."""
    features = []
    for name, col in schema["columns"].items():
        if name in (schema["target"], row_key):
            continue
        feat: dict[str, Any] = {"name": name, "kind": col["kind"]}
        if col["kind"] == "categorical":
            feat["categories"] = sorted(map(str, profile.get("categories", {}).get(name, [])))
        if col.get("missing_values"):  # declared in the expectations file: scoring reads them as missing too
            feat["missing_values"] = list(col["missing_values"])
        features.append(feat)
    classes = None
    if schema["task"] != "regression":
        classes = sorted(map(str, profile.get("classes", {})))
    return {
        "target": schema["target"],
        "task": schema["task"],
        "features": features,
        "classes": classes,
        "row_key": row_key,
        "seed": seed,
        "fractions": fractions,
    }


def shard_dataset(
    ddf: dd.DataFrame,
    files: list[dict[str, Any]],
    schema: dict[str, Any],
    profile: dict[str, Any],
    *,
    store: str,
    name: str,
    fp: str,
    seed: int,
    fractions: dict[str, float],
    row_key: str | None,
    storage_options: dict[str, Any],
    sample: str | None = None,
    rows: int | None = None,
) -> DatasetManifest:
    """Write shards then the manifest; return the manifest. An existing manifest is reused as is.

    `sample` (see tasks/data/subset.py) keeps a deterministic subset of the labelled rows; `fp` must
    be the fingerprint computed with the same sample. `rows` is the row count validation saw
    (`report["rows"]`): with the profile's target nulls it gives a ROWS sample its total without a
    counting pass. The manifest's `sample` records the spec, the fraction used and the rows kept.
    """
    if sample is not None and fp == fingerprint(files, schema, seed=seed, fractions=fractions, row_key=row_key):
        raise ValueError("a sample must be sharded under its own fingerprint: pass sample= to fingerprint() too")
    root = version_uri(store, name, fp)
    manifest_uri = storage.join(root, MANIFEST)
    if storage.exists(manifest_uri, storage_options):
        return storage.read_json(manifest_uri, storage_options)
    if row_key and row_key not in schema["columns"]:
        raise TuneflowError(f"Row key column '{row_key}' is not in the data.", "pass --row-key with an existing column, or leave it out.")

    fs, path = storage.filesystem(root, storage_options)
    if fs.exists(path):  # leftovers of an interrupted run: never trusted, rewritten from scratch
        fs.rm(path, recursive=True)

    layout = shard_layout(schema, profile, seed=seed, fractions=check_fractions(fractions), row_key=row_key)
    started = time.perf_counter()
    spec = subset.parse_sample(sample)
    if spec is not None:
        layout["sample_fraction"] = spec.fraction if spec.fraction is not None else spec.fraction_of(_labelled_rows(ddf, schema, profile, rows))
    writes = [
        dask.delayed(write_partition)(part, i, root, layout, storage_options)
        for i, part in enumerate(ddf.to_delayed())
    ]
    outputs = dask.compute(*writes)
    records = [r for batch, _ in outputs for r in batch]
    labelled = sum(n for _, n in outputs)
    splits = {}
    for split in SPLITS:
        parts = sorted((r for r in records if r["split"] == split), key=lambda r: r["path"])
        splits[split] = {
            "rows": sum(r["rows"] for r in parts),
            "bytes": sum(r["bytes"] for r in parts),
            "files": [{k: r[k] for k in ("path", "rows", "bytes", "sha256")} for r in parts],
        }
    empty = [s for s in SPLITS if splits[s]["rows"] == 0]
    if empty:
        fs.rm(path, recursive=True)
        raise TuneflowError(
            f"The {', '.join(empty)} split would be empty ({sum(r['rows'] for r in records)} labelled rows{' in the sample' if spec else ''}).",
            f"use a larger --sample than {spec.text}, or none." if spec else "give more rows, or change the split fractions.",
        )
    manifest = {
        "format": "tuneflow.dataset/1",
        "name": name,
        "fingerprint": fp,
        "uri": root,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **{k: layout[k] for k in ("target", "task", "features", "classes", "row_key")},
        "split": {"seed": seed, "fractions": fractions, "method": "row_key hash" if row_key else "row position hash"},
        "splits": splits,
        "sample": None if spec is None else subset.sample_record(
            spec, layout["sample_fraction"], labelled, sum(s["rows"] for s in splits.values()), seed, row_key,
        ),
        "total_rows": sum(s["rows"] for s in splits.values()),
        "total_bytes": sum(s["bytes"] for s in splits.values()),
        "sources": files,
        "shard_code_version": SHARD_CODE_VERSION,
        "shard_seconds": round(time.perf_counter() - started, 3),
    }
    storage.write_json_atomic(manifest_uri, manifest, storage_options)
    return manifest


def _labelled_rows(ddf: dd.DataFrame, schema: dict[str, Any], profile: dict[str, Any], rows: int | None) -> int:
    """Rows with a target: validation's count less the target's nulls, or counted here (one extra pass)."""
    if rows is not None:
        return rows - int(profile.get("nulls", {}).get(schema["target"], 0))
    return int(ddf[schema["target"]].count().compute())  # count: the non-null values
