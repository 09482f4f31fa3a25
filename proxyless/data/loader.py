"""DataLoader construction with seeded shuffling."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from .errors import DataError


def make_loader(dataset: Dataset, batch_size: int, *, train: bool, seed: int = 0,
                num_workers: int = 0) -> DataLoader:
    """train=True: shuffled with a torch.Generator seeded by `seed`, drop_last=True; train=False:
    in order, keep last.

    The generator also seeds worker processes, so augmentation is reproducible with workers too.
    Raises DataError if train and batch_size > len(dataset).
    """
    if batch_size < 1:
        raise DataError(f"batch size {batch_size} must be at least 1; raise --batch-size")
    if train and batch_size > len(dataset):
        raise DataError(f"batch size {batch_size} is larger than the {len(dataset)} training "
                        "images; lower --batch-size")
    generator = torch.Generator().manual_seed(seed) if train else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=train, drop_last=train,
                      generator=generator, num_workers=num_workers,
                      persistent_workers=num_workers > 0)
