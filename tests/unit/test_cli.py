from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from transfer_automl.cli import main

TAML = Path(sys.executable).parent / "taml"
BENCHMARKS = Path(__file__).resolve().parents[3] / "shared" / "data" / "benchmarks"
IMAGES = Path(__file__).resolve().parents[3] / "shared" / "data" / "images"


def _search(tmp_path, *extra, tasks="sms_spam", data_dir=None):
    args = ["search", "--tasks", tasks, "--trials", "2", "--out", str(tmp_path / "run"), "--no-progress", *extra]
    if data_dir is not None:
        args += ["--data-dir", str(data_dir)]
    return main(args)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def test_unknown_task(tmp_path, capsys, samples_dir):
    assert _search(tmp_path, tasks="sms_spam,no_such_task", data_dir=samples_dir) == 2
    line = _one_error_line(capsys)
    assert "no_such_task" in line and "sms_spam" in line
    assert not (tmp_path / "run").exists()  # nothing written for a rejected command


def test_malformed_space_file(tmp_path, capsys, samples_dir):
    bad = tmp_path / "space.yaml"
    bad.write_text("decisions:\n  - name: layers\n    choices: []\n")
    assert _search(tmp_path, "--space", str(bad), data_dir=samples_dir) == 2
    line = _one_error_line(capsys)
    assert str(bad) in line and "'layers'" in line and "empty" in line


def test_unreadable_parquet(tmp_path, capsys):
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    assert _search(tmp_path, tasks=str(broken)) == 2
    line = _one_error_line(capsys)
    assert str(broken) in line and "Parquet" in line


def test_resume_without_checkpoint(tmp_path, capsys, samples_dir):
    assert _search(tmp_path, "--resume", data_dir=samples_dir) == 2
    assert "checkpoint" in _one_error_line(capsys)


def test_existing_search_is_not_overwritten(tmp_path, capsys, samples_dir):
    ledger = tmp_path / "run" / "ledger"
    ledger.mkdir(parents=True)
    (ledger / "round-000000.parquet").write_bytes(b"keep me")
    assert _search(tmp_path, data_dir=samples_dir) == 2
    assert "already holds a search" in _one_error_line(capsys)
    assert (ledger / "round-000000.parquet").read_bytes() == b"keep me"


@pytest.mark.parametrize("flag, value", [("--trials", "0"), ("--trials", "-3"), ("--budget-scale", "0"),
                                         ("--controller-lr", "nan")])
def test_bad_numbers_exit_2(tmp_path, capsys, flag, value):
    args = ["search", "--tasks", "sms_spam", "--trials", "2", "--out", str(tmp_path), flag, value]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert flag in capsys.readouterr().err


def test_listing_commands(capsys):
    assert main(["spaces"]) == 0
    out = capsys.readouterr().out
    assert "taml-text  (12 decisions" in out and "mnms-text  (7 decisions" in out
    assert main(["modules"]) == 0
    out = capsys.readouterr().out
    assert "glove-6b-50d" in out and "all-minilm-l6-v2" in out


