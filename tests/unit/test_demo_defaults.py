"""`taml search` defaults to the best controller setting measured in docs/benchmarks/ (REINFORCE,
learning rate 0.01, an update every 5 trials); `--paper` gives the papers' (1e-4, every trial);
`make run` is a CPU demo whose every command parses."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from transfer_automl.cli import build_parser, main
from transfer_automl.search import load_checkpoint
from transfer_automl.study.settings import MEASURED_CONTROLLER_LR, PAPER_SETTINGS

REPO = Path(__file__).resolve().parents[2]


def _search(tmp_path: Path, toy_table: Path, name: str, *extra: str) -> tuple[dict, dict]:
    out = tmp_path / name
    assert main(["search", "--table", str(toy_table), "--metric-columns", "t1,t2", "--trials", "10",
                 "--out", str(out), "--no-progress", *extra]) == 0
    return json.loads((out / "settings.json").read_text()), load_checkpoint(out / "checkpoint.pt")


def test_the_default_is_the_measured_setting_and_paper_is_one_flag_away(tmp_path, toy_table):
    settings, body = _search(tmp_path, toy_table, "default")
    assert settings["method"] == "reinforce" and settings["batch_size"] == 5
    assert body["update_config"]["learning_rate"] == MEASURED_CONTROLLER_LR["reinforce"] == 0.01
    assert body["step"] == 2  # 10 trials, an update every 5

    settings, body = _search(tmp_path, toy_table, "paper", "--paper")
    assert (settings["batch_size"], settings["controller_lr"]) == (1, 1e-4) == \
        (PAPER_SETTINGS["batch_size"], PAPER_SETTINGS["controller_lr"])
    assert body["update_config"]["learning_rate"] == 1e-4 and body["step"] == 10

    settings, body = _search(tmp_path, toy_table, "given", "--paper", "--controller-lr", "0.003")
    assert body["update_config"]["learning_rate"] == 0.003 and settings["batch_size"] == 1  # a flag given wins

    _, body = _search(tmp_path, toy_table, "pqt", "--method", "pqt")
    assert body["update_config"]["learning_rate"] == 5e-4  # other methods keep their paper's step size


def _run_recipe() -> list[list[str]]:
    text = (REPO / "Makefile").read_text()
    variables = dict(re.findall(r"^(DEMO_\w+) := (.*)$", text, flags=re.M))
    recipe = re.search(r"^run:\n((?:\t.*\n)+)", text, flags=re.M).group(1).replace("\\\n", " ")
    commands = []
    for line in recipe.splitlines():
        line = re.sub(r"\$\((DEMO_\w+)\)", lambda m: variables[m.group(1)], line.strip())
        words = shlex.split(line)
        if "$(VENV)/bin/taml" in words:
            commands.append(words[words.index("$(VENV)/bin/taml") + 1:])
    return commands


def test_make_run_is_a_cpu_demo_of_search_transfer_and_report():
    commands = _run_recipe()
    assert [c[0] for c in commands] == ["search", "transfer", "search"]
    parser = build_parser()
    parsed = [parser.parse_args(c) for c in commands]  # every flag exists (argparse exits otherwise)
    first, transfer, second = parsed
    assert first.space == "taml-text-cpu" and first.budget_scale == 1.0 and first.trial_timeout <= 30
    assert first.trials <= 60 and len(first.tasks) == 3  # the demo's size
    assert transfer.target not in first.tasks and transfer.source == first.out
    assert second.resume and second.out == transfer.out
    assert first.report and second.report and first.report != second.report  # each ends with its report


def test_a_search_grown_after_a_short_round_adds_rounds(tmp_path, toy_table):
    """With 5 trials per update by default, `--trials 2` tells a round of 2; `--resume --trials 3`
    must add a round of 1, not find the search complete (rounds count told trials, not steps)."""
    import pyarrow.dataset as ds

    out = tmp_path / "s"
    base = ["search", "--table", str(toy_table), "--metric-columns", "t1,t2", "--method", "rs", "--out", str(out),
            "--no-progress"]
    assert main([*base, "--trials", "2"]) == 0
    assert main(["search", "--out", str(out), "--resume", "--trials", "3", "--no-progress"]) == 0
    assert main(["search", "--out", str(out), "--resume", "--trials", "14", "--no-progress"]) == 0
    steps = ds.dataset(out / "ledger").to_table().column("controller_step").to_pylist()
    assert sorted(steps) == [0, 0, 1] + [2] * 5 + [3] * 5 + [4]  # 2, 1, then 5, 5 and the last 1
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 5
