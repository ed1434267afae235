"""examples/classify_video.py: the axis-of-motion labels are right, the models run and can fit."""

import json
import runpy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "classify_video.py"


@pytest.fixture(scope="module")
def ex():
    return runpy.run_path(str(EXAMPLE))  # the example's functions, without running main()


def square_path(corners, size=12, side=3):
    """A side x side square of ones at each (row, col) corner: (1, T, 1, size, size)."""
    video = torch.zeros(1, len(corners), 1, size, size)
    for t, (r, c) in enumerate(corners):
        video[0, t, 0, r : r + side, c : c + side] = 1.0
    return video


def test_hand_checked_paths(ex):
    # a square moving right 2 px a frame: centre column 1, 3, 5, 7; row stays 5
    right = square_path([(4, 0), (4, 2), (4, 4), (4, 6)])
    expected = torch.tensor([[5.0, 1.0], [5.0, 3.0], [5.0, 5.0], [5.0, 7.0]])
    assert torch.allclose(ex["centres"](right)[0], expected)
    # down 3 px a frame with a bounce off the bottom, drifting 1 px right once: |d row| 3+3+3, |d col| 1
    down = square_path([(0, 2), (3, 2), (6, 3), (3, 3)])
    # a diagonal: 2 px each way a frame, never clear
    diagonal = square_path([(0, 0), (2, 2), (4, 4), (6, 6)])
    labels, clear = ex["motion_axis"](torch.cat([right, down, diagonal]))
    assert labels[:2].tolist() == [1, 0] and clear.tolist() == [True, True, False]


def test_labels_agree_with_the_digits_bounding_box(ex):
    video, labels = ex["labelled_videos"](64, seed=3)
    assert video.shape == (64, 8, 1, 24, 24) and labels.shape == (64,)
    assert 0 < labels.sum() < 64  # both classes occur
    # an independent reading of the motion: the top-left corner of the digit's inked pixels
    ink = video[:, :, 0] > 0
    rows = torch.where(ink.any(-1), torch.arange(24), 99).amin(-1).float()  # (N, T) first inked row
    cols = torch.where(ink.any(-2), torch.arange(24), 99).amin(-1).float()
    travel_rows, travel_cols = rows.diff(dim=1).abs().sum(1), cols.diff(dim=1).abs().sum(1)
    assert torch.equal(labels, (travel_cols > travel_rows).long())
    assert (torch.maximum(travel_rows, travel_cols) >= 1.5 * torch.minimum(travel_rows, travel_cols)).all()
    # the test split draws other handwriting and is reproducible
    a, la = ex["labelled_videos"](8, split="test", seed=1)
    b, lb = ex["labelled_videos"](8, split="test", seed=1)
    assert torch.equal(a, b) and torch.equal(la, lb)


def test_baseline_cannot_see_the_order_of_frames(ex):
    torch.manual_seed(0)
    video, _ = ex["labelled_videos"](4, seed=5)
    shuffled = video[:, torch.randperm(video.shape[1])]
    cnn, rnn = ex["FrameCNN"](4), ex["ConvLSTMClassifier"](4)
    assert torch.allclose(cnn(video), cnn(shuffled), atol=1e-6)
    assert cnn(video).shape == rnn(video).shape == (4, 2)
    assert not torch.allclose(rnn(video), rnn(shuffled), atol=1e-6)


def test_convlstm_fits_a_tiny_set(ex):
    torch.manual_seed(0)
    video, labels = ex["labelled_videos"](8, frames=5, seed=7)  # small, to stay quick
    assert 0 < labels.sum() < 8
    model = ex["ConvLSTMClassifier"](4)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    losses = []
    for _ in range(20):
        loss = F.cross_entropy(model(video), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_main_json(capsys, monkeypatch):
    argv = ["classify_video.py", "--steps", "2", "--test", "16", "--hidden", "4", "--batch-size", "4"]
    monkeypatch.setattr("sys.argv", [*argv, "--threads", "1", "--json"])
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    report = json.loads(capsys.readouterr().out)  # exactly one JSON object on stdout
    assert report["test_videos"] == 16 and 0.5 <= report["chance"] <= 1
    assert 0 <= report["convlstm_accuracy"] <= 1 and 0 <= report["frame_cnn_accuracy"] <= 1
