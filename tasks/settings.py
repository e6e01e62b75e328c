"""Where tuneflow keeps things: run parameters, else TUNEFLOW_* environment variables, else the
embedded defaults under TUNEFLOW_HOME. Resolved in one place, once per run."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Embedded defaults live under `home`; point each at a cluster service by URL instead."""

    model_config = SettingsConfigDict(env_prefix="TUNEFLOW_", extra="ignore")

    home: Path = Path(".tuneflow")
    store: str | None = None  # object store root: local folder, file:// or s3://bucket/prefix
    storage: str | None = None  # Optuna study storage: journal file path, sqlite:///, postgresql://
    mlflow_tracking_uri: str | None = None
    mlflow_artifact_root: str | None = None
    dask_address: str | None = None
    s3_endpoint_url: str | None = None  # for MinIO, moto or any S3 API; AWS_ENDPOINT_URL also works
    # Credentials are never run parameters: they come from the environment (AWS_*, PGPASSWORD,
    # MLFLOW_TRACKING_PASSWORD) or from the Prefect blocks named here ("secret/NAME" or "NAME" for a
    # Secret block, "aws-credentials/NAME" with prefect-aws), exported by apply_credentials().
    s3_credentials_block: str | None = None  # Secret {"aws_access_key_id", "aws_secret_access_key"[, "aws_session_token"]}
    storage_password_block: str | None = None  # Secret: the PostgreSQL password (libpq's PGPASSWORD) of `storage`
    mlflow_password_block: str | None = None  # Secret: an MLflow server's basic-auth password (MLFLOW_TRACKING_PASSWORD)
    # Input policy for path-like run parameters (tasks/policy.py; README "Input policy and secrets")
    allowed_schemes: str = "file,s3,sqlite,postgresql,mysql"  # comma list; a plain path is file, postgresql+psycopg2 is postgresql
    allowed_roots: str = ""  # comma list of folders, s3://bucket/prefix, postgresql://host[:port][/db]; empty: no root restriction
    allow_chained_urls: bool = False  # fsspec chains (simplecache::s3://..., zip://x::s3://...): every link's scheme must be allowed

    def resolved_store(self) -> str:
        return self.store or str((self.home / "store").resolve())

    def resolved_storage(self) -> str:
        return self.storage or str((self.home / "optuna.journal").resolve())

    def resolved_tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    def resolved_artifact_root(self) -> str | None:
        """Local artifacts beside a local registry; a tracking server picks its own by default."""
        if self.mlflow_artifact_root or self.mlflow_tracking_uri:
            return self.mlflow_artifact_root
        return (self.home / "mlartifacts").resolve().as_uri()

    def resolved_s3_endpoint(self) -> str | None:
        return self.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL")

    def apply_credentials(self) -> list[str]:
        """Export the credentials of the blocks named by the *_block settings into this process's
        environment, where s3fs, boto3 (MLflow), libpq (Optuna, MLflow) and the Dask workers of a
        LocalCluster read them. Never into storage options, URLs or reports: those get logged,
        persisted (Prefect's result-storage block) or shipped to workers. A named block wins over
        the ambient variables. Each block is loaded once per process; returns the variables set."""
        exported: list[str] = []
        for setting, block in (("s3_credentials_block", self.s3_credentials_block),
                               ("storage_password_block", self.storage_password_block),
                               ("mlflow_password_block", self.mlflow_password_block)):
            if block:
                values = _LOADED_BLOCKS.get((setting, block))
                if values is None:
                    values = _LOADED_BLOCKS[(setting, block)] = _credentials_from_block(setting, block)
                for var, value in values.items():
                    if value is None:
                        os.environ.pop(var, None)  # e.g. a stale AWS_SESSION_TOKEN beside other keys
                    else:
                        os.environ[var] = value
                        exported.append(var)
        if exported:
            import logging

            logging.getLogger("tuneflow.settings").info("credentials from Prefect blocks: %s", ", ".join(sorted(exported)))
        return exported


# (setting, block name) -> {environment variable: value or None to unset}; one load per process
_LOADED_BLOCKS: dict[tuple[str, str], dict[str, str | None]] = {}


