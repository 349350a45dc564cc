"""Packed training: K same-shape children train at once on one device, as stacked weights.

Small children (a 1-3 layer tower over cached features, batches of 100) spend most of a step in
Python and kernel launches, not arithmetic. Children that share a shape (input dimension, classes,
hidden layers and width, activation, normalization, towers, batch size) are stacked: every weight
gets a leading K axis, a hidden layer is one `baddbmm` for all K, the K wide towers are one
`embedding_bag` over a concatenated table (child k's rows offset by the vocabularies before it), and
the Proximal Adagrad update runs elementwise on the stacked tensors with per-child learning rates
and L1/L2 weights. Each child keeps everything that makes it itself: its own initial weights
(built exactly as `TextChildTrainer` builds them, from its seed), its own batch order (its own
generator), learning rates, regularization, dropout rate, number of steps, and task (features and
labels are gathered per child). So a packed child ends where it would have ended alone, up to
float rounding (tests/unit/test_packing.py); only dropout masks come from a different random
stream. A child whose loss turns non-finite is frozen and recorded diverged; the others go on.
A trial timeout applies to the pack's shared clock: children unfinished when it passes time out.

On CUDA this shares one GPU between many children; on CPU it uses all cores (torch's intra-op
threads) with one process, so nothing is oversubscribed.

    results = PackedTextTrainer(trainer).train_many([(config, task, seed), ...])
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from transfer_automl.children.early_stopping import BestWeights, EarlyStopping
from transfer_automl.children.embeddings import get_module
from transfer_automl.children.loop import accuracy
from transfer_automl.children.model import WideDeepClassifier
from transfer_automl.children.optim import proximal_step, touched_rows
from transfer_automl.children.spec import ChildSpec, child_spec
from transfer_automl.children.trainer import ChildInputs, ChildResult, TextChildTrainer
from transfer_automl.errors import TamlError
from transfer_automl.tasks.text import TextTask
from transfer_automl.trial_status import STATUS_DIVERGED, STATUS_FAILED, STATUS_OK, STATUS_TIMEOUT

BN_MOMENTUM, EPS, ACCUMULATOR_INIT = 0.1, 1e-5, 0.1  # torch's BatchNorm1d/LayerNorm, TF's Adagrad


@dataclass
class PackedChild:
    """One child of a pack: its spec, its task's inputs and labels, its seed."""

    spec: ChildSpec
    task: TextTask
    seed: int
    inputs: ChildInputs
    wide_vocab: int
    input_dim: int


def pack_key(child: PackedChild, batch_size: int) -> tuple:
    """Children with equal keys can share one stacked model."""
    s = child.spec
    deep = (child.input_dim, s.hidden_layers, s.hidden_size, s.activation, s.normalization) if s.use_deep else None
    wide = s.wide_features if s.use_wide else None  # binary bags have no weights, TF-IDF bags do
    return (deep, wide, child.task.num_classes, min(batch_size, len(child.task.splits["train"])))


class PackedTextTrainer:
    """`train_many([(config, task, seed), ...])`: frozen-feature children packed, the rest one by one."""

    def __init__(self, trainer: TextChildTrainer, max_pack: int = 64, keep_models: bool = False):
        self.trainer = trainer
        self.max_pack = max_pack
        self.keep_models = keep_models
        self.last_pack_sizes: list[int] = []  # sizes of the packs the last train_many trained

    def train_many(self, items: list[tuple[dict[str, Any], TextTask, int]],
                   early_stopping: EarlyStopping | None = None) -> list[ChildResult]:
        """`early_stopping` (the champion refit): each child evaluates its validation split as
        children/early_stopping.py says, keeps its best weights and leaves the pack when its
        patience runs out; the others go on."""
        results: list[ChildResult | None] = [None] * len(items)
        groups: dict[tuple, list[tuple[int, PackedChild]]] = defaultdict(list)
        cfg = self.trainer.config
        self.last_pack_sizes = []
        for i, (config, task, seed) in enumerate(items):
            spec = child_spec(config, cfg.budget_scale, cfg.batch_size)
            if self.trainer.invalid_reason(spec) or spec.fine_tune:  # invalid or fine-tuned: the plain path
                results[i] = self.trainer.train(config, task, seed, keep_model=self.keep_models,
                                                early_stopping=early_stopping)
                continue
            child = self._prepare(spec, task, seed)
            groups[pack_key(child, cfg.batch_size)].append((i, child))
        for members in groups.values():
            for start in range(0, len(members), self.max_pack):
                chunk = members[start : start + self.max_pack]
                self.last_pack_sizes.append(len(chunk))
                started = time.perf_counter()
                try:
                    packed = train_pack([c for _, c in chunk], self.trainer, self.keep_models, early_stopping)
                except TamlError:
                    raise
                except Exception as exc:  # noqa: BLE001 - one pack's error fails its children, not the search
                    reason = f"{type(exc).__name__}: {exc}"
                    packed = [ChildResult(STATUS_FAILED, 0.0, 0.0, 0, time.perf_counter() - started, reason)] * len(chunk)
                for (i, _), result in zip(chunk, packed, strict=True):
                    results[i] = result
        return results  # type: ignore[return-value]

    def _prepare(self, spec: ChildSpec, task: TextTask, seed: int) -> PackedChild:
        inputs, vocab, dim = ChildInputs(), 0, 0
        if spec.use_deep:
            module = get_module(spec.input_module)
            inputs.features = self.trainer.cache.get(task, module.name, module.features)
            dim = module.dimension
        if spec.use_wide:
            inputs.wide, vocab = self.trainer._wide_bags(task, spec.wide_features)
        return PackedChild(spec, task, seed, inputs, vocab, dim)


