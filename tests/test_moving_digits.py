"""Moving digits: deterministic, held-out handwriting, digits that stay whole inside the frame and move
at the speed asked for."""

from __future__ import annotations

import pytest
import torch

from rnnkit.data.moving_digits import copy_last_frame, digit_images, moving_digits


def test_shape_range_and_seed():
    video = moving_digits(3, 5, seed=1)
    assert video.shape == (3, 5, 1, 32, 32) and video.dtype == torch.float32
    assert video.min() >= 0 and video.max() <= 1 and video.max() > 0.9
    assert torch.equal(video, moving_digits(3, 5, seed=1))
    assert not torch.equal(video, moving_digits(3, 5, seed=2))


def test_test_images_are_held_out():
    train, test = digit_images("train", 8), digit_images("test", 8)
    assert (len(train), len(test)) == (1347, 450)
    # all 1,797 images are distinct, so no test image is in the training part
    assert len(torch.unique(torch.cat([train, test]).flatten(1), dim=0)) == 1797
    assert not torch.equal(moving_digits(2, 3, split="train"), moving_digits(2, 3, split="test"))


def test_one_digit_stays_whole_and_moves_at_its_speed():
    video = moving_digits(20, 30, digits=1, digit_size=8, speed=(2.0, 2.0), seed=3)[:, :, 0]  # (N, T, 32, 32)
    mass = video.sum((2, 3))  # a digit cut by the frame's edge would lose mass
    torch.testing.assert_close(mass, mass[:, :1].expand_as(mass))
    rows, cols = torch.arange(32.0)[:, None], torch.arange(32.0)[None, :]
    centre = torch.stack([(video * rows).sum((2, 3)), (video * cols).sum((2, 3))], -1) / mass[..., None]
    step = (centre[:, 1:] - centre[:, :-1]).norm(dim=-1)  # pixels per frame, rounded to the grid
    assert step.max() <= 2 + 2**0.5 and step.median() > 1.5
    assert (step.mean(1) > 1).all()  # every digit moves (a bounce only turns it around)


def test_copy_last_frame_and_errors():
    video = moving_digits(2, 6)
    baseline = copy_last_frame(video[:, :4], 3)
    assert baseline.shape == (2, 3, 1, 32, 32) and torch.equal(baseline[:, 2], video[:, 3])
    with pytest.raises(ValueError, match="digit_size must be <= size"):
        moving_digits(1, 2, size=12)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        moving_digits(1, 2, split="valid")
    with pytest.raises(ValueError, match="speed must be a range"):
        moving_digits(1, 2, speed=(3.0, 1.0))
