"""--sample (start small): a deterministic, uniform subset sharded as its own dataset version."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest

from tasks.data import inputs, shard, subset
from tasks.errors import TuneflowError
from tasks.plan import plan_run
from tests.conftest import make_csv

PROFILE = {
    "categories": {"region": ["north", "south", "east", "west", "central"], "plan": ["free", "basic", "pro", "enterprise"], "device": ["android", "ios", "web", "desktop"]},
    "classes": {"0": 1, "1": 1},
}
ROWS = 20_000
UNLABELLED = 1_000  # rows of churn_nulls.csv without a target


@pytest.fixture(scope="module")
def csv20k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_csv(tmp_path_factory.mktemp("data") / "churn.csv", ROWS)


@pytest.fixture(scope="module")
def csv_nulls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20k rows, the first UNLABELLED of them without a target (the shard step drops those)."""
    from tasks.data.sample import make_churn

    df = make_churn(ROWS)
    df["churned"] = df["churned"].astype("Int64")
    df.loc[: UNLABELLED - 1, "churned"] = pd.NA
    path = tmp_path_factory.mktemp("data") / "churn_nulls.csv"
    df.to_csv(path, index=False)
    return path


def shard_sample(
    csv: Path, store: Path, sample: str | None, *, seed: int = 0, row_key: str | None = None, rows: int | None = None, profile: dict = PROFILE
) -> dict:
    files = inputs.expand_inputs(str(csv))
    schema = inputs.infer_schema(files, "churned", "binary", {})
    fp = shard.fingerprint(files, schema, seed=seed, fractions=shard.DEFAULT_FRACTIONS, row_key=row_key, sample=sample)
    with dask.config.set(scheduler="threads"):
        return shard.shard_dataset(
            inputs.read_dataset(files, schema, {}), files, schema, profile, store=str(store), name="churn", fp=fp, seed=seed,
            fractions=shard.DEFAULT_FRACTIONS, row_key=row_key, storage_options={}, sample=sample, rows=rows,
        )


def shas(m: dict) -> dict[str, list[str]]:
    return {s: [f["sha256"] for f in m["splits"][s]["files"]] for s in shard.SPLITS}


def plan(csv: Path, sample: str | None, seed: int = 0):
    return plan_run(str(csv), "churned", "binary", None, None, None, seed, None, 4, None, 2, None, sample)


@pytest.mark.parametrize("bad", ["0", "1.5", "-3", "abc", "2.5", "0%", "100%", "-0.1", "1.0", "nan", ""])
def test_bad_sample_fails_the_plan(bad: str, churn_csv: Path) -> None:
    with pytest.raises(TuneflowError, match="Bad --sample") as err:
        plan(churn_csv, bad)
    assert "--sample" in err.value.fix


def test_sample_is_normalised_into_the_plan_and_its_fingerprint(churn_csv: Path) -> None:
    full = plan(churn_csv, None)
    assert full.sample is None
    tenth = plan(churn_csv, "10%")
    assert tenth.sample == "0.1" and tenth is not full  # the sample is part of plan_run's cache key
    assert plan(churn_csv, "0.10").fingerprint == tenth.fingerprint != full.fingerprint
    rows = plan(churn_csv, " 50_000 ")
    assert rows.sample == "50000" and rows.fingerprint not in (full.fingerprint, tenth.fingerprint)
    assert plan(churn_csv, "0.1", seed=1).fingerprint != tenth.fingerprint


def test_fingerprint_without_sample_is_the_one_it_always_was(churn_csv: Path) -> None:
    files = inputs.expand_inputs(str(churn_csv))
    schema = inputs.infer_schema(files, "churned", "binary", {})
    old_payload = {  # the payload before --sample existed: versions and studies keep their names
        "files": [[f["uri"], f["size"], f["identity"]] for f in files], "schema": schema, "seed": 0,
        "fractions": shard.DEFAULT_FRACTIONS, "row_key": None, "code": shard.SHARD_CODE_VERSION,
    }
    old = hashlib.sha256(json.dumps(old_payload, sort_keys=True).encode()).hexdigest()[:16]
    args = dict(seed=0, fractions=shard.DEFAULT_FRACTIONS, row_key=None)
    assert shard.fingerprint(files, schema, **args) == shard.fingerprint(files, schema, **args, sample=None) == old
    assert shard.fingerprint(files, schema, **args, sample="0.1") != old
    assert shard.fingerprint(files, schema, **args, sample="10%") == shard.fingerprint(files, schema, **args, sample="0.1")


def test_fraction_sample_size_and_split_proportions(csv20k: Path, tmp_path: Path) -> None:
    m = shard_sample(csv20k, tmp_path / "s", "0.1")
    n = m["total_rows"]
    assert abs(n - 0.1 * ROWS) < 0.05 * 0.1 * ROWS  # 2000 +- 5%
    share = {s: m["splits"][s]["rows"] / n for s in shard.SPLITS}
    assert abs(share["train"] - 0.8) < 0.03 and abs(share["valid"] - 0.1) < 0.02 and abs(share["test"] - 0.1) < 0.02
    assert m["sample"] == {
        "spec": "0.1", "kind": "fraction", "fraction": 0.1, "of_rows": ROWS, "rows": n, "all_rows": False, "seed": 0, "method": "row position hash",
    }
    assert m["fingerprint"] != shard_sample(csv20k, tmp_path / "full", None)["fingerprint"]


