"""DiffAugment: what the discriminator sees is shifted and cut out, differentiably and reproducibly."""

import pytest
import torch

from gan.augment import augment, cutout, parse, translate
from gan.models import ModelConfig
from gan.train import TrainConfig, train


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_parse():
    assert parse("") == parse("none") == ()
    assert parse("translation, cutout") == parse("translation+cutout") == ("translation", "cutout")
    with pytest.raises(ValueError, match=r"unknown augmentation 'rotate'; choose from \['translation', 'cutout'\]"):
        parse("translation,rotate")


def test_translation_shifts_whole_images_with_zero_fill():
    x = torch.rand(64, 2, 16, 12) + 1.0  # no zeros of its own
    out = translate(x, gen())
    for i in range(len(x)):
        found = []
        for dy in range(-2, 3):          # 1/8 of 16 rows
            for dx in range(-2, 3):      # 1/8 of 12 columns, rounded
                shifted = torch.zeros_like(x[i])
                src = x[i][:, max(0, -dy):16 - max(0, dy), max(0, -dx):12 - max(0, dx)]
                shifted[:, max(0, dy):max(0, dy) + src.shape[1], max(0, dx):max(0, dx) + src.shape[2]] = src
                if torch.equal(shifted, out[i]):
                    found.append((dy, dx))
        assert len(found) == 1, i
    assert len({tuple(translate(x, gen(s))[0].flatten()[:40].tolist()) for s in range(8)}) > 1  # random


def test_cutout_zeroes_one_square_of_half_the_side():
    x = torch.ones(200, 1, 16, 16)
    out = cutout(x, gen())
    zeros = (out == 0).sum((1, 2, 3))
    assert zeros.max() == 64 and zeros.min() >= 16  # 8x8; centred on a corner, 4x4 of it remain
    for img in out[:, 0]:
        rows, cols = (img == 0).any(1).nonzero().flatten(), (img == 0).any(0).nonzero().flatten()
        assert (img[rows.min():rows.max() + 1, cols.min():cols.max() + 1] == 0).all()  # one rectangle


def test_augment_is_reproducible_and_passes_gradients():
    x = torch.rand(8, 1, 12, 12, requires_grad=True)
    a = augment(x, ("translation", "cutout"), gen(3))
    assert torch.equal(a, augment(x, ("translation", "cutout"), gen(3)))
    assert augment(x, (), gen(3)) is x
    a.sum().backward()
    assert x.grad is not None and 0 < x.grad.sum() < x.numel()  # shifted-out and cut pixels get none


def test_training_with_augmentation_is_reproducible():
    x, y = torch.randint(0, 256, (48, 1, 8, 8), dtype=torch.uint8), torch.randint(0, 3, (48,))
    cfg = TrainConfig(steps=10, batch_size=8, log_every=5, grid_every=0, checkpoint_every=0, augment="translation,cutout")
    model = ModelConfig(kind="dcgan", height=8, width=8, num_classes=3, hidden=16)
    a, b = train(cfg, model, x, y), train(cfg, model, x, y)
    plain = train(TrainConfig(**{**cfg.to_dict(), "augment": ""}), model, x, y)
    for key, value in a.generator.state_dict().items():
        assert torch.equal(value, b.generator.state_dict()[key])
    assert any(not torch.equal(v, plain.generator.state_dict()[k]) for k, v in a.generator.state_dict().items())