def train_pack(children: list[PackedChild], trainer: TextChildTrainer, keep_models: bool = False,
               early_stopping: EarlyStopping | None = None) -> list[ChildResult]:
    """Train same-key children together; evaluate each alone with the ordinary code. With
    `early_stopping`, child k is unstacked and scored on validation every `every(steps_k)` steps
    and at its last; when its patience runs out it stops (inactive, as a finished child) and ends
    with its best weights."""
    started = time.perf_counter()
    dev, cfg = trainer.device, trainer.config
    k_count = len(children)
    batch = min(cfg.batch_size, len(children[0].task.splits["train"]))

    # Each child's own initial weights and batch order, as TextChildTrainer makes them.
    models, rngs = [], []
    for c in children:
        torch.manual_seed(c.seed)
        rngs.append(np.random.default_rng(c.seed))
        models.append(WideDeepClassifier(c.spec, c.input_dim, c.task.num_classes, None, c.wide_vocab).to(dev))
    stack = _Stack(models, children, dev)
    steps = torch.tensor([c.spec.train_steps for c in children], device=dev)
    orders = [rng.permutation(c.task.splits["train"]) for rng, c in zip(rngs, children, strict=True)]
    cursors = [0] * k_count
    labels = [torch.from_numpy(c.task.labels).to(dev) for c in children]
    diverged_at: dict[int, int] = {}
    active = torch.ones(k_count, dtype=torch.bool, device=dev)

    deadline = started + cfg.timeout_s if cfg.timeout_s is not None else float("inf")
    timed_out: dict[int, int] = {}
    budgets = [c.spec.train_steps for c in children]
    bests = [BestWeights(early_stopping) for _ in children] if early_stopping is not None else None
    for step in range(int(steps.max())):
        active = (steps > step) & active
        if not bool(active.any()):
            break
        if time.perf_counter() > deadline:  # the pack shares one clock: its unfinished children time out
            timed_out = {k: step for k in active.nonzero().flatten().tolist()}
            break
        rows = []
        for k, c in enumerate(children):
            if cursors[k] + batch > len(orders[k]):
                orders[k], cursors[k] = rngs[k].permutation(c.task.splits["train"]), 0
            rows.append(orders[k][cursors[k] : cursors[k] + batch])
            cursors[k] += batch
        logits = stack.forward(rows, children, active)  # [K, B, C]
        targets = torch.stack([labels[k][torch.from_numpy(r).to(dev)] for k, r in enumerate(rows)])
        losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                 reduction="none").view(k_count, -1).mean(dim=1)
        finite = torch.isfinite(losses.detach())
        newly = (active & ~finite).nonzero().flatten().tolist()
        for k in newly:
            diverged_at[k] = step
        active = active & finite
        stack.zero_grad()
        torch.where(active, losses, torch.zeros_like(losses)).sum().backward()
        stack.step(active)
        if bests is not None:
            _evaluate_due(stack, models, children, bests, budgets, step + 1, active, steps, labels, trainer)

    train_s = time.perf_counter() - started
    ran = [int(min(steps[k].item(), diverged_at.get(k, budgets[k]))) for k in range(k_count)]
    stack.unstack_into(models, ran)
    if bests is not None:
        return _early_stopped_results(children, models, bests, budgets, ran, timed_out, diverged_at, train_s,
                                      labels, trainer, keep_models)
    results = []
    for k, (c, model) in enumerate(zip(children, models, strict=True)):
        per_child = train_s / k_count
        if k in timed_out:
            results.append(ChildResult(STATUS_TIMEOUT, 0.0, 0.0, timed_out[k], per_child,
                                       f"stopped after {cfg.timeout_s:g} s (trial timeout, packed) at step "
                                       f"{timed_out[k]} of {c.spec.train_steps}", phases={"train": per_child}))
            continue
        if k in diverged_at:
            results.append(ChildResult(STATUS_DIVERGED, 0.0, 0.0, diverged_at[k], per_child,
                                       f"training loss became non-finite at step {diverged_at[k]}",
                                       phases={"train": per_child}))
            continue
        bad = next((n for n, p in model.named_parameters() if not torch.isfinite(p).all()), None)
        if bad is not None:
            results.append(ChildResult(STATUS_DIVERGED, 0.0, 0.0, c.spec.train_steps, per_child,
                                       f"weights became non-finite ({bad}) after step {c.spec.train_steps}"))
            continue
        clock = time.perf_counter()

        def make_batch(rows: np.ndarray, c: PackedChild = c) -> dict[str, Tensor]:
            return trainer._batch(rows, c.spec, c.inputs)

        val = accuracy(model, make_batch, c.task.splits["validation"], labels[k], cfg.eval_batch_size)
        test = accuracy(model, make_batch, c.task.splits["test"], labels[k], cfg.eval_batch_size)
        evaluate = time.perf_counter() - clock
        results.append(ChildResult(STATUS_OK, val, test, c.spec.train_steps, per_child + evaluate,
                                   model=model if keep_models else None,
                                   phases={"train": per_child, "evaluate": evaluate}))
    return results


