"""The trial engine on real shards: resident data, matrix cache, every task type, placement choice."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from tasks.contracts import Placement, trial_request
from tasks.engine import resident
from tasks.engine.encoding import encode_features, to_matrix
from tasks.engine.placement import choose_placement, resident_bytes_estimate
from tasks.engine.shards import load_split, load_split_frame
from tasks.engine.training import gpu_count, resolve_device
from tasks.problem import objective_params
from tests.conftest import shard_csv


def make_manifest(tmp_path: Path, df: pd.DataFrame, target: str, task: str, categories: dict, classes: dict | None) -> dict:
    csv = tmp_path / f"{task}.csv"
    df.to_csv(csv, index=False)
    return shard_csv(csv, target, task, {"categories": categories, "classes": classes or {}}, str(tmp_path / "store"), name=task)


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
    request = trial_request(
        manifest, {**objective_params(task, len(manifest["classes"] or []), metric), "max_depth": 4, "learning_rate": 0.3, "max_bin": 64},
        device="cpu", nthread=1, num_boost_round=60, early_stopping_rounds=10,
    )
    resident.release_data()
    first = resident.run_trial(request)
    second = resident.run_trial(request.for_trial(1, {"max_depth": 3}))
    assert good(first.value) and good(second.value)
    assert not first.data_cache_hit and second.data_cache_hit and second.matrix_cache_hit
    assert first.rounds >= first.best_iteration + 1
    other_bins = resident.run_trial(request.for_trial(2, {"max_bin": 32}))
    assert other_bins.data_cache_hit and not other_bins.matrix_cache_hit
    # the saved model is the early-stopped one: scoring it on valid reproduces the trial's value
    on_valid = resident.evaluate_model(first.model_ubj, manifest, metric, {}, split="valid")
    assert on_valid == pytest.approx(first.value, rel=1e-3)
    booster = xgb.Booster(model_file=bytearray(first.model_ubj))
    assert booster.num_boosted_rounds() == first.best_iteration + 1
    assert len(first.history) == first.rounds  # the valid metric after every round
    # what the unit used on this process: CPU time, its memory peak; no GPU figures on CPU
    assert 0 < first.cpu_seconds and first.peak_rss_mb > 50 and first.gpu_util_pct is None and first.gpu_mem_peak_mb is None
    assert first.model_bytes == len(first.model_ubj) and first.predict_ms_per_1k is None  # latency only when asked
    timed = resident.run_trial(dataclasses.replace(request, number=3, measure_latency=True))
    assert timed.predict_ms_per_1k is not None and timed.predict_ms_per_1k > 0


def test_a_trial_continues_from_its_saved_booster(tmp_path: Path, frames: pd.DataFrame) -> None:
    """Training N rounds, then N more from the saved model, equals 2N rounds in one go."""
    df = frames.drop(columns=["y_multi", "y_reg"])
    manifest = make_manifest(tmp_path, df, "y_bin", "binary", {"color": ["blue", "green", "red"]}, {"0": 1, "1": 1})
    base = trial_request(manifest, {**objective_params("binary", 2, "logloss"), "max_depth": 3, "learning_rate": 0.2, "max_bin": 64}, device="cpu", nthread=1, early_stopping_rounds=None)
    whole = resident.run_trial(dataclasses.replace(base, num_boost_round=20))
    half = resident.run_trial(dataclasses.replace(base, num_boost_round=10))
    rest = resident.run_trial(dataclasses.replace(base, num_boost_round=10, init_model=half.model_ubj))
    assert (half.rounds, rest.rounds, rest.best_iteration) == (10, 10, 19)
    assert np.allclose(half.history + rest.history, whole.history, rtol=1e-5)
    assert rest.value == pytest.approx(whole.value, rel=1e-5)


def test_one_encoding_rule_for_raw_pinned_and_coded_columns(tmp_path: Path, frames: pd.DataFrame) -> None:
    df = frames.drop(columns=["y_multi", "y_reg"])
    manifest = make_manifest(tmp_path, df, "y_bin", "binary", {"color": ["blue", "green", "red"]}, {"0": 1, "1": 1})
    pinned, _ = load_split_frame(manifest, "valid", {})
    matrix, _ = load_split(manifest, "valid", {})
    features = manifest["features"]
    raw = pinned.astype({"color": "object"})
    raw.loc[raw.index[:3], "color"] = "purple"  # unknown categories become missing
    coded = pd.DataFrame(matrix, columns=[f["name"] for f in features])
    color = [f["name"] for f in features].index("color")
    assert np.array_equal(to_matrix(pinned, features), matrix, equal_nan=True)
    assert np.array_equal(encode_features(coded, features), matrix, equal_nan=True)
    from_raw = encode_features(raw, features)
    assert np.isnan(from_raw[:3, color]).all() and np.array_equal(from_raw[3:], matrix[3:], equal_nan=True)


def test_noop_and_bad_params(tmp_path: Path, frames: pd.DataFrame) -> None:
    df = frames.drop(columns=["y_multi", "y_reg"])
    manifest = make_manifest(tmp_path, df, "y_bin", "binary", {"color": ["blue", "green", "red"]}, {"0": 1, "1": 1})
    noop = resident.run_trial(trial_request(manifest, noop_value=0.5))
    assert noop.value == 0.5 and noop.noop and noop.model_ubj == b""
    with pytest.raises(xgb.core.XGBoostError):
        resident.run_trial(trial_request(manifest, {"objective": "binary:logistic", "eval_metric": "auc", "max_depth": -3}, device="cpu"))


def test_placement_choice_from_manifest_size() -> None:
    manifest = {"splits": {"train": {"bytes": 800_000_000}, "valid": {"bytes": 100_000_000}, "test": {"bytes": 1}}}
    need = resident_bytes_estimate(manifest)
    assert choose_placement(manifest, [need * 4, need * 4]) == Placement.TRIAL
    assert choose_placement(manifest, [need * 4, need]) == Placement.DATA  # the smallest worker decides
    assert choose_placement(manifest, [0, 0]) == Placement.TRIAL  # no limits known
    assert choose_placement(manifest, [need * 4], forced="data") == Placement.DATA


def test_auto_device_follows_the_gpus_this_process_sees() -> None:
    assert resolve_device("auto") == ("cuda" if gpu_count() > 0 else "cpu")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError):
        resolve_device("tpu")


def test_rungs_continue_the_live_booster_or_the_saved_one(tmp_path: Path, frames: pd.DataFrame) -> None:
    """Two units of 10 rounds equal one of 20, whether the second continues the booster the worker
    kept live or the copy saved in the store (after the worker lost it)."""
    df = frames.drop(columns=["y_multi", "y_reg"])
    manifest = make_manifest(tmp_path, df, "y_bin", "binary", {"color": ["blue", "green", "red"]}, {"0": 1, "1": 1})
    base = trial_request(manifest, {**objective_params("binary", 2, "logloss"), "max_depth": 3, "learning_rate": 0.2, "max_bin": 64}, device="cpu", nthread=1, early_stopping_rounds=None)
    resident.release_data()
    whole = resident.run_trial(dataclasses.replace(base, num_boost_round=20))
    saved = tmp_path / "rung-0.ubj"
    first = resident.run_trial(dataclasses.replace(base, num_boost_round=10, live_key="t1", checkpoint_uri=str(saved)))
    saved.write_bytes(first.checkpoint_ubj)  # what the flow does with a unit's checkpoint
    assert "t1" in resident.live_keys() and first.resumed == "scratch"
    cont = dataclasses.replace(base, num_boost_round=10, live_key="t1", resume_from=str(saved), best_so_far=(first.best_iteration, first.value))
    live = resident.run_trial(cont)
    assert live.resumed == "live" and live.total_rounds == 20
    assert np.allclose(first.history + live.history, whole.history, rtol=1e-5)
    resident.release_data()  # the worker restarted: only the saved copy is left
    from_store = resident.run_trial(cont)
    assert from_store.resumed == "checkpoint" and np.allclose(from_store.history, live.history, rtol=1e-5)
    (tmp_path / "elsewhere.ubj").write_bytes(first.checkpoint_ubj)
    other = resident.run_trial(dataclasses.replace(cont, resume_from=str(tmp_path / "elsewhere.ubj")))
    assert other.resumed == "checkpoint"  # a live booster is used only for the checkpoint it equals


def test_early_stopping_spans_units(tmp_path: Path, frames: pd.DataFrame) -> None:
    df = frames.drop(columns=["y_multi", "y_reg"])
    manifest = make_manifest(tmp_path, df, "y_bin", "binary", {"color": ["blue", "green", "red"]}, {"0": 1, "1": 1})
    request = trial_request(manifest, {**objective_params("binary", 2, "auc"), "max_depth": 6, "learning_rate": 0.5, "max_bin": 64}, device="cpu", nthread=1, num_boost_round=400, early_stopping_rounds=5)
    one = resident.run_trial(request)
    assert one.stopped_early and one.rounds == one.best_iteration + 6
    # a unit told of a better round 3 than any it trains stops 5 rounds after it and keeps that best
    later = resident.run_trial(dataclasses.replace(request, best_so_far=(3, 2.0)))
    assert later.stopped_early and later.rounds == 9 and (later.best_iteration, later.value) == (3, 2.0)


def test_data_fractions_are_nested_deterministic_subsets(tmp_path: Path, frames: pd.DataFrame) -> None:
    from tasks.engine.fractions import subset_rows

    ninth, third = subset_rows(9000, 1 / 9, "fp"), subset_rows(9000, 1 / 3, "fp")
    assert len(ninth) == 1000 and len(third) == 3000 and set(ninth) <= set(third)
    assert np.array_equal(ninth, subset_rows(9000, 1 / 9, "fp")) and not np.array_equal(ninth, subset_rows(9000, 1 / 9, "other"))
    assert subset_rows(10, 1.0, "fp") is None
    df = frames.drop(columns=["y_multi", "y_reg"])
    manifest = make_manifest(tmp_path, df, "y_bin", "binary", {"color": ["blue", "green", "red"]}, {"0": 1, "1": 1})
    request = trial_request(manifest, {**objective_params("binary", 2, "auc"), "max_bin": 64}, device="cpu", nthread=1, num_boost_round=5, fraction=1 / 3)
    resident.release_data()
    a, b = resident.run_trial(request), resident.run_trial(request.for_trial(1, {}))
    assert not a.matrix_cache_hit and b.matrix_cache_hit and a.history == b.history and a.fraction == pytest.approx(1 / 3)
    data, _ = resident.resident_data(manifest, {}, "cpu")
    assert data.matrices_for(64, 1 / 3)[0].num_row() == int(np.ceil(manifest["splits"]["train"]["rows"] / 3))