def test_same_inputs_same_rows_other_seed_other_rows(csv20k: Path, tmp_path: Path) -> None:
    a = shard_sample(csv20k, tmp_path / "a", "0.1")
    b = shard_sample(csv20k, tmp_path / "b", "10%")
    assert a["fingerprint"] == b["fingerprint"] and shas(a) == shas(b)
    c = shard_sample(csv20k, tmp_path / "c", "0.1", seed=1)
    assert c["fingerprint"] != a["fingerprint"] and shas(c)["train"] != shas(a)["train"]


def test_rows_sample_gives_about_n_rows_with_or_without_the_validated_total(csv_nulls: Path, tmp_path: Path) -> None:
    # the flow passes validation's report["rows"] (all rows) and its profile, whose nulls give the labelled rows
    given = shard_sample(csv_nulls, tmp_path / "given", "3000", rows=ROWS, profile={**PROFILE, "nulls": {"churned": UNLABELLED}})
    counted = shard_sample(csv_nulls, tmp_path / "counted", "3000")  # no total: the shard step counts
    assert shas(given) == shas(counted)
    labelled = ROWS - UNLABELLED
    assert given["sample"]["of_rows"] == labelled and given["sample"]["fraction"] == 3000 / labelled
    assert given["sample"]["kind"] == "rows" and not given["sample"]["all_rows"]
    assert abs(given["total_rows"] - 3000) < 0.05 * 3000


def test_rows_at_or_above_the_total_keep_every_row_and_say_so(csv20k: Path, tmp_path: Path) -> None:
    m = shard_sample(csv20k, tmp_path / "s", "50000", rows=ROWS)
    assert m["sample"]["all_rows"] and m["sample"]["fraction"] == 1.0 and m["total_rows"] == ROWS
    full = shard_sample(csv20k, tmp_path / "full", None)
    assert full["sample"] is None
    assert shas(m) == shas(full)  # the same rows in the same splits: a sampled row keeps its full-data split


def test_row_key_sample_over_several_partitions(csv20k: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inputs, "CSV_BLOCKSIZE", "400KB")
    files = inputs.expand_inputs(str(csv20k))
    assert inputs.read_dataset(files, inputs.infer_schema(files, "churned", "binary", {}), {}).npartitions > 3
    m = shard_sample(csv20k, tmp_path / "s", "0.2", row_key="customer_id")
    n = m["total_rows"]
    assert abs(n - 0.2 * ROWS) < 0.05 * 0.2 * ROWS and m["sample"]["method"] == "row_key hash"
    assert abs(m["splits"]["train"]["rows"] / n - 0.8) < 0.03


def test_mask_is_independent_of_the_split_and_nests() -> None:
    hashes = np.arange(200_000, dtype=np.uint64)
    df = pd.DataFrame(index=range(len(hashes)))
    labels = shard.split_of(df, 0, seed=3, fractions=shard.DEFAULT_FRACTIONS, row_key=None, hashes=hashes)
    assert (labels == shard.split_of(df, 0, seed=3, fractions=shard.DEFAULT_FRACTIONS, row_key=None)).all()
    small, large = (subset.sample_mask(hashes, seed=3, fraction=f) for f in (0.05, 0.2))
    assert abs(small.mean() - 0.05) < 0.003 and abs(large.mean() - 0.2) < 0.005
    assert not (small & ~large).any()  # a smaller sample lies inside a larger one
    for split, share in shard.DEFAULT_FRACTIONS.items():
        assert abs((labels[small] == split).mean() - share) < 0.015
    assert subset.sample_mask(hashes, seed=3, fraction=1.0).all()
    assert (subset.sample_mask(hashes, seed=4, fraction=0.05) != small).any()


def test_too_small_a_sample_names_the_option(csv20k: Path, tmp_path: Path) -> None:
    with pytest.raises(TuneflowError, match="split would be empty") as err:
        shard_sample(csv20k, tmp_path / "s", "3", rows=ROWS)
    assert "--sample" in err.value.fix
    assert not list((tmp_path / "s").rglob(shard.MANIFEST))


def test_a_sample_under_the_unsampled_fingerprint_is_refused(csv20k: Path, tmp_path: Path) -> None:
    files = inputs.expand_inputs(str(csv20k))
    schema = inputs.infer_schema(files, "churned", "binary", {})
    fp = shard.fingerprint(files, schema, seed=0, fractions=shard.DEFAULT_FRACTIONS, row_key=None)
    with pytest.raises(ValueError, match="own fingerprint"):
        shard.shard_dataset(
            inputs.read_dataset(files, schema, {}), files, schema, PROFILE, store=str(tmp_path), name="churn", fp=fp, seed=0,
            fractions=shard.DEFAULT_FRACTIONS, row_key=None, storage_options={}, sample="0.1",
        )


def test_validation_counts_what_a_rows_sample_needs(csv_nulls: Path, tmp_path: Path) -> None:
    """Validation runs on all rows: its report gives the shard step the total (report["rows"] and
    the target's nulls), so the flow's chain resolves ROWS without a counting pass."""
    from tasks.validation import validate_dataset

    files = inputs.expand_inputs(str(csv_nulls))
    schema = inputs.infer_schema(files, "churned", "binary", {})
    with dask.config.set(scheduler="sync"):
        report = validate_dataset(None, files, schema, {}, {})
    assert report["rows"] == ROWS and report["profile"]["nulls"]["churned"] == UNLABELLED
    m = shard_sample(csv_nulls, tmp_path / "s", "3000", rows=report["rows"], profile=report["profile"])
    assert m["sample"]["of_rows"] == ROWS - UNLABELLED
