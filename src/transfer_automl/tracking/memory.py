"""In-memory tracker for tests: keeps everything it is told."""

from __future__ import annotations

from typing import Any

from transfer_automl.tracking.base import Tracker


class MemoryTracker(Tracker):
    location = "memory"

    def __init__(self) -> None:
        self.search_id = ""
        self.params: dict[str, Any] = {}
        self.controller: list[tuple[int, dict[str, float]]] = []
        self.trials: list[dict[str, Any]] = []
        self.summary: dict[str, float] = {}
        self.status = ""
        self.artifacts: list[str] = []
        self.datasets: list[Any] = []  # TaskData

    def start(self, search_id, params, tags):
        self.search_id, self.params = search_id, dict(params)

    def log_controller(self, step, metrics):
        self.controller.append((step, dict(metrics)))

    def log_datasets(self, datasets):
        self.datasets = list(datasets)

    def log_trial(self, row, config):
        if any(t["trial_id"] == row["trial_id"] for t in self.trials):
            return  # idempotent, like the MLflow tracker
        self.trials.append({**row, "params": dict(config)})

    def log_artifact(self, path):
        self.artifacts.append(str(path))

    def finish(self, summary, status="FINISHED"):
        self.summary, self.status = dict(summary), status
