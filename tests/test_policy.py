"""The input policy (tasks/policy.py): schemes, roots, links, chains, names and credentials in
parameters, in the CLI (one `error:` line, exit 2) and at the top of the flows (a failed flow run
with that one message)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasks.errors import TuneflowError
from tasks.names import check_model_name, check_study_name
from tasks.policy import InputPolicy, check_location, check_run_inputs, current_policy, started_by_deployment
from tests.conftest import run_cli

SCHEMES = frozenset({"file", "s3", "sqlite", "postgresql", "mysql"})


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/in/x.csv, root/out-link -> outside/, outside/y.csv."""
    (tmp_path / "root" / "in").mkdir(parents=True)
    (tmp_path / "root" / "in" / "x.csv").write_text("a,b\n1,2\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "y.csv").write_text("a,b\n1,2\n")
    (tmp_path / "root" / "out-link").symlink_to(tmp_path / "outside")
    (tmp_path / "root" / "in-link").symlink_to(tmp_path / "root" / "in")
    return tmp_path


def refused(value: str, policy: InputPolicy, kind: str = "file") -> str:
    with pytest.raises(TuneflowError) as info:
        check_location(value, "data", policy, kind=kind)  # type: ignore[arg-type]
    return info.value.problem


@pytest.mark.parametrize("location", ["http://example.com/x.csv", "https://x/y", "memory://x.csv", "ftp://h/x", "github://o:r@main/x.csv",
                                      "data:text/csv,a%0A1", "ssh://h/x", "gs://b/x"])
def test_schemes_not_listed_are_refused(location: str) -> None:
    assert "not allowed" in refused(location, InputPolicy(SCHEMES)) or "carries a password" in refused(location, InputPolicy(SCHEMES))


def test_default_schemes_take_what_tuneflow_reads(tree: Path) -> None:
    policy = InputPolicy(SCHEMES)
    for location in (str(tree / "root" / "in" / "x.csv"), "relative/x.csv", f"file://{tree}/root", "s3://bucket/prefix/*.parquet"):
        assert check_location(location, "data", policy) == location
    for storage in ("study.journal", "journal:///tmp/x.journal", "sqlite:///x.db", "postgresql+psycopg2://u@h:5432/db", "mysql://u@h/db"):
        assert check_location(storage, "storage", policy, kind="storage") == storage
    assert "database URL" in refused("postgresql://u@h/db", policy)  # a database is not a data location
    assert "not a study storage" in refused("s3://bucket/x", policy, kind="storage")


def test_chained_urls_are_refused_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "chained URL" in refused("simplecache::s3://bucket/x.csv", InputPolicy(SCHEMES))
    assert "chained URL" in refused("zip://x.csv::file:///tmp/a.zip", InputPolicy(SCHEMES))
    monkeypatch.setenv("TUNEFLOW_ALLOW_CHAINED_URLS", "true")
    monkeypatch.setenv("TUNEFLOW_ALLOWED_SCHEMES", "s3,simplecache")
    policy = current_policy()
    assert policy.allow_chained and check_location("simplecache::s3://bucket/x.csv", "data", policy)
    assert "'zip'" in refused("zip://x.csv::s3://bucket/a.zip", policy)  # every link's scheme must be listed


def test_roots_folders_links_and_dot_dot(tree: Path) -> None:
    policy = InputPolicy(SCHEMES, (str(tree / "root"),))
    assert check_location(str(tree / "root" / "in" / "x.csv"), "data", policy)
    assert check_location(str(tree / "root" / "in-link" / "x.csv"), "data", policy)  # a link that stays inside
    assert check_location(f"{tree}/root/in/*.csv", "data", policy)
    assert "symbolic link" in refused(str(tree / "root" / "out-link" / "y.csv"), policy)
    assert "symbolic link" in refused(str(tree / "root" / "out-link"), policy)
    assert "outside the allowed roots" in refused(str(tree / "outside" / "y.csv"), policy)
    assert "outside the allowed roots" in refused(f"{tree}/root/../outside/y.csv", policy)
    assert "outside the allowed roots" in refused(f"{tree}/ro*/x.csv", policy)  # a glob is judged by its fixed part
    assert "outside the allowed roots" in refused("/etc/passwd", policy)
    assert "outside the allowed roots" in refused(f"sqlite:///{tree}/outside/x.db", policy, kind="storage")
    assert check_location(f"sqlite:///{tree}/root/x.db", "storage", policy, kind="storage")
    # the root itself may be a link: it is resolved too
    (tree / "root-link").symlink_to(tree / "root")
    assert check_location(str(tree / "root" / "in" / "x.csv"), "data", InputPolicy(SCHEMES, (str(tree / "root-link"),)))


def test_roots_buckets_and_databases() -> None:
    policy = InputPolicy(SCHEMES, ("s3://bucket/landing", "s3://models", "postgresql://db.internal:5432/tuneflow"))
    for location in ("s3://bucket/landing", "s3://bucket/landing/x/*.csv", "s3://models/anything/at/all"):
        assert check_location(location, "data", policy)
    assert "outside" in refused("s3://bucket/landing-other/x.csv", policy)
    assert "outside" in refused("s3://bucket/land*", policy)
    assert "outside" in refused("s3://other/landing/x.csv", policy)
    assert "'..'" in refused("s3://bucket/landing/../secret/x.csv", policy)
    assert check_location("postgresql+psycopg2://u@db.internal:5432/tuneflow", "storage", policy, kind="storage")
    assert "outside" in refused("postgresql://u@db.internal:5432/other", policy, kind="storage")
    assert "outside" in refused("postgresql://u@evil.example:5432/tuneflow", policy, kind="storage")
    assert "outside" in refused("mysql://u@db.internal:5432/tuneflow", policy, kind="storage")


def test_credentials_in_parameters() -> None:
    policy = InputPolicy(SCHEMES)
    assert "carries a password" in refused("s3://key:secret@bucket/x.csv", policy)  # a file location: always refused
    url = "postgresql+psycopg2://u:Pw-0123456789ab@h:5432/db"
    with pytest.raises(TuneflowError) as info:
        check_run_inputs(storage=url, deployment=True, policy=policy)
    assert "started by a deployment" in str(info.value) and "Pw-0123456789ab" not in str(info.value) and "u:***@h" in str(info.value)
    checked = check_run_inputs(storage=url, policy=policy)  # a direct call: accepted, with a warning
    assert checked.storage == url and "Prefect stores flow run parameters" in checked.warnings[0]
    held = check_run_inputs(storage=url, cli=True, hold=True, policy=policy)  # the CLI: the flow gets the URL without it
    assert held.storage == "postgresql+psycopg2://u@h:5432/db" and "--storage" in held.warnings[0]


def test_deployment_runs_without_roots_are_warned_about() -> None:
    warnings = check_run_inputs(data="x.csv", deployment=True, policy=InputPolicy(SCHEMES)).warnings
    assert any("TUNEFLOW_ALLOWED_ROOTS is not set" in w for w in warnings)
    assert not check_run_inputs(data="x.csv", policy=InputPolicy(SCHEMES)).warnings


def test_names(tmp_path: Path) -> None:
    from tasks.tuning.search_space import load_space
    from tasks.tuning.studies import default_study_name

    space = load_space(None)
    for metric, costs in (("auc", ()), ("error@0.7", ("size_mb", "latency_ms")), ("ndcg@5", ("train_s",))):
        name = default_study_name("churn-landing", "0123456789abcdef", "binary", metric, space, costs)
        assert check_study_name(name) == name and check_study_name(name + "-pbt")
    for good in ("Churn.Model", "tuneflow-churn-sample", "team_a.churn-v2"):
        assert check_model_name(good) == good
    for bad in ("../x", ".hidden", "a/b", "x y", "", "a\nb", "é", "x" * 201):
        with pytest.raises(TuneflowError):
            check_study_name(bad)
    for bad in ("a@b", "a/b", "-x", "models:/x", "x" * 129):
        with pytest.raises(TuneflowError):
            check_model_name(bad)
    policy = InputPolicy(SCHEMES)
    for params in ({"dataset_name": "Churn"}, {"study_name": "../up"}, {"warm_start": "a/b"}, {"model_name": "m@champion"}):
        with pytest.raises(TuneflowError):
            check_run_inputs(**params, policy=policy)
    check_run_inputs(dataset_name="churn", study_name="Churn.v2", warm_start="off", model_name="Churn.Model", policy=policy)


def test_settings_and_deployment_detection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TUNEFLOW_ALLOWED_SCHEMES", " S3 , local,postgres ")
    monkeypatch.setenv("TUNEFLOW_ALLOWED_ROOTS", f"{tmp_path}, s3://b/p")
    policy = current_policy()
    assert policy.schemes == {"s3", "file", "postgresql"} and policy.roots == (str(tmp_path), "s3://b/p") and not policy.allow_chained
    monkeypatch.delenv("PREFECT__FLOW_RUN_ID", raising=False)
    assert started_by_deployment() is False  # no flow run at all
    monkeypatch.setenv("PREFECT__FLOW_RUN_ID", "00000000-0000-0000-0000-000000000000")  # what a worker sets for a deployment's run
    assert started_by_deployment() is True


@pytest.mark.parametrize("args,env,needle", [
    (("--data", "https://example.com/x.csv"), {}, "uses scheme 'https'"),
    (("--data", "simplecache::s3://b/x.csv"), {}, "chained URL"),
    (("--data", "{tmp}/data.csv", "--store", "{tmp}/../elsewhere"), {"TUNEFLOW_ALLOWED_ROOTS": "{tmp}"}, "--store location"),
    (("--data", "{tmp}/data.csv", "--study-name", "../up"), {}, "Bad --study-name"),
], ids=["scheme", "chain", "root", "name"])
def test_cli_refuses_with_one_error_line(tmp_path: Path, args: tuple[str, ...], env: dict[str, str], needle: str) -> None:
    (tmp_path / "data.csv").write_text("a,t\n1,0\n2,1\n")
    fill = lambda s: s.replace("{tmp}", str(tmp_path))  # noqa: E731
    proc = run_cli("run", *map(fill, args), "--target", "t", env={"TUNEFLOW_HOME": str(tmp_path / "home"), **{k: fill(v) for k, v in env.items()}})
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "home").exists()  # refused before any work


