"""Task registry and loaders: text tasks from Parquet, with fixed splits."""

from transfer_automl.tasks.registry import available_tasks, data_dir, load_task, resolve_task
from transfer_automl.tasks.text import SPLITS, TextTask, load_text_task

__all__ = ["SPLITS", "TextTask", "available_tasks", "data_dir", "load_task", "load_text_task", "resolve_task"]
