"""`--pack K` runs the same search as one child at a time.

"The same search", when packed, means (and these tests check):

1. the same trials: every round asks the same trial ids, configurations and child seeds
   (`trial_seed(seed, step, index)`), whatever K is; asking never depends on how children train;
2. the same children up to float rounding when no child draws dropout: each packed child starts
   from the weights and batch order it gets alone (children/packing.py), so its validation and
   test accuracy are within 0.011 of one-at-a-time training (one flipped prediction of the ~100
   validation rows of a sample task), and the whole search, rewards and controller included,
   follows the same path;
3. with dropout, within a stated tolerance: packed dropout masks come from another random
   stream (and on CUDA the kernels differ), so a child's accuracy moves by training noise. We
   allow 0.15 for a single child and 0.05 for the mean over the search (measured on CPU with the
   sample tasks: max 0.050, mean 0.004; `pytest -s` prints them). Controller searches then see slightly different rewards, so from round
   1 on their configurations may differ; random search (`rs`) never does, so it is the method
   used to compare accuracies trial by trial.
"""

from __future__ import annotations

import pytest

from transfer_automl.study import Study
from transfer_automl.study.study import resolve_pack
from transfer_automl.tracking import MemoryTracker

SINGLE_CHILD_TOLERANCE = 0.15
MEAN_TOLERANCE = 0.05

# Few shapes (children/packing.py `pack_key`: the wide tower on or off), so children do pack; what
# makes children differ within a shape varies: learning rates, regularization, steps, dropout, task.
SPACE = """
name: tiny-text
decisions:
  - {name: input_module, choices: [random-hashed-64]}
  - {name: fine_tune, choices: [false]}
  - {name: hidden_layers, choices: [2]}
  - {name: hidden_size, choices: [16]}
  - {name: activation, choices: [relu]}
  - {name: normalization, choices: [layer]}
  - {name: dropout, choices: DROPOUT}
  - {name: deep_lr, choices: [0.1, 0.3]}
  - {name: deep_reg, choices: [0.0, 0.001]}
  - {name: wide_lr, choices: [0.1]}
  - {name: wide_reg, choices: [disable_wide_tower, 0.0]}
  - {name: training_samples, choices: [3000, 10000]}
"""


@pytest.fixture()
def pack_sizes(monkeypatch) -> list[int]:
    """The sizes of the packs PackedTextTrainer trained (proof that packing happened)."""
    from transfer_automl.children.packing import PackedTextTrainer

    sizes: list[int] = []
    original = PackedTextTrainer.train_many

    def spy(self, items):
        out = original(self, items)
        sizes.extend(self.last_pack_sizes)
        return out

    monkeypatch.setattr(PackedTextTrainer, "train_many", spy)
    return sizes


def _search(tmp_path, samples_dir, name: str, pack: int, dropout: str, method: str = "rs", rounds: int = 2):
    space = tmp_path / f"space-{dropout}.yaml"
    space.write_text(SPACE.replace("DROPOUT", dropout))
    study = Study.open({"tasks": ["mpqa", "customer_reviews"], "out": str(tmp_path / name), "space": str(space),
                        "data_dir": str(samples_dir), "method": method, "seed": 7, "batch_size": 6,
                        "trials": 6 * rounds, "pack": pack, "progress": False, "search_id": "p"},
                       tracker=MemoryTracker())
    trials, rows = [], []
    for step in study.pending_rounds():
        asked = study.ask_round(step)
        trials.append([(t.trial_id, t.config) for t in asked])
        got = study.run_trials(asked)
        rows.append(got)
        study.tell_round(step, got)
    study.release()
    return trials, rows


@pytest.mark.slow
def test_packed_search_without_dropout_is_the_same_search(tmp_path, samples_dir, pack_sizes):
    alone_trials, alone = _search(tmp_path, samples_dir, "alone", 1, "[0.0]", method="reinforce")
    assert pack_sizes == []  # pack 1: one at a time, the plain trainer
    packed_trials, packed = _search(tmp_path, samples_dir, "packed", 6, "[0.0]", method="reinforce")
    assert sum(pack_sizes) == 12 and max(pack_sizes) > 1, pack_sizes  # grouped by shape within each round
    assert packed_trials == alone_trials  # the same trial ids and configurations, round after round
    for round_alone, round_packed in zip(alone, packed, strict=True):
        for a, p in zip(round_alone, round_packed, strict=True):
            assert (a.trial_id, a.config, a.status) == (p.trial_id, p.config, p.status)
            assert p.val_accuracy == pytest.approx(a.val_accuracy, abs=0.011), a.trial_id
            assert p.test_accuracy == pytest.approx(a.test_accuracy, abs=0.011), a.trial_id


@pytest.mark.slow
def test_packed_search_with_dropout_is_within_the_stated_tolerance(tmp_path, samples_dir, pack_sizes):
    alone_trials, alone = _search(tmp_path, samples_dir, "alone", 1, "[0.1, 0.3]")
    packed_trials, packed = _search(tmp_path, samples_dir, "packed", 4, "[0.1, 0.3]")
    assert sum(pack_sizes) == 12 and max(pack_sizes) > 1, pack_sizes
    assert packed_trials == alone_trials
    diffs = [abs(a.val_accuracy - p.val_accuracy) for ra, rp in zip(alone, packed, strict=True)
             for a, p in zip(ra, rp, strict=True)]
    print(f"dropout: |val accuracy packed - alone| max {max(diffs):.3f} mean {sum(diffs) / len(diffs):.3f}")
    assert max(diffs) <= SINGLE_CHILD_TOLERANCE, diffs
    assert sum(diffs) / len(diffs) <= MEAN_TOLERANCE, diffs


def test_pack_is_automatic_on_cuda_only():
    import torch

    from transfer_automl.children.trainer import ChildTrainerConfig, TextChildTrainer
    from transfer_automl.tasks.features import FeatureCache

    trainer = TextChildTrainer(ChildTrainerConfig(), FeatureCache("/nonexistent-cache"))
    trainer.device = torch.device("cpu")
    assert resolve_pack(None, trainer) == 1 and resolve_pack(8, trainer) == 8
    trainer.device = torch.device("cuda")
    assert resolve_pack(None, trainer) == 64 and resolve_pack(2, trainer) == 2
    assert resolve_pack(None, object()) == 1  # a table lookup never packs
