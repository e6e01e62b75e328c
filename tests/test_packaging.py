"""Portable deployments, checked as far as a machine without Docker or Kubernetes allows.

- The images' install steps (infra/docker/install.sh, RUN by both Dockerfiles) run into a clean venv,
  and the installed copy (not the source tree) imports and runs.
- The Dockerfiles, infra/compose.yaml and the Kubernetes manifests are parsed and cross-checked
  against the code: every TUNEFLOW_* variable is one tasks/settings.py reads, every PREFECT_* one
  is a Prefect setting, ports, images, pools and bucket names agree across the files.
- deployments/docker.yaml, kubernetes.yaml and git.yaml are deployed to a real Prefect server with
  docker/kubernetes/process pools (their job variables validated against the pools' templates), and
  the git_clone pull step really clones; compose's one-shot bucket command and its MLflow server
  command run here against PostgreSQL and moto S3.
- Credentials from Prefect Secret blocks reach s3fs and libpq and never show in reprs or logs.
"""

from __future__ import annotations

import fnmatch
import inspect
import json
import logging
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import REPO, _free_port

IMAGE = "ghcr.io/your-org/tuneflow:latest"
CUDA_IMAGE = "ghcr.io/your-org/tuneflow-cuda:latest"
APP_DIR = "/opt/tuneflow"  # the images' WORKDIR, where the pull steps start flow runs
BIN = Path(sys.executable).parent
# the ports every file must agree on (Prefect API, Dask comm/dashboard, MLflow, S3)
PORTS = {"prefect-server": {"4200"}, "dask-scheduler": {"8786", "8787"}, "mlflow": {"5000"}, "s3": {"9000"}}
POOLS = {"docker": ("tuneflow-docker", "docker"), "kubernetes": ("tuneflow-kubernetes", "kubernetes"),
         "compose": ("tuneflow-compose", "process"), "git": ("tuneflow-process", "process")}
URL = re.compile(r"([a-z][a-z0-9+.-]*)://(?:[^@/\s]+@)?([A-Za-z0-9_.-]+):(\d+)(/[^\s,]*)?")


def _load(rel: str) -> dict:
    return yaml.safe_load((REPO / rel).read_text())


def _load_all(rel: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((REPO / rel).read_text()) if d]


def _settings_env_names() -> set[str]:
    from tasks.settings import Settings

    prefix = Settings.model_config["env_prefix"]
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}


def _prefect_env_names() -> set[str]:
    from prefect.settings import Settings
    from prefect.settings.legacy import _get_valid_setting_names

    return set(_get_valid_setting_names(Settings))


def _check_env_names(env: dict[str, str], where: str) -> None:
    ours, prefect = _settings_env_names(), _prefect_env_names()
    for name in env:
        if name.startswith("TUNEFLOW_"):
            assert name in ours, f"{where}: {name} is not read by tasks/settings.py (it reads {sorted(ours)})"
        if name.startswith("PREFECT_"):
            assert name in prefect, f"{where}: {name} is not a Prefect setting"


def _with_defaults(value: str) -> str:
    """Compose's ${VAR:-default} interpolation, with the defaults."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


# ----------------------------------------------------------------------------- Dockerfiles


def _dockerfile(rel: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in (REPO / rel).read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):  # a comment inside a continued instruction
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        word, _, rest = pending.strip().partition(" ")
        out.append((word.upper(), " ".join(rest.split())))
        pending = ""
    assert not pending, f"{rel}: dangling continuation"
    return out


def _dockerignore() -> list[str]:
    lines = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()]
    patterns = [ln for ln in lines if ln and not ln.startswith("#")]
    assert not [p for p in patterns if p.startswith("!")], "no re-inclusions: the matcher below does not model them"
    return patterns


def _ignored(rel: str, patterns: list[str]) -> bool:
    """Whether Docker's context filter drops `rel` (a pattern matching the path or a parent folder)."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        pattern = pattern.strip("/")
        for prefix in prefixes:
            if fnmatch.fnmatchcase(prefix, pattern):
                return True
            if pattern.startswith("**/") and fnmatch.fnmatchcase(prefix.rsplit("/", 1)[-1], pattern[3:]):
                return True
    return False


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())


