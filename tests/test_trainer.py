"""The language model and the truncated-BPTT training loop: shapes, learning, clipping, detaching, and
exact resume (after a clean stop and after a real SIGKILL).

Bit-exact resume needs the same computation in the same order: CPU, one process, and a fixed thread
count (``torch.set_num_threads(1)`` here and in the killed subprocess), since a different number of
threads may reduce sums in a different order.
"""

from __future__ import annotations

import json
import math
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from rnnkit.cells import LSTMState
from rnnkit.data.text import CharTokenizer
from rnnkit.models import LanguageModel, LMConfig
from rnnkit.training.checkpoint import CheckpointError
from rnnkit.training.trainer import TrainConfig, train_lm

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
TEXT = DATA.read_text(encoding="utf-8")[:1500]
TOKENIZER = CharTokenizer.fit(TEXT)
IDS = TOKENIZER.encode(TEXT)
TRAIN_IDS, VALID_IDS = IDS[:1200], IDS[1200:]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_model(seed: int = 0, cell: str = "lstm", tie: bool = True) -> LanguageModel:
    torch.manual_seed(seed)
    return LanguageModel(
        LMConfig(TOKENIZER.vocab_size, cell, hidden=16, layers=2, dropout=0.1, tie_weights=tie)
    )


def config(steps: int, **kw) -> TrainConfig:
    base = dict(steps=steps, batch_size=4, seq_len=8, lr=1e-2, checkpoint_every=5, eval_every=10, keep_last=2)
    return TrainConfig(**{**base, **kw})


def train_lines(run_dir: Path) -> list[dict]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if "loss" in r]


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# -- the model -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_forward_shapes_and_state_continues(cell):
    model = make_model(cell=cell).eval()
    tokens = torch.randint(0, TOKENIZER.vocab_size, (10, 3))  # (T, B)
    logits, state = model(tokens)
    assert logits.shape == (10, 3, TOKENIZER.vocab_size)
    fields = state if isinstance(state, tuple) else (state,)
    assert all(f.shape == (2, 3, 16) for f in fields)
    assert isinstance(state, LSTMState) == (cell == "lstm")
    # two chunks with the state carried == one pass over the whole sequence
    first, s = model(tokens[:4], model.init_state(3))
    second, _ = model(tokens[4:], s)
    torch.testing.assert_close(torch.cat([first, second]), logits)


def test_tied_weights_share_storage():
    tied, untied = make_model(tie=True), make_model(tie=False)
    assert tied.readout.weight is tied.embedding.weight
    assert tied.readout.weight.data_ptr() == tied.embedding.weight.data_ptr()
    assert untied.readout.weight.data_ptr() != untied.embedding.weight.data_ptr()
    n_tied = sum(p.numel() for p in tied.parameters())
    assert n_tied == sum(p.numel() for p in untied.parameters()) - TOKENIZER.vocab_size * 16


def test_config_validation():
    with pytest.raises(ValueError, match="cell must be one of"):
        LMConfig(10, cell="transformer")
    with pytest.raises(ValueError):
        LMConfig(10, dropout=1.5)
    with pytest.raises(ValueError, match="clip_norm"):
        TrainConfig(clip_norm=0.0)
    with pytest.raises(ValueError):
        TrainConfig(steps=0)


# -- the training loop -----------------------------------------------------------------------------------


def test_loss_decreases_on_real_text(tmp_path):
    result = train_lm(make_model(), TRAIN_IDS, VALID_IDS, config(60, eval_every=30), tmp_path, progress=False)
    losses = [r["loss"] for r in train_lines(tmp_path)]
    assert len(losses) == 60 and result["steps"] == 60
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 0.4
    assert math.isclose(result["valid_bpc"], result["valid_loss"] / math.log(2))
    assert result["valid_loss"] < math.log(TOKENIZER.vocab_size)  # better than uniform
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["train"]["steps"] == 60 and saved["model"]["cell"] == "lstm"


def test_clipping_logs_pre_clip_norm_and_clips_to_theta(tmp_path):
    theta = 1e-3
    post: list[float] = []

    def before_step(optimizer, args, kwargs):  # sees the gradients after clipping, before the update
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        post.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())

    handle = register_optimizer_step_pre_hook(before_step)
    try:
        train_lm(make_model(), TRAIN_IDS, VALID_IDS, config(5, clip_norm=theta), tmp_path, progress=False)
    finally:
        handle.remove()
    logged = [r["grad_norm"] for r in train_lines(tmp_path)]
    assert len(post) == len(logged) == 5
    assert all(g > 100 * theta for g in logged)  # the logged norm is the one before clipping
    for p in post:  # min(1, theta/||g||) g has norm theta (torch adds 1e-6 to the denominator)
        assert p == pytest.approx(theta, rel=1e-3)


