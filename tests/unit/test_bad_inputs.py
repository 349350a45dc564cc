"""Every case of the bad-input corpus (tests/bad_inputs/, made by make_corpus.py): one error line
that names the problem, exit code 2, no traceback, and nothing already written changes."""

from __future__ import annotations

import hashlib
import shlex
import shutil
from pathlib import Path

import pytest

from transfer_automl.cli import main

CORPUS = Path(__file__).resolve().parents[1] / "bad_inputs"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "args").is_file())


def _snapshot(root: Path) -> dict[str, str]:
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 100


@pytest.mark.parametrize("name", CASES)
def test_bad_input_gets_one_clear_line_and_exit_2(name, tmp_path, capsys, samples_dir):
    case = tmp_path / "case"
    shutil.copytree(CORPUS / name, case)
    out = tmp_path / "out"
    if (case / "out").is_dir():
        shutil.copytree(case / "out", out)
        settings = out / "settings.json"  # the search recorded its table inside the case folder
        if settings.is_file():
            settings.write_text(settings.read_text().replace("{case}", str(case)))
    before = _snapshot(out)
    args = (case / "args").read_text().strip().format(case=case, out=out, samples=samples_dir)
    expect = (case / "expect").read_text().strip()

    try:
        code = main(shlex.split(args))
    except SystemExit as exit_info:  # argparse errors exit from inside main
        code = exit_info.code
    err = capsys.readouterr().err.strip().splitlines()

    assert code == 2, f"{name}: exit code {code}, stderr {err}"
    assert len(err) == 1, f"{name}: expected one line, got {err}"
    assert "Traceback" not in err[0]
    assert expect in err[0], f"{name}: {expect!r} not in {err[0]!r}"
    after = _snapshot(out)
    assert {k: v for k, v in after.items() if k in before} == before, f"{name}: files already written changed"