def _evaluate_due(stack: _Stack, models: list[WideDeepClassifier], children: list[PackedChild],
                  bests: list[BestWeights], budgets: list[int], done: int, active: Tensor, steps: Tensor,
                  labels: list[Tensor], trainer: TextChildTrainer) -> None:
    """Score the children due an evaluation after `done` steps; stop those out of patience."""
    for k in active.nonzero().flatten().tolist():
        every = bests[k].rule.every(budgets[k])
        if done % every and done != budgets[k]:
            continue
        stack.unstack_child(k, models[k], done)
        c = children[k]

        def make_batch(rows: np.ndarray, c: PackedChild = c) -> dict[str, Tensor]:
            return trainer._batch(rows, c.spec, c.inputs)

        val = accuracy(models[k], make_batch, c.task.splits["validation"], labels[k], trainer.config.eval_batch_size)
        if bests[k].observe(done, val, models[k]):
            steps[k] = done  # inactive from the next step on, as a child whose steps are done


def _early_stopped_results(children: list[PackedChild], models: list[WideDeepClassifier], bests: list[BestWeights],
                           budgets: list[int], ran: list[int], timed_out: dict[int, int], diverged_at: dict[int, int],
                           train_s: float, labels: list[Tensor], trainer: TextChildTrainer,
                           keep_models: bool) -> list[ChildResult]:
    """Each child with its best weights (children/early_stopping.py), test scored on them; a child
    that diverged or timed out before its first evaluation fails as it would alone."""
    results = []
    per_child = train_s / len(children)
    for k, (c, model, best) in enumerate(zip(children, models, bests, strict=True)):
        if best.state is None:
            status = STATUS_TIMEOUT if k in timed_out else STATUS_DIVERGED
            results.append(ChildResult(status, 0.0, 0.0, ran[k], per_child,
                                       f"stopped at step {ran[k]} of {budgets[k]} before its first evaluation "
                                       f"({status}, packed)", phases={"train": per_child}, max_steps=budgets[k]))
            continue
        best.restore(model)
        clock = time.perf_counter()

        def make_batch(rows: np.ndarray, c: PackedChild = c) -> dict[str, Tensor]:
            return trainer._batch(rows, c.spec, c.inputs)

        test = accuracy(model, make_batch, c.task.splits["test"], labels[k], trainer.config.eval_batch_size)
        evaluate = time.perf_counter() - clock
        results.append(ChildResult(STATUS_OK, best.val_accuracy, test, ran[k], per_child + evaluate,
                                   model=model if keep_models else None,
                                   phases={"train": per_child, "evaluate": evaluate}, max_steps=budgets[k],
                                   best_step=best.step))
    return results


