"""Where tuneflow keeps things, from TUNEFLOW_* environment variables (run parameters override)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Embedded defaults live under `home`; point each at a cluster service by URL instead."""

    model_config = SettingsConfigDict(env_prefix="TUNEFLOW_", extra="ignore")

    home: Path = Path(".tuneflow")
    store: str | None = None  # object store root: local folder, file:// or s3://bucket/prefix
    storage: str | None = None  # Optuna storage: journal file path, sqlite:///, postgresql://
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
