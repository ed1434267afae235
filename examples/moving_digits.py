"""Predict the next frames of moving handwritten digits with a ConvLSTM encoder-forecaster.

Shi et al. (2015, sec. 3.3 and 4.1, https://arxiv.org/abs/1506.04214): an encoder stack of ConvLSTM
layers reads 10 frames; a forecaster stack starts from the encoder's final states and unrolls 10 more
steps without input, and a 1x1 convolution reads each of its outputs into a frame. As in the paper,
frames are cut into patches first (32x32x1 -> 8x8x16 with --patch 4), so the convolutions run on a
small grid. The digits are scikit-learn's 8x8 images bouncing in a 32x32 frame
(``rnnkit.data.moving_digits``); test sequences use held-out handwriting. The baseline copies the last
input frame into every future step.

    python examples/moving_digits.py [--steps N] [--minutes M] [--plot docs/moving_digits.png] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit import ConvLSTMCell, Recurrent
from rnnkit.data.moving_digits import copy_last_frame, moving_digits
from rnnkit.training.checkpoint import atomic_write


class EncoderForecaster(nn.Module):
    """frames (B, T_in, 1, H, W) -> predicted frames (B, horizon, 1, H, W) in [0, 1]."""

    def __init__(self, hidden: int, kernel: int, layers: int, patch: int) -> None:
        super().__init__()
        self.patch = patch
        channels = patch * patch
        self.encoder = Recurrent(ConvLSTMCell(channels, hidden, kernel), num_layers=layers, batch_first=True)
        self.forecaster = Recurrent(ConvLSTMCell(1, hidden, kernel), num_layers=layers, batch_first=True)
        self.readout = nn.Conv2d(hidden, channels, 1)

    def forward(self, frames: Tensor, horizon: int) -> Tensor:
        B = frames.shape[0]
        x = F.pixel_unshuffle(frames, self.patch)  # (B, T_in, p*p, H/p, W/p)
        _, state = self.encoder(x)  # (h, c), each (layers, B, hidden, H/p, W/p)
        nothing = x.new_zeros(B, horizon, 1, *x.shape[3:])  # the forecaster has no input (Shi et al.)
        y, _ = self.forecaster(nothing, state)  # (B, horizon, hidden, H/p, W/p)
        patches = self.readout(y.flatten(0, 1)).unflatten(0, (B, horizon))  # (B, horizon, p*p, H/p, W/p)
        return torch.sigmoid(F.pixel_shuffle(patches, self.patch))  # (B, horizon, 1, H, W)


def mse_per_step(prediction: Tensor, truth: Tensor) -> list[float]:
    return ((prediction - truth) ** 2).mean(dim=(0, 2, 3, 4)).tolist()


def plot(inputs: Tensor, truth: Tensor, prediction: Tensor, path: str, rows: int = 3) -> None:
    """For each of ``rows`` test sequences: the input frames, the true future and the prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T_in, T_out = inputs.shape[1], truth.shape[1]
    columns = max(T_in, T_out)
    fig, axes = plt.subplots(3 * rows, columns, figsize=(columns * 0.9, 3 * rows * 0.95))
    for r in range(rows):
        for k, (label, video) in enumerate((("input", inputs), ("true", truth), ("predicted", prediction))):
            for t in range(columns):
                ax = axes[3 * r + k, t]
                ax.set_xticks([]), ax.set_yticks([])
                if t < video.shape[1]:
                    ax.imshow(video[r, t, 0].numpy(), cmap="gray", vmin=0, vmax=1)
                else:
                    ax.axis("off")
                if t == 0:
                    ax.set_ylabel(label, fontsize=8)
                if 3 * r + k == 0 or (k == 1 and r == 0):
                    ax.set_title(f"t={t + 1 if k == 0 else T_in + t + 1}", fontsize=7)
    fig.suptitle("ConvLSTM encoder-forecaster on moving digits: 10 frames in, 10 predicted", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buf.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1500, help="optimizer steps (default 1500)")
    parser.add_argument("--minutes", type=float, default=None, help="stop training after this long")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=32, help="ConvLSTM channels per layer")
    parser.add_argument("--kernel", type=int, default=3, help="ConvLSTM kernel size")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--patch", type=int, default=4, help="frames are cut into patch x patch pixels")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--test", type=int, default=256, help="test sequences (held-out handwriting)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default=None, help="save input / true / predicted frames here (PNG)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    T_in = T_out = 10
    model = EncoderForecaster(args.hidden, args.kernel, args.layers, args.patch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.steps)
    log = sys.stderr if args.json else sys.stdout

    start, step = time.perf_counter(), 0
    while step < args.steps:
        if args.minutes is not None and time.perf_counter() - start > 60 * args.minutes:
            break
        # fresh sequences every step, drawn from (seed, step): no fixed training set to overfit
        video = moving_digits(args.batch_size, T_in + T_out, seed=args.seed * 1_000_003 + step)
        loss = F.mse_loss(model(video[:, :T_in], T_out), video[:, T_in:])
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        step += 1
        if step % 100 == 0:
            print(f"step {step}: train mse {loss.item():.4f} ({time.perf_counter() - start:.0f} s)", file=log)
    seconds = time.perf_counter() - start

    model.eval()
    test = moving_digits(args.test, T_in + T_out, split="test", seed=10_000 + args.seed)
    inputs, truth = test[:, :T_in], test[:, T_in:]
    with torch.no_grad():
        prediction = torch.cat([model(chunk, T_out) for chunk in inputs.split(64)])
    model_steps = mse_per_step(prediction, truth)
    copy_steps = mse_per_step(copy_last_frame(inputs, T_out), truth)
    report = {
        "test_sequences": args.test,
        "mse_model": sum(model_steps) / T_out,
        "mse_copy_last_frame": sum(copy_steps) / T_out,
        "mse_model_per_step": model_steps,
        "mse_copy_last_frame_per_step": copy_steps,
        "steps": step,
        "train_seconds": round(seconds, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if args.plot:
        plot(inputs, truth, prediction, args.plot)
        report["plot"] = args.plot
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{step} steps in {seconds:.0f} s, {report['parameters']} parameters")
        print(f"test mse over {T_out} future frames: model {report['mse_model']:.4f}, "
              f"copy last frame {report['mse_copy_last_frame']:.4f}")  # fmt: skip
        print(
            "per step (model / copy):",
            " ".join(f"{m:.3f}/{c:.3f}" for m, c in zip(model_steps, copy_steps, strict=True)),
        )


if __name__ == "__main__":
    main()
