"""Bad input through the real CLI: one clear error line, non-zero exit, raw data untouched,
no dataset version published, nothing registered."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import make_csv, run_cli


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_clean_failure(proc, home: Path, raw: Path | None, *needles: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, proc.stderr[-3000:]
    line = error_lines[0]
    assert "Fix:" in line
    for needle in needles:
        assert needle in line, line
    assert not list(home.rglob("_manifest.json")), "a dataset version was published"
    assert not list(home.rglob("*.parquet")), "shards were left behind"
    assert not list(home.rglob("*.ubj")), "a model was written"
    if raw is not None:
        assert digest(raw) == raw_digests[raw]


raw_digests: dict[Path, str] = {}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def cli(home: Path, *args: str):
    return run_cli("run", *args, "--n-trials", "2", env={"TUNEFLOW_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})


@pytest.fixture(scope="module")
def good_csv(tmp_path_factory) -> Path:
    path = make_csv(tmp_path_factory.mktemp("raw") / "churn.csv", 3000)
    raw_digests[path] = digest(path)
    return path


def test_misspelled_target(good_csv: Path, home: Path) -> None:
    proc = cli(home, "--data", str(good_csv), "--target", "churnd")
    assert_clean_failure(proc, home, good_csv, "'churnd' is not in the data", "did you mean 'churned'")


def test_missing_path(home: Path, tmp_path: Path) -> None:
    proc = cli(home, "--data", str(tmp_path / "nope" / "x.csv"), "--target", "y")
    assert_clean_failure(proc, home, None, "No data found")


def test_empty_dataset(home: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("a,b,label\n")
    raw_digests[empty] = digest(empty)
    proc = cli(home, "--data", str(empty), "--target", "label")
    assert_clean_failure(proc, home, empty, "no data rows")


def test_corrupt_file(home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not really parquet \x00\x01\x02")
    raw_digests[bad] = digest(bad)
    proc = cli(home, "--data", str(bad), "--target", "label")
    assert_clean_failure(proc, home, bad, "Cannot parse")


def test_unknown_metric(good_csv: Path, home: Path) -> None:
    proc = cli(home, "--data", str(good_csv), "--target", "churned", "--metric", "f1")
    assert_clean_failure(proc, home, good_csv, "Unknown metric 'f1'", "auc")


def test_malformed_search_space(good_csv: Path, home: Path, tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("max_depth: {type: int, low: 10, high: 3}\n")
    proc = cli(home, "--data", str(good_csv), "--target", "churned", "--space", str(space))
    assert_clean_failure(proc, home, good_csv, "max_depth", "low <= high")
    space.write_text("max_depth: [unclosed\n")
    proc = cli(home, "--data", str(good_csv), "--target", "churned", "--space", str(space))
    assert_clean_failure(proc, home, good_csv, "not valid YAML")


def test_regression_target_not_numeric(good_csv: Path, home: Path) -> None:
    proc = cli(home, "--data", str(good_csv), "--target", "plan", "--task", "regression")
    assert_clean_failure(proc, home, good_csv, "'plan' is not numeric")


def test_one_class_target_fails_validation(home: Path, tmp_path: Path) -> None:
    one = tmp_path / "one.csv"
    df = pd.read_csv(make_csv(tmp_path / "src.csv", 500))
    df["churned"] = 1
    df.to_csv(one, index=False)
    raw_digests[one] = digest(one)
    proc = cli(home, "--data", str(one), "--target", "churned")
    assert_clean_failure(proc, home, one, "Validation failed", "class")
    assert not list(home.rglob("mlflow.db")), "the registry was touched although validation failed"


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("--pruner", "bogus"), ("Bad --pruner 'bogus'", "none|median|percentile|sha|hyperband")),
        (("--strategy", "pbt", "--population", "1"), ("Bad --population 1", "2 or more")),
        (("--strategy", "pbt", "--pruner", "sha"), ("does not apply to --strategy pbt",)),
        (("--pruner", "none", "--fidelity", "data"), ("needs a pruner",)),
        (("--schedule", "later"), ("Bad --schedule 'later'",)),
        (("--sampler", "anneal"), ("Bad --sampler 'anneal'", "auto|tpe|random|grid|qmc|gp|cmaes|nsga2")),
        (("--sampler", "grid"), ("'learning_rate'", "give it a step")),
        (("--sampler", "cmaes", "--space", "data/search_space.yaml"), ("categorical parameters (max_bin)", "--sampler tpe")),
        (("--sampler", "cmaes", "--space", "data/search_space_conditional.yaml"), ("conditional space",)),
        (("--objectives", "size_mb,auc"), ("first objective must be the run's metric (auc)",)),
        (("--objectives", "auc,weight"), ("weight", "size_mb, latency_ms, train_s")),
        (("--objectives", "auc,size_mb", "--pruner", "sha"), ("multi-objective",)),
        (("--objectives", "auc,size_mb", "--within", "size_mb=-1"), ("Bad --within",)),
        (("--stop-at", "inf"), ("Bad --stop-at",)),
        (("--patience", "0"), ("Bad --patience 0",)),
        (("--min-delta", "0.01"), ("--min-delta needs --patience",)),
        (("--max-cost", "0"), ("Bad --max-cost",)),
        (("--strategy", "pbt", "--patience", "3"), ("apply to --strategy search",)),
        (("--sample", "1.5"), ("--sample",)),
        (("--sample", "abc"), ("--sample",)),
        (("--dataset-name", "../Churn"), ("Bad --dataset-name '../Churn'", "lower-case letters")),
        (("--early-stopping-rounds", "-5"), ("Bad --early-stopping-rounds -5", "0 turns early stopping off")),
    ],
)
def test_bad_tuning_settings_are_refused_before_any_work(good_csv: Path, home: Path, args: tuple[str, ...], needles: tuple[str, ...]) -> None:
    proc = cli(home, "--data", str(good_csv), "--target", "churned", *args)
    assert_clean_failure(proc, home, good_csv, *needles)
    assert not home.exists() or not list(home.rglob("*.journal")), "a study was started"


def test_a_fidelity_the_data_cannot_serve_is_refused_before_sharding(good_csv: Path, home: Path) -> None:
    """3000 rows: the first data rung would train on 1/9 of 2400 train rows (266 < 500)."""
    proc = cli(home, "--data", str(good_csv), "--target", "churned", "--pruner", "sha", "--fidelity", "data")
    assert_clean_failure(proc, home, good_csv, "--fidelity data", "266 rows", "--fidelity rounds")


def test_a_warm_start_study_that_does_not_exist_is_refused_before_any_work(good_csv: Path, home: Path) -> None:
    proc = cli(home, "--data", str(good_csv), "--target", "churned", "--warm-start", "churn-nosuchstudy")
    assert_clean_failure(proc, home, good_csv, "--warm-start study 'churn-nosuchstudy' is not in the study storage")
    assert "Traceback" not in proc.stderr and not list(home.rglob("*.journal")), "refused after Prefect started, or a study storage was made"


@pytest.mark.parametrize(("space", "needles"), [
    ({"parameters": {"booster": {"type": "categorical", "choices": ["gbtree", "dart"]}, "rate_drop": {"type": "float", "low": 0.0, "high": 0.3}},
      "conditions": [{"child": "rate_drop", "parent": "boster", "type": "EQ", "value": "dart"}]}, ("boster",)),
    ({"parameters": {"booster": {"type": "categorical", "choices": ["gbtree", "dart"]}, "rate_drop": {"type": "float", "low": 0.0, "high": 0.3}},
      "conditions": [{"child": "rate_drop", "parent": "booster", "type": "EQ", "value": "gblinear"}]}, ("gblinear",)),
    ({"max_depth": {"type": "categorical", "choices": [{"a": 1}, 3]}}, ("max_depth",)),
])
def test_bad_conditional_spaces(good_csv: Path, home: Path, tmp_path: Path, space: dict, needles: tuple[str, ...]) -> None:
    import json

    path = tmp_path / "space.json"
    path.write_text(json.dumps(space))
    proc = cli(home, "--data", str(good_csv), "--target", "churned", "--space", str(path))
    assert_clean_failure(proc, home, good_csv, *needles)
