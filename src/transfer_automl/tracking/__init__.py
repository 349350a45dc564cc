"""Trackers: MLflow (tracking/mlflow.py, the only place that imports mlflow) and memory; each
task's best child as a registered MLflow model with the alias `champion` (tracking/champion.py)."""

from transfer_automl.tracking.base import TaskData, Tracker, check_tracking_uri
from transfer_automl.tracking.memory import MemoryTracker

__all__ = ["MemoryTracker", "TaskData", "Tracker", "check_tracking_uri"]
