"""The seed papers' search spaces, shipped as built-ins.

Module names refer to the input embedding modules registered in `children.embeddings`; this
package stays free of torch, so it only names them.

Training budgets (`iterations`, `training_samples`) keep the papers' values. CPU runs shrink
them with the child trainer's `budget_scale` setting, which is logged with every search; the
space itself never changes silently.
"""

from __future__ import annotations

from pathlib import Path

from transfer_automl.errors import SearchSpaceError
from transfer_automl.registry import Registry
from transfer_automl.space.decisions import Decision, SearchSpace
from transfer_automl.space.io import load_space

# Multitask Neural Model Search, Table 1 (7 decisions). The paper's word tables were in-house;
# here: the pretrained GloVe table and a randomly initialized hashed n-gram table.
MNMS_TEXT = SearchSpace(
    "mnms-text",
    (
        Decision("embedding_table", ("glove-6b-50d", "random-hashed-64"), "word embedding table"),
        Decision("trainable", (False, True), "keep training the embedding table"),
        Decision("layers", (1, 2, 3, 5, 10), "number of ReLU hidden layers"),
        Decision("nodes", (5, 10, 50, 100), "units per hidden layer"),
        Decision("learning_rate", (0.001, 0.01, 0.05, 0.1), "Proximal Adagrad learning rate"),
        Decision("iterations", (5000, 10000, 15000, 20000), "training steps of batch 100"),
        Decision("l2", (0.0, 0.0001, 0.001, 0.01), "L2 regularization weight"),
    ),
)

# Transfer AutoML, supplementary Table 1 (12 decisions), two-tower wide & deep children.
TAML_TEXT = SearchSpace(
    "taml-text",
    (
        Decision("input_module", ("glove-6b-50d", "all-minilm-l6-v2", "random-hashed-64"), "input embedding module"),
        Decision("fine_tune", (False, True), "fine-tune the input embedding module"),
        Decision("hidden_layers", (1, 2, 3, 5, 7), "number of hidden layers"),
        Decision("hidden_size", (8, 16, 32, 64, 128, 256), "hidden layer width"),
        Decision("activation", ("relu", "swish"), "hidden layer activation"),
        Decision("normalization", ("none", "batch", "layer"), "hidden layer normalization"),
        Decision("dropout", (0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6), "hidden layer dropout rate"),
        Decision("deep_lr", (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0), "deep tower learning rate"),
        Decision("deep_reg", (0.0, 0.00001, 0.0001, 0.001, 0.01, 0.1, "disable_deep_tower"), "deep tower L2 weight"),
        Decision("wide_lr", (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0), "wide tower learning rate"),
        Decision("wide_reg", (0.0, 0.00001, 0.0001, 0.001, 0.01, 0.1, "disable_wide_tower"), "wide tower L1 weight"),
        Decision("training_samples", (1000, 3000, 10000, 30000, 100000, 300000, 1000000), "training examples seen"),
    ),
)

# The same 12 decisions with every installed text module: spaCy vectors, multilingual e5-small and
# Universal Sentence Encoder join GloVe, MiniLM and the random table. The sentence encoders are
# frozen only, so more configurations are invalid (fine-tuning them); embedding e5 and USE
# features also costs more CPU time the first time a task meets them.
TAML_TEXT_ALL_MODULES = SearchSpace(
    "taml-text-all-modules",
    (Decision("input_module", ("glove-6b-50d", "spacy-en-md-300d", "all-minilm-l6-v2", "me5-small",
                               "use-multilingual-v3", "random-hashed-64"), "input embedding module"),
     *TAML_TEXT.decisions[1:]),
)

# Transfer AutoML 4.5: the same 12 decisions for image tasks. The paper's modules were ImageNet
# networks up to the logits (MobileNet, Inception, ResNet); here the raw pixels, a small CNN
# (random init, trained when fine-tuned) and EfficientNet-Lite0 pretrained on ImageNet. The wide
# tower reads the pixels. Fine-tuning raw pixels is invalid (nothing to tune).
TAML_IMAGE = SearchSpace(
    "taml-image",
    (Decision("input_module", ("raw-pixels", "small-cnn", "efficientnet-lite0"), "image input module"),
     *TAML_TEXT.decisions[1:]),
)

