"""Artifact storage. For now the local file system; S3 arrives with the storage issue."""

from transfer_automl.storage.local import atomic_write

__all__ = ["atomic_write"]
