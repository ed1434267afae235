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
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_HEAD
from torch.optim.optimizer import register_optimizer_step_pre_hook

from rnnkit.apps.lm.model import LanguageModel, LMConfig
from rnnkit.apps.lm.run import train_lm
from rnnkit.cells import LSTMState
from rnnkit.data.text import CharTokenizer
from rnnkit.training.checkpoint import CheckpointError
from rnnkit.training.config import TrainConfig

TEXT = TINY_HEAD.read_text(encoding="utf-8")[:1500]
TOKENIZER = CharTokenizer.fit(TEXT)
IDS = TOKENIZER.encode(TEXT)
TRAIN_IDS, VALID_IDS = IDS[:1200], IDS[1200:]


pytestmark = pytest.mark.usefixtures("one_thread")


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


def test_resume_is_exact_with_a_schedule_scheduled_sampling_and_k2(tmp_path):
    """The LR schedule's place, the sampling draws and the k2 window all resume exactly. (Both schedules
    here depend on ``steps``, so the interrupted run is the same 20-step run, cut at step 11.)"""
    kw = dict(schedule="cosine", warmup_steps=3, teacher_forcing="linear", bptt_window=5)
    straight = make_model()
    train_lm(straight, TRAIN_IDS, VALID_IDS, config(20, **kw), tmp_path / "a", progress=False)
    run_b = tmp_path / "b"
    train_lm(make_model(), TRAIN_IDS, VALID_IDS, config(20, checkpoint_every=1, keep_last=30, **kw), run_b,
             progress=False)  # fmt: skip
    # as if killed right after step 11's checkpoint
    checkpoints = run_b / "checkpoints"
    for late in range(12, 21):
        shutil.rmtree(checkpoints / f"step-{late:06d}", ignore_errors=True)
    (checkpoints / "latest").write_text("step-000011\n")
    (checkpoints / "best").unlink(missing_ok=True)
    resumed = make_model(seed=5)
    cfg = config(20, checkpoint_every=1, keep_last=30, **kw)
    train_lm(resumed, TRAIN_IDS, VALID_IDS, cfg, run_b, resume=True, progress=False)
    assert_same_weights(resumed, straight)
    a, b = train_lines(tmp_path / "a"), train_lines(run_b)
    assert [r["lr"] for r in b] == [r["lr"] for r in a]
    assert [r["loss"] for r in b] == [r["loss"] for r in a]
    assert [r["teacher_forcing"] for r in a] == pytest.approx([1 - i / 20 for i in range(20)])


def test_resume_refuses_other_settings(tmp_path):
    train_lm(make_model(), TRAIN_IDS, VALID_IDS, config(4), tmp_path / "r", progress=False)
    with pytest.raises(Exception, match="started with other settings"):
        train_lm(make_model(), TRAIN_IDS, VALID_IDS, config(8, lr=0.5), tmp_path / "r", resume=True,
                 progress=False)  # fmt: skip
    # the wall-time budget and the step count may change
    report = train_lm(make_model(), TRAIN_IDS, VALID_IDS, config(8, minutes=5.0), tmp_path / "r",
                      resume=True, progress=False)  # fmt: skip
    assert report["steps"] == 8


# -- truncated BPTT with k2 < k1 --------------------------------------------------------------------------


def test_k2_window_limits_how_far_gradients_flow():
    from rnnkit.apps.lm.task import LMTask

    V = 16
    torch.manual_seed(0)
    model = LanguageModel(LMConfig(V, "lstm", hidden=8))
    ids = torch.arange(40) % V  # chunk 0 reads tokens 0..7, each once
    task = LMTask(ids, ids, batch_size=1, seq_len=8, bptt_window=3)
    loss, _ = task.train_step(model, 1.0)
    loss.backward()
    grad = model.embedding.weight.grad.abs().sum(1)  # (V,) per token
    assert (grad[:5] == 0).all()  # read before the window: no gradient reaches them
    assert (grad[5:8] > 0).all()  # the last k2 = 3 inputs
    # the loss is the mean over those 3 positions, from the state after the first 5
    with torch.no_grad():
        logits, _ = model(ids[:8].view(8, 1))
    expected = torch.nn.functional.cross_entropy(logits[5:, 0], ids[6:9])
    torch.testing.assert_close(loss.detach(), expected)


