"""Where children train: CUDA when present, else CPU with all cores and no oversubscription."""

from __future__ import annotations

import os

import torch


def pick_device(preference: str = "auto") -> torch.device:
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


def cpu_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. a container's CPU set), not the host's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def configure_cpu_threads(workers: int = 1) -> int:
    """Give each of `workers` processes an equal share of the cores as torch intra-op threads.

    With one worker a child uses every core; with several, cores // workers each, so the workers
    together never run more threads than there are cores. Returns the thread count set.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    threads = max(1, cpu_cores() // workers)
    torch.set_num_threads(threads)
    return threads
