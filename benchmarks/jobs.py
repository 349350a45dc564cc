"""Run a benchmark's jobs, in worker processes when asked, with one progress bar."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Sequence
from typing import Any


def run_jobs(run_job: Callable[..., list], jobs: Sequence[tuple], workers: int, progress: bool, desc: str) -> list:
    """The concatenated results of `run_job(*job)` for every job. With workers > 1 the jobs run in
    spawned processes (so `run_job` must be a module-level function), in the order they finish."""
    from tqdm import tqdm

    results: list[Any] = []
    bar = tqdm(total=len(jobs), disable=not progress, unit="job", desc=desc)
    if workers > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            for result in pool.imap_unordered(_call, [(run_job, job) for job in jobs]):
                results.extend(result)
                bar.update()
    else:
        for job in jobs:
            results.extend(run_job(*job))
            bar.update()
    bar.close()
    return results


def _call(function_and_job: tuple[Callable[..., list], tuple]) -> list:
    function, job = function_and_job
    return function(*job)
