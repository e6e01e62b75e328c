"""`tuneflow predict`: a registered model scores a file, a folder or an S3 prefix on a Dask
LocalCluster, partition by partition, with the registered pyfunc's predictions."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import fsspec
import mlflow
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from mlflow.tracking import MlflowClient

from tasks import predict, pyfunc_model
from tasks.data.sample import make_churn
from tests.conftest import run_cli
from tests.test_pyfunc import NAME, _registry, world  # noqa: F401  (world: the registered model, module scope)

CHAMPION = f"models:/{NAME}@champion"


@pytest.fixture(scope="module")
def raw(world):  # noqa: F811
    """20,000 raw churn rows with an unseen category and missing values, and their CSV."""
    df = make_churn(20_000, seed=5)
    df.loc[0, "region"] = "atlantis"
    df.loc[1, "plan"] = None
    df.loc[2, "tenure_months"] = np.nan
    path = world["tmp"] / "score.csv"
    df.to_csv(path, index=False)
    return {"df": pd.read_csv(path), "csv": path}


@pytest.fixture(scope="module")
def expected(world, raw):  # noqa: F811
    """What `mlflow.pyfunc.load_model(uri).predict` gives on the same rows."""
    with _registry(world["tracking_uri"]):
        model = mlflow.pyfunc.load_model(CHAMPION)
    return model.predict(_model_input(raw["df"], world["manifest"]))


def _model_input(df: pd.DataFrame, manifest: dict) -> pd.DataFrame:
    frame = df[[f["name"] for f in manifest["features"]]].copy()
    for f in manifest["features"]:
        if f["kind"] == "categorical":
            frame[f["name"]] = frame[f["name"]].astype(object).where(frame[f["name"]].notna(), None)
    return frame


def _env(world) -> dict[str, str]:  # noqa: F811
    return {"TUNEFLOW_MLFLOW_TRACKING_URI": world["tracking_uri"], "TUNEFLOW_DASK_ADDRESS": ""}


def _predict(world, *args: str) -> subprocess.CompletedProcess:  # noqa: F811
    return run_cli("predict", *args, env=_env(world), timeout=300)


def _check(scored: pd.DataFrame, source: pd.DataFrame, expected: np.ndarray, kept: tuple[str, ...] = ("customer_id",)) -> None:
    """Same rows in the same order, the ID kept, the pyfunc's probabilities, labels at 0.5."""
    assert list(scored.columns) == [*kept, "probability", "label"]
    assert len(scored) == len(source) == len(expected)
    assert scored["customer_id"].astype(str).tolist() == source["customer_id"].astype(str).tolist()
    np.testing.assert_allclose(scored["probability"].to_numpy(np.float64), expected, rtol=1e-6, atol=0)
    assert scored["label"].astype(str).tolist() == np.where(expected > 0.5, "1", "0").tolist()
    assert expected.std() > 0.01


def _single_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    # One error line, last; before it at most the progress line (a failure on a worker).
    assert lines and lines[-1].startswith("error: "), proc.stderr[-3000:]
    assert all(line.startswith("scoring partitions") for line in lines[:-1]), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return lines[-1]


def _no_leftovers(out: Path) -> None:
    assert not out.exists()
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_csv_file_in_partitions_matches_the_pyfunc(world, raw, expected, tmp_path):  # noqa: F811
    out = tmp_path / "scored"
    proc = _predict(world, "--model", CHAMPION, "--data", str(raw["csv"]), "--out", str(out), "--blocksize", "256KB")
    assert proc.returncode == 0, proc.stderr[-3000:]
    parts = sorted(out.glob("part.*.parquet"))
    assert len(parts) > 1 and sorted(p.name for p in out.iterdir()) == [p.name for p in parts]  # partitioned, nothing else
    _check(pd.read_parquet(out), raw["df"], expected)
    assert re.search(r"scoring partitions.*\b(\d+)/\1\b", proc.stderr)  # the progress line, all done
    assert f"Scored {len(raw['df'])} rows with models:/{NAME}/1" in proc.stdout and f"{len(parts)} partitions -> {out}" in proc.stdout

    # An existing --out is refused untouched; --overwrite replaces it.
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    refused = _predict(world, "--model", CHAMPION, "--data", str(raw["csv"]), "--out", str(out))
    assert "exists" in _single_error(refused) and "--overwrite" in refused.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    again = _predict(world, "--model", f"models:/{NAME}/1", "--data", str(raw["csv"]), "--out", str(out), "--overwrite")
    assert again.returncode == 0, again.stderr[-3000:]
    assert [p.name for p in out.iterdir()] == ["part.00000.parquet"]  # one 64MB block: one part
    _check(pd.read_parquet(out), raw["df"], expected)