@pytest.mark.parametrize("rel, base, extras", [
    ("infra/docker/Dockerfile", "python:3.12-slim", ""),
    ("infra/docker/Dockerfile.cuda", "nvidia/cuda:", "gpu"),
])
def test_dockerfile_installs_from_the_lock_file_with_install_sh(rel: str, base: str, extras: str) -> None:
    steps = _dockerfile(rel)
    assert steps[0][0] == "FROM" and steps[0][1].startswith(base), steps[0]
    if base.startswith("nvidia/cuda"):
        tag = steps[0][1].split(":", 1)[1]
        assert "-runtime-" in tag, f"{rel}: a CUDA *runtime* base, not devel: {tag}"
        # xgboost's wheel is a CUDA 13 build (it depends on nvidia-nccl-cu13): the base must match
        assert tag.startswith("13."), tag
        assert "nvidia-nccl-cu13" in (REPO / "constraints.txt").read_text()
        assert any(i == "RUN" and "python3.12-venv" in a for i, a in steps), "Python 3.12 (constraints.txt's) installed"
        assert extras in _pyproject()["project"]["optional-dependencies"]

    assert ("WORKDIR", APP_DIR) in steps
    copies = [(n, a.split()) for n, (i, a) in enumerate(steps) if i == "COPY"]
    sources = {src for _, args in copies for src in args[:-1] if not src.startswith("--")}
    packages = {p.split(".")[0] for p in _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]}
    needed = {"constraints.txt", "pyproject.toml", "README.md", "infra/docker/install.sh", "deployments", *packages}
    assert needed <= sources, f"{rel} does not COPY {needed - sources}"

    (install_at,) = [n for n, (i, a) in enumerate(steps) if i == "RUN" and "infra/docker/install.sh" in a]
    run = steps[install_at][1]
    words = shlex.split(run.split("bash infra/docker/install.sh", 1)[1])
    assert words == ([extras] if extras else []), f"{rel}: install.sh arguments {words}"
    assert "PYTHON=/opt/venv/bin/python" in run and any(i == "RUN" and "-m venv /opt/venv" in a for i, a in steps)
    assert any(i == "ENV" and "PATH=/opt/venv/bin:$PATH" in a for i, a in steps), "the venv's tuneflow/prefect/dask on PATH"
    assert all(n < install_at for n, _ in copies), "everything the install reads is copied before it runs"
    assert ("USER", "tuneflow") in steps[install_at:], "runs as a user, not root"

    # the build context keeps every source the COPYs name, and none of the local state
    patterns = _dockerignore()
    for src in sources:
        assert (REPO / src).exists(), f"{rel}: COPY {src}: no such path"
        paths = [REPO / src] if (REPO / src).is_file() else [p for p in (REPO / src).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        kept = [p for p in paths if not _ignored(p.relative_to(REPO).as_posix(), patterns)]
        assert kept, f"{rel}: COPY {src}: .dockerignore drops it"
        for p in paths:
            if p.suffix in (".py", ".yaml", ".toml", ".txt", ".sh") and "generated" not in p.parts:
                assert p in kept, f".dockerignore drops {p.relative_to(REPO)}, which the image needs"
    for local in (".venv/bin/python", ".git/HEAD", ".tuneflow/store/x", "data/generated/churn.csv", "tasks/__pycache__/x.pyc"):
        assert _ignored(local, patterns), f".dockerignore lets {local} into the build context"

    # the tag the Dockerfile tells users to build is the image the manifests run
    (tag,) = re.findall(rf"docker build -f {re.escape(rel)} -t (\S+) \.", (REPO / rel).read_text())
    assert tag == (CUDA_IMAGE if extras else IMAGE)


def test_install_sh_is_the_lock_file_install() -> None:
    text = (REPO / "infra/docker/install.sh").read_text()
    assert re.search(r'pip install [^\n]*-c "\$ROOT/constraints.txt" "\$target" boto3', text), "pinned by constraints.txt"
    assert "-e " not in text.split("pip install", 1)[1].split("\n", 1)[0], "not editable: the image has no checkout to point at"
    assert "boto3==" in (REPO / "constraints.txt").read_text(), "boto3 (MLflow's S3 artifacts) pinned in the same lock file"


# ----------------------------------------------------------------------------- compose


def _compose() -> dict:
    return _load("infra/compose.yaml")


def test_compose_services_images_ports_and_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    compose = _compose()
    services = compose["services"]
    assert {"postgres", "s3", "s3-bucket", "prefect-server", "mlflow", "dask-scheduler", "dask-worker", "prefect-worker"} <= set(services)
    ours = {name for name, s in services.items() if s.get("image") == IMAGE}
    assert ours == {"s3-bucket", "prefect-server", "mlflow", "dask-scheduler", "dask-worker", "prefect-worker"}, ours
    for name in ours:
        assert services[name]["build"] == {"context": "..", "dockerfile": "infra/docker/Dockerfile"}, name
        assert (REPO / "infra" / services[name]["build"]["context"] / services[name]["build"]["dockerfile"]).is_file()

    published = {p.split(":")[0] for s in services.values() for p in s.get("ports", [])}
    for name, ports in PORTS.items():
        assert ports <= set(services[name]["expose"]), f"{name} exposes {services[name]['expose']}, wants {ports}"
    commands = {name: " ".join(s.get("command", [])) for name, s in services.items()}
    assert "--port 4200" in commands["prefect-server"] and "--host 0.0.0.0" in commands["prefect-server"]
    assert "--port=5000" in commands["mlflow"] and "--host=0.0.0.0" in commands["mlflow"]
    assert "--port 8786" in commands["dask-scheduler"] and "--dashboard-address :8787" in commands["dask-scheduler"]
    assert '--address :9000' in commands["s3"]
    # the same ports as the Kubernetes scheduler and the local scripts
    dask_k8s = _load_all("infra/k8s/dask-cluster.yaml")[0]
    (scheduler,) = dask_k8s["spec"]["scheduler"]["spec"]["containers"]
    assert {str(p["containerPort"]) for p in scheduler["ports"]} == PORTS["dask-scheduler"]
    assert "PORT=${TUNEFLOW_PREFECT_PORT:-4200}" in (REPO / "infra/prefect-server.sh").read_text()

    # every variable: a setting the code reads; every URL: a service and a port it listens on
    for name, service in services.items():
        env = {k: str(v) for k, v in (service.get("environment") or {}).items()}
        _check_env_names(env, f"compose {name}")
        texts = list(env.values()) + [str(c) for c in service.get("command", [])]
        for text in texts:
            for scheme, host, port, _ in URL.findall(_with_defaults(text)):
                if host in ("localhost", "127.0.0.1"):
                    assert port in published, f"compose {name}: {scheme}://{host}:{port} is not published"
                elif host != "0.0.0.0":
                    assert host in services, f"compose {name}: {host} is not a service"
                    assert port in set(services[host].get("expose", [])), f"compose {name}: {host}:{port} is not a port of {host}"
            for password in re.findall(r"://[^:/@\s]+:([^@\s]+)@", text):
                assert password.startswith("${"), f"compose {name}: a literal password in a URL"

    # the databases the URLs name exist, and each service has its own
    created = set(re.findall(r"CREATE DATABASE (\w+)", compose["configs"]["pg-databases"]["content"]))
    urls = [v for s in services.values() for v in [*(s.get("environment") or {}).values(), *s.get("command", [])] if "postgresql" in str(v)]
    named = {urlsplit(_with_defaults(str(u).split("=", 1)[-1])).path.strip("/") for u in urls}
    assert named == {"prefect", "optuna", "mlflow"} and named <= created, (named, created)
    (target,) = services["postgres"]["configs"]
    assert target["source"] == "pg-databases" and target["target"].startswith("/docker-entrypoint-initdb.d/")

    # the worker: process pool of the `compose` deployment; the settings resolve to the services
    worker = services["prefect-worker"]["command"]
    pool, kind = POOLS["compose"]
    assert worker[:3] == ["prefect", "worker", "start"] and worker[worker.index("--pool") + 1] == pool and worker[worker.index("--type") + 1] == kind
    for var in [v for v in os.environ if v.startswith("TUNEFLOW_")] + ["AWS_ENDPOINT_URL"]:
        monkeypatch.delenv(var, raising=False)
    for key, value in services["prefect-worker"]["environment"].items():
        monkeypatch.setenv(key, _with_defaults(str(value)))
    from tasks.settings import Settings

    s = Settings()
    assert s.resolved_store() == "s3://tuneflow/store" and s.resolved_s3_endpoint() == "http://s3:9000"
    assert s.resolved_storage().startswith("postgresql+psycopg2://") and s.dask_address == "tcp://dask-scheduler:8786"
    assert s.resolved_tracking_uri() == "http://mlflow:5000" and s.resolved_artifact_root() is None  # the server's proxied artifacts
    # one bucket: the store's, the one s3-bucket creates, MLflow's artifacts
    bucket = urlsplit(s.resolved_store()).netloc
    assert f"s3://{bucket}/" in commands["s3-bucket"] and f"--artifacts-destination=s3://{bucket}/" in commands["mlflow"]
    # the Dask workers get S3 credentials and the endpoint, nothing else of the cluster
    assert set(services["dask-worker"]["environment"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "TUNEFLOW_S3_ENDPOINT_URL"}


@pytest.mark.services
@pytest.mark.timeout(120)
def test_compose_bucket_command_runs(s3_endpoint: str, tmp_path: Path) -> None:
    """The s3-bucket service's command, as written, against moto: creates the bucket, and again."""
    import boto3

    cmd = _compose()["services"]["s3-bucket"]["command"]
    assert cmd[:2] == ["python", "-c"]
    env = {**os.environ, "TUNEFLOW_S3_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    for _ in range(2):  # a restarted one-shot must not fail on the existing bucket
        proc = subprocess.run([sys.executable, *cmd[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90)
        assert proc.returncode == 0, proc.stderr[-2000:]
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").head_bucket(Bucket="tuneflow")


def _http(url: str, host: str | None = None, timeout: float = 5) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


@pytest.mark.services
@pytest.mark.timeout(240)
def test_compose_mlflow_command_serves_the_flow(pg_database: str, s3_bucket: str, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """compose's `mlflow server` command, only hosts swapped for the local PostgreSQL and moto: the password
    comes from PGPASSWORD, the Host header the flow sends (mlflow:5000) is allowed, artifacts land in S3."""
    import boto3
    import sqlalchemy as sa
    from mlflow.tracking import MlflowClient

    service = _compose()["services"]["mlflow"]
    pg = sa.engine.make_url(pg_database)
    port = _free_port()
    swaps = {
        "--host=0.0.0.0": "--host=127.0.0.1", "--port=5000": f"--port={port}",
        "tuneflow@postgres:5432/mlflow": f"{pg.username}@{pg.host}:{pg.port}/{pg.database}",
        "s3://tuneflow/": f"s3://{s3_bucket}/",
        # published on another port here: the host:port forms of the allowed hosts follow it
        "127.0.0.1:5000": f"127.0.0.1:{port}", "localhost:5000": f"localhost:{port}",
    }
    cmd = []
    for arg in service["command"]:
        for old, new in swaps.items():
            arg = arg.replace(old, new)
        cmd.append(arg)
    assert cmd[0] == "mlflow" and not any("postgres:5432" in a or a.endswith("=5000") for a in cmd), cmd
    assert "PGPASSWORD" in service["environment"] and "@" not in _with_defaults(str(service["environment"]["PGPASSWORD"]))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PG"))}
    env.update(PGPASSWORD=pg.password, MLFLOW_S3_ENDPOINT_URL=s3_endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_DEFAULT_REGION="us-east-1", MLFLOW_SERVER_WORKERS="1")
    log = tmp_path / "mlflow.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(BIN / "mlflow"), *cmd[1:], "--workers=1"], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 150
        while _http_ok(f"{base}/health") is False:
            assert proc.poll() is None, f"mlflow server exited {proc.returncode}\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"mlflow server not up in 150 s\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        flow_host = urlsplit(_compose()["services"]["prefect-worker"]["environment"]["TUNEFLOW_MLFLOW_TRACKING_URI"]).netloc
        search = f"{base}/api/2.0/mlflow/experiments/search?max_results=1"
        assert _http(search, host=flow_host)[0] == 200, "the Host header the flow sends is refused"
        assert _http(search, host="attacker.example")[0] == 403, "MLflow's host check is off: the test above proves nothing"

        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        client = MlflowClient(tracking_uri=base)
        run = client.create_run(client.create_experiment(f"packaging-{uuid.uuid4().hex[:8]}"))
        client.log_text(run.info.run_id, "proxied", "probe.txt")
        assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
        keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
        assert any(k.startswith("mlflow/") and k.endswith("/probe.txt") for k in keys), keys
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _http_ok(url: str) -> bool:
    try:
        return _http(url, timeout=2)[0] == 200
    except (urllib.error.URLError, OSError):
        return False


# ----------------------------------------------------------------------------- Kubernetes


def test_kubernetes_worker_beside_the_dask_cluster() -> None:
    docs = _load_all("infra/k8s/prefect-worker.yaml")
    by_kind = {d["kind"]: d for d in docs}
    assert set(by_kind) == {"ServiceAccount", "Role", "RoleBinding", "Deployment"}
    account = by_kind["ServiceAccount"]["metadata"]["name"]
    binding = by_kind["RoleBinding"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": by_kind["Role"]["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account}]
    rules = {(g, r): set(rule["verbs"]) for rule in by_kind["Role"]["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert {"create", "get", "watch", "delete"} <= rules[("batch", "jobs")] and {"get", "list", "watch"} <= rules[("", "pods")]
    assert "get" in rules[("", "pods/log")] and "list" in rules[("", "events")]

    spec = by_kind["Deployment"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == account
    (container,) = pod["containers"]
    prefect_pin = re.search(r"^prefect==(\S+)$", (REPO / "constraints.txt").read_text(), re.M).group(1)
    assert container["image"] == f"prefecthq/prefect:{prefect_pin}-python3.12-kubernetes", "the worker's Prefect is the lock file's"
    args = container["args"]
    pool, kind = POOLS["kubernetes"]
    assert args[:3] == ["prefect", "worker", "start"] and args[args.index("--pool") + 1] == pool and args[args.index("--type") + 1] == kind
    env = {e["name"]: e for e in container["env"]}
    _check_env_names(env, "prefect-worker.yaml")
    assert env["PREFECT_API_URL"]["valueFrom"]["secretKeyRef"]["name"] == "tuneflow-prefect", "API URL from a Secret"
    for name in ("PREFECT_API_KEY", "PREFECT_API_AUTH_STRING"):
        assert env[name]["valueFrom"]["secretKeyRef"]["optional"] is True and "value" not in env[name]
    assert "--with-healthcheck" in args and container["livenessProbe"]["httpGet"]["port"] in {p["name"] for p in container["ports"]}
    assert str(env["PREFECT_WORKER_WEBSERVER_PORT"]["value"]) == str(container["ports"][0]["containerPort"])

    # the Dask side: our images, settings the code reads, credentials from the Secret
    cluster, gpu = _load_all("infra/k8s/dask-cluster.yaml")
    (worker,) = cluster["spec"]["worker"]["spec"]["containers"]
    (scheduler,) = cluster["spec"]["scheduler"]["spec"]["containers"]
    (gpu_worker,) = gpu["spec"]["worker"]["spec"]["containers"]
    assert worker["image"] == scheduler["image"] == IMAGE and gpu_worker["image"] == CUDA_IMAGE
    worker_env = {e["name"]: e for e in worker["env"]}
    _check_env_names(worker_env, "dask-cluster.yaml")
    assert worker_env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "tuneflow-s3"


# ----------------------------------------------------------------------------- deployments


def _import_object(fqn: str):
    from prefect.utilities.importtools import import_object

    return import_object(fqn)


@pytest.mark.parametrize("name", ["docker", "kubernetes", "git"])
def test_deployment_file_parses_and_its_steps_resolve(name: str) -> None:
    from prefect import Flow

    doc = _load(f"deployments/{name}.yaml")
    assert doc["build"] is None and doc["push"] is None, "images are built outside Prefect (no prefect-docker here)"
    assert doc["prefect-version"] == re.search(r"^prefect==(\S+)$", (REPO / "constraints.txt").read_text(), re.M).group(1)
    for step in doc["pull"]:
        ((fqn, inputs),) = step.items()
        func = _import_object(fqn)  # what `prefect deploy` and the worker do with the name
        assert fqn.startswith("prefect.deployments.steps.") and callable(func)
        inspect.signature(func).bind(**{k: v for k, v in inputs.items() if k not in ("id", "requires")})
    steps = [next(iter(s)) for s in doc["pull"]]
    if name == "git":
        assert steps == ["prefect.deployments.steps.git_clone"]
        assert doc["pull"][0][steps[0]]["repository"] == "{{ prefect.variables.tuneflow_git_repository }}"
    else:
        assert doc["pull"] == [{"prefect.deployments.steps.set_working_directory": {"directory": APP_DIR}}]

    signature = inspect.signature(_import_object("flows.tune_xgboost.tune_xgboost").fn)
    for dep in doc["deployments"]:
        path, _, func = dep["entrypoint"].partition(":")
        assert (REPO / path).is_file() and dep["entrypoint"] == "flows/tune_xgboost.py:tune_xgboost"
        assert isinstance(_import_object(f"{path[:-3].replace('/', '.')}.{func}"), Flow)
        pool, kind = POOLS[dep["name"]]
        assert dep["work_pool"]["name"] == pool, (dep["name"], kind)
        jobs = dep["work_pool"]["job_variables"]
        if kind in ("docker", "kubernetes"):
            assert jobs["image"] == IMAGE
        env = jobs.get("env", {})
        _check_env_names(env, f"deployments/{name}.yaml {dep['name']}")
        for var, value in env.items():  # names of blocks, never the credentials themselves
            assert not re.search(r"(PASSWORD|SECRET|TOKEN|ACCESS_KEY)", var) or var.endswith("_BLOCK"), var
            assert not re.search(r"://[^/@\s]+:[^/@\s]+@", value), f"{var}: a password in a URL"
        for param in dep.get("parameters", {}):
            assert param in signature.parameters, f"{dep['name']}: {param} is not a parameter of the flow"
    if name == "kubernetes":  # the Dask scheduler Service of dask-cluster.yaml, on its port
        cluster = _load_all("infra/k8s/dask-cluster.yaml")[0]
        ports = {str(p["port"]) for p in cluster["spec"]["scheduler"]["service"]["ports"]}
        address = urlsplit(doc["deployments"][0]["work_pool"]["job_variables"]["env"]["TUNEFLOW_DASK_ADDRESS"])
        assert address.hostname == f"{cluster['metadata']['name']}-scheduler" and str(address.port) in ports
    if name == "docker":  # the docker pool's containers join compose's network and use its services
        compose = _compose()
        dep = next(d for d in doc["deployments"] if d["name"] == "docker")
        assert dep["work_pool"]["job_variables"]["networks"] == [f"{compose['name']}_default"]
        for value in dep["work_pool"]["job_variables"]["env"].values():
            for _, host, port, _ in URL.findall(value):
                assert port in compose["services"][host]["expose"], value


def test_no_credential_is_a_flow_parameter() -> None:
    signature = inspect.signature(_import_object("flows.tune_xgboost.tune_xgboost").fn)
    leaks = [p for p in signature.parameters if re.search(r"password|secret|token|credential|access_key", p, re.I)]
    assert not leaks, f"credentials come from blocks or the environment, never parameters: {leaks}"


def _cli_env(tmp_path: Path) -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_API_URL=PREFECT_API_URL.value(), PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_CLI_PROMPT="false",
               PREFECT_SERVER_ANALYTICS_ENABLED="false",
               NO_PROXY=",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1,localhost"])),
               no_proxy=",".join(filter(None, [os.environ.get("no_proxy"), "127.0.0.1,localhost"])))
    return env


def _sh(args: list[str], env: dict[str, str], cwd: Path = REPO, timeout: float = 180) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.timeout(420)
def test_deploy_to_docker_kubernetes_and_process_pools(prefect_harness, tmp_path: Path) -> None:
    """`prefect deploy` of each file to a real server whose pools have Prefect's own templates; the
    stored job variables validate against them; the git_clone pull step clones and finds the flow."""
    import jsonschema
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import VariableCreate

    env = _cli_env(tmp_path)
    prefect = str(BIN / "prefect")
    for pool, kind in set(POOLS.values()):
        _sh([prefect, "--no-prompt", "work-pool", "create", pool, "--type", kind, "--overwrite"], env)

    # the repository the git deployment clones: this checkout's HEAD as branch main of a bare repo
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(remote)], check=True)
    subprocess.run(["git", "--git-dir", str(remote), "fetch", "--quiet", "--depth", "1", REPO.as_uri(), "HEAD:refs/heads/main"], check=True, timeout=60)
    with get_client(sync_client=True) as client:
        try:
            client.delete_variable_by_name("tuneflow_git_repository")
        except Exception:
            pass
        client.create_variable(VariableCreate(name="tuneflow_git_repository", value=remote.as_uri()))

    for name in ("docker", "kubernetes", "git"):
        _sh([prefect, "--no-prompt", "deploy", "--prefect-file", f"deployments/{name}.yaml", "--all"], env)

    with get_client(sync_client=True) as client:
        for name in ("docker", "kubernetes", "git"):
            doc = _load(f"deployments/{name}.yaml")
            for spec in doc["deployments"]:
                dep = client.read_deployment_by_name(f"tune-xgboost/{spec['name']}")
                pool = client.read_work_pool(dep.work_pool_name)
                assert (pool.name, pool.type) == POOLS[spec["name"]]
                assert dep.entrypoint == spec["entrypoint"] and dep.parameters == spec["parameters"]
                assert dep.job_variables == spec["work_pool"]["job_variables"]
                variables = pool.base_job_template["variables"]
                assert set(dep.job_variables) <= set(variables["properties"]), f"{spec['name']}: unknown job variables {set(dep.job_variables) - set(variables['properties'])}"
                jsonschema.validate(dep.job_variables, variables)
                if name != "git":
                    assert dep.pull_steps == doc["pull"]
                else:
                    git_steps = dep.pull_steps
    (step,) = git_steps
    assert step["prefect.deployments.steps.git_clone"]["branch"] == "main"

    # what the worker's flow run does first: run the stored pull steps, in a fresh folder
    run_dir = tmp_path / "flow-run"
    run_dir.mkdir()
    code = ("import asyncio, json, sys\nfrom prefect.deployments.steps.core import run_steps\n"
            "print('OUTPUT ' + json.dumps(asyncio.run(run_steps(json.loads(sys.argv[1])))))")
    out = _sh([sys.executable, "-c", code, json.dumps(git_steps)], env, cwd=run_dir, timeout=120)
    result = json.loads(out.rsplit("OUTPUT ", 1)[1])
    clone = (run_dir / result["directory"]).resolve()  # relative to the flow run's folder, where it chdirs
    assert clone.parent == run_dir.resolve() and (clone / "flows/tune_xgboost.py").is_file(), result
    head = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert head == subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


# ----------------------------------------------------------------------------- credentials from blocks


CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "PGPASSWORD",
                   "MLFLOW_TRACKING_PASSWORD", "TUNEFLOW_S3_CREDENTIALS_BLOCK", "TUNEFLOW_STORAGE_PASSWORD_BLOCK",
                   "TUNEFLOW_MLFLOW_PASSWORD_BLOCK", "TUNEFLOW_STORE", "TUNEFLOW_STORAGE")


@pytest.fixture
def no_ambient_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """No AWS/PostgreSQL credential in the environment or in files; restored afterwards (monkeypatch
    records each variable before apply_credentials() writes it)."""
    import s3fs

    from tasks import settings as settings_module

    for var in CREDENTIAL_VARS:
        monkeypatch.delenv(var, raising=False)
    missing = str(tmp_path / "missing")
    for var in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "PGPASSFILE"):
        monkeypatch.setenv(var, missing)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    settings_module._LOADED_BLOCKS.clear()
    s3fs.S3FileSystem.clear_instance_cache()
    yield
    settings_module._LOADED_BLOCKS.clear()
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.mark.services
@pytest.mark.timeout(180)
def test_credentials_from_secret_blocks(prefect_harness, s3_bucket: str, pg_database: str, no_ambient_credentials,
                                        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import s3fs
    import sqlalchemy as sa
    from mlflow.environment_variables import MLFLOW_TRACKING_PASSWORD
    from prefect.blocks.system import Secret

    from tasks import objectstore
    from tasks import settings as settings_module
    from tasks.settings import get_settings, resolve_locations

    tag = uuid.uuid4().hex[:8]
    key_id, secret_key = f"AKIA{secrets.token_hex(8).upper()}", secrets.token_urlsafe(30)
    pg = sa.engine.make_url(pg_database)
    storage_url = sa.engine.URL.create(pg.drivername, pg.username, None, pg.host, pg.port, pg.database).render_as_string(hide_password=False)
    assert pg.password and ":" not in storage_url.split("://", 1)[1].split("@")[0]
    Secret(value={"aws_access_key_id": key_id, "aws_secret_access_key": secret_key}).save(f"tuneflow-s3-{tag}")
    Secret(value=pg.password).save(f"tuneflow-pg-{tag}")
    mlflow_password = f"1.{secrets.randbelow(10**12):012d}0"  # Secret.get() would parse it as a number, dropping the 0
    Secret(value=mlflow_password).save(f"tuneflow-mlflow-{tag}")
    store = f"s3://{s3_bucket}/store"
    monkeypatch.setenv("TUNEFLOW_STORE", store)
    monkeypatch.setenv("TUNEFLOW_STORAGE", storage_url)

    # without the blocks nothing gets in: no S3 credentials, no PostgreSQL password
    with pytest.raises(Exception, match="(?i)credentials"):
        objectstore.write_bytes_atomic(f"{store}/before", b"x")
    with pytest.raises(sa.exc.OperationalError, match="password"):
        sa.create_engine(storage_url).connect().close()

    monkeypatch.setenv("TUNEFLOW_S3_CREDENTIALS_BLOCK", f"secret/tuneflow-s3-{tag}")
    monkeypatch.setenv("TUNEFLOW_STORAGE_PASSWORD_BLOCK", f"tuneflow-pg-{tag}")  # a bare name is a Secret
    monkeypatch.setenv("TUNEFLOW_MLFLOW_PASSWORD_BLOCK", f"secret/tuneflow-mlflow-{tag}")
    s3fs.S3FileSystem.clear_instance_cache()
    with caplog.at_level(logging.INFO):
        where = resolve_locations()
    assert (os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]) == (key_id, secret_key)
    assert "AWS_SESSION_TOKEN" not in os.environ and MLFLOW_TRACKING_PASSWORD.get() == mlflow_password

    # the flow's own paths now work: the store through s3fs, the study storage through libpq
    objectstore.write_json_atomic(objectstore.join(where.store, "probe.json"), {"ok": tag}, where.store_options)
    assert objectstore.read_json(objectstore.join(where.store, "probe.json"), where.store_options) == {"ok": tag}
    from tasks.tuning.studies import open_storage

    assert where.study_storage == storage_url
    open_storage(where.study_storage).get_all_studies()

    # the secrets are in no repr, dump or log, nor in the options that reach blocks and workers
    settings = get_settings()
    shown = [repr(settings), str(settings), settings.model_dump_json(), repr(where), json.dumps(where.store_options), caplog.text]
    # (not the PostgreSQL password: the test cluster's is its user's name, which every URL shows)
    for value in (secret_key, key_id, mlflow_password):
        for text in shown:
            assert value not in text
    assert "credentials from Prefect blocks: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, MLFLOW_TRACKING_PASSWORD, PGPASSWORD" in caplog.text

    # loaded once per process: no API call on the next get_settings()
    monkeypatch.setattr(Secret, "load", classmethod(lambda cls, *a, **k: pytest.fail("loaded twice")))
    get_settings()

    # mistakes are one clear error naming the variable, not a traceback with the value
    from tasks.errors import TuneflowError

    monkeypatch.undo()  # the real Secret.load again; the environment as before the test
    monkeypatch.setenv("TUNEFLOW_S3_CREDENTIALS_BLOCK", f"secret/missing-{tag}")
    settings_module._LOADED_BLOCKS.clear()
    with pytest.raises(TuneflowError, match="TUNEFLOW_S3_CREDENTIALS_BLOCK=secret/missing-"):
        get_settings()
    Secret(value={"aws_access_key_id": key_id}).save(f"tuneflow-half-{tag}")
    monkeypatch.setenv("TUNEFLOW_S3_CREDENTIALS_BLOCK", f"tuneflow-half-{tag}")
    with pytest.raises(TuneflowError, match="no aws_secret_access_key") as info:
        get_settings()
    assert key_id not in str(info.value)


