"""Image transforms on uint8 tensors `(3, H, W)`, written with torch ops (no torchvision).

All randomness comes from torch's global RNG, so `torch.manual_seed` (and DataLoader worker seeding)
makes augmentation reproducible.

Every source, ImageFolder ones included, is normalized with the CIFAR-10 per-channel statistics
(mean (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435, 0.2616)): one fixed input scale for all data.

Two regimes, chosen by the image size the network expects:
- `image_size <= 64` (CIFAR style): images are stored at `image_size`; training pads 4 zero pixels,
  crops back at a random offset and flips horizontally; evaluation uses the image as stored.
- `image_size > 64` (ImageNet style): images are stored as squares of `stored_size(image_size)`
  (`image_size / 0.875`); training takes a random-resized crop (scale 0.08-1, ratio 3/4-4/3)
  resized to `image_size`, and flips; evaluation takes the central `image_size` crop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
SMALL_IMAGE_MAX = 64  # sizes up to this use the CIFAR regime
CROP_FRACTION = 0.875  # ImageNet convention: evaluate on the central 87.5%

Transform = Callable[[torch.Tensor], torch.Tensor]


def stored_size(image_size: int) -> int:
    """Side of the square an image is stored at: `image_size` (small) or `image_size / 0.875`."""
    if image_size <= SMALL_IMAGE_MAX:
        return image_size
    return round(image_size / CROP_FRACTION)


@dataclass(frozen=True)
class Compose:
    """Apply `steps` in order."""

    steps: tuple[Transform, ...]

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            img = step(img)
        return img


@dataclass(frozen=True)
class PadRandomCrop:
    """Zero-pad by `pad` pixels on every side, then crop the original size at a random offset."""

    pad: int = 4

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        _, height, width = img.shape
        padded = F.pad(img, (self.pad,) * 4)  # (3, H + 2p, W + 2p)
        top = int(torch.randint(0, 2 * self.pad + 1, ()))
        left = int(torch.randint(0, 2 * self.pad + 1, ()))
        return padded[:, top:top + height, left:left + width]


@dataclass(frozen=True)
class RandomHorizontalFlip:
    """Mirror left-right with probability `p`."""

    p: float = 0.5

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        return img.flip(-1) if float(torch.rand(())) < self.p else img


@dataclass(frozen=True)
class RandomResizedCrop:
    """Crop a random area fraction in `scale` with aspect ratio in `ratio`, resize to `size`."""

    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        top, left, height, width = self.box(img.shape[1], img.shape[2])
        return resize(img[:, top:top + height, left:left + width], self.size)

    def box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Sample (top, left, height, width); after 10 misses fall back to the central square."""
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            area = height * width * float(torch.empty(()).uniform_(*self.scale))
            aspect = math.exp(float(torch.empty(()).uniform_(*log_ratio)))
            w = round(math.sqrt(area * aspect))
            h = round(math.sqrt(area / aspect))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, ()))
                left = int(torch.randint(0, width - w + 1, ()))
                return top, left, h, w
        side = min(height, width)
        return (height - side) // 2, (width - side) // 2, side, side


@dataclass(frozen=True)
class CenterCrop:
    """Central `size` x `size` crop."""

    size: int

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        _, height, width = img.shape
        assert height >= self.size and width >= self.size, (img.shape, self.size)
        top, left = (height - self.size) // 2, (width - self.size) // 2
        return img[:, top:top + self.size, left:left + self.size]


@dataclass(frozen=True)
class Normalize:
    """uint8 `(3, H, W)` -> float32 `(3, H, W)`, scaled to [0, 1] then standardized per channel."""

    mean: tuple[float, float, float] = CIFAR10_MEAN
    std: tuple[float, float, float] = CIFAR10_STD

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return (img.float() / 255.0 - mean) / std


def resize(img: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear, antialiased resize of a uint8 `(3, H, W)` tensor to `(3, size, size)`."""
    out = F.interpolate(img[None], size=(size, size), mode="bilinear",
                        align_corners=False, antialias=True)  # (1, 3, size, size)
    return out[0]


def build_transforms(image_size: int, augment: bool) -> tuple[Compose, Compose]:
    """(train transform, eval transform) for images stored at `stored_size(image_size)`."""
    if image_size <= SMALL_IMAGE_MAX:
        eval_steps: tuple[Transform, ...] = ()
        train_steps: tuple[Transform, ...] = (PadRandomCrop(4), RandomHorizontalFlip())
    else:
        eval_steps = (CenterCrop(image_size),)
        train_steps = (RandomResizedCrop(image_size), RandomHorizontalFlip())
    if not augment:
        train_steps = eval_steps
    return Compose(train_steps + (Normalize(),)), Compose(eval_steps + (Normalize(),))
