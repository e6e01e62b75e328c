"""Reading a dataset version's Parquet shards back: one reader for both placements and register."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tasks.contracts import LABEL_COLUMN, DatasetManifest
from tasks.engine.encoding import pin_categories, to_matrix
from tasks.objectstore import filesystem, join


def split_uris(manifest: DatasetManifest, split: str) -> list[str]:
    return [join(manifest["uri"], part["path"]) for part in manifest["splits"][split]["files"]]


def read_frames(uris: Sequence[str], storage_options: dict[str, Any]) -> pd.DataFrame:
    """The shards at `uris`, concatenated (each read whole: shards are 64-256 MB by design)."""
    frames = []
    for uri in uris:
        fs, path = filesystem(uri, storage_options)
        with fs.open(path, "rb") as f:
            frames.append(pd.read_parquet(io.BytesIO(f.read())))
    return pd.concat(frames, ignore_index=True)


def split_frame(df: pd.DataFrame, manifest: DatasetManifest) -> tuple[pd.DataFrame, np.ndarray]:
    """(features with the manifest's categories pinned, label) of shard rows."""
    y = df.pop(LABEL_COLUMN).to_numpy()
    return pin_categories(df, manifest["features"]), y


def split_arrays(df: pd.DataFrame, manifest: DatasetManifest) -> tuple[np.ndarray, np.ndarray]:
    """(float32 feature matrix, label) of shard rows, encoded as XGBoost trains on them."""
    features, y = split_frame(df, manifest)
    return to_matrix(features, manifest["features"]), y


def load_split_frame(manifest: DatasetManifest, split: str, storage_options: dict[str, Any]) -> tuple[pd.DataFrame, np.ndarray]:
    """One split's (feature frame, label): raw feature values, categories pinned."""
    return split_frame(read_frames(split_uris(manifest, split), storage_options), manifest)


def load_split(manifest: DatasetManifest, split: str, storage_options: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """One split's (feature matrix, label), encoded as XGBoost trains on them."""
    return split_arrays(read_frames(split_uris(manifest, split), storage_options), manifest)
