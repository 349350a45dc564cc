"""Image children (Transfer AutoML 4.5): an image input module, the same deep tower, a wide tower.

deep tower: image module (raw pixels, a small CNN, EfficientNet-Lite0; frozen or fine-tuned) ->
            the text children's hidden layers (count, width, activation, norm, dropout) -> logits
wide tower: the pixels -> Linear(num_classes), L1-regularised: the image counterpart of the text
            children's one-hot token layer (a direct, sparse prior per input feature)

The 12 decisions are the text children's (`taml-image` only changes the input modules), read by
the same `child_spec`, trained by the same loop and Proximal Adagrad. Frozen module features come
from the FeatureCache, once per (task, module); fine-tuned modules run on the fly, and a fine-tuned
pretrained network (EfficientNet) trains `network_fine_tune_scale` times the steps (CPU cost).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from transfer_automl.children.device import pick_device
from transfer_automl.children.image_modules import ImageInputModule, get_image_module
from transfer_automl.children.loop import proximal_adagrad_for
from transfer_automl.children.model import deep_tower
from transfer_automl.children.spec import ChildSpec
from transfer_automl.children.trainer import (
    ChildResult,
    ChildTrainerConfig,
    Fidelity,
    GuardedChildTrainer,
)
from transfer_automl.errors import ConfigError
from transfer_automl.tasks.features import FeatureCache
from transfer_automl.tasks.images import ImageTask


class ImageWideDeep(nn.Module):
    def __init__(self, spec: ChildSpec, input_dim: int, num_pixels: int, num_classes: int,
                 encoder: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder if spec.use_deep else None
        self.deep = deep_tower(spec, input_dim, num_classes) if spec.use_deep else None
        self.wide = None
        if spec.use_wide:
            self.wide = nn.Linear(num_pixels, num_classes)
            nn.init.zeros_(self.wide.weight)
            nn.init.zeros_(self.wide.bias)

    def deep_parameters(self) -> list[nn.Parameter]:
        params = list(self.deep.parameters()) if self.deep is not None else []
        return params + (list(self.encoder.parameters()) if self.encoder is not None else [])

    def wide_parameters(self) -> list[nn.Parameter]:
        return list(self.wide.parameters()) if self.wide is not None else []

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        logits = None
        if self.deep is not None:
            x = self.encoder(batch["pixels"]) if self.encoder is not None else batch["features"]
            logits = self.deep(x)
        if self.wide is not None:
            wide = self.wide(batch["pixels"])
            logits = wide if logits is None else logits + wide
        return logits


@dataclass(frozen=True)
class _CacheSubject:
    """What the FeatureCache keys an entry by; `texts` is what it hands to `compute` (the pixels)."""

    name: str
    content_hash: str
    texts: np.ndarray


class ImageChildTrainer(GuardedChildTrainer):
    """`train(config, task, seed, keep_model) -> ChildResult` for image tasks (`tasks.images.ImageTask`)."""

    def __init__(self, config: ChildTrainerConfig, cache: FeatureCache):
        self.config = config
        self.cache = cache
        self.device = pick_device(config.device)
        self._pixel_hashes: dict[str, str] = {}

    def invalid_reason(self, spec: ChildSpec) -> str:
        if not spec.use_deep and not spec.use_wide:
            return "both the deep and the wide tower are disabled"
        if spec.use_deep:
            try:
                module = get_image_module(spec.input_module)
            except ConfigError as exc:
                return str(exc)
            if not module.is_installed():
                return f"image input module {module.name!r} is not installed (packages {module.package})"
            if spec.fine_tune and not module.fine_tunable:
                return f"image input module {module.name!r} cannot be fine-tuned"
        return ""

    def frozen_features(self, task: ImageTask, module: ImageInputModule) -> np.ndarray:
        def compute(pixels: np.ndarray) -> np.ndarray:
            return module.features(pixels, task.height, task.width)

        if module.name == "raw-pixels":  # nothing to compute or store
            return task.pixels
        # Keyed by the pixels, not the task: digits:is0 and digits:odd_even share one entry.
        if task.content_hash not in self._pixel_hashes:
            self._pixel_hashes[task.content_hash] = hashlib.sha256(task.pixels.tobytes()).hexdigest()[:16]
        source = task.name.split(":", 1)[0]
        subject = _CacheSubject(f"{source}-images", self._pixel_hashes[task.content_hash], task.pixels)
        return self.cache.get(subject, module.name, compute)

    def _train(self, spec: ChildSpec, task: ImageTask, seed: int, started: float, keep_model: bool,
               fidelity: Fidelity | None = None) -> ChildResult:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        phases = {}
        clock = time.perf_counter()
        module = get_image_module(spec.input_module) if spec.use_deep else None
        features = encoder = None
        if module is not None:
            if spec.fine_tune:
                encoder = module.encoder(task.height, task.width)
            else:
                features = self.frozen_features(task, module)
        phases["features"] = time.perf_counter() - clock

        dim = module.dimension(task.height, task.width) if module is not None else 0
        model = ImageWideDeep(spec, dim, task.height * task.width, task.num_classes, encoder).to(self.device)
        optimizer = proximal_adagrad_for(model, spec)
        labels = torch.from_numpy(task.labels).to(self.device)
        dev = self.device

        def make_batch(rows: np.ndarray) -> dict[str, Tensor]:
            batch = {}
            if encoder is not None or spec.use_wide:
                batch["pixels"] = torch.from_numpy(np.array(task.pixels[rows])).to(dev)
            if features is not None:
                batch["features"] = torch.from_numpy(np.array(features[rows])).to(dev)
            return batch

        deadline = started + self.config.timeout_s if self.config.timeout_s is not None else math.inf
        steps = spec.train_steps
        if encoder is not None and module.pretrained:
            steps = math.ceil(steps * self.config.network_fine_tune_scale)
        eval_batch = self.config.encoder_eval_batch_size * 4 if encoder is not None else self.config.eval_batch_size
        return self._fit_and_score(model, optimizer, make_batch, labels, task.splits, steps, rng, deadline,
                                   eval_batch, started, phases, keep_model, fidelity)
