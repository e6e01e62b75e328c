"""The trial engine: what runs on Dask workers. Imports no Prefect, Optuna, GX, MLflow or pydantic."""
