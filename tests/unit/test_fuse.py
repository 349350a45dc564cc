"""FUSE: alpha moves to the candidate that can fit; rounds keep c* and resample the rest; taml fuse."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from transfer_automl.cli import main
from transfer_automl.errors import ConfigError, SearchSpaceError, TaskError
from transfer_automl.search.fuse import (
    FUSE_IMAGE_SPACE,
    FuseSettings,
    ImageSplits,
    TrainConfig,
    build_candidate,
    fuse_round,
    fuse_search,
    get_fuse_space,
    run_fuse,
    train_candidate,
)

FIT = {"architecture": "mlp", "layers": 1, "width": 16, "activation": "relu", "dropout": 0.0, "learning_rate": 0.05}
CRIPPLED = {**FIT, "learning_rate": 1e-9}  # never moves from its random initialization


def toy_splits(n: int = 600, seed: int = 0) -> ImageSplits:
    """4x4 'images': class 1 has a bright top half, class 0 a bright bottom half (plus noise)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    x = rng.uniform(0, 0.4, size=(n, 1, 4, 4)).astype(np.float32)
    x[y == 1, :, :2, :] += 0.6
    x[y == 0, :, 2:, :] += 0.6
    parts = {"train": slice(0, n // 2), "validation": slice(n // 2, 3 * n // 4), "test": slice(3 * n // 4, n)}
    return ImageSplits("toy", 2, 4, {k: torch.from_numpy(x[s]) for k, s in parts.items()},
                       {k: torch.from_numpy(y[s]).long() for k, s in parts.items()})


@pytest.mark.parametrize("good_slot", [0, 1])
def test_alpha_moves_to_the_candidate_that_can_fit(good_slot):
    data = toy_splits()
    configs = [CRIPPLED, CRIPPLED]
    configs[good_slot] = FIT
    models = [build_candidate(c, 4, 2, seed=i) for i, c in enumerate(configs)]
    alpha = fuse_round(models, [c["learning_rate"] for c in configs], data, TrainConfig(steps=150), alpha_lr=0.05)
    weight = torch.softmax(alpha, 0)
    assert int(alpha.argmax()) == good_slot
    assert weight[good_slot] > 0.8, weight


def test_a_lone_candidate_trains_and_the_crippled_one_stays_at_chance():
    data = toy_splits()
    good = train_candidate(FIT, data, TrainConfig(steps=100))
    bad = train_candidate(CRIPPLED, data, TrainConfig(steps=100))
    assert good["val_accuracy"] > 0.95
    assert bad["val_accuracy"] < 0.8


def test_cnn_candidates_build_and_give_logits_of_the_right_shape():
    for arch in ("cnn3", "cnn5"):
        net = build_candidate({**FIT, "architecture": arch, "layers": 2}, image_size=8, num_classes=10, seed=0)
        assert net(torch.rand(5, 1, 8, 8)).shape == (5, 10)


def test_rounds_keep_the_winner_and_resample_the_others():
    settings = FuseSettings(task="toy", out="unused", candidates=3, budget=9, steps=20, seed=3)
    result = fuse_search(settings, toy_splits(), FUSE_IMAGE_SPACE)
    assert result.rounds == 3 and len(result.rows) == 9
    for r in (1, 2):
        previous = [row for row in result.rows if row["round"] == r - 1]
        winner = next(row for row in previous if row["selected"])
        kept = next(row for row in result.rows if row["round"] == r and row["slot"] == 0)
        assert kept["kept"] and kept["config"] == winner["config"]
    last = [row for row in result.rows if row["round"] == 2]
    assert result.best["config"] == json.loads(next(r for r in last if r["selected"])["config"])
    assert all(abs(sum(r["weight"] for r in result.rows if r["round"] == k) - 1) < 1e-5 for k in range(3))


def test_patience_stops_when_the_winner_repeats():
    space = get_fuse_space(None)
    one = type(space)(space.name + "-one", tuple(type(d)(d.name, d.choices[:1]) for d in space.decisions))
    settings = FuseSettings(task="toy", out="unused", candidates=2, budget=20, steps=5, patience=1)
    assert fuse_search(settings, toy_splits(), one).rounds == 2  # one configuration: c* never changes


def _image_dir(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(300):
        label = int(rng.integers(0, 2))
        img = rng.integers(0, 90, size=(4, 4)).astype(np.uint8)
        img[:2 if label else 4, :] += 150 if label else 0
        rows.append({"pixels": img.tobytes(), "height": 4, "width": 4, "label": str(label),
                     "split": ["train", "train", "train", "validation", "test"][i % 5]})
    (tmp_path / "images").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "images" / "toy.parquet")
    return tmp_path / "images"


def test_run_fuse_writes_the_ledger_and_best(tmp_path):
    settings = FuseSettings(task="toy", out=str(tmp_path / "out"), candidates=2, budget=4, steps=10, image_size=4,
                            data_dir=str(_image_dir(tmp_path)))
    result = run_fuse(settings)
    table = pq.read_table(result.ledger).to_pylist()
    assert len(table) == 4 and {r["round"] for r in table} == {0, 1}
    best = json.loads(result.best_file.read_text())
    assert best["best"]["config"] == result.best["config"] and best["candidate_trainings"] == 4


def test_bad_inputs_name_the_field_and_write_nothing(tmp_path):
    images = str(_image_dir(tmp_path))
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="candidates"):
        run_fuse(FuseSettings(task="toy", out=str(out), candidates=1, data_dir=images))
    with pytest.raises(ConfigError, match="budget"):
        run_fuse(FuseSettings(task="toy", out=str(out), candidates=4, budget=3, data_dir=images))
    with pytest.raises(TaskError, match="nope"):
        run_fuse(FuseSettings(task="nope", out=str(out), data_dir=images))
    bad_space = tmp_path / "bad.yaml"
    bad_space.write_text("name: bad\ndecisions:\n  - {name: layers, choices: [1, 2]}\n")
    with pytest.raises(SearchSpaceError, match="missing"):
        run_fuse(FuseSettings(task="toy", out=str(out), space=str(bad_space), data_dir=images))
    odd = tmp_path / "odd.yaml"
    odd.write_text("decisions:\n" + "".join(
        f"  - {{name: {d.name}, choices: {['gru'] if d.name == 'architecture' else list(d.choices)}}}\n"
        for d in FUSE_IMAGE_SPACE.decisions))
    with pytest.raises(SearchSpaceError, match="architecture.*gru"):
        run_fuse(FuseSettings(task="toy", out=str(out), space=str(odd), data_dir=images))
    assert not out.exists()


def test_taml_fuse_command(tmp_path, capsys):
    images = str(_image_dir(tmp_path))
    code = main(["fuse", "--task", "toy", "--candidates", "2", "--budget", "2", "--steps", "5",
                 "--data-dir", images, "--out", str(tmp_path / "f")])
    assert code == 0 and (tmp_path / "f" / "candidates.parquet").is_file()
    assert "c* after 1 rounds" in capsys.readouterr().out
    assert main(["fuse", "--task", "toy", "--candidates", "3", "--budget", "2", "--data-dir", images,
                 "--out", str(tmp_path / "g")]) == 2
    assert "budget" in capsys.readouterr().err