def test_parquet_folder_to_one_csv(world, raw, expected, tmp_path):  # noqa: F811
    folder = tmp_path / "landing"
    folder.mkdir()
    bounds = [0, 5_000, 12_000, 20_000]
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        raw["df"].iloc[a:b].to_parquet(folder / f"day-{i}.parquet", index=False)
    out = tmp_path / "scores.csv"
    run_id = MlflowClient(world["tracking_uri"], world["tracking_uri"]).get_model_version(NAME, "1").run_id
    proc = _predict(world, "--model", f"runs:/{run_id}/model", "--data", str(folder), "--out", str(out), "--keep", "customer_id,region")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 partitions" in proc.stdout  # one per file
    assert out.is_file() and not [p for p in tmp_path.iterdir() if p.name.startswith(".scores.csv.")]
    scored = pd.read_csv(out, keep_default_na=False, na_values={"probability": [""]})
    assert out.read_text().count("customer_id") == 1  # one header
    _check(scored, raw["df"], expected, kept=("customer_id", "region"))
    assert scored["region"].tolist() == raw["df"]["region"].fillna("").tolist()


def test_s3_prefix_to_s3(world, raw, expected, s3_bucket, s3_endpoint):  # noqa: F811
    fs = fsspec.filesystem("s3", client_kwargs={"endpoint_url": s3_endpoint})
    for i, chunk in enumerate(np.array_split(np.arange(len(raw["df"])), 2)):
        with fs.open(f"{s3_bucket}/in/2026-12/part-{i}.parquet", "wb") as f:
            raw["df"].iloc[chunk].to_parquet(f, index=False)
    out = f"s3://{s3_bucket}/scored/2026-12"
    proc = _predict(world, "--model", f"models:/{NAME}/1", "--data", f"s3://{s3_bucket}/in/2026-12/", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    keys = sorted(fs.find(s3_bucket))
    assert [k for k in keys if "/scored/" in k] == [f"{s3_bucket}/scored/2026-12/part.0000{i}.parquet" for i in range(2)]
    assert all("/in/" in k or "/scored/" in k for k in keys)  # no temporary prefix left
    scored = pd.read_parquet(out, storage_options={"client_kwargs": {"endpoint_url": s3_endpoint}})
    _check(scored, raw["df"], expected)
    refused = _predict(world, "--model", CHAMPION, "--data", f"s3://{s3_bucket}/in/2026-12/", "--out", out)
    assert "exists" in _single_error(refused)


def test_bad_inputs_are_one_error_line_and_write_nothing(world, raw, tmp_path):  # noqa: F811
    out = tmp_path / "never"
    no_plan = tmp_path / "no_plan.csv"
    raw["df"].drop(columns=["plan"]).head(100).to_csv(no_plan, index=False)
    line = _single_error(_predict(world, "--model", CHAMPION, "--data", str(no_plan), "--out", str(out)))
    assert "lacks the model's feature columns ['plan']" in line

    line = _single_error(_predict(world, "--model", f"models:/{NAME}@nope", "--data", str(raw["csv"]), "--out", str(out)))
    assert f"models:/{NAME}@nope" in line and "@champion -> v1" in line
    line = _single_error(_predict(world, "--model", "models:/no-such-model@champion", "--data", str(raw["csv"]), "--out", str(out)))
    assert NAME in line  # names the models that are there

    line = _single_error(_predict(world, "--model", CHAMPION, "--data", str(tmp_path / "missing.csv"), "--out", str(out)))
    assert "No data found" in line
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not a parquet file at all" * 100)
    assert "Cannot read" in _single_error(_predict(world, "--model", CHAMPION, "--data", str(garbage), "--out", str(out)))

    # A bad value deep in the file fails on a worker after other partitions were written:
    # still one error line, and neither --out nor the temporary parts are left.
    bad = tmp_path / "bad_value.csv"
    frame = raw["df"].astype({"tenure_months": object})
    frame.loc[15_000, "tenure_months"] = "twelve"
    frame.to_csv(bad, index=False)
    line = _single_error(_predict(world, "--model", CHAMPION, "--data", str(bad), "--out", str(out), "--blocksize", "256KB"))
    assert "failed" in line
    _no_leftovers(out)


@pytest.mark.slow  # 600k rows, ~70 s: the CI suite checks partitioned scoring (parts > 1) in the CSV test
def test_client_memory_stays_flat_as_the_input_grows(world, tmp_path):  # noqa: F811
    """The client never holds the data: its peak RSS on an input ~40x larger than the block size
    is the same as on a tiny one, while the input alone would take ~90 MB in pandas."""
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    make_churn(2_000, seed=1).to_csv(small, index=False)
    frame = make_churn(600_000, seed=2)
    in_memory = int(frame.memory_usage(deep=True).sum())
    frame.to_csv(large, index=False)
    del frame
    peaks = {}
    for name, path in (("small", small), ("large", large)):
        rc, peaks[name], stdout = _peak_rss(world, path, tmp_path / f"out-{name}")
        assert rc == 0
    assert len(list((tmp_path / "out-large").glob("part.*.parquet"))) >= 10
    growth = peaks["large"] - peaks["small"]
    print(f"client peak RSS: small {peaks['small'] / 2**20:.0f} MiB, large {peaks['large'] / 2**20:.0f} MiB; "
          f"large input {large.stat().st_size / 2**20:.0f} MiB on disk, {in_memory / 2**20:.0f} MiB in pandas")
    assert growth < 0.25 * in_memory, (peaks, in_memory)


def _peak_rss(world, data: Path, out: Path) -> tuple[int, int, str]:  # noqa: F811
    """Run predict; the CLI process's own peak RSS (VmHWM, polled; its workers are other processes)."""
    import os
    import sys

    exe = Path(sys.executable).with_name("tuneflow")
    cmd = [str(exe), "predict", "--model", CHAMPION, "--data", str(data), "--out", str(out), "--blocksize", "2MB"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **_env(world)})
    peak = [0]

    def poll() -> None:
        while proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/status") as f:
                    found = re.search(r"VmHWM:\s+(\d+) kB", f.read())
                peak[0] = max(peak[0], int(found.group(1)) * 1024) if found else peak[0]
            except OSError:
                pass
            time.sleep(0.05)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    stdout, stderr = proc.communicate(timeout=300)
    watcher.join()
    assert proc.returncode == 0, stderr[-3000:]
    assert peak[0] > 0
    return proc.returncode, peak[0], stdout


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_output_columns_per_task_are_the_pyfunc_predictions(task):
    """score_frame (what each partition runs) against the registered model's own class."""
    rng = np.random.default_rng(3)
    features = [{"name": "x", "kind": "numeric"}, {"name": "colour", "kind": "categorical", "categories": ["red", "green", "blue"]}]
    classes = ["low", "mid", "high"] if task == "multiclass" else None
    manifest = {"task": task, "classes": classes, "features": features, "row_key": "id"}
    df = pd.DataFrame({"id": np.arange(300), "x": rng.normal(size=300), "colour": rng.choice(["red", "green", "blue", "pink"], 300)})
    y = (df["x"] > 0).astype(int) + (df["colour"] == "blue") if task == "multiclass" else df["x"] * 2 + (df["colour"] == "red")
    dm = xgb.DMatrix(pyfunc_model.encode(df, features), label=y, feature_names=["x", "colour"], feature_types=["q", "c"], enable_categorical=True)
    params = {"objective": "multi:softprob", "num_class": 3} if task == "multiclass" else {"objective": "reg:squarederror"}
    booster = xgb.train({**params, "max_depth": 3, "nthread": 1}, dm, num_boost_round=10)

    model = pyfunc_model.TuneflowModel()  # what load_context sets, without MLflow's loader
    model.features, model.names, model.types, model.booster = features, ["x", "colour"], ["q", "c"], booster
    want = model.predict(None, df)
    got = predict.score_frame(booster, df, manifest, ["id"])
    assert got["id"].tolist() == df["id"].tolist()
    if task == "multiclass":
        assert list(got.columns) == ["id", "probability_low", "probability_mid", "probability_high", "label"]
        np.testing.assert_array_equal(got[["probability_low", "probability_mid", "probability_high"]].to_numpy(), want)
        assert got["label"].tolist() == [classes[i] for i in want.argmax(axis=1)]
    else:
        assert list(got.columns) == ["id", "prediction"]
        np.testing.assert_array_equal(got["prediction"].to_numpy(), want)
    empty = predict.score_frame(None, df.iloc[:0], manifest, ["id"])  # the output schema, from no rows
    assert list(empty.columns) == list(got.columns) and len(empty) == 0


