"""Shard step and object-store contract: the same tests against a local folder and S3 (moto over HTTP)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from tasks import objectstore as storage
from tasks.data import inputs, shard
from tasks.engine.shards import load_split_frame
from tasks.errors import TuneflowError
from tests.conftest import shard_csv

PROFILE = {
    "categories": {"region": ["north", "south", "east", "west", "central"], "plan": ["free", "basic", "pro", "enterprise"], "device": ["android", "ios", "web", "desktop"]},
    "classes": {"0": 1, "1": 1},
}


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "store")
    return f"s3://{request.getfixturevalue('s3_bucket')}/root"


def do_shard(csv: Path, store: str, row_key: str | None = "customer_id", seed: int = 0) -> dict:
    return shard_csv(csv, "churned", "binary", PROFILE, store, name="churn", row_key=row_key, seed=seed, scheduler="threads")


def test_manifest_describes_every_row_and_file(churn_csv: Path, store: str) -> None:
    m = do_shard(churn_csv, store)
    opts = storage.storage_options_for(store)
    assert m["total_rows"] == 6000
    rows = {s: m["splits"][s]["rows"] for s in shard.SPLITS}
    assert sum(rows.values()) == 6000
    assert 0.75 < rows["train"] / 6000 < 0.85 and rows["valid"] > 400 and rows["test"] > 400
    assert [f["name"] for f in m["features"]][:2] == ["tenure_months", "monthly_charges"]
    assert "customer_id" not in [f["name"] for f in m["features"]]  # the row key is not a feature
    assert m["classes"] == ["0", "1"]
    fs, _ = storage.filesystem(store, opts)
    for split in shard.SPLITS:
        for part in m["splits"][split]["files"]:
            data = fs.cat_file(storage.filesystem(storage.join(m["uri"], part["path"]), opts)[1])
            assert hashlib.sha256(data).hexdigest() == part["sha256"] and len(data) == part["bytes"]
    X, y = load_split_frame(m, "train", opts)
    assert len(X) == rows["train"] and set(y) == {0, 1}
    assert X["plan"].dtype == "category" and list(X["plan"].cat.categories) == sorted(PROFILE["categories"]["plan"])
    assert storage.read_json(storage.join(m["uri"], shard.MANIFEST), opts) == json.loads(json.dumps(m, default=str))


def test_split_is_deterministic_and_keyed(churn_csv: Path, tmp_path: Path) -> None:
    a = do_shard(churn_csv, str(tmp_path / "a"))
    b = do_shard(churn_csv, str(tmp_path / "b"))
    assert a["fingerprint"] == b["fingerprint"]
    assert [f["sha256"] for f in a["splits"]["test"]["files"]] == [f["sha256"] for f in b["splits"]["test"]["files"]]
    other_seed = do_shard(churn_csv, str(tmp_path / "c"), seed=1)
    assert other_seed["fingerprint"] != a["fingerprint"]
    assert other_seed["splits"]["test"]["rows"] != a["splits"]["test"]["rows"]


def test_existing_manifest_is_reused_and_partial_version_rewritten(churn_csv: Path, store: str) -> None:
    m = do_shard(churn_csv, store)
    opts = storage.storage_options_for(store)
    again = do_shard(churn_csv, store)
    assert again["created_at"] == m["created_at"]  # reused, not rewritten
    # simulate a crash mid-shard: shards there, manifest gone, plus a stray part file
    fs, path = storage.filesystem(storage.join(m["uri"], shard.MANIFEST), opts)
    fs.rm(path)
    stray = storage.join(m["uri"], "train", "part-99999.parquet")
    storage.write_bytes_atomic(stray, b"half a file", opts)
    redone = do_shard(churn_csv, store)
    assert redone["total_rows"] == 6000
    assert not storage.exists(stray, opts)
    assert [f["sha256"] for f in redone["splits"]["train"]["files"]] == [f["sha256"] for f in m["splits"]["train"]["files"]]


def test_too_few_rows_publish_no_version(tmp_path: Path) -> None:
    csv = tmp_path / "tiny.csv"
    pd.DataFrame({"customer_id": [1, 2], "x": [1.0, 2.0], "region": ["a", "b"], "plan": ["free", "pro"], "device": ["ios", "web"], "churned": [0, 1]}).to_csv(csv, index=False)
    with pytest.raises(TuneflowError, match="split would be empty"):
        do_shard(csv, str(tmp_path / "store"))
    assert not list((tmp_path / "store").rglob("*.parquet")) and not list((tmp_path / "store").rglob(shard.MANIFEST))


def test_store_contract_atomic_json_and_listing(store: str) -> None:
    opts = storage.storage_options_for(store)
    uri = storage.join(store, "x", "obj.json")
    storage.write_json_atomic(uri, {"a": 1}, opts)
    storage.write_json_atomic(uri, {"a": 2}, opts)
    assert storage.read_json(uri, opts) == {"a": 2}
    fs, path = storage.filesystem(storage.join(store, "x"), opts)
    assert [p.rsplit("/", 1)[-1] for p in fs.ls(path)] == ["obj.json"]  # no temporary files left


def test_expand_inputs_errors(tmp_path: Path) -> None:
    with pytest.raises(TuneflowError, match="No data found"):
        inputs.expand_inputs(str(tmp_path / "nope.csv"))
    (tmp_path / "a.csv").write_text("x,y\n1,2\n")
    (tmp_path / "b.parquet").write_bytes(b"")
    with pytest.raises(TuneflowError, match="mixes CSV and Parquet"):
        inputs.expand_inputs(str(tmp_path / "*"))
    assert shard.dataset_name("s3://bucket/landing/2026-11/*.csv") == "2026-11"
    assert shard.dataset_name("data/generated/churn.csv") == "churn"