@pytest.mark.slow
def test_installed_command_reports_bad_task_without_traceback(tmp_path, samples_dir):
    env = {**os.environ, "TAML_DATA_DIR": str(samples_dir)}
    proc = subprocess.run([str(TAML), "search", "--tasks", "nope", "--trials", "1", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"taml: error: unknown task 'nope': no {samples_dir}/nope.parquet; "
                                   f"tasks in {samples_dir}: customer_reviews, mpqa, sms_spam")


def _json(capsys) -> dict:
    """The command printed exactly one JSON document on stdout."""
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_json_of_search_runs_and_report(tmp_path, capsys):
    if not (BENCHMARKS / "nasbench201").is_dir():
        pytest.skip("NAS-Bench-201 table not found")
    common = ["--benchmark", "nasbench201", "--data-dir", str(BENCHMARKS), "--trials", "8", "--no-progress", "--json"]
    assert main(["search", *common, "--out", str(tmp_path / "runs" / "a"), "--search-id", "a"]) == 0
    search = _json(capsys)
    assert search["search_id"] == "a" and search["method"] == "reinforce" and search["trials_run"] == 8
    by_task = {t["task"]: t for t in search["tasks"]}
    assert sum(t["trials"] for t in by_task.values()) == 8
    # a sibling random search, without MLflow (the command line's tracking was checked above)
    from transfer_automl.steps.search import run_search
    from transfer_automl.study import SearchSettings
    from transfer_automl.tracking import MemoryTracker

    run_search(SearchSettings(tasks=(), trials=8, out=str(tmp_path / "runs" / "nested" / "b"), method="rs",
                              benchmark="nasbench201", data_dir=str(BENCHMARKS), progress=False, search_id="b"),
               tracker=MemoryTracker())

    (tmp_path / "runs" / "broken").mkdir()
    (tmp_path / "runs" / "broken" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert main(["runs", "list", str(tmp_path / "runs"), "--json"]) == 0
    printed = _json(capsys)
    assert [u["dir"] for u in printed["unreadable"]] == [str(tmp_path / "runs" / "broken")]  # listed, not fatal
    listed = {s["search_id"]: s for s in printed["searches"]}
    assert set(listed) == {"a", "b"} and listed["b"]["method"] == "rs" and listed["a"]["trials"] == 8
    assert listed["a"]["best_val_accuracy"] == {t: s["best_val_accuracy"] for t, s in by_task.items()}

    assert main(["runs", "show", str(tmp_path / "runs" / "a"), "--top", "2", "--json", "--data-dir", str(BENCHMARKS)]) == 0
    shown = _json(capsys)
    assert {s["task"]: s["accuracy_top_n"] for s in shown["summary"]} == {t: s["accuracy_top_n"] for t, s in by_task.items()}
    for task, ranked in shown["best_configs"].items():
        assert len(ranked) == min(2, by_task[task]["trained"])
        assert not ranked or ranked[0]["config"] == by_task[task]["best_config"]

    assert main(["runs", "show", str(tmp_path / "runs" / "a")]) == 0  # the tables, for people
    out = capsys.readouterr().out
    assert "median cell (test)" in out and "best 3 configurations" in out

    report = tmp_path / "report.html"
    assert main(["report", str(tmp_path / "runs" / "nested" / "b"), "--out", str(report), "--json"]) == 0
    written = _json(capsys)
    assert written["out"] == str(report) and written["bytes"] == report.stat().st_size and written["method"] == "rs"
    assert written["figures"] == report.read_text().count("data:image/png;base64,")
    assert "has no controller" in written["omitted"]["similarity"] and "no distance.parquet" in written["omitted"]["distance"]


def test_json_of_listing_commands(capsys, samples_dir):
    assert main(["spaces", "--json"]) == 0
    spaces = {s["name"]: s for s in _json(capsys)["spaces"]}
    assert spaces["taml-text"]["decisions"] == 12 and spaces["mnms-text"]["choices"]["layers"] == [1, 2, 3, 5, 10]
    assert main(["tasks", "--data-dir", str(samples_dir), "--json"]) == 0
    assert _json(capsys) == {"data_dir": str(samples_dir), "tasks": ["customer_reviews", "mpqa", "sms_spam"]}
    assert main(["modules", "--json"]) == 0
    modules = {m["name"]: m for m in _json(capsys)["modules"]}
    assert modules["glove-6b-50d"]["dimension"] == 50 and modules["all-minilm-l6-v2"]["dimension"] == 384


@pytest.mark.slow
def test_json_of_distance(tmp_path, capsys):
    if not (IMAGES / "digits_optdigits.parquet").is_file():
        pytest.skip("image data not found")
    assert main(["distance", "--tasks", "digits_optdigits,digits_optdigits:is0", "--repeats", "1",
                 "--out", str(tmp_path), "--data-dir", str(IMAGES), "--json"]) == 0
    printed = _json(capsys)
    assert printed["tasks"] == ["digits_optdigits", "digits_optdigits:is0"] and len(printed["distances"]) == 4
    assert {(d["source"], d["target"]) for d in printed["distances"] if d["mean"] == 0.0} == {
        ("digits_optdigits", "digits_optdigits"), ("digits_optdigits:is0", "digits_optdigits:is0")}
    assert Path(printed["parquet"]).is_file()


@pytest.mark.parametrize("argv, message", [
    (["report", "{tmp}/nowhere", "--out", "{tmp}/r.html"], "search directory {tmp}/nowhere does not exist"),
    (["runs", "list", "{tmp}/nowhere"], "runs directory {tmp}/nowhere does not exist"),
    (["runs", "show", "{tmp}", "--json"], "search directory {tmp} holds no search"),
    (["report", "{tmp}", "--out", "{tmp}/r.html", "--last", "0"], "--last: must be >= 1, got 0"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse rejects a malformed option itself
        code = exit_info.code
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing half-printed, not even for --json
    assert message.format(tmp=tmp_path) in _one_error_line_of(captured.err)
    assert not (tmp_path / "r.html").exists()


def _one_error_line_of(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0]


def _parsers(parser, path=("taml",)):
    """(command path, parser) for `parser` and every parser below it in the argparse tree."""
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, (*path, name))


def test_every_help_has_examples_of_its_own_command():
    """Walks the whole argparse tree: the top level, each group (runs, pipeline, cluster, bench) and
    every command below, so a command added later without examples fails here."""
    from transfer_automl.cli import build_parser

    walked = list(_parsers(build_parser()))
    assert {" ".join(p) for p, _ in walked} >= {"taml", "taml runs", "taml pipeline", "taml cluster", "taml bench",
                                                "taml runs sync", "taml pipeline schedule", "taml bench search"}
    for path, parser in walked:
        help_text = parser.format_help()
        assert "examples:\n" in help_text, f"{' '.join(path)} --help has no examples"
        examples = help_text.split("examples:\n", 1)[1].splitlines()
        assert any(line.strip().startswith(" ".join(path) + " ") for line in examples), (path, examples)
        if path[1:2] in (("search",), ("report",), ("spaces",), ("tasks",), ("modules",), ("distance",),
                         ("transfer",)) or path[1:3] in (("runs", "list"), ("runs", "show")):
            assert "--json" in help_text, path


def test_search_help_lists_every_builtin_space(capsys):
    from transfer_automl.space import BUILTIN_SPACES

    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--help"])
    assert exit_info.value.code == 0
    flat = " ".join(capsys.readouterr().out.split())  # argparse wraps the help at any hyphen
    space_help = flat.split("--space SPACE", 1)[1].split(" --method ", 1)[0].replace("- ", "-")
    assert len(BUILTIN_SPACES) >= 4
    for name in BUILTIN_SPACES:
        assert name in space_help, (name, space_help)


def _taml(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    """The command from this checkout's source (the installed `taml` may be another checkout's)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    return subprocess.run([sys.executable, "-m", "transfer_automl.cli", *argv], env=env, timeout=120, **kwargs)


def test_version_comes_from_the_package_metadata():
    import tomllib
    from importlib.metadata import version

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    proc = _taml("--version", capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout == f"taml {version('transfer-automl')}\n" == f"taml {pyproject['project']['version']}\n"


def test_a_closed_pipe_ends_the_command_quietly(tmp_path):
    """`taml runs list --json | head`: the reader is gone before taml writes (the read end is
    closed first, so every write fails): no traceback, no message, the exit status of SIGPIPE."""
    for argv in (["runs", "list", str(tmp_path), "--json"], ["spaces"]):
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            proc = _taml(*argv, stdout=write_end, stderr=subprocess.PIPE, text=True)
        finally:
            os.close(write_end)
        assert proc.stderr == "" and proc.returncode == 141, (argv, proc.returncode, proc.stderr)
