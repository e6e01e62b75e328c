"""The one rule for turning feature columns into XGBoost's matrix, used by shard, engine and register.

Numeric columns become float32 (NaN when missing). A categorical column's code is the index of its
value (as a string) in the manifest's category list; a value not in that list, or missing, is NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from tasks.contracts import FeatureSpec


def as_categorical(column: pd.Series, categories: Sequence[str]) -> pd.Categorical:
    """A raw column with the manifest's categories pinned (pyarrow keeps categories per file)."""
    return pd.Categorical(column.astype("string"), categories=list(categories))


def pin_categories(df: pd.DataFrame, features: Sequence[FeatureSpec]) -> pd.DataFrame:
    """`df` with every categorical feature re-coded to the manifest's category order, in place."""
    for feat in features:
        if feat["kind"] == "categorical":
            df[feat["name"]] = as_categorical(df[feat["name"]], feat["categories"])
    return df


def feature_types(features: Sequence[FeatureSpec]) -> list[str]:
    """XGBoost's feature types: 'c' for categorical, 'q' for numeric."""
    return ["c" if f["kind"] == "categorical" else "q" for f in features]


def feature_names(features: Sequence[FeatureSpec]) -> list[str]:
    return [f["name"] for f in features]


def to_matrix(df: pd.DataFrame, features: Sequence[FeatureSpec]) -> np.ndarray:
    """float32 matrix of the features; categorical columns must already be pinned (or be codes)."""
    cols = []
    for feat in features:
        col = df[feat["name"]]
        if feat["kind"] != "categorical":
            cols.append(col.to_numpy(dtype=np.float32, na_value=np.nan))
        elif isinstance(col.dtype, pd.CategoricalDtype):
            codes = col.cat.codes.to_numpy().astype(np.float32)
            codes[codes < 0] = np.nan
            cols.append(codes)
        else:  # numbers in a categorical column are codes (raw categorical columns are never numeric)
            codes = col.to_numpy(dtype=np.float32, na_value=np.nan, copy=True)
            codes[(codes < 0) | (codes >= len(feat["categories"]))] = np.nan
            cols.append(codes)
    return np.column_stack(cols) if cols else np.empty((len(df), 0), np.float32)


def encode_features(df: pd.DataFrame, features: Sequence[FeatureSpec]) -> np.ndarray:
    """Raw, pinned or already-encoded feature columns -> the training matrix's encoding."""
    cols = {}
    for feat in features:
        col = df[feat["name"]]
        numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
        if feat["kind"] == "categorical" and not numeric and not isinstance(col.dtype, pd.CategoricalDtype):
            col = as_categorical(col, feat["categories"])
        elif feat["kind"] == "categorical" and isinstance(col.dtype, pd.CategoricalDtype) and list(col.cat.categories) != list(feat["categories"]):
            col = as_categorical(col.astype("string"), feat["categories"])
        cols[feat["name"]] = col
    return to_matrix(pd.DataFrame(cols, index=df.index), features)
