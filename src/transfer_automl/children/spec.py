"""Read a sampled configuration as a child specification.

Both built-in spaces map onto one `ChildSpec`: the 12 decisions of Transfer AutoML directly, the
7 of MNMS as a deep-tower-only ReLU network. Unknown decision names are rejected, so a custom
space cannot silently ask for something the trainer ignores.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from transfer_automl.children.tokens import WIDE_FEATURES
from transfer_automl.errors import SearchSpaceError

TAML_KEYS = {
    "input_module", "fine_tune", "hidden_layers", "hidden_size", "activation", "normalization",
    "dropout", "deep_lr", "deep_reg", "wide_lr", "wide_reg", "training_samples",
}
# Optional Transfer AutoML decision: the wide tower's features (children/tokens.py WIDE_FEATURES);
# a space without it gets the papers' binary unigrams.
OPTIONAL_TAML_KEYS = {"wide_features"}
MNMS_KEYS = {"embedding_table", "trainable", "layers", "nodes", "learning_rate", "iterations", "l2"}
DISABLE_DEEP = "disable_deep_tower"
DISABLE_WIDE = "disable_wide_tower"


@dataclass(frozen=True)
class ChildSpec:
    input_module: str
    fine_tune: bool
    hidden_layers: int
    hidden_size: int
    activation: str = "relu"  # relu | swish
    normalization: str = "none"  # none | batch | layer
    dropout: float = 0.0
    deep_lr: float = 0.01
    deep_l2: float = 0.0
    use_deep: bool = True
    wide_lr: float = 0.01
    wide_l1: float = 0.0
    use_wide: bool = False
    wide_features: str = "binary"  # binary | tfidf (children/tokens.py)
    train_steps: int = 100  # batches, after budget scaling

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def child_spec(config: dict[str, Any], budget_scale: float, batch_size: int) -> ChildSpec:
    """`budget_scale` multiplies the training budget the space asks for (documented CPU factor)."""
    keys = set(config)
    if keys - OPTIONAL_TAML_KEYS == TAML_KEYS:
        return _taml_spec(config, budget_scale, batch_size)
    if keys == MNMS_KEYS:
        return _mnms_spec(config, budget_scale)
    unknown = sorted(keys - TAML_KEYS - OPTIONAL_TAML_KEYS - MNMS_KEYS)
    raise SearchSpaceError(
        "the text child trainer understands the decisions of 'taml-text' "
        f"({sorted(TAML_KEYS)}) or 'mnms-text' ({sorted(MNMS_KEYS)}); "
        + (f"unknown decision(s) {unknown}" if unknown else f"got an incomplete set {sorted(keys)}")
    )


def _steps(amount: float, budget_scale: float) -> int:
    return max(1, math.ceil(amount * budget_scale))


def _taml_spec(c: dict[str, Any], budget_scale: float, batch_size: int) -> ChildSpec:
    wide_features = str(c.get("wide_features", "binary"))
    if wide_features not in WIDE_FEATURES:
        raise SearchSpaceError(f"decision 'wide_features' must be one of {list(WIDE_FEATURES)}, got {wide_features!r}")
    use_deep = c["deep_reg"] != DISABLE_DEEP
    use_wide = c["wide_reg"] != DISABLE_WIDE
    return ChildSpec(
        input_module=str(c["input_module"]), fine_tune=bool(c["fine_tune"]),
        hidden_layers=int(c["hidden_layers"]), hidden_size=int(c["hidden_size"]),
        activation=str(c["activation"]), normalization=str(c["normalization"]),
        dropout=float(c["dropout"]), deep_lr=float(c["deep_lr"]),
        deep_l2=float(c["deep_reg"]) if use_deep else 0.0, use_deep=use_deep,
        wide_lr=float(c["wide_lr"]), wide_l1=float(c["wide_reg"]) if use_wide else 0.0, use_wide=use_wide,
        wide_features=wide_features, train_steps=_steps(int(c["training_samples"]) / batch_size, budget_scale),
    )


def _mnms_spec(c: dict[str, Any], budget_scale: float) -> ChildSpec:
    return ChildSpec(
        input_module=str(c["embedding_table"]), fine_tune=bool(c["trainable"]),
        hidden_layers=int(c["layers"]), hidden_size=int(c["nodes"]),
        deep_lr=float(c["learning_rate"]), deep_l2=float(c["l2"]),
        train_steps=_steps(int(c["iterations"]), budget_scale),
    )