def test_hive_partitioned_parquet_is_scored_with_its_partition_columns(world, raw, expected, tmp_path):  # noqa: F811
    """Spark's layout partitioned by a feature (region=.../part-*.parquet, _SUCCESS, .crc files):
    the folders give the feature, as in training (tasks.data.inputs.read_columns)."""
    from tests.test_bad_data import spark_layout

    data = spark_layout(tmp_path / "landing", raw["df"], ["region"])
    assert "region" not in pd.read_parquet(next(data.rglob("part-*.parquet"))).columns
    out = tmp_path / "scored"
    proc = _predict(world, "--model", CHAMPION, "--data", str(data), "--out", str(out), "--keep", "customer_id,region")
    assert proc.returncode == 0, proc.stderr[-3000:]
    scored = pd.read_parquet(out)
    by_id = raw["df"].assign(expected=expected).set_index("customer_id")
    assert len(scored) == len(raw["df"]) and scored["customer_id"].is_unique
    want = by_id.loc[scored["customer_id"].to_numpy()]
    np.testing.assert_allclose(scored["probability"].to_numpy(np.float64), want["expected"].to_numpy(), rtol=1e-6, atol=0)
    assert scored["region"].fillna("").tolist() == want["region"].fillna("").tolist()


def test_declared_missing_values_are_missing_when_scoring(world, tmp_path):  # noqa: F811
    """A feature whose manifest declares missing_values (the expectations file's, at training) is
    read as training reads it: 'unknown' is missing, not a failed float conversion."""
    import dask

    manifest = {**world["manifest"], "features": [
        {**f, "missing_values": ["unknown", "-999"]} if f["name"] == "tenure_months" else f for f in world["manifest"]["features"]
    ]}
    df = make_churn(300, seed=4).astype({"tenure_months": object})
    df.loc[[3, 30], "tenure_months"] = ["unknown", "-999"]
    df.to_csv(tmp_path / "in.csv", index=False)
    frame, keep, _ = predict.open_input(str(tmp_path / "in.csv"), manifest, 64 * 1024)
    with dask.config.set(scheduler="sync"):
        got = frame.compute().reset_index(drop=True)
    assert keep == ["customer_id"] and got["tenure_months"].dtype == "float64"
    assert got["tenure_months"].isna().sum() == 2 and got.loc[[3, 30], "tenure_months"].isna().all()