def _credentials_from_block(setting: str, address: str) -> dict[str, str | None]:
    """Load the block `address` and map its values to environment variables (names, never values,
    in errors)."""
    from tasks.errors import TuneflowError

    var = f"TUNEFLOW_{setting.upper()}"
    slug, _, name = address.rpartition("/")
    slug = slug or "secret"
    try:
        if slug == "secret":
            from prefect.blocks.system import Secret

            block: Any = Secret.load(name, _sync=True)
        else:
            from prefect.blocks.core import Block

            block = Block.load(f"{slug}/{name}", _sync=True)
    except Exception as exc:  # no API, no such block, an unregistered block type
        # a validation error would quote the stored (secret) value: its type name only
        why = type(exc).__name__ if "Validation" in type(exc).__name__ else f"{type(exc).__name__}: {str(exc)[:200]}"
        raise TuneflowError(
            f"{var}={address}: the Prefect block could not be loaded ({why}).",
            f"create it on the Prefect API this process uses (README, 'Credentials from Prefect blocks') or unset {var}.",
        ) from None

    def plain(value: Any) -> str | None:
        value = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        return None if value in (None, "") else str(value)

    if setting == "s3_credentials_block":
        if hasattr(block, "aws_access_key_id"):  # prefect-aws AwsCredentials (untested here: not installed)
            values = {k: getattr(block, k, None) for k in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token", "region_name")}
        else:
            values = _raw(block)
            if isinstance(values, str):
                import json

                try:
                    values = json.loads(values)
                except ValueError:
                    values = None
            if not isinstance(values, dict):
                raise TuneflowError(f"{var}={address}: the block holds no JSON object.",
                                    'store {"aws_access_key_id": ..., "aws_secret_access_key": ...} in the Secret block.')
        missing = [k for k in ("aws_access_key_id", "aws_secret_access_key") if not plain(values.get(k))]
        if missing:
            raise TuneflowError(f"{var}={address}: the block has no {', '.join(missing)}.",
                                'store {"aws_access_key_id": ..., "aws_secret_access_key": ...} in the Secret block.')
        out = {"AWS_ACCESS_KEY_ID": plain(values["aws_access_key_id"]), "AWS_SECRET_ACCESS_KEY": plain(values["aws_secret_access_key"]),
               "AWS_SESSION_TOKEN": plain(values.get("aws_session_token"))}
        if plain(values.get("region_name")):
            out["AWS_DEFAULT_REGION"] = plain(values["region_name"])
        return out
    value = _raw(block)
    password = plain(value.get("password") if isinstance(value, dict) else value)
    if not password:
        raise TuneflowError(f"{var}={address}: the block holds no password.", "store the password (a string) in the Secret block.")
    return {"PGPASSWORD" if setting == "storage_password_block" else "MLFLOW_TRACKING_PASSWORD": password}


def _raw(block: Any) -> Any:
    """A Secret block's stored value as saved (a str or a dict), not Secret.get()'s JSON guess,
    which would turn a password such as "123" or "null" into a number or None."""
    value = getattr(block, "value", None)
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


def get_settings() -> Settings:
    settings = Settings()
    settings.apply_credentials()  # before anything opens S3, PostgreSQL or MLflow
    return settings


@dataclass(frozen=True)
class RunLocations:
    """The services one run talks to, after parameters, environment and defaults are applied."""

    store: str  # object store root (shards, models, reports, Prefect's cached results)
    study_storage: str  # Optuna storage URL
    dask_address: str | None  # None: a LocalCluster of this machine
    tracking_uri: str
    artifact_root: str | None
    store_options: dict[str, Any] = field(default_factory=dict)  # fsspec options for `store`


def resolve_locations(store: str | None = None, study_storage: str | None = None, dask_address: str | None = None) -> RunLocations:
    from tasks.objectstore import storage_options_for

    settings = get_settings()
    store_uri = store or settings.resolved_store()
    return RunLocations(
        store=store_uri,
        study_storage=study_storage or settings.resolved_storage(),
        dask_address=dask_address or settings.dask_address,
        tracking_uri=settings.resolved_tracking_uri(),
        artifact_root=settings.resolved_artifact_root(),
        store_options=storage_options_for(store_uri),
    )
