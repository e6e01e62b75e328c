"""deployments/prefect.yaml for real: a `prefect server`, a process worker, `prefect deploy`, `prefect deployment run`.

Everything runs as a user runs it, in subprocesses: infra/prefect-server.sh and infra/prefect-worker.sh
(each with its own port, PREFECT_HOME and pid/log folder under tmp_path, so a developer's own server on
:4200 is left alone), the `prefect` CLI from the venv, deployments/emit_landed.py. The flow run itself is
started by the worker in its own subprocess, from the folder the deployment's pull step names (the repo
root); TUNEFLOW_HOME in the worker's environment keeps the store, journal and MLflow db under tmp_path.
The server is locked with PREFECT_SERVER_API_AUTH_STRING, as on a shared cluster, and every client sends
PREFECT_API_AUTH_STRING: the deploy, the worker, flow runs, their events and the landing sensor all work so.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import psutil
import pytest

from tests.conftest import REPO, _free_port, make_csv

POOL = "tuneflow-process"
AUTH = "tuneflow:test-auth-string"
FLOW = "tune-xgboost"
BIN = Path(sys.executable).parent  # the venv's bin: prefect, python


def _sh(args: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    return proc


def _tail(path: Path, n: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return f"({path} missing)"


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _descendants(pid: int | None) -> list[psutil.Process]:
    if pid is None:
        return []
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


@pytest.fixture
def prefect_stack(tmp_path: Path):
    """A real Prefect server on a free port + the environment a client (CLI, worker, flow run) needs.

    Yields (env, state_dir); stops the worker (if one was started) and the server afterwards, and kills
    any process they left behind (flow runs are started in their own session, outside the worker's group).
    """
    port = _free_port()
    state = tmp_path / "prefect-state"  # pid files and logs of the infra scripts
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TUNEFLOW_"))}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_CLI_PROMPT="false",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        # no nightly runs get scheduled (the schedule itself is still stored and asserted on)
        PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
        PREFECT_WORKER_QUERY_SECONDS="2",
        # the API locked as on a shared cluster: the server wants the string, every client (CLI, worker,
        # flow runs, their events, tuneflow watch/relay) sends it
        PREFECT_SERVER_API_AUTH_STRING=AUTH,
        PREFECT_API_AUTH_STRING=AUTH,
        TUNEFLOW_PREFECT_PORT=str(port),
        TUNEFLOW_PREFECT_STATE=str(state),
        TUNEFLOW_HOME=str(tmp_path / "home"),
        VENV=str(BIN.parent),
        NO_PROXY=",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1,localhost"])),
        no_proxy=",".join(filter(None, [os.environ.get("no_proxy"), "127.0.0.1,localhost"])),
    )
    server_pid_file = state / "server.pid"
    worker_pid_file = state / f"worker-{POOL}.pid"
    try:
        _sh(["bash", "infra/prefect-server.sh", "up"], env, timeout=150)
        yield env, state
    finally:
        leftovers = _descendants(_pid(worker_pid_file)) + _descendants(_pid(server_pid_file))
        # worker: SIGINT, SIGINT again after 10 s, then SIGKILL to its process group (the script's `down`)
        subprocess.run(["bash", "infra/prefect-worker.sh", "down"], cwd=REPO, env=env, timeout=60, capture_output=True)
        subprocess.run(["bash", "infra/prefect-server.sh", "down"], cwd=REPO, env=env, timeout=60, capture_output=True)
        for proc in leftovers:  # e.g. a flow run and its Dask cluster, if the test failed mid-run
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        psutil.wait_procs(leftovers, timeout=10)


def _client(env: dict[str, str]):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    class _Ctx:
        def __enter__(self):
            self._settings = temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"], PREFECT_API_AUTH_STRING: env.get("PREFECT_API_AUTH_STRING")})
            self._settings.__enter__()
            self._client = get_client(sync_client=True)
            return self._client.__enter__()

        def __exit__(self, *exc):
            try:
                self._client.__exit__(*exc)
            finally:
                self._settings.__exit__(*exc)

    return _Ctx()


def _status(url: str, auth: str | None = None, body: bytes | None = b"{}") -> int:
    """The HTTP status of a raw API call, with `auth` as Basic credentials (what Prefect's client sends)."""
    import base64
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    req = urllib.request.Request(url, data=body, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _wait(what: str, probe, timeout: float, every: float = 1.0, details=lambda: ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{details()}")


def _flow_run_logs(client, flow_run_id: UUID) -> str:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200)
    return "\n".join(f"{log.level} {log.message}" for log in logs[-80:])


@pytest.mark.services
@pytest.mark.timeout(360)
def test_deploy_and_run_through_a_process_worker(prefect_stack, tmp_path: Path) -> None:
    from prefect.client.schemas.filters import (
        ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey, DeploymentFilter, DeploymentFilterId, FlowRunFilter,
    )
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.states import Cancelled

    env, state = prefect_stack
    home = Path(env["TUNEFLOW_HOME"])
    prefect = str(BIN / "prefect")
    data = make_csv(tmp_path / "data" / "churn.csv", 3000)

    # -- the API is locked: without the auth string (or with a wrong one) it refuses; the health probe stays open
    api = env["PREFECT_API_URL"]
    assert _status(f"{api}/health", body=None) == 200
    assert _status(f"{api}/flows/filter") == 401 and _status(f"{api}/flows/filter", "tuneflow:wrong") == 401
    assert _status(f"{api}/events/filter", body=b'{"limit": 1}') == 401 and _status(f"{api}/flows/filter", AUTH) == 200
    anonymous = {k: v for k, v in env.items() if k != "PREFECT_API_AUTH_STRING"}
    refused = subprocess.run([prefect, "--no-prompt", "work-pool", "ls"], cwd=REPO, env=anonymous, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "401" in refused.stdout + refused.stderr, refused.stdout[-2000:] + refused.stderr[-2000:]

    # -- the pool, then every deployment of prefect.yaml, as the README tells users to
    _sh([prefect, "--no-prompt", "work-pool", "create", POOL, "--type", "process"], env)
    _sh([prefect, "--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml", "--all"], env)

    with _client(env) as client:
        deps = {name: client.read_deployment_by_name(f"{FLOW}/{name}") for name in ("adhoc", "nightly")}
        deps["on-new-data"] = client.read_deployment_by_name("tune-landed/on-new-data")
        deps["landing-sensor"] = client.read_deployment_by_name("watch-landing/landing-sensor")
        for dep in deps.values():
            assert dep.work_pool_name == POOL
            # no pull step in prefect.yaml: `prefect deploy` records the folder it ran in (the repo root)
            assert dep.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
        assert deps["adhoc"].schedules == [] and deps["adhoc"].parameters == {"n_trials": 20, "parallelism": 2}

        (nightly,) = deps["nightly"].schedules
        assert isinstance(nightly.schedule, CronSchedule) and nightly.active
        assert (nightly.schedule.cron, nightly.schedule.timezone) == ("0 2 * * *", "UTC")
        assert deps["nightly"].parameters["data"] == "data/generated/churn.csv"
        (sensor,) = deps["landing-sensor"].schedules
        assert sensor.schedule.interval.total_seconds() == 60 and deps["landing-sensor"].parameters == {"zones_file": "deployments/landing.yaml"}
        # arrivals queue instead of colliding: one run of on-new-data at a time
        on_new = deps["on-new-data"]
        assert on_new.global_concurrency_limit.limit == 1 and on_new.concurrency_options.collision_strategy.value == "ENQUEUE"

        # the trigger becomes an automation owned by the deployment that runs it with templated parameters
        (automation,) = client.read_resource_related_automations(f"prefect.deployment.{deps['on-new-data'].id}")
        assert automation.enabled and automation.trigger.type == "event"
        assert automation.trigger.expect == {"tuneflow.data.landed"}
        # debounced per landing zone: one run for a burst within 60 s, scheduled 60 s after the first event
        assert automation.trigger.within.total_seconds() == 60 and automation.trigger.for_each == {"prefect.resource.id"}
        (action,) = automation.actions
        assert action.type == "run-deployment" and action.deployment_id == deps["on-new-data"].id
        assert action.schedule_after.total_seconds() == 60

        # -- an event from deployments/emit_landed.py (the way users send it by hand) starts `on-new-data`
        # with its zone, data and target; before any worker polls the pool, so it is cancelled while still Scheduled
        out = _sh([str(BIN / "python"), "deployments/emit_landed.py", "churn-by-hand", str(data.parent), "churned"], env, timeout=60).stdout
        on_new_data = FlowRunFilter(deployment_id={"any_": [deps["on-new-data"].id]})
        (triggered,) = _wait("a flow run of on-new-data after the event", lambda: client.read_flow_runs(flow_run_filter=on_new_data), 45, details=lambda: _tail(state / "server.log"))
        assert triggered.parameters["zone"] == "churn-by-hand" and triggered.parameters["data"] == str(data.parent)
        assert triggered.parameters["target"] == "churned" and triggered.parameters["zones_file"] == ""
        assert triggered.parameters["arrival"] and "event id" in out
        client.set_flow_run_state(triggered.id, Cancelled(message="test_deployment: trigger checked"), force=True)

    # -- a real worker; it hands TUNEFLOW_HOME (its own environment) down to the flow run process
    _sh(["bash", "infra/prefect-worker.sh", "up"], env, timeout=90)

    out = _sh([
        prefect, "--no-prompt", "deployment", "run", f"{FLOW}/adhoc",
        "-p", f"data={data}", "-p", "target=churned", "-p", "row_key=customer_id", "-p", "n_trials=3", "-p", "max_rounds=20",
        "-p", "sampler=random", "-p", "objectives=auc,size_mb", "-p", "stop_at=0.99", "-p", "warm_start=off",
    ], env).stdout
    match = re.search(r"UUID:\s*([0-9a-f-]{36})", out)
    assert match, out
    run_id = UUID(match.group(1))

    with _client(env) as client:
        worker_log = state / f"worker-{POOL}.log"
        run = _wait(
            "the adhoc flow run to finish", lambda: (r := client.read_flow_run(run_id)).state.is_final() and r,
            240, every=2, details=lambda: f"state {client.read_flow_run(run_id).state!r}\n--- worker log\n{_tail(worker_log)}",
        )
        assert run.state.is_completed(), f"{run.state!r}\n--- flow run logs\n{_flow_run_logs(client, run_id)}\n--- worker log\n{_tail(worker_log)}"
        assert run.deployment_id == deps["adhoc"].id and run.work_pool_name == POOL
        assert run.parameters == {
            "n_trials": 3, "parallelism": 2, "data": str(data), "target": "churned", "row_key": "customer_id", "max_rounds": 20,
            "sampler": "random", "objectives": "auc,size_mb", "stop_at": 0.99, "warm_start": "off",
        }

        (summary,) = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["tuneflow-summary-churn"]), flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
        assert summary.type == "markdown" and "alias **champion**" in summary.data
        assert client.read_flow_runs(flow_run_filter=FlowRunFilter(id={"any_": [triggered.id]}))[0].state.is_cancelled()
        assert not client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deps["nightly"].id])))

    # -- what the flow run produced landed under TUNEFLOW_HOME (tmp_path), nothing in the repo
    manifests = list((home / "store").rglob("_manifest.json"))
    assert len(manifests) == 1 and json.loads(manifests[0].read_text())["total_rows"] == 3000
    reports = list((home / "store" / "reports").glob("*.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    assert report["trials_this_run"] == 3 and report["registered"]["alias"] == "champion"
    # the issue-9 options arrive through `prefect deployment run -p` as they do through the CLI
    assert report["sampler"] == "random" and report["objectives"] == ["auc", "size_mb"] and report["pareto_front"]
    assert report["warm_start"] is None and report["stopped_by"].startswith(("n-trials", "stop-at"))
    assert report["manifest_uri"].startswith(str(home)) and report["storage"].startswith(str(home))

    from mlflow import MlflowClient

    registry = f"sqlite:///{home / 'mlflow.db'}"
    mlflow = MlflowClient(tracking_uri=registry, registry_uri=registry)  # not the process's registry: earlier in-process tests set it
    version = mlflow.get_model_version_by_alias(report["registered"]["model_name"], "champion")
    assert int(version.version) == report["registered"]["version"] == 1
