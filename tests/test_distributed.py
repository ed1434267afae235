"""Training under torchrun: 2 real processes with gloo on CPU.

Every rank ends with identical parameters, and they match a one-process run over the same global batch
(DDP averages the ranks' gradients, which is the gradient of the global mean loss) within float
tolerance. Only rank 0 writes the run directory; a run resumes with the same number of processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import safetensors.torch
import torch
from conftest import TINY_HEAD

from rnnkit.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="needs torch.distributed")

DATA = TINY_HEAD

JOB = textwrap.dedent(
    """
    import os, sys, torch, safetensors.torch
    from rnnkit.data.text import CharTokenizer
    from rnnkit.apps.lm.model import LanguageModel, LMConfig
    from rnnkit.apps.lm.run import train_lm
    from rnnkit.training.config import TrainConfig

    data, run_dir, steps, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
    torch.set_num_threads(1)
    text = open(data, encoding="utf-8").read()[:4000]
    tok = CharTokenizer.fit(text)
    ids = tok.encode(text)
    torch.manual_seed(0)
    model = LanguageModel(LMConfig(tok.vocab_size, "lstm", hidden=16, layers=2))
    config = TrainConfig(steps=steps, batch_size=8, seq_len=16, lr=1e-2, checkpoint_every=4,
                         eval_every=4, plots=False)
    report = train_lm(model, ids[:3000], ids[3000:], config, run_dir, resume=resume, progress=False)
    rank = int(os.environ.get("RANK", "0"))
    safetensors.torch.save_file(model.state_dict(), os.path.join(run_dir, f"final-rank{rank}.safetensors"))
    print("REPORT", rank, report["valid_loss"], flush=True)
    """
)


def launch(tmp_path: Path, run_dir: Path, steps: int, nproc: int, resume: bool = False) -> str:
    script = tmp_path / "job.py"
    script.write_text(JOB)
    args = [str(script), str(DATA), str(run_dir), str(steps), "1" if resume else "0"]
    if nproc > 1:
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd = [*torchrun, f"--nproc_per_node={nproc}", *args]
    else:
        cmd = [sys.executable, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def weights(path: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(str(path))


def test_two_processes_match_one_and_each_other(tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    out = launch(tmp_path, two, steps=8, nproc=2)
    launch(tmp_path, one, steps=8, nproc=1)
    w0, w1, single = (weights(p) for p in (two / "final-rank0.safetensors", two / "final-rank1.safetensors",
                                           one / "final-rank0.safetensors"))  # fmt: skip
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k  # DDP keeps the ranks identical
        torch.testing.assert_close(w0[k], single[k], rtol=1e-4, atol=1e-5)
    # only rank 0 wrote: one metrics line per step, and the same validation loss as one process
    lines = [json.loads(x) for x in (two / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "loss" in r] == list(range(1, 9))
    one_lines = [json.loads(x) for x in (one / "metrics.jsonl").read_text().splitlines()]
    valid = [r["valid_loss"] for r in lines if "valid_loss" in r]
    valid_one = [r["valid_loss"] for r in one_lines if "valid_loss" in r]
    assert valid == pytest.approx(valid_one, rel=1e-4)
    assert out.count("REPORT") == 2
    # the checkpoint holds the whole batch's carried state, as one process would write it
    ckpt = load_checkpoint(two)
    assert ckpt.train_state["world_size"] == 2 and len(ckpt.train_state["rng_ranks"]) == 2
    assert ckpt.train_state["hidden"].h.shape == (2, 8, 16)


def test_resume_needs_the_same_number_of_processes_and_continues(tmp_path):
    run_dir = tmp_path / "run"
    launch(tmp_path, run_dir, steps=4, nproc=2)
    with pytest.raises(AssertionError, match="written by a run of 2 process"):
        launch(tmp_path, run_dir, steps=8, nproc=1, resume=True)
    launch(tmp_path, run_dir, steps=8, nproc=2, resume=True)
    assert load_checkpoint(run_dir).step == 8
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "loss" in r] == list(range(1, 9))
