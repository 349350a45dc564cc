"""Train one child for one (task, configuration) and report validation and test accuracy.

Frozen-module children read cached features, so they train in about a second on CPU; children
that fine-tune a word table train an EmbeddingBag initialised from it, and children that fine-tune
a sentence encoder (all-MiniLM-L6-v2) train a private copy of its transformer on the fly, from
token ids computed once per task (nothing is cached on disk for them). Both towers train with
Proximal Adagrad on batches of `batch_size` (100, as in the papers): the deep tower with its
learning rate and L2 weight, the wide tower with its learning rate and L1 weight.
"""

from __future__ import annotations

import abc
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from transfer_automl.children.base import ChildResult
from transfer_automl.children.device import pick_device
from transfer_automl.children.early_stopping import EarlyStopping, fit_with_early_stopping
from transfer_automl.children.embeddings import (
    EncoderTokens,
    InputModule,
    TableInput,
    WordTableModule,
    get_module,
)
from transfer_automl.children.loop import accuracy, fit, proximal_adagrad_for
from transfer_automl.children.model import WideDeepClassifier
from transfer_automl.children.spec import ChildSpec, child_spec
from transfer_automl.children.tokens import TokenBags, WideBags, wide_bags
from transfer_automl.errors import ConfigError, TamlError
from transfer_automl.tasks.features import FeatureCache
from transfer_automl.tasks.text import TextTask
from transfer_automl.trial_status import STATUS_FAILED, STATUS_INVALID, STATUS_OK


