"""Run a whole pipeline on this machine through kfp.local (`taml pipeline run --local`).

kfp 2.17's local runner, as used here:
* SubprocessRunner(use_venv=False): every task is a subprocess of this Python, so the project
  image's code is this checkout's; only lightweight Python components run (ours all are).
* It swaps builtins.print for an indenting one around each task and, with tasks running in
  parallel (ParallelFor), restores the wrong one, so logs double after every round: the swap is
  turned off for the run and put back after.
* Its per-task logging context swaps the root logger's handlers the same way, and with tasks in
  parallel leaves its own handler (on the sys.stdout of that moment) behind: the root logger's
  handlers and level are put back after the run too.
* It runs at most 2 tasks at once whatever a ParallelFor's parallelism says, and ignores display
  names, resources and node selectors (it warns once per task); it does honour retries.
* pipeline_root must be a local directory (the Output artifacts land there); the steps write the
  search's own state to search_dir themselves.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def local_session(pipeline_root: str | Path) -> Iterator[Path]:
    """kfp.local initialized for subprocess runs into `pipeline_root`; the global state kfp.local
    keeps (its config and the print swap) is put back afterwards."""
    import logging

    from kfp import local
    from kfp.local import config, logging_utils

    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    saved_print, saved_config = logging_utils.indented_print, config.LocalExecutionConfig.instance
    root_logger = logging.getLogger()
    saved_handlers, saved_level = root_logger.handlers[:], root_logger.level
    logging_utils.indented_print = lambda num_spaces=4: contextlib.nullcontext()
    try:
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
        yield root
    finally:
        logging_utils.indented_print = saved_print
        config.LocalExecutionConfig.instance = saved_config
        root_logger.handlers[:] = saved_handlers
        root_logger.setLevel(saved_level)


def run_local(pipeline_func, params: dict[str, Any], pipeline_root: str | Path) -> Any:
    """Run `pipeline_func(**params)` to completion; a failed task raises (kfp's RuntimeError)."""
    import warnings

    with local_session(pipeline_root), warnings.catch_warnings():
        # The local runner says once per task that it ignores display names and resources.
        warnings.filterwarnings("ignore", message="You may be attemping to run a task", category=RuntimeWarning)
        warnings.filterwarnings("ignore", message="Task .* have no effect in the current local runner")
        return pipeline_func(**params)
