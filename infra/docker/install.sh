#!/usr/bin/env bash
# The install steps of the tuneflow images (infra/docker/Dockerfile, Dockerfile.cuda), as one script:
# both Dockerfiles RUN it, and tests/test_packaging.py runs it into a clean venv, so what CI checks is
# what an image build does (without Docker).
#
#   PYTHON=/opt/venv/bin/python bash infra/docker/install.sh [EXTRAS]
#
# PYTHON: the interpreter whose environment receives the install (default: python3 on PATH; in the
#   images, the /opt/venv venv). EXTRAS: comma-separated extras of pyproject.toml (e.g. gpu), or
#   $TUNEFLOW_EXTRAS. Run from anywhere: it installs the source tree it sits in.
#
# What it installs: the project (not editable) pinned by constraints.txt, the same lock file as
# `make venv`, plus boto3 (also pinned there) for the MLflow server's S3 artifact store in
# infra/compose.yaml. Then it checks the result from outside the source tree: `pip check`, the
# flow and the trial engine import, `tuneflow --help` runs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=${PYTHON:-python3}
EXTRAS=${1:-${TUNEFLOW_EXTRAS:-}}
target="$ROOT${EXTRAS:+[$EXTRAS]}"

log() { printf '[install] %s\n' "$*" >&2; }

[[ -f "$ROOT/constraints.txt" && -f "$ROOT/pyproject.toml" ]] || { log "no constraints.txt/pyproject.toml in $ROOT"; exit 1; }
"$PY" -c 'import sys; raise SystemExit(sys.version_info[:2] < (3, 12))' \
    || { log "$PY is older than Python 3.12"; exit 1; }

log "$("$PY" -V) at $("$PY" -c 'import sys; print(sys.prefix)'): pip install -c constraints.txt $target boto3"
# No --no-cache-dir here: the Dockerfiles give pip a BuildKit cache mount (nothing lands in the
# image), and CI reuses the cache that `make venv` warmed.
PIP_DISABLE_PIP_VERSION_CHECK=1 "$PY" -m pip install --progress-bar off -c "$ROOT/constraints.txt" "$target" boto3

log "checking the installed package (from /, not the source tree)"
bin=$(dirname "$("$PY" -c 'import sys; print(sys.executable)')")
(
    cd /
    "$PY" -m pip check
    "$PY" -c 'import flows.tune_xgboost, tasks.engine.training, tasks.settings, s3fs, boto3, psycopg2, asyncpg'
    "$bin/tuneflow" --help >/dev/null
    "$bin/prefect" version >/dev/null
    "$bin/dask" --version >/dev/null
    "$bin/mlflow" --version >/dev/null
)
log "done"
