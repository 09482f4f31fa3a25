"""Scoring a trained supernet against ground truth: the accuracy it gives each of many subnets, ready for
`quality.ranking_report`.

Every subnet is scored on the same images: one fixed subset of the valid split, and, when BN is
recalibrated, the same train batches for each (see `quality.recalibrate_bn` for why it matters).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from proxyless.infra.distributed import keyed_generator
from proxyless.search.quality import GroundTruth, subnet_accuracy
from proxyless.search.supernet import SuperNet


def fixed_subset(data: Dataset, count: int, seed: int, stream: int) -> Subset:
    """`count` items of `data` (all if fewer), chosen by a permutation keyed by (seed, stream)."""
    order = torch.randperm(len(data), generator=keyed_generator(seed, stream))
    return Subset(data, sorted(order[:count].tolist()))


def scoring_batches(valid: Dataset, train: Dataset | None, images: int, bn_batches: int, batch_size: int,
                    seed: int) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[torch.Tensor] | None]:
    """What every subnet is scored on, decoded once for all of them: `images` valid images as (images,
    targets) batches, and `bn_batches` train image batches that recalibrate BN (None without `train`)."""
    loader = list(DataLoader(fixed_subset(valid, images, seed, 11), batch_size=batch_size))
    if train is None:
        return loader, None
    calibration = DataLoader(fixed_subset(train, bn_batches * batch_size, seed, 12), batch_size=batch_size)
    return loader, [images for images, _ in calibration]  # (B, 3, H, W) each


def supernet_scores(supernet: SuperNet, archs: Sequence[Sequence[int]], truth: GroundTruth, valid: Dataset,
                    train: Dataset | None = None, *, images: int = 1000, bn_batches: int = 8, batch_size: int = 100,
                    seed: int = 0, progress: bool = True) -> dict[str, float]:
    """{code: top-1 of that subnet on `images` valid images}, BN recalibrated on `bn_batches` train batches
    of `batch_size` first when `train` is given (else the supernet's running statistics are used)."""
    loader, batches = scoring_batches(valid, train, images, bn_batches, batch_size, seed)
    memory_format = torch.channels_last
    scores = {}
    for indices in tqdm(archs, desc="scoring subnets", unit="net", disable=not progress):
        scores[truth.code_of(indices)] = subnet_accuracy(supernet, list(indices), loader, batches,
                                                         memory_format=memory_format)
    return scores
