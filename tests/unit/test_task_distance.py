"""Image tasks, diagonal Fisher, the fisher_ld and embedding_cosine distances, `taml distance`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

from transfer_automl.cli import main
from transfer_automl.errors import ConfigError, TaskError
from transfer_automl.tasks.images import load_image_task, pool_images
from transfer_automl.transfer import (
    DISTANCES,
    EmbeddingCosine,
    FisherLogDet,
    fisher_ld,
    get_distance,
    register_distance,
)
from transfer_automl.transfer.fisher import ProbeConfig, ProbeData, diagonal_fisher

SHARED_IMAGES = Path(__file__).resolve().parents[3] / "shared" / "data" / "images"


@pytest.fixture(scope="module")
def images() -> Path:
    if not (SHARED_IMAGES / "digits_optdigits.parquet").is_file():
        pytest.skip(f"shared image data not found at {SHARED_IMAGES}")
    return SHARED_IMAGES


# ---------------------------------------------------------------- diagonal Fisher (numeric)

def test_diagonal_fisher_by_hand_linear_mse():
    # y_hat = w.x + b with w = [1, 2], b = 0.5; loss_i = (y_hat_i - y_i)^2.
    # d loss / dw = 2 r x, d loss / db = 2 r, with residual r = y_hat - y.
    #   x1 = [1, 0], y1 = 1: y_hat = 1.5, r = 0.5 -> grad w = [1, 0], grad b = 1
    #   x2 = [0, 1], y2 = 0: y_hat = 2.5, r = 2.5 -> grad w = [0, 5], grad b = 5
    # F = mean of squares: w = [(1 + 0)/2, (0 + 25)/2] = [0.5, 12.5], b = (1 + 25)/2 = 13.
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0]]))
        model.bias.copy_(torch.tensor([0.5]))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([[1.0], [0.0]])
    fisher = diagonal_fisher(model, x, y, loss_fn=nn.functional.mse_loss)
    torch.testing.assert_close(fisher, torch.tensor([0.5, 12.5, 13.0]))


def test_diagonal_fisher_by_hand_logistic():
    # Two logits z = W x, W = 0 (bias off): p = [1/2, 1/2]; d(-log p_y)/dW = (p - onehot(y)) x^T.
    # x = [2], y = 0: grad = [[-1], [1]] -> squares [1, 1]; x = [1], y = 1: grad = [[0.5], [-0.5]] -> [0.25, 0.25].
    # F = [(1 + 0.25)/2, (1 + 0.25)/2] = [0.625, 0.625].
    model = nn.Linear(1, 2, bias=False)
    nn.init.zeros_(model.weight)
    fisher = diagonal_fisher(model, torch.tensor([[2.0], [1.0]]), torch.tensor([0, 1]))
    torch.testing.assert_close(fisher, torch.tensor([0.625, 0.625]))


def test_diagonal_fisher_matches_a_per_sample_loop_and_ignores_batch_size():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3))
    x, y = torch.randn(7, 3), torch.randint(3, (7,))
    expected = torch.zeros(sum(p.numel() for p in model.parameters()))
    for i in range(7):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        expected += torch.cat([p.grad.reshape(-1) for p in model.parameters()]) ** 2 / 7
    torch.testing.assert_close(diagonal_fisher(model, x, y, batch_size=3), expected)
    torch.testing.assert_close(diagonal_fisher(model, x, y, batch_size=64), expected)


def test_fisher_ld_formula():
    # sigma = 1: log(F + 1) of F_bt = [e - 1, e^3 - 1] is [1, 3], mean 2; of F_tt = [0, 0] it is 0.
    f_bt = [math.e - 1, math.e**3 - 1]
    assert fisher_ld(f_bt, [0.0, 0.0], sigma=1.0) == pytest.approx(2.0)
    assert fisher_ld([0.0, 0.0], f_bt, sigma=1.0) == pytest.approx(2.0)
    assert fisher_ld(f_bt, f_bt) == 0.0
    with pytest.raises(ConfigError, match="differ in size"):
        fisher_ld([1.0], [1.0, 2.0])


def test_pool_images_to_common_size():
    flat = np.arange(16, dtype=np.float32).reshape(1, 16) / 15
    pooled = pool_images(flat, 4, 4, size=2)  # 2x2 block means of a 4x4 ramp
    np.testing.assert_allclose(pooled * 15, [[2.5, 4.5, 10.5, 12.5]])
    np.testing.assert_allclose(pool_images(flat, 4, 4, size=4), flat)


# ---------------------------------------------------------------- fisher_ld properties

def _blobs(name: str, seed: int, label_of, scale: float = 1.0, n: int = 240) -> ProbeData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g) * scale
    y = label_of(x).long()
    return ProbeData(name=name, modality="image", x_train=x[:200], y_train=y[:200], x_fisher=x[200:],
                     y_fisher=y[200:], num_classes=int(y.max()) + 1)


def test_fisher_ld_matrix_properties_on_constructed_tasks():
    tasks = [
        _blobs("sign0", 1, lambda x: x[:, 0] > 0),
        _blobs("sign1", 2, lambda x: x[:, 1] > 0, scale=3.0),
        _blobs("quadrant", 3, lambda x: (x[:, 0] > 0) * 2 + (x[:, 1] > 0)),
    ]
    config = ProbeConfig(hidden=8, steps=40, batch_size=32, lr=0.05)
    result = FisherLogDet(sigma=1e-3, config=config).matrix(tasks, repeats=2, seed=0)
    assert result.names == ["sign0", "sign1", "quadrant"]
    assert result.mean.shape == result.std.shape == (3, 3)
    np.testing.assert_array_equal(np.diag(result.mean), 0.0)
    np.testing.assert_array_equal(np.diag(result.std), 0.0)
    assert np.isfinite(result.mean).all() and (result.mean >= 0).all() and (result.std >= 0).all()
    assert np.abs(result.mean - result.mean.T).max() > 1e-3  # d[b, t] != d[t, b] for some pair
    again = FisherLogDet(sigma=1e-3, config=config).matrix(tasks, repeats=2, seed=0)
    np.testing.assert_allclose(again.mean, result.mean)  # same seed, same matrix
    assert result.settings["head_width"] == 4
    rows = result.rows()
    assert len(rows) == 9 and rows[1] == {"source": "sign0", "target": "sign1", "mean": result.mean[0, 1],
                                          "std": result.std[0, 1]}


def test_distance_registry():
    assert {"fisher_ld", "embedding_cosine"} <= set(DISTANCES)
    assert isinstance(get_distance("fisher_ld", sigma=0.1), FisherLogDet)
    with pytest.raises(ConfigError, match="unknown task distance"):
        get_distance("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_distance("fisher_ld")(type("Other", (), {}))
    with pytest.raises(ConfigError, match="sigma"):
        FisherLogDet(sigma=0.0)


# ---------------------------------------------------------------- image tasks

def test_image_task_derivation_on_digits(images):
    raw = pq.read_table(images / "digits_optdigits.parquet").column("label").to_pylist()
    full = load_image_task("digits_optdigits", images)
    assert full.classes == [str(d) for d in range(10)]
    assert full.pixels.shape == (len(raw), 64) and full.pixels.dtype == np.float32
    assert 0.0 <= full.pixels.min() and full.pixels.max() <= 1.0
    assert [full.classes[i] for i in full.labels] == raw
    # Given train/test, 10 % of train held out as validation; splits partition the rows.
    sizes = {k: len(v) for k, v in full.splits.items()}
    assert sizes == {"train": 3441, "validation": 382, "test": 1797}
    assert sorted(np.concatenate(list(full.splits.values())).tolist()) == list(range(len(raw)))

    is3 = load_image_task("digits_optdigits:is3", images)
    assert is3.classes == ["other", "3"]
    np.testing.assert_array_equal(is3.labels, [int(v == "3") for v in raw])
    odd = load_image_task("digits_optdigits:odd_even", images)
    assert odd.classes == ["even", "odd"]
    np.testing.assert_array_equal(odd.labels, [int(v) % 2 for v in raw])
    for name in full.splits:
        np.testing.assert_array_equal(odd.splits[name], full.splits[name])  # derived tasks keep the split


def _image_file(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_image_task_null_split_is_fixed_80_10_10(tmp_path):
    rows = [{"pixels": bytes([i % 256] * 4), "height": 2, "width": 2, "label": str(i % 3), "split": None}
            for i in range(50)]
    _image_file(tmp_path / "tiny.parquet", rows)
    a = load_image_task("tiny", tmp_path)
    b = load_image_task("tiny:is2", tmp_path)
    assert {k: len(v) for k, v in a.splits.items()} == {"train": 40, "validation": 5, "test": 5}
    for k in a.splits:
        np.testing.assert_array_equal(a.splits[k], b.splits[k])
    np.testing.assert_allclose(a.pixels[1], [1 / 255] * 4, rtol=1e-6)


@pytest.mark.parametrize(("rows", "name", "match"), [
    ([{"pixels": b"\0" * 4, "height": 2, "width": 2, "label": "1"}], "bad", r"lacks column\(s\) \['split'\]"),
    ([{"pixels": b"\0" * 3, "height": 2, "width": 2, "label": "1", "split": None}], "bad",
     r"column 'pixels' row 0 has 3 bytes; height\*width = 2\*2 = 4"),
    ([{"pixels": b"\0" * 4, "height": 2, "width": 2, "label": "1", "split": None}], "bad:istwo",
     r"label 'two' does not occur"),
    ([{"pixels": b"\0" * 4, "height": 2, "width": 2, "label": "1", "split": None}], "bad:rotated",
     r"unknown derived task 'rotated'"),
    ([{"pixels": b"\0" * 4, "height": 2, "width": 2, "label": "cat", "split": None}], "bad:odd_even",
     r"non-integer value 'cat'"),
])
def test_image_task_errors_name_file_and_column(tmp_path, rows, name, match):
    _image_file(tmp_path / "bad.parquet", rows)
    with pytest.raises(TaskError, match=match):
        load_image_task(name, tmp_path)


def test_unknown_image_source(tmp_path):
    with pytest.raises(TaskError, match="unknown image task 'nope'"):
        load_image_task("nope", tmp_path)


# ---------------------------------------------------------------- embedding_cosine

@pytest.mark.parametrize("method", ["reinforce", "transformer"])
def test_embedding_cosine_from_a_checkpoint(tmp_path, method):
    from transfer_automl.search import make_search, save_checkpoint
    from transfer_automl.space import TAML_TEXT

    state = make_search(method, TAML_TEXT, ["a", "b", "c"], "s").state_dict()
    key = next(k for k in state["controller_state"] if k.endswith("task_embeddings.weight"))
    weights = state["controller_state"][key]
    weights[1] = 3.0 * weights[0]  # b points the same way as a
    weights[2] = -weights[0]  # c the opposite way
    save_checkpoint(tmp_path / "checkpoint.pt", state)

    distance = get_distance("embedding_cosine", checkpoint=tmp_path / "checkpoint.pt")
    assert isinstance(distance, EmbeddingCosine) and distance.tasks == ["a", "b", "c"]
    np.testing.assert_allclose(distance.similarity(), [[1, 1, -1], [1, 1, -1], [-1, -1, 1]], atol=1e-9)
    result = distance.matrix(["c", "a"])
    np.testing.assert_allclose(result.mean, [[0, 2], [2, 0]], atol=1e-9)
    assert distance.distance("a", "b") == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(TaskError, match="not in checkpoint"):
        distance.similarity(["a", "zzz"])


# ---------------------------------------------------------------- CLI

def test_cli_distance_unknown_task_exits_2(tmp_path, capsys):
    code = main(["distance", "--tasks", "no_such_source,also_missing:is1", "--out", str(tmp_path / "out"),
                 "--modality", "image", "--data-dir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_such_source" in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_distance_real_digits_run(images, tmp_path, capsys):
    tasks = ["digits_optdigits", "digits_optdigits:is0", "digits_optdigits:odd_even"]
    out = tmp_path / "out"
    assert main(["distance", "--tasks", ",".join(tasks), "--out", str(out), "--repeats", "2",
                 "--data-dir", str(images)]) == 0
    assert "digits_optdigits:odd_even" in capsys.readouterr().out
    table = pq.read_table(out / "distance.parquet")
    assert table.column_names == ["source", "target", "mean", "std"] and table.num_rows == 9
    rows = table.to_pylist()
    assert all(math.isfinite(r["mean"]) and math.isfinite(r["std"]) and r["mean"] >= 0 for r in rows)
    assert all(r["mean"] == 0.0 for r in rows if r["source"] == r["target"])
    assert any(r["mean"] > 0 for r in rows if r["source"] != r["target"])
    assert (out / "distance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