class _Stack:
    """The K children's weights stacked on a leading axis, with their Proximal Adagrad state."""

    def __init__(self, models: list[WideDeepClassifier], children: list[PackedChild], dev: torch.device):
        spec = children[0].spec
        self.spec, self.dev = spec, dev
        self.params: dict[str, Tensor] = {}
        self.buffers: dict[str, Tensor] = {}
        self.lr: dict[str, Tensor] = {}
        self.l1: dict[str, Tensor] = {}
        self.l2: dict[str, Tensor] = {}
        k_count = len(models)

        def per_child(values: list[float], like: Tensor) -> Tensor:  # [K, 1, ...] to broadcast
            return torch.tensor(values, device=dev, dtype=like.dtype).view(k_count, *([1] * (like.dim() - 1)))

        if spec.use_deep:
            for name, _ in models[0].deep.named_parameters():
                stacked = torch.stack([dict(m.deep.named_parameters())[name].detach() for m in models])
                self._add(f"deep.{name}", stacked,
                          per_child([c.spec.deep_lr for c in children], stacked), per_child([0.0] * k_count, stacked),
                          per_child([c.spec.deep_l2 for c in children], stacked))
            for name, _ in models[0].deep.named_buffers():
                if not name.endswith("num_batches_tracked"):
                    self.buffers[name] = torch.stack([dict(m.deep.named_buffers())[name] for m in models]).clone()
            self.dropout = torch.tensor([c.spec.dropout for c in children], device=dev).view(k_count, 1, 1)
        if spec.use_wide:
            vocab = torch.tensor([max(c.wide_vocab, 1) for c in children], device=dev)
            self.wide_offsets = [0, *torch.cumsum(vocab, 0).tolist()[:-1]]
            table = torch.cat([m.wide.weight.detach() for m in models])  # [sum V, C]
            row_lr = torch.repeat_interleave(torch.tensor([c.spec.wide_lr for c in children], device=dev), vocab)
            row_l1 = torch.repeat_interleave(torch.tensor([c.spec.wide_l1 for c in children], device=dev), vocab)
            self.wide_rows = torch.repeat_interleave(torch.arange(k_count, device=dev), vocab)  # row -> child
            self._add("wide.weight", table, row_lr[:, None], row_l1[:, None], torch.zeros_like(row_lr)[:, None])
            bias = torch.stack([m.wide_bias.detach() for m in models])
            self._add("wide_bias", bias, per_child([c.spec.wide_lr for c in children], bias),
                      per_child([c.spec.wide_l1 for c in children], bias), per_child([0.0] * k_count, bias))

    def _add(self, name: str, value: Tensor, lr: Tensor, l1: Tensor, l2: Tensor) -> None:
        self.params[name] = value.clone().requires_grad_(True)
        self.lr[name], self.l1[name], self.l2[name] = lr, l1, l2
        self.accum = getattr(self, "accum", {})
        self.accum[name] = torch.full_like(value, ACCUMULATOR_INIT)

    # -- forward ------------------------------------------------------------------------------

    def forward(self, rows: list[np.ndarray], children: list[PackedChild], active: Tensor) -> Tensor:
        """Training-mode forward: batch norm on batch statistics, dropout on."""
        spec, p, dev = self.spec, self.params, self.dev
        logits = None
        if spec.use_deep:
            x = torch.stack([torch.from_numpy(c.inputs.features[r]) for c, r in zip(children, rows, strict=True)]).to(dev)
            for i in range(spec.hidden_layers):
                x = torch.baddbmm(p[f"deep.{4 * i}.bias"].unsqueeze(1), x, p[f"deep.{4 * i}.weight"].transpose(1, 2))
                x = self._norm(x, 4 * i + 1, active)
                x = F.relu(x) if spec.activation == "relu" else F.silu(x)
                if bool((self.dropout > 0).any()):
                    keep = 1.0 - self.dropout
                    x = x * (torch.rand_like(x) < keep) / keep
            last = 4 * spec.hidden_layers
            logits = torch.baddbmm(p[f"deep.{last}.bias"].unsqueeze(1), x, p[f"deep.{last}.weight"].transpose(1, 2))
        if spec.use_wide:
            ids, offsets, weights, total = [], [], [], 0
            for k, (c, r) in enumerate(zip(children, rows, strict=True)):
                bag_ids, bag_offsets = c.inputs.wide.select(r)
                ids.append(bag_ids + self.wide_offsets[k])
                offsets.append(bag_offsets + total)
                weights.append(c.inputs.wide.select_weights(r))
                total += len(bag_ids)
            per_sample = torch.from_numpy(np.concatenate(weights)).to(dev) if weights[0] is not None else None
            flat = F.embedding_bag(torch.from_numpy(np.concatenate(ids)).to(dev), p["wide.weight"],
                                   torch.from_numpy(np.concatenate(offsets)).to(dev), mode="sum",
                                   per_sample_weights=per_sample, sparse=True)
            wide = flat.view(len(children), -1, flat.shape[-1]) + p["wide_bias"].unsqueeze(1)
            logits = wide if logits is None else logits + wide
        return logits

    def _norm(self, x: Tensor, index: int, active: Tensor) -> Tensor:
        kind, p = self.spec.normalization, self.params
        if kind == "none":
            return x
        weight, bias = p[f"deep.{index}.weight"].unsqueeze(1), p[f"deep.{index}.bias"].unsqueeze(1)
        if kind == "layer":
            mean = x.mean(dim=-1, keepdim=True)
            var = x.var(dim=-1, unbiased=False, keepdim=True)
            return (x - mean) / torch.sqrt(var + EPS) * weight + bias
        # Batch statistics per child; running statistics updated as BatchNorm1d does, for the
        # children still training (the evaluation reads them after unstacking).
        mean = x.mean(dim=1)
        var = x.var(dim=1, unbiased=False)
        n = x.shape[1]
        with torch.no_grad():
            on = active.view(-1, 1)
            rm, rv = self.buffers[f"{index}.running_mean"], self.buffers[f"{index}.running_var"]
            rm.copy_(torch.where(on, (1 - BN_MOMENTUM) * rm + BN_MOMENTUM * mean, rm))
            rv.copy_(torch.where(on, (1 - BN_MOMENTUM) * rv + BN_MOMENTUM * var * n / max(n - 1, 1), rv))
        return (x - mean.unsqueeze(1)) / torch.sqrt(var.unsqueeze(1) + EPS) * weight + bias

    # -- Proximal Adagrad on the stacked weights ------------------------------------------------

    def zero_grad(self) -> None:
        for value in self.params.values():
            value.grad = None

    @torch.no_grad()
    def step(self, active: Tensor) -> None:
        """`ProximalAdagrad.step` elementwise; children that are not active keep weights and state."""
        for name, w in self.params.items():
            if w.grad is None:
                continue
            g = w.grad
            if name == "wide.weight":
                self._step_touched_rows(w, g, active[self.wide_rows])
                continue
            mask = active.view(-1, *([1] * (w.dim() - 1)))
            accum = torch.where(mask, self.accum[name] + g * g, self.accum[name])
            eta = self.lr[name] / accum.sqrt()
            v = w - eta * g
            v = v.sign() * (v.abs() - eta * self.l1[name]).clamp_min(0.0)
            self.accum[name] = accum
            w.copy_(torch.where(mask, v / (1.0 + eta * self.l2[name]), w))

    def _step_touched_rows(self, w: Tensor, g: Tensor, active_rows: Tensor) -> None:
        """The step above on the wide table's rows with a gradient only, L1 included: the lazy
        update of TensorFlow's sparse Proximal Adagrad, as `ProximalAdagrad` does (children/optim.py)."""
        name = "wide.weight"
        looked_up, values = touched_rows(g)
        keep = active_rows[looked_up]
        rows, gr = looked_up[keep], values[keep]
        accum = self.accum[name][rows] + gr * gr
        self.accum[name][rows] = accum
        w[rows] = proximal_step(w[rows], gr, self.lr[name][rows] / accum.sqrt(), self.l1[name][rows],
                                self.l2[name][rows])

    @torch.no_grad()
    def unstack_into(self, models: list[WideDeepClassifier], steps_done: list[int]) -> None:
        for k, model in enumerate(models):
            self.unstack_child(k, model, steps_done[k])

    @torch.no_grad()
    def unstack_child(self, k: int, model: WideDeepClassifier, steps_done: int) -> None:
        """Child k's weights and batch-norm statistics copied into its own model."""
        if self.spec.use_deep:
            for name, param in model.deep.named_parameters():
                param.copy_(self.params[f"deep.{name}"][k])
            for name, buffer in model.deep.named_buffers():
                if name in self.buffers:
                    buffer.copy_(self.buffers[name][k])
                elif name.endswith("num_batches_tracked"):
                    buffer.fill_(steps_done)
        if self.spec.use_wide:
            start = self.wide_offsets[k]
            model.wide.weight.copy_(self.params["wide.weight"][start : start + model.wide.weight.shape[0]])
            model.wide_bias.copy_(self.params["wide_bias"][k])

