"""Tokenization and bags of token ids in CSR form (flat ids + offsets), the input of EmbeddingBag."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np

_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Lower-cased words and single punctuation marks (GloVe's vocabulary keeps both)."""
    return _TOKEN.findall(text.lower())


def stable_hash(token: str) -> int:
    """A hash that is the same in every process (Python's hash() is salted per process)."""
    return zlib.crc32(token.encode("utf-8"))


@dataclass
class TokenBags:
    """Bags of ids for N texts: text i holds ids[offsets[i]:offsets[i+1]]."""

    ids: np.ndarray  # [total] int64
    offsets: np.ndarray  # [N + 1] int64

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def select(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ids and start offsets ([len(rows)]) of the given rows, as EmbeddingBag wants them."""
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        lengths = ends - starts
        ids = np.concatenate([self.ids[s:e] for s, e in zip(starts, ends, strict=True)]) if len(rows) else self.ids[:0]
        bag_offsets = np.zeros(len(rows), dtype=np.int64)
        np.cumsum(lengths[:-1], out=bag_offsets[1:])
        return ids, bag_offsets

    @classmethod
    def from_lists(cls, bags: list[list[int]]) -> TokenBags:
        lengths = np.fromiter((len(b) for b in bags), dtype=np.int64, count=len(bags))
        offsets = np.zeros(len(bags) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = np.fromiter((i for b in bags for i in b), dtype=np.int64, count=int(offsets[-1]))
        return cls(ids, offsets)


def compact(bags: TokenBags) -> tuple[TokenBags, np.ndarray]:
    """Renumber ids to 0..V-1 (the ids a task uses); returns the new bags and the old id of each."""
    used, local = np.unique(bags.ids, return_inverse=True)
    return TokenBags(local.astype(np.int64), bags.offsets), used


def hashed_unigram_bags(texts: list[str], buckets: int, unique: bool = True) -> TokenBags:
    """One-hot token features for the wide tower: hashed unigram ids, each once per text."""
    out = []
    for text in texts:
        ids = [stable_hash(t) % buckets for t in tokenize(text)]
        out.append(sorted(set(ids)) if unique else ids)
    return TokenBags.from_lists(out)
