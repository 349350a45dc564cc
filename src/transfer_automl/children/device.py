"""Where children train: CUDA when present, else CPU."""

from __future__ import annotations

import torch


def pick_device(preference: str = "auto") -> torch.device:
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)
