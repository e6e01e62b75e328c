"""What a study shows after the run: a static HTML report, MLflow step metrics, TensorBoard files."""
