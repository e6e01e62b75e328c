"""The registered model's code (MLflow models-from-code): raw feature rows in, predictions out.

`tasks.register` logs this file with `mlflow.pyfunc.log_model(python_model=<this file>, artifacts=
{"booster": <model.ubj>, "manifest": <manifest.json>})`; MLflow copies it into the model and runs it
again when the model is loaded, so nothing is pickled. `load_context` reads the booster (XGBoost's
native UBJSON) and the dataset manifest; `predict` encodes raw columns with the manifest and scores.

Self-contained on purpose: it imports only mlflow, numpy, pandas and xgboost (the model's pinned
pip requirements), so the model also serves where tuneflow is not installed
(`mlflow models serve --env-manager virtualenv|uv`). Its `encode` is the training rule of
`tasks.engine.encoding.encode_features`, restated; tests/test_pyfunc.py checks they agree.

Input: a frame with every manifest feature column. Categorical columns hold the raw values
(strings; a value outside the manifest's categories, or missing, scores as XGBoost's missing);
numeric columns hold numbers (NaN/None when missing). Output: `Booster.predict` on that encoding,
the same as `tasks.register.predict_frame`:
- binary: probability of the positive class (manifest["classes"][1]), shape (n,);
- multiclass: class probabilities, shape (n, k), columns in manifest["classes"] order;
- regression (and ranking): the predicted values, shape (n,).
"""

from __future__ import annotations

import json
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb

BOOSTER_ARTIFACT = "booster"
MANIFEST_ARTIFACT = "manifest"


def encode(df: pd.DataFrame, features: list[dict[str, Any]]) -> np.ndarray:
    """Raw (or already-encoded) feature columns -> float32 matrix in the training encoding.

    Numeric: float32, NaN when missing. Categorical: the index of the value (as a string) in the
    feature's category list, NaN when missing or unknown; a numeric categorical column already
    holds codes (out of range -> NaN).
    """
    missing = [f["name"] for f in features if f["name"] not in df.columns]
    if missing:
        raise ValueError(f"The frame lacks feature columns {missing}: pass every feature column the model was trained on.")
    cols = []
    for feat in features:
        col = df[feat["name"]]
        if feat.get("missing_values"):  # declared missing in the expectations file (tasks.data.inputs.missing_mask)
            text = col.astype("string").str.strip()
            drop = text.isin(feat["missing_values"])
            numbers = pd.to_numeric(pd.Series(feat["missing_values"], dtype=object), errors="coerce").dropna().tolist()
            if numbers:
                drop = drop | pd.to_numeric(text, errors="coerce").isin(numbers)
            col = text.mask(drop.fillna(False).astype(bool))
            col = col if feat["kind"] == "categorical" else pd.to_numeric(col)
        if feat["kind"] != "categorical":
            cols.append(col.to_numpy(dtype=np.float32, na_value=np.nan))
            continue
        categories = list(feat["categories"])
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            codes = col.to_numpy(dtype=np.float32, na_value=np.nan, copy=True)
            codes[(codes < 0) | (codes >= len(categories))] = np.nan
        else:
            codes = pd.Categorical(col.astype("string"), categories=categories).codes.astype(np.float32)
            codes[codes < 0] = np.nan
        cols.append(codes)
    return np.column_stack(cols) if cols else np.empty((len(df), 0), np.float32)


class TuneflowModel(mlflow.pyfunc.PythonModel):
    """An XGBoost booster plus the manifest that defines its input encoding."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        with open(context.artifacts[MANIFEST_ARTIFACT], encoding="utf-8") as f:
            manifest = json.load(f)
        self.features = manifest["features"]
        self.names = [f["name"] for f in self.features]
        self.types = ["c" if f["kind"] == "categorical" else "q" for f in self.features]
        self.booster = xgb.Booster()
        self.booster.load_model(context.artifacts[BOOSTER_ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        matrix = encode(model_input, self.features)
        dm = xgb.DMatrix(matrix, feature_names=self.names, feature_types=self.types, enable_categorical=True)
        return self.booster.predict(dm)


mlflow.models.set_model(TuneflowModel())
