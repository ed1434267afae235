"""Classify videos: does the digit move mostly across or mostly up and down? ConvLSTM vs a per-frame CNN.

The videos come from ``rnnkit.data.moving_digits``: one scikit-learn digit (resized to 12x12) bouncing in
a 24x24 frame for 8 frames, test videos with held-out handwriting. The label is the axis of motion,
read off the frames themselves: the digit's centre of mass moves in total |d col| against |d row| over
the 7 steps, "horizontal" when the first is larger. A bounce flips the sign of a velocity component but
never its size, so the axis holds for the whole clip. Videos whose two totals are within a factor
``--margin`` of each other (near-diagonal motion) are left out, so every label is clear.

One frame shows where the digit is, not where it goes: a per-frame CNN whose logits are averaged over
time (the baseline) cannot do better than chance, and the recurrence has to carry the motion. The
model is ``rnnkit.Recurrent(ConvLSTMCell)`` over 2x2 patches (24x24x1 -> 12x12x4), its outputs max-
pooled over space and time, then a linear head. Both are trained the same way on fresh videos each step.

    python examples/classify_video.py [--steps N] [--threads K] [--json]   # under a minute
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit import ConvLSTMCell, Recurrent
from rnnkit.data.moving_digits import moving_digits

CLASSES = ("vertical", "horizontal")


def centres(video: Tensor) -> Tensor:
    """Centre of mass of each frame: video (N, T, 1, H, W) -> (N, T, 2) as (row, column) in pixels."""
    frames = video[:, :, 0]  # (N, T, H, W)
    mass = frames.sum((-2, -1)).clamp_min(1e-8)
    rows = torch.arange(frames.shape[-2], dtype=frames.dtype)
    cols = torch.arange(frames.shape[-1], dtype=frames.dtype)
    row = (frames.sum(-1) * rows).sum(-1) / mass
    col = (frames.sum(-2) * cols).sum(-1) / mass
    return torch.stack([row, col], -1)


def motion_axis(video: Tensor, margin: float = 1.5) -> tuple[Tensor, Tensor]:
    """The axis each video's digit moves along: (labels (N,) with 1 = horizontal, 0 = vertical; clear
    (N,) bool, True where the larger total movement is at least ``margin`` times the smaller)."""
    travel = centres(video).diff(dim=1).abs().sum(1)  # (N, 2): total |d row|, |d col| over the clip
    labels = (travel[:, 1] > travel[:, 0]).long()
    clear = travel.amax(1) >= margin * travel.amin(1)
    return labels, clear


def labelled_videos(
    n: int, frames: int = 8, *, size: int = 24, digit_size: int = 12, split: str = "train",
    seed: int = 0, margin: float = 1.5,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """``n`` one-digit videos (n, frames, 1, size, size) with clear axes of motion, and their labels (n,).
    Draws twice as many as needed and keeps the first ``n`` clear ones (again, with the next seed, if
    too few were clear)."""
    videos, labels, have, draw = [], [], 0, 0
    while have < n:
        video = moving_digits(2 * n, frames, size=size, digits=1, digit_size=digit_size, split=split,
                              seed=seed * 1_000_003 + draw)  # fmt: skip
        label, clear = motion_axis(video, margin)
        videos.append(video[clear])
        labels.append(label[clear])
        have += int(clear.sum())
        draw += 1
    return torch.cat(videos)[:n], torch.cat(labels)[:n]


class ConvLSTMClassifier(nn.Module):
    """video (B, T, 1, H, W) -> class logits (B, classes): ConvLSTM over 2x2 patches, max over space and
    time, linear head."""

    def __init__(self, hidden: int = 16, kernel: int = 3, classes: int = 2) -> None:
        super().__init__()
        self.rnn = Recurrent(ConvLSTMCell(4, hidden, kernel), batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, video: Tensor) -> Tensor:
        h, _ = self.rnn(F.pixel_unshuffle(video, 2))  # (B, T, hidden, H/2, W/2)
        return self.head(h.amax(dim=(1, 3, 4)))


class FrameCNN(nn.Module):
    """The baseline: the same patches, two 3x3 convolutions per frame, max over space, linear head;
    video (B, T, 1, H, W) -> the frames' logits averaged over time (B, classes)."""

    def __init__(self, hidden: int = 16, classes: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(4, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Linear(hidden, classes)

    def forward(self, video: Tensor) -> Tensor:
        B, T = video.shape[:2]
        x = F.pixel_unshuffle(video, 2).flatten(0, 1)  # (B*T, 4, H/2, W/2)
        logits = self.head(self.features(x).amax(dim=(2, 3)))  # (B*T, classes)
        return logits.unflatten(0, (B, T)).mean(1)


def train(model: nn.Module, steps: int, batch_size: int, lr: float, seed: int, log=None) -> list[float]:
    """Train on fresh labelled videos every step (drawn from (seed, step)); returns the losses."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    losses = []
    for step in range(steps):
        video, labels = labelled_videos(batch_size, seed=seed * 100_003 + step)
        loss = F.cross_entropy(model(video), labels)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if log is not None and (step + 1) % 50 == 0:
            print(f"  step {step + 1}: loss {sum(losses[-50:]) / 50:.3f}", file=log)
    return losses


@torch.no_grad()
def accuracy(model: nn.Module, video: Tensor, labels: Tensor) -> float:
    model.eval()
    predicted = torch.cat([model(chunk).argmax(1) for chunk in video.split(128)])
    return (predicted == labels).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per model (default 300)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=16, help="channels of both models")
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--test", type=int, default=512, help="test videos (held-out handwriting)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    log = sys.stderr if args.json else sys.stdout

    test_video, test_labels = labelled_videos(args.test, split="test", seed=10_000 + args.seed)
    report: dict = {"test_videos": args.test, "steps": args.steps, "threads": args.threads}
    # chance: always guess the more frequent class of the test set
    report["chance"] = max(test_labels.float().mean().item(), 1 - test_labels.float().mean().item())
    for name, build in (("convlstm", ConvLSTMClassifier), ("frame_cnn", FrameCNN)):
        torch.manual_seed(args.seed)
        model = build(args.hidden)
        print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters", file=log)
        start = time.perf_counter()
        losses = train(model, args.steps, args.batch_size, args.lr, args.seed, log)
        report[f"{name}_train_seconds"] = round(time.perf_counter() - start, 1)
        report[f"{name}_final_loss"] = sum(losses[-20:]) / len(losses[-20:]) if losses else None
        report[f"{name}_accuracy"] = accuracy(model, test_video, test_labels)
    report["load_average"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(report))
        return
    print(f"test accuracy on {args.test} held-out videos (axis of motion, {len(CLASSES)} classes):")
    print(f"  ConvLSTM                      {report['convlstm_accuracy']:.3f}")
    print(f"  per-frame CNN, averaged       {report['frame_cnn_accuracy']:.3f}")
    print(f"  chance (majority class)       {report['chance']:.3f}")


if __name__ == "__main__":
    main()
