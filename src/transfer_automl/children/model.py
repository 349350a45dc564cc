"""Two-tower wide & deep classifier (Transfer AutoML, section 4.1).

deep tower: input module (frozen features, a fine-tuned EmbeddingBag, or a fine-tuned encoder such
            as a sentence transformer) -> hidden_layers x
            [Linear(hidden_size) -> norm -> activation -> dropout] -> Linear(num_classes)
wide tower: one-hot token features (or TF-IDF weighted word 1-2 grams, children/tokens.py) ->
            Linear(num_classes), i.e. a (weighted) sum of per-token class weights
logits = deep + wide (either tower may be disabled by the configuration)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from transfer_automl.children.spec import ChildSpec

ACTIVATIONS = {"relu": nn.ReLU, "swish": nn.SiLU}


def _norm(kind: str, width: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "layer":
        return nn.LayerNorm(width)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"normalization must be none|batch|layer, got {kind!r}")


def deep_tower(spec: ChildSpec, input_dim: int, num_classes: int) -> nn.Sequential:
    """hidden_layers x [Linear -> norm -> activation -> dropout] -> Linear(num_classes)."""
    if spec.activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {spec.activation!r}")
    layers: list[nn.Module] = []
    width = input_dim
    for _ in range(spec.hidden_layers):
        layers += [nn.Linear(width, spec.hidden_size), _norm(spec.normalization, spec.hidden_size),
                   ACTIVATIONS[spec.activation](), nn.Dropout(spec.dropout)]
        width = spec.hidden_size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


class WideDeepClassifier(nn.Module):
    """`encoder` (optional): a trainable module mapping batch["encoder_inputs"] to [B, input_dim]."""

    def __init__(self, spec: ChildSpec, input_dim: int, num_classes: int,
                 table_weights: np.ndarray | None = None, wide_vocab: int = 0, encoder: nn.Module | None = None):
        super().__init__()
        self.spec = spec
        self.embedding = None
        if spec.use_deep and table_weights is not None:
            self.embedding = nn.EmbeddingBag.from_pretrained(
                torch.from_numpy(table_weights), freeze=False, mode="mean"
            )
        self.encoder = encoder if spec.use_deep else None
        self.deep = deep_tower(spec, input_dim, num_classes) if spec.use_deep else None
        self.wide = None
        if spec.use_wide:
            # Sparse gradients: a batch touches a few thousand of up to 260,000 rows, and a dense
            # gradient of the whole table cost 50 of a 20newsgroups step's 58 ms (children/optim.py).
            self.wide = nn.EmbeddingBag(max(wide_vocab, 1), num_classes, mode="sum", sparse=True)
            nn.init.zeros_(self.wide.weight)
            self.wide_bias = nn.Parameter(torch.zeros(num_classes))

    def deep_parameters(self) -> list[nn.Parameter]:
        params = list(self.deep.parameters()) if self.deep is not None else []
        params += list(self.embedding.parameters()) if self.embedding is not None else []
        return params + (list(self.encoder.parameters()) if self.encoder is not None else [])

    def wide_parameters(self) -> list[nn.Parameter]:
        return [self.wide.weight, self.wide_bias] if self.wide is not None else []

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        logits = None
        if self.deep is not None:
            if self.embedding is not None:
                x = self.embedding(batch["ids"], batch["offsets"])
            elif self.encoder is not None:
                x = self.encoder(batch["encoder_inputs"])
            else:
                x = batch["features"]
            logits = self.deep(x)
        if self.wide is not None:
            wide = self.wide(batch["wide_ids"], batch["wide_offsets"], per_sample_weights=batch.get("wide_weights"))
            wide = wide + self.wide_bias
            logits = wide if logits is None else logits + wide
        return logits


class SentenceEmbedding(nn.Module):
    """A sentence-transformers model as an encoder: token batch -> its `sentence_embedding`."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        return self.inner(dict(inputs))["sentence_embedding"]
