"""Batch scoring: a registered model over a file, glob or prefix, in bounded memory on Dask.

`score(model_uri, data, out)`:
1. resolves the model (models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/PATH) in the
   registry that `tuneflow run` registers in (tasks.settings), pinned to one version, and reads the
   two artifacts of its pyfunc: the booster (.ubj) and the manifest that defines the encoding;
2. lists the input like `tuneflow run` does (tasks.data.inputs) and reads it as a Dask frame of
   blocks of about `blocksize` bytes (CSV) or row-group groups of about that size (Parquet), with
   the training read rule: categorical features as strings, numeric ones as float64;
3. on the workers, per partition: encodes with the registered model's own code
   (tasks.pyfunc_model.encode), predicts with the booster (shipped once per worker as UBJSON bytes
   and loaded once per worker thread), and writes one part file: the row key (or --keep columns)
   and the prediction columns:
     binary      probability (of manifest["classes"][1]), label (classes[1] when > 0.5);
     multiclass  probability_<class> per class in manifest["classes"] order, label (the argmax);
     regression  prediction;
4. the parts go to a hidden temporary prefix beside `out`, which becomes `out` only once every
   part is written (a rename on a file system; copies then deletes on S3). A CSV `out` is the
   parts concatenated in order by streaming. The client holds one partition's row count at a time,
   never data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import posixpath
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tasks.errors import TuneflowError
from tasks.objectstore import filesystem, not_utf8, storage_options_for, unstrip

DEFAULT_BLOCKSIZE = "64MB"
MIN_BLOCKSIZE = 64 * 1024
PART_NAME = "part.{:05d}.{}"
THRESHOLD = 0.5  # binary label: classes[1] when the probability is above it


@dataclass(frozen=True)
class ScoringModel:
    """What scoring needs from a registered model: its booster as UBJSON and its manifest."""

    uri: str  # as asked
    resolved: str  # pinned: models:/NAME/VERSION (or the runs:/ URI)
    booster_ubj: bytes
    manifest: dict[str, Any]


@dataclass(frozen=True)
class ScoreResult:
    rows: int
    parts: int
    out: str
    seconds: float
    model: str  # the pinned model URI
    columns: list[str]


# ----------------------------------------------------------------------------- the model


def load_scoring_model(model_uri: str, tracking_uri: str) -> ScoringModel:
    """The booster and manifest behind `model_uri`, read from the registry at `tracking_uri`."""
    from tasks import register  # mlflow: only where a model is loaded

    import mlflow
    import mlflow.xgboost
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model
    from mlflow.tracking import MlflowClient

    _check_registry(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if model_uri.startswith("models:/"):
        version = _model_version(client, model_uri, tracking_uri)
        resolved = f"models:/{version.name}/{version.version}"
        source, run_id = client.get_model_version_download_uri(version.name, version.version), version.run_id
    elif model_uri.startswith("runs:/"):
        run_id, _, path = model_uri[len("runs:/"):].partition("/")
        if not run_id or not path.strip("/"):
            raise TuneflowError(f"Not a model URI: {model_uri}.", "use runs:/<run_id>/model, models:/<name>@<alias> or models:/<name>/<version>.")
        try:
            client.get_run(run_id)
        except MlflowException as exc:
            raise TuneflowError(f"No run {run_id} in the MLflow registry at {tracking_uri}: {_first_line(exc)}.", "check --model, or set TUNEFLOW_MLFLOW_TRACKING_URI to the registry that holds it.") from exc
        source = resolved = model_uri
    else:
        raise TuneflowError(f"Not a model URI: {model_uri}.", "use models:/<name>@<alias>, models:/<name>/<version> or runs:/<run_id>/model.")

    with tempfile.TemporaryDirectory(prefix="tuneflow-predict-") as tmp:
        try:
            with _process_registry(tracking_uri):
                local = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tmp, tracking_uri=tracking_uri, registry_uri=tracking_uri)
            flavors = Model.load(local).flavors
        except (MlflowException, OSError) as exc:
            raise TuneflowError(f"Cannot read the model {resolved}: {_first_line(exc)}.", "check that it is an MLflow model and that its artifact store is reachable from here.") from exc
        artifacts = flavors.get("python_function", {}).get("artifacts", {})
        if register.BOOSTER_KEY in artifacts:  # the raw-row pyfunc (tasks/pyfunc_model.py)
            with open(os.path.join(local, artifacts[register.BOOSTER_KEY]["path"]), "rb") as f:
                booster_ubj = f.read()
        elif "xgboost" in flavors:  # registered before the pyfunc model
            booster = mlflow.xgboost.load_model(local)
            booster = booster if hasattr(booster, "save_raw") else booster.get_booster()
            booster_ubj = bytes(booster.save_raw(raw_format="ubj"))
        else:
            raise TuneflowError(f"{resolved} holds no XGBoost booster.", "score a model registered by tuneflow (tasks.register).")
        if register.MANIFEST_KEY in artifacts:  # the manifest the pyfunc encodes with
            with open(os.path.join(local, artifacts[register.MANIFEST_KEY]["path"]), encoding="utf-8") as f:
                manifest = json.load(f)
        else:  # the one logged with the run
            try:
                path = client.download_artifacts(run_id, register.MANIFEST_ARTIFACT, tmp)
            except (MlflowException, OSError) as exc:
                raise TuneflowError(f"{resolved} has no dataset manifest ({register.MANIFEST_ARTIFACT}): {_first_line(exc)}.", "score a model registered by tuneflow.") from exc
            with open(path, encoding="utf-8") as f:
                manifest = json.load(f)
    return ScoringModel(uri=model_uri, resolved=resolved, booster_ubj=booster_ubj, manifest=manifest)


@contextlib.contextmanager
def _process_registry(tracking_uri: str) -> Iterator[None]:
    """MLflow 3.17 resolves a runs:/ model URI (its logged model) with the process-wide tracking
    URI, whatever is passed in (else it opens ./mlflow.db): set it for the call, then restore it."""
    import mlflow

    before = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])


def _check_registry(tracking_uri: str) -> None:
    """An embedded SQLite registry must exist: MLflow would create an empty one and find nothing."""
    if tracking_uri.startswith("sqlite:///") and not os.path.exists(tracking_uri[len("sqlite:///"):]):
        raise TuneflowError(
            f"No MLflow registry at {tracking_uri}.",
            "run from where `tuneflow run` registered the model, or set TUNEFLOW_HOME / TUNEFLOW_MLFLOW_TRACKING_URI to its registry.",
        )


def _model_version(client: Any, model_uri: str, tracking_uri: str) -> Any:
    """The ModelVersion of a models:/ URI, or one error saying what the registry does hold."""
    from tasks import register
    from mlflow.exceptions import MlflowException

    try:
        return register._resolve_model_uri(client, model_uri)
    except MlflowException as exc:
        rest = model_uri[len("models:/"):].rstrip("/")
        name = rest.rsplit("@", 1)[0] if "@" in rest else rest.rpartition("/")[0]
        try:
            model = client.get_registered_model(name)
            held = ", ".join(f"@{a} -> v{v}" for a, v in sorted(model.aliases.items())) or "no aliases"
            hint = f"model '{name}' has {held}; pick one, or a version: models:/{name}/<version>."
        except MlflowException:
            names = [m.name for m in client.search_registered_models(max_results=20)]
            hint = f"registered models there: {', '.join(names) or 'none'}; check --model and TUNEFLOW_MLFLOW_TRACKING_URI."
        raise TuneflowError(f"No model version at {model_uri} in {tracking_uri}: {_first_line(exc)}.", hint) from exc


# ----------------------------------------------------------------------------- scoring one partition (on a worker)


_BOOSTERS: dict[tuple[str, int], Any] = {}  # (booster digest, thread) -> Booster, per worker process
_BOOSTERS_LOCK = threading.Lock()


def _booster(digest: str, ubj: bytes, nthread: int | None) -> Any:
    """The booster for `digest`, loaded once per worker thread (XGBoost's UBJSON, no pickle)."""
    import xgboost as xgb

    key = (digest, threading.get_ident())
    with _BOOSTERS_LOCK:
        booster = _BOOSTERS.get(key)
    if booster is None:
        booster = xgb.Booster(model_file=bytearray(ubj))
        if nthread:
            booster.set_param({"nthread": int(nthread)})
        with _BOOSTERS_LOCK:
            for stale in [k for k in _BOOSTERS if k[0] != digest]:  # another model scored before
                del _BOOSTERS[stale]
            _BOOSTERS[key] = booster
    return booster


def prediction_columns(manifest: dict[str, Any]) -> dict[str, str]:
    """The output's prediction columns and their dtypes, by task."""
    task = manifest["task"]
    if task == "binary":
        return {"probability": "float32", "label": "string"}
    if task == "multiclass":
        return {**{f"probability_{c}": "float32" for c in manifest["classes"]}, "label": "string"}
    return {"prediction": "float32"}


def score_frame(booster: Any, df: pd.DataFrame, manifest: dict[str, Any], keep: list[str]) -> pd.DataFrame:
    """`keep` columns of `df` plus its predictions: the registered pyfunc's encoding and output."""
    from tasks import pyfunc_model
    from tasks.engine.resident import predict_matrix

    pred = predict_matrix(booster, pyfunc_model.encode(df, manifest["features"]), manifest) if len(df) else None
    out = df[keep].reset_index(drop=True)
    task, classes = manifest["task"], manifest.get("classes") or []
    if task == "binary":
        proba = np.asarray(pred, np.float32).reshape(-1) if pred is not None else np.empty(0, np.float32)
        out["probability"] = proba
        out["label"] = pd.array(np.where(proba > THRESHOLD, classes[1], classes[0]) if len(proba) else [], dtype="string")
    elif task == "multiclass":
        proba = np.asarray(pred, np.float32).reshape(len(df), len(classes)) if pred is not None else np.empty((0, len(classes)), np.float32)
        for i, c in enumerate(classes):
            out[f"probability_{c}"] = proba[:, i]
        out["label"] = pd.array(np.asarray(classes, dtype=object)[proba.argmax(axis=1)] if len(proba) else [], dtype="string")
    else:
        out["prediction"] = np.asarray(pred, np.float32).reshape(-1) if pred is not None else np.empty(0, np.float32)
    return out


def _score_part(
    df: pd.DataFrame, ubj: bytes, *, digest: str, nthread: int | None, manifest: dict[str, Any], keep: list[str],
    path: str, marker: str, fmt: str, header: bool, schema: Any, storage_options: dict[str, Any],
) -> int:
    """Score one partition and write it as one part file; returns its row count (-1: the job was
    abandoned meanwhile, its temporary prefix removed, and nothing is written)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = score_frame(_booster(digest, ubj, nthread), df, manifest, keep)
    fs, p = filesystem(path, storage_options)
    if not fs.exists(filesystem(marker, storage_options)[1]):  # a cancelled task still running
        return -1
    with fs.open(p, "wb") as f:
        if fmt == "parquet":
            pq.write_table(pa.Table.from_pandas(out, schema=schema, preserve_index=False), f)
        else:
            f.write(out.to_csv(index=False, header=header).encode("utf-8"))
    return len(out)


# ----------------------------------------------------------------------------- input


def parse_blocksize(blocksize: str | int) -> int:
    from dask.utils import parse_bytes

    try:
        n = int(parse_bytes(blocksize))
    except (ValueError, TypeError) as exc:
        raise TuneflowError(f"Bad --blocksize {blocksize!r}.", "give a size like 64MB, 256KB or 1GB.") from exc
    if n < MIN_BLOCKSIZE:
        raise TuneflowError(f"--blocksize {blocksize} is below {MIN_BLOCKSIZE // 1024}KB.", "give a size like 64MB.")
    return n


def _columns_of(uri: str, fmt: str, storage_options: dict[str, Any]) -> list[str]:
    """The column names of one input file, from its header or Parquet schema only."""
    import pyarrow.parquet as pq

    from tasks.data import inputs

    fs, path = filesystem(uri, storage_options)
    try:
        with fs.open(path, "rb") as f:
            if fmt == "parquet":
                return [str(c) for c in pq.ParquetFile(f).schema_arrow.names]
            return [str(c) for c in pd.read_csv(f, nrows=0, compression=inputs.compression_of(uri)).columns]
    except pd.errors.EmptyDataError as exc:
        raise TuneflowError(f"{uri} is empty.", "give a file with a header row.") from exc
    except UnicodeDecodeError as exc:
        raise not_utf8(uri, "The --data file", exc, "then point --data at the converted file(s).") from None
    except (pd.errors.ParserError, OSError, ValueError) as exc:
        raise TuneflowError(f"Cannot read {uri}: {_first_line(exc)}.", "check that it is a valid CSV (comma-separated, header row) or Parquet file.") from exc


def open_input(data: str, manifest: dict[str, Any], blocksize: int, keep: list[str] | None = None) -> tuple[Any, list[str], list[dict[str, Any]]]:
    """(lazy Dask frame of the columns scoring needs, the columns kept, the input files).

    Checked on the client before anything runs: the files exist and the first one (with the
    partition folders, key=value, as columns) holds every feature column (and every `keep`
    column). Read with training's read rule (tasks.data.inputs.read_columns): partition folders
    as columns, a feature's declared `missing_values` as missing."""
    from tasks.data import inputs

    options = storage_options_for(data)
    files = inputs.expand_inputs(data, options)
    uris = [f["uri"] for f in files]
    fmt = inputs.file_format(uris[0])
    keys = inputs.partition_keys(files)
    header = _columns_of(uris[0], fmt, options)
    columns = header + [k for k in keys if k not in header]
    features = [f["name"] for f in manifest["features"]]
    missing = [c for c in features if c not in columns]
    if missing:
        raise TuneflowError(
            f"{uris[0]} lacks the model's feature columns {missing}.",
            f"give data with every feature column the model was trained on ({', '.join(features)}); values may be missing.",
        )
    if keep is None:
        row_key = manifest.get("row_key")
        keep = [row_key] if row_key and row_key in columns and row_key not in features else []
    else:
        absent = [c for c in keep if c not in columns]
        if absent:
            raise TuneflowError(f"{uris[0]} has no columns {absent} to keep.", f"--keep columns of the data: {', '.join(columns[:20])}.")
    clash = [c for c in keep if c in prediction_columns(manifest)]
    if clash:
        raise TuneflowError(f"Columns {clash} would clash with the prediction columns.", "leave them out of --keep.")
    keep = list(dict.fromkeys(keep))
    needed = list(dict.fromkeys([*keep, *features]))
    # The training read rule (tasks.data.inputs.dask_dtypes): categoricals as strings, numerics as
    # float64. Kept columns as written: CSV and partition folders as strings (IDs with their
    # leading zeros), Parquet columns in their own type.
    dtypes = {f["name"]: "string" if f["kind"] == "categorical" else "float64" for f in manifest["features"]}
    read = {c: dtypes.get(c) or ("string" if fmt == "csv" or c in keys else None) for c in needed}
    declared = {f["name"]: list(f["missing_values"]) for f in manifest["features"] if f.get("missing_values")}
    try:
        ddf = inputs.read_columns(
            files, read, options, missing=declared, blocksize=blocksize, parquet_options={"split_row_groups": "adaptive", "blocksize": blocksize},
        )
    except (ValueError, OSError, TypeError) as exc:
        raise TuneflowError(f"Cannot read {data}: {_first_line(exc)}.", "check that every file is a valid CSV/Parquet file with the model's feature columns.") from exc
    return ddf, keep, files


# ----------------------------------------------------------------------------- scoring


def check_out(out: str, overwrite: bool) -> tuple[Any, str]:
    """(filesystem, path) of `out`; refuses an existing one unless `overwrite`."""
    fs, path = filesystem(out, storage_options_for(out))
    path = path.rstrip("/")
    try:
        exists = fs.exists(path)
    except (OSError, PermissionError) as exc:
        raise TuneflowError(f"Cannot reach --out {out}: {_first_line(exc)}.", "check the path, the bucket and its credentials.") from exc
    if exists and not overwrite:
        raise TuneflowError(f"{out} exists.", "pass --overwrite to replace it, or another --out.")
    return fs, path


def quiet_cluster_logs() -> None:
    """For a LocalCluster this command owns, in its process and on its workers (client.run): a
    partition that fails is reported once, as the command's error line, not also as a worker's
    traceback ("Compute Failed") or the nanny's warning when it stops a worker still busy."""
    for name in ("distributed.worker", "distributed.worker.state_machine", "distributed.core", "distributed.utils"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    for name in ("distributed.nanny", "distributed.scheduler"):
        logging.getLogger(name).setLevel(logging.ERROR)


def local_nthread(client: Any, dask_address: str | None) -> int | None:
    """XGBoost threads per partition: this machine's cores over the LocalCluster's worker threads;
    None (XGBoost's default) on an external cluster."""
    if dask_address:
        return None
    threads = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()) or 1
    return max(1, (os.cpu_count() or 1) // threads)


@dataclass(frozen=True)
class ScoringJob:
    """A checked scoring job: the model, the lazy input, where the output goes and its schema."""

    model: ScoringModel
    data: str
    out: str
    frame: Any  # lazy dask DataFrame of the columns scoring reads
    keep: list[str]
    single_csv: bool
    schema: Any  # pyarrow schema of every output part
    overwrite: bool
    started: float


def prepare(
    model: ScoringModel, data: str, out: str, *, blocksize: str | int = DEFAULT_BLOCKSIZE, keep: list[str] | None = None, overwrite: bool = False,
) -> ScoringJob:
    """Every check that needs no cluster: --out, the input files and their columns."""
    import pyarrow as pa

    started = time.perf_counter()
    check_out(out, overwrite)
    frame, keep, _ = open_input(data, model.manifest, parse_blocksize(blocksize), keep)
    meta = score_frame(None, frame._meta.iloc[:0], model.manifest, keep)
    return ScoringJob(
        model=model, data=data, out=out, frame=frame, keep=keep, single_csv=out.lower().endswith(".csv"),
        schema=pa.Schema.from_pandas(meta, preserve_index=False), overwrite=overwrite, started=started,
    )


def score(job: ScoringJob, *, client: Any, nthread: int | None = None, on_progress: Callable[[int, int], None] | None = None) -> ScoreResult:
    """Run `job` on the Dask `client`'s workers: one part per partition, then publish (module doc)."""
    import dask
    from distributed import as_completed

    out_options = storage_options_for(job.out)
    out_fs, out_path = check_out(job.out, job.overwrite)  # again: it may have appeared meanwhile
    fmt = "csv" if job.single_csv else "parquet"
    parent, base = posixpath.split(out_path)
    tmp = posixpath.join(parent, f".{base}.tmp-{uuid.uuid4().hex[:12]}")
    out_fs.makedirs(tmp, exist_ok=True)
    marker = posixpath.join(tmp, "_IN_PROGRESS")  # removed with tmp: late tasks then write nothing
    out_fs.pipe_file(marker, b"")
    digest = hashlib.sha256(job.model.booster_ubj).hexdigest()
    futures: list[Any] = []
    try:
        ubj = client.scatter(job.model.booster_ubj, broadcast=True, hash=False)  # once per worker, as bytes
        work = [
            dask.delayed(_score_part, pure=False)(
                part, ubj, digest=digest, nthread=nthread, manifest=job.model.manifest, keep=job.keep,
                path=unstrip(out_fs, posixpath.join(tmp, PART_NAME.format(i, fmt))), marker=unstrip(out_fs, marker), fmt=fmt, header=i == 0,
                schema=job.schema, storage_options=out_options,
            )
            for i, part in enumerate(job.frame.to_delayed())
        ]
        total, done, rows = len(work), 0, 0
        if on_progress:
            on_progress(0, total)
        futures = client.compute(work)
        try:
            for future in as_completed(futures):
                rows += int(future.result())  # a row count: the client never holds data
                done += 1
                future.release()
                if on_progress:
                    on_progress(done, total)
        except (ValueError, TypeError, KeyError, OSError) as exc:
            raise TuneflowError(
                f"Scoring {job.data} failed: {_first_line(exc)}.",
                "check that every input file has the model's feature columns, with numbers in its numeric columns.",
            ) from exc
        out_fs.rm(marker)  # every task has finished
        if job.single_csv:  # the parts in order, streamed into one file
            joined = posixpath.join(tmp, base)
            with out_fs.open(joined, "wb") as dst:
                for i in range(total):
                    with out_fs.open(posixpath.join(tmp, PART_NAME.format(i, fmt)), "rb") as src:
                        shutil.copyfileobj(src, dst, 8 * 1024 * 1024)
            _publish(out_fs, joined, out_path, _is_local(out_fs))
        else:
            _publish(out_fs, tmp, out_path, _is_local(out_fs))
    finally:
        if futures:
            client.cancel([f for f in futures if not f.done()])
        if out_fs.exists(tmp):
            out_fs.rm(tmp, recursive=True)
    return ScoreResult(
        rows=rows, parts=total, out=job.out, seconds=time.perf_counter() - job.started, model=job.model.resolved, columns=job.schema.names,
    )


def _publish(fs: Any, src: str, dst: str, local: bool) -> None:
    """Make the finished `src` appear as `dst`, replacing what was there (checked by the caller)."""
    if local:
        old = None
        if os.path.lexists(dst):
            old = f"{dst}.old-{uuid.uuid4().hex[:12]}"
            os.rename(dst, old)
        os.rename(src, dst)
        if old:
            shutil.rmtree(old) if os.path.isdir(old) and not os.path.islink(old) else os.remove(old)
        return
    # Object stores have no rename: copy every finished object, then delete the temporary ones.
    if fs.exists(dst):
        fs.rm(dst, recursive=True)
    if fs.isdir(src):
        sources = sorted(fs.find(src))
        targets = [posixpath.join(dst, posixpath.relpath(s, src)) for s in sources]
    else:
        sources, targets = [src], [dst]
    copied = []
    try:
        for s, t in zip(sources, targets):
            fs.copy(s, t)
            copied.append(t)
    except Exception:
        for t in copied:  # leave nothing half-written at dst
            fs.rm(t)
        raise


def _is_local(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300].rstrip(".")
