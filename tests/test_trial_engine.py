"""The trial engine on real shards: resident data, matrix cache, every task type, placement choice."""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from tasks import dataset, shard, storage, trial_engine
from tasks.data_parallel import choose_placement, resident_bytes_estimate
from tasks.problem import objective_params


def make_manifest(tmp_path: Path, df: pd.DataFrame, target: str, task: str, categories: dict, classes: dict | None) -> dict:
    csv = tmp_path / f"{task}.csv"
    df.to_csv(csv, index=False)
    files = storage.expand_inputs(str(csv))
    schema = dataset.infer_schema(files, target, task, {})
    fp = shard.fingerprint(files, schema, seed=0, fractions=shard.DEFAULT_FRACTIONS, row_key=None)
    with dask.config.set(scheduler="sync"):
        return shard.shard_dataset(
            dataset.read_dataset(files, schema, {}), files, schema, {"categories": categories, "classes": classes or {}},
            store=str(tmp_path / "store"), name=task, fp=fp, seed=0, fractions=shard.DEFAULT_FRACTIONS, row_key=None, storage_options={},
        )


@pytest.fixture(scope="module")
def frames() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 3000
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    color = rng.choice(["red", "green", "blue"], n)
    shift = pd.Series(color).map({"red": 1.5, "green": 0.0, "blue": -1.5}).to_numpy()
    score = 2 * x1 - x2 + shift + rng.normal(scale=0.5, size=n)
    x1[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame({"x1": x1, "x2": x2, "color": color, "y_bin": (score > 0).astype(int), "y_multi": np.digitize(score, [-1.5, 1.5]), "y_reg": score})


@pytest.mark.parametrize(
    ("task", "target", "metric", "good"),
    [("binary", "y_bin", "auc", lambda v: v > 0.9), ("multiclass", "y_multi", "mlogloss", lambda v: v < 0.6), ("regression", "y_reg", "rmse", lambda v: v < 1.0)],
)
def test_every_task_trains_and_scores(tmp_path: Path, frames: pd.DataFrame, task: str, target: str, metric: str, good) -> None:
    df = frames.drop(columns=[c for c in ("y_bin", "y_multi", "y_reg") if c != target])
    classes = {str(c): 1 for c in sorted(df[target].unique())} if task != "regression" else None
    manifest = make_manifest(tmp_path, df, target, task, {"color": ["blue", "green", "red"]}, classes)
    spec = {
        "manifest": manifest, "storage_options": {}, "device": "cpu", "nthread": 1,
        "params": {**objective_params(task, len(manifest["classes"] or []), metric), "max_depth": 4, "learning_rate": 0.3, "max_bin": 64},
        "num_boost_round": 60, "early_stopping_rounds": 10,
    }
    trial_engine.release_data()
    first = trial_engine.run_trial(spec)
    second = trial_engine.run_trial({**spec, "params": {**spec["params"], "max_depth": 3}})
    assert good(first["value"]) and good(second["value"])
    assert not first["data_cache_hit"] and second["data_cache_hit"] and second["matrix_cache_hit"]
    assert first["rounds"] >= first["best_iteration"] + 1
    other_bins = trial_engine.run_trial({**spec, "params": {**spec["params"], "max_bin": 32}})
    assert other_bins["data_cache_hit"] and not other_bins["matrix_cache_hit"]
    # the saved model is the early-stopped one: scoring it on valid reproduces the trial's value
    on_valid = trial_engine.evaluate_model(first["model_ubj"], manifest, metric, {}, split="valid")
    assert on_valid == pytest.approx(first["value"], rel=1e-3)
    booster = xgb.Booster(model_file=bytearray(first["model_ubj"]))
    assert booster.num_boosted_rounds() == first["best_iteration"] + 1


def test_noop_and_bad_params(tmp_path: Path, frames: pd.DataFrame) -> None:
    assert trial_engine.run_trial({"noop": True, "noop_value": 0.5})["value"] == 0.5
    df = frames.drop(columns=["y_multi", "y_reg"])
    manifest = make_manifest(tmp_path, df, "y_bin", "binary", {"color": ["blue", "green", "red"]}, {"0": 1, "1": 1})
    spec = {"manifest": manifest, "storage_options": {}, "device": "cpu", "params": {"objective": "binary:logistic", "eval_metric": "auc", "max_depth": -3}}
    with pytest.raises(xgb.core.XGBoostError):
        trial_engine.run_trial(spec)


def test_placement_choice_from_manifest_size() -> None:
    manifest = {"splits": {"train": {"bytes": 800_000_000}, "valid": {"bytes": 100_000_000}, "test": {"bytes": 1}}}
    need = resident_bytes_estimate(manifest)
    assert choose_placement(manifest, [need * 4, need * 4]) == "trial"
    assert choose_placement(manifest, [need * 4, need]) == "data"  # the smallest worker decides
    assert choose_placement(manifest, [0, 0]) == "trial"  # no limits known
    assert choose_placement(manifest, [need * 4], forced="data") == "data"


def test_auto_device_is_cpu_without_a_gpu() -> None:
    assert trial_engine.resolve_device("auto") in ("cpu", "cuda")
    if trial_engine.gpu_count() == 0:
        assert trial_engine.resolve_device("auto") == "cpu"
