"""Experiment tracking of ended jobs (MLflow, optional: ``flywheel[mlflow]``)."""
