"""Self-describing search checkpoints, checksummed, in any ArtifactStore.

A checkpoint holds: format version, the search method's name, the search space (and its
fingerprint), task names, the step, the sampling generator's state and the search id; for a
controller search also the controller kind, config and weights and the update rule's state
(optimizer, per-task baselines, replay bank or priority queues); for RE and TPE their
populations and histories. It holds only tensors, numbers, strings, lists and dicts.

On disk (or S3) it is `torch.save` bytes framed with their SHA-256 by the store
(`put_with_checksum`: one atomic write, so checksum and body never disagree): loading verifies
the checksum, then `torch.load(weights_only=True)` unpickles nothing. A truncated or altered
checkpoint is refused naming the file. Format 1 (before checksums) was a bare `torch.save`
file; this version refuses it with a message saying so rather than loading it unverified.
`read_checkpoint_file` gives the body of a file for tools and tests that used `torch.load`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transfer_automl.errors import CheckpointError, StorageError
from transfer_automl.space import SearchSpace
from transfer_automl.storage import split_uri
from transfer_automl.storage.base import has_checksum_header, unframe_checksum

if TYPE_CHECKING:
    from transfer_automl.storage import ArtifactStore

FORMAT_VERSION = 2  # 2: SHA-256 framed; 1: a bare torch.save file
# Every search's state has these; controller searches add controller and update-rule state,
# which `ControllerSearch.from_checkpoint` checks.
REQUIRED_KEYS = (
    "format_version", "name", "space", "space_fingerprint", "tasks", "step", "search_id", "generator_state",
)
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's zip container: how a format-1 checkpoint starts


def _locate(path: str | Path, store: ArtifactStore | None) -> tuple[ArtifactStore, str, str]:
    """(store, key, name for messages): `path` is a key of `store`, or a local path or s3:// uri."""
    if store is not None:
        return store, str(path), store.join(str(path))
    try:
        parent, key = split_uri(path)
    except StorageError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from None
    return parent, key, str(path)


def save_checkpoint(path: str | Path, payload: dict[str, Any], *, store: ArtifactStore | None = None) -> None:
    """Write `payload` (plus format_version) atomically to `path` (a local path or s3:// uri, or
    a key of `store`), framed with its SHA-256."""
    import torch

    body = {"format_version": FORMAT_VERSION, **payload}
    missing = [k for k in REQUIRED_KEYS if k not in body]
    if missing:
        raise CheckpointError(f"checkpoint payload lacks {missing}")
    buffer = io.BytesIO()
    torch.save(body, buffer)
    target, key, _ = _locate(path, store)
    target.put_with_checksum(key, buffer.getvalue())


def read_checkpoint_file(path: str | Path, *, store: ArtifactStore | None = None) -> Any:
    """The verified, unpickled-nothing body of a checkpoint file, without any field checks."""
    import torch

    target, key, name = _locate(path, store)
    try:
        raw = target.get_bytes(key)
    except StorageError as exc:
        if not target.exists(key):
            raise CheckpointError(f"checkpoint {name} does not exist") from None
        raise CheckpointError(f"checkpoint {name} is unreadable ({exc})") from None
    if not has_checksum_header(raw):
        if raw.startswith(_ZIP_MAGIC):
            raise CheckpointError(
                f"checkpoint {name} has no SHA-256 header: it is a format_version 1 checkpoint of an older taml, "
                f"which this taml (format_version {FORMAT_VERSION}, checksummed) does not load; start a new search")
        raise CheckpointError(f"checkpoint {name} is unreadable: no SHA-256 header, not a transfer-automl checkpoint")
    try:
        payload = unframe_checksum(raw, name)
    except StorageError as exc:
        raise CheckpointError(f"checkpoint {exc.args[0]}") from None
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises a zoo of types for foreign payloads
        raise CheckpointError(f"checkpoint {name} is unreadable ({type(exc).__name__}: {str(exc)[:200]})") from None


def load_checkpoint(path: str | Path, space: SearchSpace | None = None, tasks: list[str] | None = None, *,
                    store: ArtifactStore | None = None) -> dict[str, Any]:
    """Load and check a checkpoint; refuse a corrupt one, or one for another format, space or task list."""
    name = _locate(path, store)[2]
    body = read_checkpoint_file(path, store=store)
    if not isinstance(body, dict):
        raise CheckpointError(f"checkpoint {name} is not a transfer-automl checkpoint")
    version = body.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {name}: format_version {version!r}, this taml reads {FORMAT_VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in body]
    if missing:
        raise CheckpointError(f"checkpoint {name} lacks field(s) {missing}")
    _check_fields(body, name)
    if space is not None and body["space_fingerprint"] != space.fingerprint():
        raise CheckpointError(
            f"checkpoint {name} is for search space fingerprint {body['space_fingerprint']}, "
            f"not {space.fingerprint()} ({space.name})"
        )
    if tasks is not None and list(body["tasks"]) != list(tasks):
        raise CheckpointError(f"checkpoint {name} is for tasks {body['tasks']}, not {tasks}")
    return body


def _check_fields(body: dict[str, Any], name: str) -> None:
    """The fields every reader relies on, typed and in range: a checksum proves the bytes are the
    ones written, not that what was written makes sense."""
    step = body["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"checkpoint {name}: step must be an integer >= 0, got {step!r}")
    for key in ("name", "search_id", "space_fingerprint"):
        if not isinstance(body[key], str) or not body[key]:
            raise CheckpointError(f"checkpoint {name}: {key} must be a non-empty string, got {body[key]!r}")
    tasks = body["tasks"]
    if not isinstance(tasks, list | tuple) or not tasks or not all(isinstance(t, str) and t for t in tasks):
        raise CheckpointError(f"checkpoint {name}: tasks must be a non-empty list of names, got {tasks!r}")
    if len(set(tasks)) != len(tasks):
        raise CheckpointError(f"checkpoint {name}: tasks {list(tasks)} lists a task more than once")
    generator_state = body["generator_state"]
    if not (hasattr(generator_state, "dtype") and str(generator_state.dtype) == "torch.uint8"):
        raise CheckpointError(f"checkpoint {name}: generator_state must be a torch.ByteTensor, got "
                              f"{type(generator_state).__name__}")
    if not isinstance(body["space"], dict):
        raise CheckpointError(f"checkpoint {name}: space must be a mapping, got {type(body['space']).__name__}")
