"""Data arrival end to end on a real Prefect server, a process worker and S3 on moto (over HTTP).

`tuneflow relay` receives bucket notifications and `tuneflow watch` (and the landing-sensor deployment)
polls, all as users start them; the on-new-data deployment's automation debounces and starts
tune-landed through the worker. Asserted: a burst of files within the debounce window makes one flow run
and one model version; the same data dropped again (even to a sensor that lost its state) makes no run;
a second arrival makes version 2, which competes with version 1 for `champion` and warm-starts from its study.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, _free_port, make_csv
from tests.test_deployment import BIN, POOL, _client, _flow_run_logs, _sh, _tail, _wait, prefect_stack  # noqa: F401 (fixture)

ZONE = "churn-s3"


def _deployments_file(tmp_path: Path) -> Path:
    """prefect.yaml with the debounce window shortened from 60 s to 10 s, so the test does not wait minutes."""
    doc = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    for dep in doc["deployments"]:
        for trigger in dep.get("triggers", []):
            assert (trigger["within"], trigger["schedule_after"]) == (60, "PT60S")  # what users deploy
            trigger["within"], trigger["schedule_after"] = 10, "PT8S"
    out = tmp_path / "prefect.yaml"
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def _notify(port: int, bucket: str, key: str) -> None:
    import urllib.request

    body = json.dumps({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=body, method="POST", headers={"Authorization": "Bearer test-token"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200 and b"1 zone(s) checked" in resp.read()


@pytest.mark.services
@pytest.mark.timeout(540)
def test_arrivals_start_one_run_each_and_compete_for_champion(prefect_stack, s3_bucket: str, s3_endpoint: str, tmp_path: Path) -> None:
    import boto3
    from mlflow import MlflowClient
    from prefect.client.schemas.filters import FlowRunFilter

    env, state = prefect_stack
    env.update(TUNEFLOW_S3_ENDPOINT_URL=s3_endpoint, TUNEFLOW_RELAY_TOKEN="test-token")
    home = Path(env["TUNEFLOW_HOME"])
    prefect = str(BIN / "prefect")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    zones = tmp_path / "zones.yaml"
    zones.write_text(yaml.safe_dump({"zones": [{
        "name": ZONE, "uri": f"s3://{s3_bucket}/landing/churn/", "target": "churned", "marker": "_SUCCESS", "settle_seconds": 0,
        "parameters": {"row_key": "customer_id", "n_trials": 3, "max_rounds": 20, "parallelism": 2, "sampler": "random"},
    }]}))
    parts = [make_csv(tmp_path / "parts" / f"part-{i}.csv", 1000, seed=10 + i).read_bytes() for i in range(4)]

    _sh([prefect, "--no-prompt", "work-pool", "create", POOL, "--type", "process"], env)
    _sh([prefect, "--no-prompt", "deploy", "--prefect-file", str(_deployments_file(tmp_path)), "--all"], env)
    _sh(["bash", "infra/prefect-worker.sh", "up"], env, timeout=90)
    port = _free_port()
    relay_log = (tmp_path / "relay.log").open("w")
    relay = subprocess.Popen([str(BIN / "tuneflow"), "relay", "--zones", str(zones), "--port", str(port)], cwd=REPO, env=env,
                             stdout=relay_log, stderr=subprocess.STDOUT)
    try:
        _wait("the relay to listen", lambda: "listening" in (tmp_path / "relay.log").read_text(), 60, every=0.5, details=lambda: _tail(tmp_path / "relay.log"))
        with _client(env) as client:
            dep = client.read_deployment_by_name("tune-landed/on-new-data")
            runs = lambda: client.read_flow_runs(flow_run_filter=FlowRunFilter(deployment_id={"any_": [dep.id]}))  # noqa: E731

            def finished(run_id, what: str):
                def done():
                    r = client.read_flow_run(run_id)
                    return r if r.state.is_final() else None
                run = _wait(what, done, 300, every=2, details=lambda: f"{client.read_flow_run(run_id).state!r}\n{_tail(state / f'worker-{POOL}.log')}")
                assert run.state.is_completed(), f"{run.state!r}\n{_flow_run_logs(client, run_id)}"
                return run

            # -- arrival 1: three part files, each notified by the bucket; settle 0, so the relay emits a
            # landed event for each new listing (three different event ids) within the debounce window
            for i in range(3):
                key = f"landing/churn/2026-12-01/part-{i}.csv"
                s3.put_object(Bucket=s3_bucket, Key=key, Body=parts[i])
                _notify(port, s3_bucket, key)
            assert (tmp_path / "relay.log").read_text().count("landed:") == 3
            (first,) = _wait("one run of on-new-data for the burst", runs, 45)
            time.sleep(5)
            assert len(runs()) == 1, "a burst within the debounce window must start one run"
            assert first.parameters["zone"] == ZONE and first.parameters["zones_file"] == str(zones)
            finished(first.id, "the first arrival's run")

            report1 = _only_report(home, exclude=set())
            assert report1["dataset"] == ZONE and sum(report1["rows"].values()) == 3000  # ran after the burst: all three files
            assert report1["registered"]["model_name"] == f"tuneflow-{ZONE}" and report1["registered"]["version"] == 1

            # -- the same data dropped again: same bytes, same ETags -> nothing emitted, no run; a sensor that
            # lost its state emits the same event id, which the server has seen
            for i in range(3):
                key = f"landing/churn/2026-12-01/part-{i}.csv"
                s3.put_object(Bucket=s3_bucket, Key=key, Body=parts[i])
                _notify(port, s3_bucket, key)
            out = _sh([str(BIN / "tuneflow"), "watch", "--zones", str(zones), "--once", "--store", str(tmp_path / "fresh-sensor-state")], env).stderr
            assert "landed" in out  # a new state: it emits, with the id of the last arrival ...
            time.sleep(12)  # past the debounce window, so only the event id can stop a run
            assert len(runs()) == 1, "the same data must not start a second run"

            # -- arrival 2: a fourth file and the writer's marker; the landing-sensor deployment (run by the worker) emits it
            s3.put_object(Bucket=s3_bucket, Key="landing/churn/2026-12-02/part-3.csv", Body=parts[3])
            s3.put_object(Bucket=s3_bucket, Key="landing/churn/2026-12-02/_SUCCESS", Body=b"")
            sensor_out = _sh([prefect, "--no-prompt", "deployment", "run", "watch-landing/landing-sensor", "-p", f"zones_file={zones}"], env).stdout
            assert "UUID" in sensor_out
            second = _wait("a second run of on-new-data", lambda: [r for r in runs() if r.id != first.id], 120, every=2,
                           details=lambda: _tail(state / f"worker-{POOL}.log"))[0]
            finished(second.id, "the second arrival's run")
    finally:
        relay.terminate()
        relay.wait(timeout=20)
        relay_log.close()

    report2 = _only_report(home, exclude={report1["study_name"]})
    assert report2["dataset"] == ZONE and sum(report2["rows"].values()) == 4000
    assert report2["registered"]["version"] == 2 and report2["warm_start"]["from"] == report1["study_name"]
    registry = f"sqlite:///{home / 'mlflow.db'}"
    mlflow = MlflowClient(tracking_uri=registry, registry_uri=registry)  # not the process's registry: earlier in-process tests set it
    versions = {int(v.version): v for v in mlflow.search_model_versions(f"name='tuneflow-{ZONE}'")}
    assert set(versions) == {1, 2}
    champion = mlflow.get_model_version_by_alias(f"tuneflow-{ZONE}", "champion")
    # version 2 was compared with version 1 on the same test rows: the better one holds the alias
    assert report2["registered"]["previous_champion_version"] == 1 and report2["registered"]["alias"] in ("champion", "challenger")
    assert int(champion.version) == (2 if report2["registered"]["alias"] == "champion" else 1)


def _only_report(home: Path, exclude: set[str]) -> dict:
    reports = [json.loads(p.read_text()) for p in (home / "store" / "reports").glob("*.json")]
    (report,) = [r for r in reports if r["study_name"] not in exclude]
    return report