def test_truncated_bptt_detaches_the_carried_state(tmp_path):
    model = make_model()
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[1]) if module.training else None)
    train_lm(model, TRAIN_IDS, VALID_IDS, config(4), tmp_path, progress=False)
    assert seen[0] is None  # the first chunk starts from zeros
    for state in seen[1:]:  # later chunks start from the previous chunk's values, cut from its graph
        assert state is not None
        for field in state:
            assert field.grad_fn is None and not field.requires_grad
            assert field.abs().sum() > 0  # carried, not reset


# -- exact resume ----------------------------------------------------------------------------------------


def test_exact_resume_after_a_clean_stop(tmp_path):
    straight = make_model()
    train_lm(straight, TRAIN_IDS, VALID_IDS, config(30), tmp_path / "a", progress=False)

    run_b = tmp_path / "b"
    train_lm(make_model(), TRAIN_IDS, VALID_IDS, config(12), run_b, progress=False)
    with open(run_b / "metrics.jsonl", "a") as f:  # as if killed after logging past the checkpoint
        f.write(json.dumps({"step": 13, "loss": 9.9}) + '\n{"step": 14, "lo')
    # a fresh start at the Python level: new model (other initial weights) and optimizer objects
    resumed = make_model(seed=123)
    result = train_lm(resumed, TRAIN_IDS, VALID_IDS, config(30), run_b, resume=True, progress=False)

    assert result["steps"] == 30
    assert_same_weights(resumed, straight)
    lines_a, lines_b = train_lines(tmp_path / "a"), train_lines(run_b)
    assert [r["step"] for r in lines_b] == list(range(1, 31))  # every step exactly once
    assert [r["loss"] for r in lines_b] == [r["loss"] for r in lines_a]


def kill_me_job(run_dir: str, steps: int) -> None:
    """Run in a subprocess by test_exact_resume_after_sigkill (and killed there)."""
    torch.set_num_threads(1)
    train_lm(make_model(), TRAIN_IDS, VALID_IDS, config(steps, checkpoint_every=1), run_dir, progress=False)


def test_exact_resume_after_sigkill(tmp_path):
    steps = 300
    run_dir = tmp_path / "killed"
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"import test_trainer; test_trainer.kill_me_job({str(run_dir)!r}, {steps})"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 60
        while not (run_dir / "checkpoints" / "latest").exists():
            assert proc.poll() is None, "the training subprocess died before its first checkpoint"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(random.uniform(0.0, 0.8))
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "finished before the kill: raise steps"

    resumed = make_model(seed=7)
    cfg = config(steps, checkpoint_every=1)
    train_lm(resumed, TRAIN_IDS, VALID_IDS, cfg, run_dir, resume=True, progress=False)
    straight = make_model()
    train_lm(straight, TRAIN_IDS, VALID_IDS, cfg, tmp_path / "straight", progress=False)
    assert_same_weights(resumed, straight)
    assert [r["step"] for r in train_lines(run_dir)] == list(range(1, steps + 1))


def test_resume_refuses_a_corrupt_or_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError):  # nothing to resume: an error, not a fresh start
        train_lm(
            make_model(), TRAIN_IDS, VALID_IDS, config(6), tmp_path / "none", resume=True, progress=False
        )

    run_dir = tmp_path / "run"
    train_lm(make_model(), TRAIN_IDS, VALID_IDS, config(6, checkpoint_every=2), run_dir, progress=False)
    weights = run_dir / "checkpoints" / "step-000006" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256 mismatch"):
        train_lm(make_model(), TRAIN_IDS, VALID_IDS, config(10), run_dir, resume=True, progress=False)
    with pytest.raises(Exception, match="already holds checkpoints"):  # nor a silent overwrite
        train_lm(make_model(), TRAIN_IDS, VALID_IDS, config(10), run_dir, progress=False)


def test_minutes_budget_stops_early_with_a_final_checkpoint(tmp_path):
    from rnnkit.training.checkpoint import load_checkpoint

    model = LanguageModel(LMConfig(vocab_size=TOKENIZER.vocab_size, hidden=16))
    config = TrainConfig(
        steps=10_000, batch_size=4, seq_len=8, minutes=1e-4, eval_every=1000, checkpoint_every=1000
    )
    report = train_lm(model, IDS[:1200], IDS[1200:], config, tmp_path / "run", progress=False)
    assert 1 <= report["steps"] < 10_000
    assert load_checkpoint(tmp_path / "run").step == report["steps"]  # saved where it stopped
    assert report["valid_loss"] == report["valid_loss"]  # a real number: evaluated at the stop
