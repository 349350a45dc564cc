"""`taml transfer`: source selection by task distance, embedding warm start, space reduction, and
the command end to end (pretrain, transfer, resume) on the shipped sample tasks."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.dataset as ds
import pytest
import torch
import yaml

from transfer_automl.cli import main
from transfer_automl.errors import CheckpointError, ConfigError, TaskError
from transfer_automl.search import ControllerSearch, load_checkpoint, make_search
from transfer_automl.space import Condition, Decision, SearchSpace, load_space
from transfer_automl.transfer import warm_start as ws
from transfer_automl.transfer.distances import FisherLogDet
from transfer_automl.transfer.fisher import ProbeConfig, ProbeData

TOY = SearchSpace("toy", (Decision("a", (0, 1, 2, 3)), Decision("b", ("x", "y", "z")), Decision("c", (True, False))))
COND = SearchSpace("cond", (
    Decision("kind", ("cnn", "mlp")),
    Decision("kernel", (3, 5, 7), condition=Condition("kind", ("cnn",))),
    Decision("width", (16, 32, 64), condition=Condition("kind", ("mlp",))),
    Decision("lr", (0.1, 0.01)),
))
SOURCES = ["a", "b", "c"]


def _row(task, config, val, status="ok", trial="t"):
    return {"trial_id": trial, "task": task, "config": json.dumps(config), "val_accuracy": val, "status": status}


# ---------------------------------------------------------------- reduce_space


def test_reduce_space_keeps_observed_choices_in_order_and_every_decision():
    rows = [
        _row("src", {"a": 3, "b": "x", "c": True}, 0.9),
        _row("src", {"a": 1, "b": "x", "c": True}, 0.8),
        _row("src", {"a": 0, "b": "z", "c": False}, 0.1),  # below the top 2
        _row("src", {"a": 2, "b": "y", "c": False}, 0.99, status="diverged"),  # not ok: ignored
        _row("src", {"a": 2, "b": "y", "c": False}, float("nan")),  # no accuracy: ignored
        _row("other", {"a": 2, "b": "y", "c": False}, 1.0),  # another task: ignored
    ]
    reduced = ws.reduce_space(TOY, rows, "src", top_k=2)
    assert reduced.name == "toy-reduced-src"
    assert reduced.names == TOY.names  # nothing dropped
    assert [d.choices for d in reduced.decisions] == [(1, 3), ("x",), (True,)]  # original order
    for r in rows[:2]:
        config = json.loads(r["config"])
        assert reduced.decode(reduced.encode(config)) == config
    assert [d.choices for d in ws.reduce_space(TOY, rows, "src", top_k=10).decisions] == [(0, 1, 3), ("x", "z"),
                                                                                         (True, False)]


def test_reduce_space_conditional_keeps_reachable_decisions_valid():
    rows = [_row("s", {"kind": "cnn", "kernel": 5, "lr": 0.1}, 0.7), _row("s", {"kind": "cnn", "kernel": 3, "lr": 0.1}, 0.6)]
    reduced = ws.reduce_space(COND, rows, "s", top_k=5)
    assert reduced.names == ["kind", "kernel", "lr"]  # width can never be active without kind=mlp
    assert reduced.decisions[1].choices == (3, 5) and reduced.decisions[1].condition == Condition("kind", ("cnn",))
    for r in rows:
        config = json.loads(r["config"])
        assert reduced.decode(reduced.encode(config)) == config


def test_reduce_space_errors():
    with pytest.raises(ConfigError, match="no successful .* task 'src'"):
        ws.reduce_space(TOY, [_row("src", {"a": 0, "b": "x", "c": True}, 0.5, status="failed")], "src")
    with pytest.raises(ConfigError, match="does not fit space 'toy'"):
        ws.reduce_space(TOY, [_row("src", {"a": 9, "b": "x", "c": True}, 0.5)], "src")
    with pytest.raises(ConfigError, match="top_k"):
        ws.reduce_space(TOY, [], "src", top_k=0)


# ---------------------------------------------------------------- select_sources


@pytest.fixture()
def fixed_distance(monkeypatch):
    """d[source, target] from a fixed table; records which sources were asked for."""
    table = {"a": 0.7, "b": 0.2, "c": 0.5}
    calls = []

    def fake(distance, sources, target, **kwargs):
        calls.append(list(sources))
        return [table[s] for s in sources]

    monkeypatch.setattr(ws, "distance_to_target", fake)
    return calls


def test_select_sources_closest_all_named_and_errors(fixed_distance):
    assert ws.select_sources("new", SOURCES) == [("b", 0.2)]
    assert ws.select_sources("new", SOURCES, select="all") == [("b", 0.2), ("c", 0.5), ("a", 0.7)]
    assert ws.select_sources("new", SOURCES, select="a") == [("a", 0.7)]
    assert fixed_distance[-1] == ["a"]  # a named source: only its distance is computed
    with pytest.raises(TaskError, match="'nope' is not closest, all or a task"):
        ws.select_sources("new", SOURCES, select="nope")
    with pytest.raises(ConfigError, match="'a' is already a task"):
        ws.select_sources("a", SOURCES)


def test_choose_sources_from_a_ranking():
    ranking = [("b", 0.2), ("c", 0.5), ("a", 0.7)]
    assert ws.choose_sources(ranking, "closest") == [("b", 0.2)]
    assert ws.choose_sources(ranking, "all") == ranking
    assert ws.choose_sources(ranking, "c") == [("c", 0.5)]
    with pytest.raises(TaskError, match="'nope' is not closest, all or one of the ranked tasks"):
        ws.choose_sources(ranking, "nope")


def test_cli_transfer_prints_every_source_task_ranked(monkeypatch, tmp_path, capsys):
    from transfer_automl.steps import transfer_steps

    def fake(settings):
        ranking = [("b", 0.2), ("c", 0.5), ("a", 0.7)]
        return transfer_steps.TransferResult(ws.choose_sources(ranking, settings.select), "reinforce",
                                             tmp_path / "out" / "checkpoint.pt", None, "taml search ...", ranking)

    monkeypatch.setattr(transfer_steps, "run_transfer", fake)
    args = ["transfer", "--target", "new", "--from", str(tmp_path / "pre"), "--out", str(tmp_path / "out")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "all 3 source tasks, closest first (* chosen by --select closest)" in out
    assert [line.split() for line in out.splitlines() if ". " in line and line[:2] in ("* ", "  ")] == [
        ["*", "1.", "b", "0.2000"], ["2.", "c", "0.5000"], ["3.", "a", "0.7000"]]
    assert main([*args, "--select", "c", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [s["task"] for s in printed["ranking"]] == ["b", "c", "a"] and printed["sources"] == [
        {"task": "c", "distance": 0.5}]


def _blobs(name: str, seed: int, label_of, n: int = 260) -> ProbeData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = label_of(x).long()
    return ProbeData(name=name, modality="image", x_train=x[:200], y_train=y[:200], x_fisher=x[200:],
                     y_fisher=y[200:], num_classes=int(y.max()) + 1)


def test_fisher_column_equals_the_matrix_column():
    tasks = [_blobs("s0", 1, lambda x: x[:, 0] > 0), _blobs("s1", 2, lambda x: x[:, 1] > 0),
             _blobs("q", 3, lambda x: (x[:, 0] > 0) * 2 + (x[:, 1] > 0))]
    distance = FisherLogDet(config=ProbeConfig(hidden=8, steps=30, batch_size=32, lr=0.05))
    column = ws.fisher_column(distance, tasks, repeats=2, seed=3)
    np.testing.assert_allclose(column, distance.matrix(tasks, repeats=2, seed=3).mean[:-1, -1])


# ---------------------------------------------------------------- warm_start


@pytest.fixture(scope="module", params=["reinforce", "transformer"])
def pretrained(request, _one_torch_thread):
    search = make_search(request.param, TOY, SOURCES, "pre", seed=0)
    for _ in range(3):
        trials = search.ask(4)
        search.tell(trials, [float(t.config["a"] == 1) for t in trials])
    return search.state_dict()


def _embedding(search: ControllerSearch) -> torch.Tensor:
    params = dict(search.controller.named_parameters())
    return params[ws.task_embedding_key(params)]


def test_warm_start_copies_closest_row_or_mean_or_keeps_random(pretrained):
    key = ws.task_embedding_key(pretrained["controller_state"])
    table = pretrained["controller_state"][key]
    closest = ws.warm_start(pretrained, "new", [("b", 0.2), ("c", 0.5)], embedding="closest", seed=1)
    assert closest.tasks == ["new"]
    assert torch.equal(_embedding(closest)[0], table[1])
    mean = ws.warm_start(pretrained, "new", ["b", "c"], embedding="mean", seed=1)
    torch.testing.assert_close(_embedding(mean)[0], (table[1] + table[2]) / 2)
    random = ws.warm_start(pretrained, "new", ["b"], embedding="random", seed=1)
    fresh = ControllerSearch.transfer_from(pretrained, ["new"], "new-warm-start", seed=1)
    assert torch.equal(_embedding(random), _embedding(fresh))  # transfer_from's random init, untouched
    # shared weights are the pretrained ones; the warm-started search samples and learns
    for name, value in closest.controller.state_dict().items():
        if not name.endswith(ws.TASK_EMBEDDING_SUFFIX) and name in pretrained["controller_state"]:
            if value.shape == pretrained["controller_state"][name].shape:
                assert torch.equal(value, pretrained["controller_state"][name]), name
    trials = closest.ask(2)
    closest.tell(trials, [1.0, 0.0])
    assert closest.step == 1


def test_warm_start_errors(pretrained):
    with pytest.raises(TaskError, match=r"\['zzz'\] are not tasks"):
        ws.warm_start(pretrained, "new", ["zzz"])
    with pytest.raises(ConfigError, match="embedding must be one of"):
        ws.warm_start(pretrained, "new", ["a"], embedding="nearest")
    tpe = make_search("tpe", TOY, SOURCES, "tpe", seed=0).state_dict()
    with pytest.raises(CheckpointError, match="'tpe' search, which has no controller"):
        ws.warm_start(tpe, "new", ["a"])


# ---------------------------------------------------------------- taml transfer, end to end


SMALL_SPACE = {
    "name": "taml-tiny",
    "decisions": [
        {"name": "input_module", "choices": ["random-hashed-64", "glove-6b-50d"]},
        {"name": "fine_tune", "choices": [False]},
        {"name": "hidden_layers", "choices": [1, 2]},
        {"name": "hidden_size", "choices": [16, 32]},
        {"name": "activation", "choices": ["relu", "swish"]},
        {"name": "normalization", "choices": ["none"]},
        {"name": "dropout", "choices": [0.0, 0.1]},
        {"name": "deep_lr", "choices": [0.1]},
        {"name": "deep_reg", "choices": [0.0]},
        {"name": "wide_lr", "choices": [0.1]},
        {"name": "wide_reg", "choices": [0.0001, "disable_wide_tower"]},
        {"name": "training_samples", "choices": [10000]},
    ],
}


@pytest.mark.slow
def test_cli_transfer_end_to_end(tmp_path, capsys, samples_dir, feature_cache_dir):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SMALL_SPACE))
    common = ["--data-dir", str(samples_dir), "--no-progress", "--budget-scale", "0.01", "--cache-dir",
              str(feature_cache_dir)]
    pre, warm, small = tmp_path / "pre", tmp_path / "warm", tmp_path / "small"
    assert main(["search", "--tasks", "sms_spam,mpqa", "--trials", "6", "--batch-size", "2", "--space", str(space),
                 "--out", str(pre), "--controller-lr", "0.01", *common]) == 0
    capsys.readouterr()

    assert main(["transfer", "--target", "customer_reviews", "--from", str(pre), "--out", str(warm),
                 "--data-dir", str(samples_dir), "--repeats", "1"]) == 0
    printed = capsys.readouterr().out
    # the whole ranking, closest first, the chosen (closest) source starred
    lines = [line.split() for line in printed.splitlines() if line[:1] in ("*", " ") and ". " in line]
    assert [line[:2] for line in lines] == [["*", "1."], ["2.", lines[1][1]]]
    names = [line[-2] for line in lines]
    assert sorted(names) == ["mpqa", "sms_spam"] and float(lines[0][-1]) <= float(lines[1][-1])
    closest = names[0]
    assert f"next:  taml search --out {warm} --resume --trials <n>" in printed
    body = load_checkpoint(warm / "checkpoint.pt", tasks=["customer_reviews"])
    assert body["step"] == 0 and body["search_settings"]["method"] == "reinforce"
    source = load_checkpoint(pre / "checkpoint.pt")
    rows = source["controller_state"]["task_embeddings.weight"]
    assert torch.equal(body["controller_state"]["task_embeddings.weight"][0], rows[source["tasks"].index(closest)])

    # the printed next command continues the warm-started search
    command = printed.split("next:  taml ")[1].split()
    command[command.index("<n>")] = "2"
    command += ["--no-progress", "--cache-dir", str(feature_cache_dir)]
    assert main(command) == 0
    resumed = load_checkpoint(warm / "checkpoint.pt", tasks=["customer_reviews"])
    assert resumed["step"] == 1 and resumed["search_id"] == body["search_id"]  # batch size 2 inherited
    trained = ds.dataset(warm / "ledger").to_table().to_pylist()
    assert [r["task"] for r in trained] == ["customer_reviews"] * 2
    capsys.readouterr()

    # --reduce-space: a space for a fresh search; an existing search is never overwritten
    assert main(["transfer", "--target", "customer_reviews", "--from", str(pre / "checkpoint.pt"), "--out", str(small),
                 "--data-dir", str(samples_dir), "--repeats", "1", "--reduce-space", "--top-k", "2",
                 "--select", closest]) == 0
    assert "fresh search" in capsys.readouterr().out
    reduced = load_space(small / "space.yaml")
    assert reduced.name == f"taml-tiny-reduced-{closest}" and not (small / "checkpoint.pt").exists()
    assert main(["search", "--tasks", "customer_reviews", "--space", str(small / "space.yaml"), "--out", str(small),
                 "--trials", "1", "--method", "rs", *common]) == 0
    assert main(["transfer", "--target", "customer_reviews", "--from", str(pre), "--out", str(warm),
                 "--data-dir", str(samples_dir)]) == 2
    assert "already holds a search" in capsys.readouterr().err


def test_cli_transfer_errors_are_one_line(tmp_path, capsys):
    from transfer_automl.search import save_checkpoint

    args = ["transfer", "--target", "new", "--out", str(tmp_path / "out")]
    assert main([*args, "--from", str(tmp_path / "missing")]) == 2
    assert "holds no search" in capsys.readouterr().err
    save_checkpoint(tmp_path / "tpe.pt", make_search("tpe", TOY, SOURCES, "tpe", seed=0).state_dict())
    assert main([*args, "--from", str(tmp_path / "tpe.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'tpe' search, which has no controller" in err[0] and "--reduce-space" in err[0]
    assert not (tmp_path / "out").exists()
