"""Trackers: MLflow (tracking/mlflow.py, the only place that imports mlflow) and memory."""

from transfer_automl.tracking.base import Tracker
from transfer_automl.tracking.memory import MemoryTracker

__all__ = ["MemoryTracker", "Tracker"]
