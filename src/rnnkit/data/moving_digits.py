"""Moving digits: scikit-learn's 8x8 handwritten digits bouncing in a frame, for next-frame prediction.

Built the way Moving MNIST is (Srivastava et al. 2015, sec. 3.1; used by Shi et al. 2015 for ConvLSTM):
each sequence places ``digits`` digit images at random positions in a ``size`` x ``size`` frame, gives
each a random direction and speed, and moves them; a digit that would leave the frame bounces off the
edge. Overlapping digits combine by their pixel-wise maximum. The digit images are split once into
training and test images (a fixed, stratified quarter held out), so test sequences show handwriting
the model has not seen. Everything is drawn from ``seed``: the same arguments give the same frames.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError, check_int

HELD_OUT = 0.25  # fraction of each digit class kept for test sequences


@lru_cache(maxsize=8)  # a training run draws every batch from the same images
def digit_images(split: str, digit_size: int = 16) -> Tensor:
    """The 8x8 digits of one split, scaled to [0, 1] and resized (bilinear) to ``digit_size``:
    (N, digit_size, digit_size); train 1,347 images, test 450. (Cached: do not modify it.)"""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # a dependency, but say what to do if it is missing
        raise InputError("the digits come from scikit-learn: pip install scikit-learn") from e
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32) / 16.0  # (1797, 8, 8)
    labels = digits.target
    rng = np.random.default_rng(0)  # the split is fixed, whatever seed the sequences use
    test = np.zeros(len(labels), dtype=bool)
    for digit in range(10):
        members = np.flatnonzero(labels == digit)
        test[rng.permutation(members)[: round(HELD_OUT * len(members))]] = True
    images = images[torch.from_numpy(test if split == "test" else ~test)]
    if digit_size != 8:
        images = F.interpolate(images[:, None], size=(digit_size, digit_size), mode="bilinear")[:, 0]
    return images.clamp(0.0, 1.0)


def moving_digits(
    n: int,
    frames: int = 20,
    *,
    size: int = 32,
    digits: int = 2,
    digit_size: int = 16,
    speed: tuple[float, float] = (1.0, 3.0),
    split: str = "train",
    seed: int = 0,
) -> Tensor:
    """``n`` sequences of ``frames`` frames: (n, frames, 1, size, size), float32 in [0, 1].

    Args:
        digits: digits per sequence (each a random image of the split).
        digit_size: side of a digit in pixels (the 8x8 images resized; 8 keeps them as they are).
        speed: each digit's speed in pixels per frame is uniform in this range, its direction uniform.
        split: "train" or "test": which digit images are drawn.
        seed: the random positions, directions, speeds and images all come from it.
    """
    for name, value in (("n", n), ("frames", frames), ("size", size), ("digits", digits)):
        check_int(name, value)
    check_int("digit_size", digit_size)
    if digit_size > size:
        raise ValueError(f"digit_size must be <= size, got digit_size={digit_size} and size={size}")
    low, high = speed
    if not 0 <= low <= high:
        raise ValueError(f"speed must be a range (low, high) with 0 <= low <= high, got {speed}")
    images = digit_images(split, digit_size).numpy()
    rng = np.random.default_rng(seed)
    room = size - digit_size  # top-left corners lie in [0, room]
    chosen = images[rng.integers(len(images), size=(n, digits))]  # (n, D, s, s)
    position = rng.uniform(0, room, size=(n, digits, 2))  # (n, D, 2): row, column
    angle = rng.uniform(0, 2 * np.pi, size=(n, digits))
    velocity = rng.uniform(low, high, size=(n, digits))[..., None] * np.stack(
        [np.sin(angle), np.cos(angle)], -1
    )

    corners = np.empty((frames, n, digits, 2), dtype=np.int64)
    for t in range(frames):
        corners[t] = np.rint(position)
        position = position + velocity
        # bounce: reflect what went past an edge back inside, and turn that direction around
        below, above = position < 0, position > room
        position = np.where(below, -position, np.where(above, 2 * room - position, position))
        velocity = np.where(below | above, -velocity, velocity)
        position = position.clip(0, room)  # a speed above the room itself cannot leave the frame

    video = np.zeros((n, frames, size, size), dtype=np.float32)
    span = np.arange(digit_size)
    seq, time = np.arange(n)[:, None, None, None], np.arange(frames)[None, :, None, None]
    for d in range(digits):
        rows = corners[:, :, d, 0].T[..., None, None] + span[:, None]  # (n, frames, s, 1)
        cols = corners[:, :, d, 1].T[..., None, None] + span[None, :]  # (n, frames, 1, s)
        video[seq, time, rows, cols] = np.maximum(video[seq, time, rows, cols], chosen[:, d, None])
    return torch.from_numpy(video).unsqueeze(2)


def copy_last_frame(inputs: Tensor, horizon: int) -> Tensor:
    """The baseline forecast: the last input frame, repeated. inputs (B, T_in, ...) -> (B, horizon, ...)."""
    return inputs[:, -1:].expand(-1, horizon, *inputs.shape[2:])


__all__ = ["copy_last_frame", "digit_images", "moving_digits"]