# The CPU demo (`make run`): the 12 decisions of `taml-text` cut to what a CPU trains in about a
# second. Frozen modules only (features cached per task and module; GloVe and the hashed table take
# seconds to embed a task, MiniLM minutes), at most 2 x 256 hidden units, and at most 10,000
# training samples: with --budget-scale 1 (the papers' budgets, as `make run` passes) a child trains
# at most 100 Proximal Adagrad steps of batch 100, like the real-task table of
# docs/benchmarks/taml_text_real.md.
TAML_TEXT_CPU = SearchSpace(
    "taml-text-cpu",
    (
        Decision("input_module", ("glove-6b-50d", "random-hashed-64"), "input embedding module (frozen)"),
        Decision("fine_tune", (False,), "fine-tune the input embedding module (never, on a CPU demo)"),
        Decision("hidden_layers", (1, 2), "number of hidden layers"),
        Decision("hidden_size", (16, 64, 256), "hidden layer width"),
        Decision("activation", ("relu", "swish"), "hidden layer activation"),
        Decision("normalization", ("none", "layer"), "hidden layer normalization"),
        Decision("dropout", (0.0, 0.1, 0.3), "hidden layer dropout rate"),
        Decision("deep_lr", (0.01, 0.03, 0.1, 0.3), "deep tower learning rate"),
        Decision("deep_reg", (0.0, 0.0001, "disable_deep_tower"), "deep tower L2 weight"),
        Decision("wide_lr", (0.03, 0.3, 3.0), "wide tower learning rate"),
        Decision("wide_reg", (0.0, 0.0001, "disable_wide_tower"), "wide tower L1 weight"),
        Decision("training_samples", (1000, 3000, 10000), "training examples seen"),
    ),
)

# The quality benchmark's space (benchmarks/quality.py, docs/benchmarks/quality.md): the frozen CPU
# modules of `taml-text-cpu` trained for the papers' long budgets, 30,000 to 1,000,000 samples (300
# to 10,000 steps at --budget-scale 1), meant for `--fidelity asha`, which trains most children for
# a ninth of that. Measured on sst2 (1 torch thread): the wide tower alone gains 3 points from
# learning rate 0.3 to 1-3 and loses 3 with L1 1e-4 at 1,000 steps, so larger wide learning rates
# and smaller L1 weights are offered; fine-tuning is left out (a fine-tuned hashed table trains
# 3,000 steps in 150 CPU-seconds, 50x a frozen child, for no measured gain). The wide tower may
# read TF-IDF word 1-2 grams instead of binary unigrams (children/tokens.py): alone at learning
# rate 10-30 it reached 83.7 % test on 20newsgroups (binary: 79.9) and 33 on primary_emotions
# (19.8), so learning rates up to 30 are offered (binary unigrams do best at 1-3).
TAML_TEXT_CPU_FULL = SearchSpace(
    "taml-text-cpu-full",
    (
        Decision("input_module", ("glove-6b-50d", "random-hashed-64"), "input embedding module (frozen)"),
        Decision("fine_tune", (False,), "fine-tune the input embedding module (never: see above)"),
        Decision("hidden_layers", (1, 2, 3), "number of hidden layers"),
        Decision("hidden_size", (64, 128, 256), "hidden layer width"),
        Decision("activation", ("relu", "swish"), "hidden layer activation"),
        Decision("normalization", ("none", "layer"), "hidden layer normalization"),
        Decision("dropout", (0.0, 0.1, 0.3, 0.5), "hidden layer dropout rate"),
        Decision("deep_lr", (0.01, 0.03, 0.1, 0.3), "deep tower learning rate"),
        Decision("deep_reg", (0.0, 0.0001, 0.001, "disable_deep_tower"), "deep tower L2 weight"),
        Decision("wide_lr", (0.3, 1.0, 3.0, 10.0, 30.0), "wide tower learning rate"),
        Decision("wide_reg", (0.0, 0.00001, 0.0001, "disable_wide_tower"), "wide tower L1 weight"),
        Decision("wide_features", ("binary", "tfidf"), "wide tower features: binary unigrams or TF-IDF 1-2 grams"),
        Decision("training_samples", (30000, 100000, 300000, 1000000), "training examples seen"),
    ),
)

BUILTIN_SPACES: Registry[SearchSpace] = Registry("built-in search space")
for _space in (MNMS_TEXT, TAML_TEXT, TAML_TEXT_ALL_MODULES, TAML_IMAGE, TAML_TEXT_CPU, TAML_TEXT_CPU_FULL):
    BUILTIN_SPACES.register(_space.name, _space)


def get_space(name_or_path: str) -> SearchSpace:
    """A built-in space by name, or a space file (.yaml/.yml/.json) by path."""
    if name_or_path in BUILTIN_SPACES:
        return BUILTIN_SPACES[name_or_path]
    if Path(name_or_path).suffix.lower() in {".yaml", ".yml", ".json"}:
        return load_space(name_or_path)
    raise SearchSpaceError(
        f"search space {name_or_path!r} is neither a built-in ({sorted(BUILTIN_SPACES)}) "
        "nor a .yaml/.yml/.json file"
    )