@dataclass(frozen=True)
class ChildTrainerConfig:
    batch_size: int = 100  # examples per step (papers: 100)
    budget_scale: float = 0.05  # multiplies the space's training budget; 1.0 = the papers' budget
    wide_buckets: int = 1 << 18  # hash buckets of the wide tower's one-hot token features
    eval_batch_size: int = 4096
    encoder_eval_batch_size: int = 128  # texts per forward pass of a fine-tuned sentence encoder
    # Children that fine-tune a pretrained network (all-MiniLM-L6-v2, EfficientNet-Lite0) train
    # ceil(steps * network_fine_tune_scale) steps: one step costs seconds on CPU, not milliseconds.
    # 1.0 gives them the same steps as every other child (sensible on a GPU).
    network_fine_tune_scale: float = 0.02
    device: str = "auto"  # auto = cuda when available
    # Seconds a trial may take (None: no limit). Checked between training steps, so a slow child
    # is stopped within one step; a child stuck inside one native call (or in feature
    # extraction) is not interrupted: that would need a process-level watchdog.
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.budget_scale > 0:
            raise ConfigError(f"budget_scale must be > 0, got {self.budget_scale}")
        if not 0 < self.network_fine_tune_scale <= 1:
            raise ConfigError(f"network_fine_tune_scale must be in (0, 1], got {self.network_fine_tune_scale}")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ConfigError(f"timeout_s must be > 0 (or None for no limit), got {self.timeout_s}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ChildInputs:
    """What one child reads: frozen features, a word table to fine-tune, encoder tokens; wide bags."""

    features: np.ndarray | None = None
    table: TableInput | None = None
    tokens: EncoderTokens | None = None
    wide: TokenBags | None = None


class Fidelity(NamedTuple):
    """How much of a child to train (`GuardedChildTrainer.train`'s budget, resume, keep_state,
    early_stopping)."""

    budget: float | None = None
    resume: dict[str, Any] | None = None
    keep_state: bool = False
    early_stopping: EarlyStopping | None = None


class GuardedChildTrainer(abc.ABC):
    """A `ChildTrainer` (children/base.py) for children that train a network: what text and image
    children share around their training.

    A configuration the trainer cannot build is `invalid` (reward 0, not trained); any error inside
    the child fails that child (`failed`, with the reason), while the search's own errors
    (TamlError: storage, configuration) propagate and stop the search."""

    config: ChildTrainerConfig

    def train(self, config: dict[str, Any], task: Any, seed: int = 0, keep_model: bool = False,
              budget: float | None = None, resume: dict[str, Any] | None = None,
              keep_state: bool = False, early_stopping: EarlyStopping | None = None) -> ChildResult:
        """Multi-fidelity (search/fidelity.py): `budget` in (0, 1] trains ceil(budget x the
        configuration's steps) steps (None: all of them); `resume`, a `ChildResult.state` of the
        same configuration, task and seed, continues that child to the budget instead of starting
        again; `keep_state` returns the child's state (weights, optimizer, batch order, random
        generators) in `ChildResult.state`. On CPU, training to b1 then resuming to b2 gives
        exactly the child trained to b2 in one go (tests/unit/test_fidelity.py).

        `early_stopping` (children/early_stopping.py; the champion refit) evaluates validation as
        it trains, keeps the best weights and may stop before the budget; the result's
        train_steps are the steps run, max_steps the budget's, best_step the kept weights'."""
        started = time.perf_counter()
        if budget is not None and not (isinstance(budget, int | float) and 0 < budget <= 1):
            raise ConfigError(f"budget must be a fraction in (0, 1] of the child's training budget, got {budget!r}")
        spec = child_spec(config, self.config.budget_scale, self.config.batch_size)
        problem = self.invalid_reason(spec)
        if problem:
            return ChildResult(STATUS_INVALID, 0.0, 0.0, 0, time.perf_counter() - started, problem)
        if early_stopping is not None and (resume is not None or keep_state):
            raise ConfigError("early_stopping trains a child from scratch and keeps its best weights; it does not "
                              "combine with resume or keep_state")
        try:
            return self._train(spec, task, seed, started, keep_model,
                               Fidelity(budget, resume, keep_state, early_stopping))
        except TamlError:
            raise
        except Exception as exc:  # noqa: BLE001 - any other error fails this child, not the search
            return ChildResult(STATUS_FAILED, 0.0, 0.0, 0, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")

    def work(self, config: dict[str, Any], budget: float | None = None,
             from_budget: float | None = None) -> tuple[str, float]:
        """(group, work) for study/cost.py: the steps from `from_budget` to `budget` times the deep
        tower's width factor 1 + layers x units / 256; the group (input module, fine-tuned or
        frozen, towers) carries what a step of it costs, fitted from measured children."""
        spec = child_spec(config, self.config.budget_scale, self.config.batch_size)
        ran = budget_steps(spec.train_steps, budget) - (budget_steps(spec.train_steps, from_budget)
                                                        if from_budget is not None else 0)
        width = 1 + (spec.hidden_layers * spec.hidden_size / 256 if spec.use_deep else 0)
        # The wide tower's step cost depends on its features (TF-IDF 1-2 grams touch more rows);
        # not on L1, since only the touched rows are updated either way (children/optim.py).
        wide = f"wide-{spec.wide_features}"
        towers = "+".join(t for t, on in (("deep", spec.use_deep), (wide, spec.use_wide)) if on)
        module = f"{spec.input_module}/{'fine-tuned' if spec.fine_tune else 'frozen'}" if spec.use_deep else "-"
        return f"{module}/{towers}", max(ran, 1) * width

    @abc.abstractmethod
    def invalid_reason(self, spec: ChildSpec) -> str:
        """Why this configuration cannot be built ("" if it can)."""

    @abc.abstractmethod
    def _train(self, spec: ChildSpec, task: Any, seed: int, started: float, keep_model: bool,
               fidelity: Fidelity | None = None) -> ChildResult: ...

    def _fit_and_score(self, model: nn.Module, optimizer: Any, make_batch: Any, labels: np.ndarray,
                       splits: dict[str, np.ndarray], steps: int, rng: Any, deadline: float, eval_batch: int,
                       started: float, phases: dict[str, float], keep_model: bool,
                       fidelity: Fidelity | None = None) -> ChildResult:
        """Train for `steps` (the budget's share of them, continuing a resumed child; or until the
        deadline, or divergence), then score validation and test."""
        budget, resume, keep_state, early_stopping = fidelity or Fidelity()
        target = budget_steps(steps, budget)
        if early_stopping is not None:
            return self._fit_early_stopping(model, optimizer, make_batch, labels, splits, target, rng, deadline,
                                            eval_batch, started, phases, keep_model, early_stopping)
        position: dict[str, Any] = {}
        done = 0
        if resume is not None:
            done = restore_child_state(resume, model, optimizer, rng, position, target)
        clock = time.perf_counter()
        status, ran, reason = fit(model, optimizer, make_batch, labels, splits["train"], target - done,
                                  self.config.batch_size, rng, deadline, self.config.timeout_s, position)
        steps = done + ran
        phases["train"] = time.perf_counter() - clock
        if status != STATUS_OK:
            return ChildResult(status, 0.0, 0.0, steps, time.perf_counter() - started, reason, phases=phases)
        state = child_state(model, optimizer, rng, position, steps) if keep_state else None
        clock = time.perf_counter()
        val = accuracy(model, make_batch, splits["validation"], labels, eval_batch)
        test = accuracy(model, make_batch, splits["test"], labels, eval_batch)
        phases["evaluate"] = time.perf_counter() - clock
        return ChildResult(STATUS_OK, val, test, steps, time.perf_counter() - started,
                           model=model if keep_model else None, phases=phases, state=state)


    def _fit_early_stopping(self, model: nn.Module, optimizer: Any, make_batch: Any, labels: Any,
                            splits: dict[str, np.ndarray], target: int, rng: Any, deadline: float, eval_batch: int,
                            started: float, phases: dict[str, float], keep_model: bool,
                            rule: EarlyStopping) -> ChildResult:
        """Up to `target` steps with early stopping on validation; test scored once, on the kept weights."""
        clock = time.perf_counter()
        status, ran, reason, best = fit_with_early_stopping(
            model, optimizer, make_batch, labels, splits, target, self.config.batch_size, rng, rule, eval_batch,
            deadline, self.config.timeout_s)
        phases["train"] = time.perf_counter() - clock
        if status != STATUS_OK:
            return ChildResult(status, 0.0, 0.0, ran, time.perf_counter() - started, reason, phases=phases,
                               max_steps=target)
        clock = time.perf_counter()
        test = accuracy(model, make_batch, splits["test"], labels, eval_batch)
        phases["evaluate"] = time.perf_counter() - clock
        return ChildResult(STATUS_OK, best.val_accuracy, test, ran, time.perf_counter() - started,
                           model=model if keep_model else None, phases=phases, max_steps=target,
                           best_step=best.step)


CHILD_STATE_FORMAT = "taml-child-state/1"


def budget_steps(steps: int, budget: float | None) -> int:
    """The steps a budget fraction buys: ceil(budget x steps), at least 1 (all of them for None)."""
    if budget is None:
        return steps
    return min(steps, max(1, math.ceil(steps * budget - 1e-9)))


def child_state(model: nn.Module, optimizer: Any, rng: np.random.Generator, position: dict[str, Any],
                steps: int) -> dict[str, Any]:
    """What a promoted child needs to continue: plain tensors and strings (torch.load(weights_only=True))."""
    import json

    def cpu(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.detach().cpu().clone()
        if isinstance(value, dict):
            return {k: cpu(v) for k, v in value.items()}
        if isinstance(value, list):
            return [cpu(v) for v in value]
        return value

    return {"format": CHILD_STATE_FORMAT, "steps": int(steps), "model": cpu(model.state_dict()),
            "optimizer": cpu(optimizer.state_dict()), "torch_rng": torch.get_rng_state(),
            "numpy_rng": json.dumps(rng.bit_generator.state), "order": torch.from_numpy(np.asarray(position["order"])),
            "cursor": int(position["cursor"])}


def restore_child_state(state: dict[str, Any], model: nn.Module, optimizer: Any, rng: np.random.Generator,
                        position: dict[str, Any], target: int) -> int:
    """Load a `child_state` into a freshly built child; returns the steps it has done."""
    import json

    if not isinstance(state, dict) or state.get("format") != CHILD_STATE_FORMAT:
        raise ConfigError(f"resume: not a child state of format {CHILD_STATE_FORMAT!r}")
    done = int(state["steps"])
    if done > target:
        raise ConfigError(f"resume: the child has trained {done} steps, more than the {target} its budget buys")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    rng.bit_generator.state = json.loads(state["numpy_rng"])
    position["order"], position["cursor"] = state["order"].numpy(), int(state["cursor"])
    return done


class TextChildTrainer(GuardedChildTrainer):
    """`train(config, task, seed, keep_model) -> ChildResult` for text tasks."""

    def __init__(self, config: ChildTrainerConfig, cache: FeatureCache):
        self.config = config
        self.cache = cache
        self.device = pick_device(config.device)
        self._tables: dict[tuple[str, str], TableInput] = {}
        self._wide: dict[tuple[str, str], WideBags] = {}
        self._encoder_tokens: dict[tuple[str, str], EncoderTokens] = {}

    def invalid_reason(self, spec: ChildSpec) -> str:
        if not spec.use_deep and not spec.use_wide:
            return "both the deep and the wide tower are disabled"
        if spec.use_deep:
            module = get_module(spec.input_module)
            if not module.is_installed():
                return f"input module {module.name!r} is not installed (package {module.package})"
            if spec.fine_tune and not module.fine_tunable:
                return f"input module {module.name!r} cannot be fine-tuned"
        return ""

    # -- inputs -------------------------------------------------------------------------------

    def _table(self, task: TextTask, module_name: str) -> TableInput:
        key = (task.content_hash, module_name)
        if key not in self._tables:
            self._tables[key] = get_module(module_name).table_input(task.texts)
        return self._tables[key]

    def wide_bags(self, task: TextTask, features: str) -> WideBags:
        """The wide tower's bags of `task` (children/tokens.py), cached per task and kind."""
        key = (task.content_hash, features)
        if key not in self._wide:
            self._wide[key] = wide_bags(task.texts, self.config.wide_buckets, features, task.splits["train"])
        return self._wide[key]

    def _wide_bags(self, task: TextTask, features: str) -> tuple[TokenBags, int]:
        wide = self.wide_bags(task, features)
        return wide.bags, len(wide.buckets)

    def _inputs(self, spec: ChildSpec, task: TextTask) -> ChildInputs:
        """What a child of `spec` reads from `task`: frozen features (cached), a word table to
        fine-tune, or a sentence encoder's tokens (fine-tuned on the fly, nothing cached); wide bags."""
        inputs = ChildInputs()
        if spec.use_deep:
            module = get_module(spec.input_module)
            if spec.fine_tune and isinstance(module, WordTableModule):
                inputs.table = self._table(task, module.name)
            elif spec.fine_tune:
                inputs.tokens = self._tokens(task, module)
            else:
                inputs.features = self.cache.get(task, module.name, module.features)
        if spec.use_wide:
            inputs.wide = self.wide_bags(task, spec.wide_features).bags
        return inputs

    @torch.no_grad()
    def probabilities(self, model: nn.Module, task: TextTask, split: str) -> np.ndarray:
        """A trained child's class probabilities (softmax) on one split of its task, in split order:
        what the champion ensemble averages (study/refit.py)."""
        spec = model.spec
        inputs = self._inputs(spec, task)
        rows = task.splits[split]
        model.to(self.device).eval()
        size = self.config.encoder_eval_batch_size if inputs.tokens is not None else self.config.eval_batch_size
        chunks = [torch.softmax(model(self._batch(rows[start : start + size], spec, inputs)).float(), -1).cpu()
                  for start in range(0, len(rows), size)]
        return torch.cat(chunks).numpy() if chunks else np.zeros((0, task.num_classes), dtype=np.float32)

    def _tokens(self, task: TextTask, module: InputModule) -> EncoderTokens:
        key = (task.content_hash, module.name)
        if key not in self._encoder_tokens:
            self._encoder_tokens[key] = module.encoder_tokens(task.texts)
        return self._encoder_tokens[key]

    def _batch(self, rows: np.ndarray, spec: ChildSpec, inputs: ChildInputs) -> dict[str, torch.Tensor]:
        dev = self.device
        batch: dict[str, torch.Tensor] = {}
        if spec.use_deep:
            if inputs.table is not None:
                ids, offsets = inputs.table.bags.select(rows)
                batch["ids"] = torch.from_numpy(ids).to(dev)
                batch["offsets"] = torch.from_numpy(offsets).to(dev)
            elif inputs.tokens is not None:
                batch["encoder_inputs"] = inputs.tokens.batch(rows, dev)
            else:
                batch["features"] = torch.from_numpy(inputs.features[rows]).to(dev)
        if spec.use_wide:
            ids, offsets = inputs.wide.select(rows)
            batch["wide_ids"] = torch.from_numpy(ids).to(dev)
            batch["wide_offsets"] = torch.from_numpy(offsets).to(dev)
            weights = inputs.wide.select_weights(rows)
            if weights is not None:
                batch["wide_weights"] = torch.from_numpy(weights).to(dev)
        return batch

    # -- training -----------------------------------------------------------------------------

    def _train(self, spec: ChildSpec, task: TextTask, seed: int, started: float, keep_model: bool = False,
               fidelity: Fidelity | None = None) -> ChildResult:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        phases = {}
        clock = time.perf_counter()
        module = get_module(spec.input_module) if spec.use_deep else None
        inputs = self._inputs(spec, task)
        encoder = module.trainable_encoder() if inputs.tokens is not None else None
        wide_vocab = len(self.wide_bags(task, spec.wide_features).buckets) if spec.use_wide else 0
        phases["features"] = time.perf_counter() - clock

        model = WideDeepClassifier(
            spec, module.dimension if module else 0, task.num_classes,
            inputs.table.weights if inputs.table is not None else None, wide_vocab, encoder=encoder,
        ).to(self.device)
        optimizer = proximal_adagrad_for(model, spec)
        labels = torch.from_numpy(task.labels).to(self.device)
        deadline = started + self.config.timeout_s if self.config.timeout_s is not None else math.inf

        def make_batch(rows: np.ndarray) -> dict[str, torch.Tensor]:
            return self._batch(rows, spec, inputs)

        steps = spec.train_steps
        if encoder is not None:
            steps = math.ceil(steps * self.config.network_fine_tune_scale)
        eval_batch = self.config.encoder_eval_batch_size if encoder is not None else self.config.eval_batch_size
        return self._fit_and_score(model, optimizer, make_batch, labels, task.splits, steps, rng, deadline,
                                   eval_batch, started, phases, keep_model, fidelity)
