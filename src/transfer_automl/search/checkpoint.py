"""Self-describing search checkpoints.

A checkpoint holds: format version, the search method's name, the search space (and its
fingerprint), task names, the step, the sampling generator's state and the search id; for a
controller search also the controller kind, config and weights and the update rule's state
(optimizer, per-task baselines, replay bank or priority queues); for RE and TPE their
populations and histories. It holds only tensors,
numbers, strings, lists and dicts, so it loads with `torch.load(weights_only=True)`: nothing is
unpickled. Writes go to a temporary file and are renamed into place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from transfer_automl.errors import CheckpointError
from transfer_automl.space import SearchSpace
from transfer_automl.storage import atomic_write

FORMAT_VERSION = 1
# Every search's state has these; controller searches add controller and update-rule state,
# which `ControllerSearch.from_checkpoint` checks.
REQUIRED_KEYS = (
    "format_version", "name", "space", "space_fingerprint", "tasks", "step", "search_id", "generator_state",
)


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    body = {"format_version": FORMAT_VERSION, **payload}
    missing = [k for k in REQUIRED_KEYS if k not in body]
    if missing:
        raise CheckpointError(f"checkpoint payload lacks {missing}")
    atomic_write(path, lambda tmp: torch.save(body, tmp))


def load_checkpoint(path: str | Path, space: SearchSpace | None = None, tasks: list[str] | None = None) -> dict[str, Any]:
    """Load and check a checkpoint; refuse one for another format, space or task list."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        body = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises a zoo of types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(body, dict):
        raise CheckpointError(f"checkpoint {path} is not a transfer-automl checkpoint")
    version = body.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path}: format_version {version!r}, this taml reads {FORMAT_VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in body]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks field(s) {missing}")
    if space is not None and body["space_fingerprint"] != space.fingerprint():
        raise CheckpointError(
            f"checkpoint {path} is for search space fingerprint {body['space_fingerprint']}, "
            f"not {space.fingerprint()} ({space.name})"
        )
    if tasks is not None and list(body["tasks"]) != list(tasks):
        raise CheckpointError(f"checkpoint {path} is for tasks {body['tasks']}, not {tasks}")
    return body