# ----------------------------------------------------------------------------- the image's install, in a clean venv


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        name, sep, version = line.strip().partition("==")
        if sep:
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


@pytest.mark.timeout(900)
def test_image_install_steps_in_a_clean_venv(tmp_path: Path, record_property) -> None:
    """infra/docker/install.sh, as the Dockerfiles RUN it, into a new venv of this Python; then the
    installed copy (from outside the source tree) imports the flow and the engine and runs the CLI."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "TUNEFLOW_EXTRAS")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    started = time.monotonic()
    proc = subprocess.run(["bash", str(REPO / "infra/docker/install.sh")], cwd=tmp_path, env={**env, "PYTHON": str(py)},
                          capture_output=True, text=True, timeout=840)
    seconds = time.monotonic() - started
    record_property("clean_venv_install_seconds", round(seconds, 1))
    print(f"\n[packaging] infra/docker/install.sh into a clean venv: {seconds:.0f} s")
    assert proc.returncode == 0, f"install.sh exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"

    out = subprocess.run([str(py), "-c", "import flows.tune_xgboost, tasks.engine.training; print(flows.tune_xgboost.__file__)"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert Path(out.stdout.strip()).is_relative_to(venv), f"imported {out.stdout.strip()}, not the installed copy"
    cli = subprocess.run([str(venv / "bin" / "tuneflow"), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert cli.returncode == 0 and "run" in cli.stdout, cli.stderr[-3000:]

    # every module of the source tree is in the installed package (subpackages included)
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True).stdout.strip())
    for package in ("flows", "tasks"):
        source = {p.relative_to(REPO).as_posix() for p in (REPO / package).rglob("*.py") if "__pycache__" not in p.parts}
        installed = {p.relative_to(site).as_posix() for p in (site / package).rglob("*.py")}
        assert source <= installed, f"missing from the install: {sorted(source - installed)[:10]}"

    # the versions are the lock file's
    freeze = subprocess.run([str(py), "-m", "pip", "list", "--format=json"], env=env, capture_output=True, text=True, check=True).stdout
    pins = _pins()
    off = {d["name"]: (d["version"], pins[key]) for d in json.loads(freeze)
           if (key := re.sub(r"[-_.]+", "-", d["name"]).lower()) in pins and d["version"] != pins[key]}
    assert not off, f"installed versions differ from constraints.txt: {off}"
    for must in ("prefect", "xgboost", "dask", "mlflow", "boto3", "asyncpg", "psycopg2-binary"):
        assert any(re.sub(r"[-_.]+", "-", d["name"]).lower() == must for d in json.loads(freeze)), must
