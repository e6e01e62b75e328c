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


def get_settings() -> Settings:
    return Settings()


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
