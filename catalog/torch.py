"""A ``torch.utils.data.Dataset`` over a published version (imported only where torch is)."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from catalog.consume import load


class SyntheticDataset(Dataset):
    """Items are (float image (C, H, W) in [0, 1], label) — label -1 when unlabelled.

    ``transform``, if given, is applied to the image tensor.
    """

    def __init__(self, name: str, version: int | None = None, root=None, transform=None):
        images, labels = load(name, version, root)
        self.images = torch.from_numpy(images)
        self.labels = torch.from_numpy(labels) if labels is not None else torch.full((len(images),), -1)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        x = self.images[i].float() / 255.0
        return (self.transform(x) if self.transform else x), int(self.labels[i])