# -- scheduled sampling -----------------------------------------------------------------------------------


def record_inputs(model: LanguageModel) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    model.embedding.register_forward_hook(lambda m, args, out: seen.append(args[0].clone()))
    return seen


def peaked_model(token: int) -> LanguageModel:
    """A model whose own prediction is always ``token``."""
    model = make_model()
    with torch.no_grad():
        model.readout.weight.zero_()
        model.readout.bias.fill_(-50.0)
        model.readout.bias[token] = 50.0
    return model


def test_teacher_forcing_one_reads_the_truth_and_zero_reads_the_models_own_predictions():
    tokens = torch.randint(1, TOKENIZER.vocab_size, (12, 300))
    tokens[tokens == 3] = 4
    model = peaked_model(3)
    model.eval()
    seen = record_inputs(model)
    full, _ = model(tokens)
    assert torch.equal(torch.cat(seen), tokens)
    seen.clear()
    own, _ = model(tokens, teacher_forcing=0.0)
    inputs = torch.stack(seen)  # (T, B): one (B,) step at a time
    assert torch.equal(inputs[0], tokens[0]) and (inputs[1:] == 3).all()
    assert own.shape == full.shape
    seen.clear()
    torch.manual_seed(0)
    model(tokens, teacher_forcing=0.7)
    inputs = torch.stack(seen)
    truth = (inputs[1:] == tokens[1:]).float().mean().item()
    assert 0.66 < truth < 0.74  # 3300 coin flips with p = 0.7
    assert ((inputs[1:] == tokens[1:]) | (inputs[1:] == 3)).all()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_step_by_step_path_equals_the_full_forward(cell):
    """teacher_forcing=1.0 through the one-step loop gives the full forward's numbers and gradients."""
    torch.manual_seed(0)
    model = LanguageModel(LMConfig(TOKENIZER.vocab_size, cell, hidden=16, layers=2)).double()
    tokens = torch.randint(0, TOKENIZER.vocab_size, (7, 3))
    full, s_full = model(tokens)
    stepped, s_step = model._scheduled_sampling(tokens, None, 1.0)
    torch.testing.assert_close(stepped, full)
    g_full = torch.autograd.grad(full.square().sum(), model.rnn.parameters())
    g_step = torch.autograd.grad(stepped.square().sum(), model.rnn.parameters())
    for a, b in zip(g_step, g_full, strict=True):
        torch.testing.assert_close(a, b)


def test_teacher_forcing_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match=r"teacher_forcing must be a probability in \[0, 1\], got 1.5"):
        make_model()(torch.zeros(2, 1, dtype=torch.long), teacher_forcing=1.5)


# -- killed during a checkpoint write ------------------------------------------------------------------


def kill_at_job(run_dir: str, steps: int, call: str, at: int) -> None:
    """Run in a subprocess: train, and SIGKILL this very process at the ``at``-th ``os.<call>``."""
    import os

    torch.set_num_threads(1)
    real, count = getattr(os, call), 0

    def dying(*args, **kwargs):
        nonlocal count
        count += 1
        if count == at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)

    setattr(os, call, dying)
    train_lm(make_model(), TRAIN_IDS, VALID_IDS, config(steps, checkpoint_every=3), run_dir, progress=False)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    torch.set_num_threads(1)
    model = make_model()
    train_lm(model, TRAIN_IDS, VALID_IDS, config(24, checkpoint_every=3), tmp_path_factory.mktemp("s"),
             progress=False)  # fmt: skip
    return model


# Kill points inside checkpoint writes after the first (which uses os.replace calls 2-7 and os.fsync
# 3-14 in this run): os.replace moves a file or the checkpoint directory into place, moves a pointer,
# or prunes; os.fsync makes a file's bytes durable before its rename. Save 6 uses replace 8-13 and fsync
# 15-26; save 10 (a new best, and pruning) replace 21-28; save 12 fsync 39-52.
@pytest.mark.parametrize("call, at", [("replace", 9), ("replace", 12), ("replace", 25), ("fsync", 18),
                                      ("fsync", 45)])  # fmt: skip