def test_flows_fail_with_the_one_message(prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.landing import tune_landed, watch_landing
    from flows.tune_xgboost import tune_xgboost

    monkeypatch.setenv("TUNEFLOW_HOME", str(tmp_path / "home"))
    state = tune_xgboost(data="http://example.com/x.csv", target="t", return_state=True)
    assert state.is_failed() and "uses scheme 'http'" in state.message

    monkeypatch.setattr("tasks.policy.started_by_deployment", lambda: True)  # as in a worker's run of a deployment
    (tmp_path / "data.csv").write_text("a,t\n1,0\n2,1\n")
    state = tune_xgboost(data=str(tmp_path / "data.csv"), target="t", storage="postgresql://u:Canary-pw-0123456789@h/db", return_state=True)
    assert state.is_failed() and "started by a deployment" in state.message and "Canary-pw-0123456789" not in state.message

    state = tune_landed(zone="churn", data="memory://x/", target="t", return_state=True)  # as an event would start it
    assert state.is_failed() and "uses scheme 'memory'" in state.message
    state = tune_landed(zone="churn", data=str(tmp_path), target="t\nFAKE LOG LINE", return_state=True)
    assert state.is_failed() and "Bad target" in state.message

    zones = tmp_path / "zones.yaml"
    zones.write_text("zones:\n  - {name: web, uri: 'https://example.com/drop/', target: t}\n")
    state = watch_landing(zones_file=str(zones), return_state=True)
    assert state.is_failed() and "uri of zone web" in state.message and "'https'" in state.message
    assert not (tmp_path / "home").exists()  # nothing was read or written
    assert os.environ.get("PREFECT__FLOW_RUN_ID") is None