def test_killed_during_a_checkpoint_write_resumes_exactly(tmp_path, straight_run, call, at):
    run_dir = tmp_path / "killed"
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_trainer; "
        f"test_trainer.kill_at_job({str(run_dir)!r}, 24, {call!r}, {at})"
    )
    proc = subprocess.run([sys.executable, "-c", code], timeout=120)
    assert proc.returncode == -signal.SIGKILL, "not killed: the kill point is past the run's end"
    resumed = make_model(seed=9)
    train_lm(resumed, TRAIN_IDS, VALID_IDS, config(24, checkpoint_every=3), run_dir, resume=True,
             progress=False)  # fmt: skip
    assert_same_weights(resumed, straight_run)
    assert [r["step"] for r in train_lines(run_dir)] == list(range(1, 25))


# -- gradient accumulation with truncated BPTT -----------------------------------------------------------


def make_plain_model(cell: str = "lstm") -> LanguageModel:
    torch.manual_seed(0)  # no dropout: the micro-batches must draw nothing the whole batch would not
    return LanguageModel(LMConfig(TOKENIZER.vocab_size, cell, hidden=16, layers=2))


@pytest.mark.parametrize("cell, k2", [("lstm", None), ("gru", 5)])
def test_accumulated_micro_batches_equal_the_large_batch_step(tmp_path, cell, k2):
    whole, parts = make_plain_model(cell), make_plain_model(cell)
    kw = dict(batch_size=8, seq_len=8, bptt_window=k2, eval_every=4, checkpoint_every=100)
    train_lm(whole, TRAIN_IDS, VALID_IDS, config(6, **kw), tmp_path / "whole", progress=False)
    train_lm(parts, TRAIN_IDS, VALID_IDS, config(6, accumulate=4, **kw), tmp_path / "parts", progress=False)
    # six optimizer steps, each from 4 micro-batches of 2 streams with their own carried state, land
    # where six steps on all 8 streams at once land (to float rounding)
    for (name, a), b in zip(whole.state_dict().items(), parts.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)
    for a, b in zip(train_lines(tmp_path / "whole"), train_lines(tmp_path / "parts"), strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
        assert b["tokens_per_s"] > 0 and a["step"] == b["step"]
    # the whole batch carries its state from chunk to chunk, so equal weights after six steps also say
    # that each micro-batch carried its own share of it


def test_accumulate_must_split_the_batch_evenly_and_needs_a_splitting_task(tmp_path):
    with pytest.raises(ValueError, match=r"batch_size \(8\) must be divisible by accumulate \(3\)"):
        config(2, batch_size=8, accumulate=3)
    from rnnkit.training.trainer import fit

    class Whole:  # a task without micro-batches
        def train_step(self, model, teacher_forcing):
            raise AssertionError("not reached")

    with pytest.raises(Exception, match="does not split its batch into micro-batches"):
        bad = config(2, batch_size=8, accumulate=2)
        fit(make_plain_model(), Whole(), bad, tmp_path / "r", progress=False)


# -- free-running validation -----------------------------------------------------------------------------


def test_free_run_reads_the_models_own_greedy_predictions():
    from rnnkit.apps.lm.task import free_run

    model = make_model().eval()
    tokens = IDS[:12].view(12, 1).repeat(1, 3)  # (T, B)
    state = model(IDS[20:30].view(10, 1).repeat(1, 3))[1]  # a context read from the true text
    logits = free_run(model, tokens, state)
    # the same as one teacher-forced pass over the sequence the model wrote itself
    own = torch.cat([tokens[:1], logits[:-1].argmax(-1)])
    with torch.no_grad():
        again, _ = model(own, state)
    torch.testing.assert_close(logits, again, rtol=1e-5, atol=1e-6)
    assert not torch.equal(own, tokens)  # it did not read the truth after step 0


def test_validation_reports_free_running_next_to_teacher_forced(tmp_path):
    train_lm(make_model(), TRAIN_IDS, VALID_IDS, config(10), tmp_path, progress=False)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in lines if "valid_loss" in r]
    assert valid and all(0 < r["valid_loss"] < r["valid_free_loss"] for r in valid)
    assert all(0 <= r["valid_free_accuracy"] <= r["valid_accuracy"] + 0.2 for r in valid)
