"""Checkpoints: what is saved comes back exactly, a crash never costs the last good checkpoint, and a
damaged, foreign or hostile checkpoint is one CheckpointError naming the file and the problem.

Round trips: a small LSTM model with Adam and StepLR, the RNG states and a carried hidden state come back
bit for bit, and training on from a loaded checkpoint gives the weights of never having stopped.
Crashes: os.replace / os.fsync failing at every point of a save, and real SIGKILLs of a saving process.
Corruption: deleted, truncated, bit-flipped, garbage and foreign files, planted pickles (never run),
forged manifests, path traversal, symbolic links.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import torch
from torch import nn

from rnnkit import LSTM, InputError, LSTMState
from rnnkit.training import (
    CheckpointError,
    atomic_write,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)

T, B, F, H = 5, 3, 4, 6  # sequence length, batch, input features, hidden units


class Net(nn.Module):
    """A 2-layer LSTM with dropout between layers (so training draws random numbers) and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = LSTM(F, H, num_layers=2, dropout=0.3)
        self.head = nn.Linear(H, 1)

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        y, state = self.rnn(x, state)  # (T, B, H)
        return self.head(y), state  # (T, B, 1)


def make_training(seed: int) -> tuple[Net, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    torch.manual_seed(seed)
    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    return model, opt, sched


def train(model: Net, opt: torch.optim.Optimizer, sched: Any, steps: int, state: Any = None) -> Any:
    """A few steps that draw from every generator: data from torch, a shift from python, noise from numpy."""
    for _ in range(steps):
        x = torch.randn(T, B, F) + random.random()
        target = torch.from_numpy(np.random.rand(T, B, 1).astype(np.float32))
        y, state = model(x, state)
        loss = (y - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        state = LSTMState(*(s.detach() for s in state))  # truncated BPTT: carry the state, not its graph
    return state


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Exact equality of nested values: same types, same tensor dtypes, shapes and bits."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)), where  # bits
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b)), (
            where
        )
    else:
        assert a == b, where


def save_simple(run: Path, step: int, **kwargs: Any) -> Path:
    """A small checkpoint whose every value depends on ``step``."""
    return save_checkpoint(
        run,
        model_state={"w": torch.full((4, 3), float(step))},
        train_state={"epoch": step // 10, "v": torch.arange(step), "note": f"step {step}"},
        step=step,
        **kwargs,
    )


def step_dirs(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("step-"))


def leftovers(run: Path) -> list[str]:
    return [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]


# -- round trips ---------------------------------------------------------------------------------------


def test_training_resumes_bit_identically(tmp_path: Path) -> None:
    torch.manual_seed(0), random.seed(0), np.random.seed(0)
    model, opt, sched = make_training(seed=1)
    state = train(model, opt, sched, steps=3)
    saved_opt = copy.deepcopy(opt.state_dict())
    save_checkpoint(
        tmp_path,
        model_state=model.state_dict(),
        train_state={
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "epoch": 0,
            "rng": capture_rng(),
            "data": {"position": 3 * B, "order": [2, 0, 1]},
            "hidden": state,
        },
        step=3,
    )
    train(model, opt, sched, steps=4, state=state)  # never stopped
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    model2, opt2, sched2 = make_training(seed=2)  # a fresh process would start from other weights
    random.seed(99), np.random.seed(99)
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.step == 3 and ckpt.path == tmp_path / "checkpoints" / "step-000003"
    assert_same(ckpt.train_state["optimizer"], saved_opt, "optimizer")  # exactly, param_groups included
    assert ckpt.train_state["data"] == {"position": 9, "order": [2, 0, 1]}
    assert isinstance(ckpt.train_state["hidden"], LSTMState)
    model2.load_state_dict(ckpt.model_state)
    opt2.load_state_dict(ckpt.train_state["optimizer"])
    sched2.load_state_dict(ckpt.train_state["scheduler"])
    restore_rng(ckpt.train_state["rng"])
    train(model2, opt2, sched2, steps=4, state=ckpt.train_state["hidden"])

    for name, value in model2.state_dict().items():
        assert torch.equal(value, expected[name]), name
    assert sched2.get_last_lr() == sched.get_last_lr()


def draws() -> tuple[Any, ...]:
    return (
        torch.rand(5),
        torch.randn(3),
        random.random(),
        random.gauss(0, 1),
        np.random.rand(4),
        np.random.randn(3),
    )


def test_rng_states_restore_bit_exactly(tmp_path: Path) -> None:
    random.gauss(0, 1), np.random.standard_normal()  # leave a cached Gaussian in both
    state = capture_rng()
    assert state["python"]["gauss_next"] is not None and state["numpy"]["has_gauss"] == 1
    expected = draws()
    torch.manual_seed(5), random.seed(5), np.random.seed(5)  # scramble
    save_checkpoint(tmp_path, model_state={}, train_state={"rng": state}, step=1)
    restore_rng(load_checkpoint(tmp_path).train_state["rng"])
    got = draws()
    for e, g in zip(expected, got, strict=True):
        if isinstance(e, torch.Tensor):
            assert torch.equal(e, g)
        elif isinstance(e, np.ndarray):
            assert e.tobytes() == g.tobytes()
        else:
            assert e == g


def test_restore_rng_refuses_other_dicts() -> None:
    with pytest.raises(InputError, match="capture_rng"):
        restore_rng({"python": {}, "numpy": {}, "torch": torch.zeros(3)})


def test_train_state_round_trips_exactly(tmp_path: Path) -> None:
    base = torch.arange(12.0)
    params = [nn.Parameter(torch.randn(3, 2)), nn.Parameter(torch.randn(2))]
    sgd = torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True)
    lbfgs = torch.optim.LBFGS([nn.Parameter(torch.randn(4))], history_size=3)

    def closure() -> torch.Tensor:
        lbfgs.zero_grad()
        loss = lbfgs.param_groups[0]["params"][0].pow(2).sum()
        loss.backward()
        return loss

    for _ in range(2):
        sum(p.sum() for p in params).backward()
        sgd.step()
        lbfgs.step(closure)  # int counters (func_evals, n_iter), float prev_loss, lists of tensors
    state = {
        "sgd": sgd.state_dict(),
        "lbfgs": lbfgs.state_dict(),
        "scalars": [
            None,
            True,
            False,
            0,
            -7,
            2**70,
            1.5,
            -0.0,
            1e-300,
            float("nan"),
            float("inf"),
            -math.inf,
        ],
        "strings": ["", "ünïcödé", "$tensor", "a/b"],
        "keys": {0: "int", "0": "str", -1: None, True: "bool", None: "none", 2.5: "float", "$x": 1},
        "nested": ([], (), {}, [[1, (2, [3])]], ("a",)),
        "tensors": {
            "bf16": torch.randn(2, 3).bfloat16(),
            "i64": torch.tensor([2**62, -1]),
            "bool": torch.tensor([True, False]),
            "scalar": torch.tensor(3.25, dtype=torch.float64),
            "empty": torch.zeros(0, 4),
            "transposed": torch.randn(3, 4).t(),  # not contiguous
            "first": base[:6],  # two views of one buffer
            "second": base[6:],
            "param": params[0],
        },
        "hidden": LSTMState(torch.randn(2, 3), torch.randn(2, 3)),
    }
    expected = copy.deepcopy(state)
    expected["tensors"]["param"] = params[0].detach().clone()
    save_checkpoint(tmp_path, model_state={"a": base, "tied": base}, train_state=state, step=7)
    ckpt = load_checkpoint(tmp_path)
    assert_same(ckpt.train_state, expected, "train_state")
    assert_same(ckpt.model_state, {"a": base, "tied": base}, "model_state")


def test_save_refuses_what_it_cannot_store_exactly(tmp_path: Path) -> None:
    weights = {"w": torch.zeros(2)}
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    cases = [
        ({"count": np.int64(3)}, r"train_state\['count'\].*numpy.int64.*\.item\(\)"),
        ({"seen": {1, 2}}, r"train_state\['seen'\].*set"),
        ({"shape": torch.Size([2, 3])}, r"train_state\['shape'\].*Size"),
        ({"keys": {(1, 2): 0}}, r"train_state\['keys'\].*dict key \(1, 2\)"),
        (cyclic, "nested more than"),
    ]
    for train_state, message in cases:
        with pytest.raises(InputError, match=message):
            save_checkpoint(tmp_path, model_state=weights, train_state=train_state, step=1)
    with pytest.raises(InputError, match="model_state"):
        save_checkpoint(tmp_path, model_state={"w": [1.0]}, train_state={}, step=1)
    with pytest.raises(TypeError, match="step"):
        save_checkpoint(tmp_path, model_state=weights, train_state={}, step=1.0)
    with pytest.raises(ValueError, match="keep_last"):
        save_checkpoint(tmp_path, model_state=weights, train_state={}, step=1, keep_last=0)
    assert not (tmp_path / "checkpoints").exists() or step_dirs(tmp_path) == []


# -- keeping and pruning -------------------------------------------------------------------------------


def test_keep_last_and_best(tmp_path: Path) -> None:
    for step in range(1, 7):
        save_simple(tmp_path, step, keep_last=2, is_best=step == 2)
    assert step_dirs(tmp_path) == ["step-000002", "step-000005", "step-000006"]
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step-000006\n"
    assert load_checkpoint(tmp_path, which="best").step == 2
    save_simple(tmp_path, 7, keep_last=2, is_best=True)  # the old best is now an ordinary checkpoint
    assert step_dirs(tmp_path) == ["step-000006", "step-000007"]
    save_simple(tmp_path, 8, keep_last=1)
    assert step_dirs(tmp_path) == ["step-000007", "step-000008"]
    assert load_checkpoint(tmp_path).step == 8 and load_checkpoint(tmp_path, which="best").step == 7
    assert load_checkpoint(tmp_path, which="step-000007").model_state["w"][0, 0] == 7
    direct = load_checkpoint(tmp_path / "checkpoints" / "step-000008")
    assert direct.train_state == {"epoch": 0, "v": direct.train_state["v"], "note": "step 8"}
    assert leftovers(tmp_path) == []


def test_saving_an_existing_step_replaces_it(tmp_path: Path) -> None:
    save_simple(tmp_path, 1)
    save_simple(tmp_path, 2)
    save_checkpoint(tmp_path, model_state={"w": torch.ones(1)}, train_state={"again": True}, step=2)
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.step == 2 and ckpt.train_state == {"again": True}
    assert step_dirs(tmp_path) == ["step-000001", "step-000002"] and leftovers(tmp_path) == []


# -- crashes -------------------------------------------------------------------------------------------


def calls_in_a_save(run: Path, monkeypatch: pytest.MonkeyPatch, call: str, keep_last: int) -> int:
    """How many times the second save of a run calls ``os.<call>``."""
    real, calls = getattr(os, call), []
    save_simple(run, 1)
    monkeypatch.setattr(os, call, lambda *args: calls.append(args) or real(*args))
    save_simple(run, 2, keep_last=keep_last)
    monkeypatch.setattr(os, call, real)
    return len(calls)


@pytest.mark.parametrize("keep_last", [3, 1])
@pytest.mark.parametrize("call", ["replace", "fsync"])
def test_a_crash_at_any_point_of_a_save_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str, keep_last: int
) -> None:
    real = getattr(os, call)
    total = calls_in_a_save(tmp_path / "count", monkeypatch, call, keep_last)
    assert total >= 6
    kept = 0
    for fail_at in range(total):
        run = tmp_path / str(fail_at)
        save_simple(run, 1)
        calls = 0

        def failing(*args: Any, _at: int = fail_at) -> Any:
            nonlocal calls
            calls += 1
            if calls > _at:
                raise OSError(f"simulated crash at os.{call} call {calls}")
            return real(*args)

        monkeypatch.setattr(os, call, failing)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                save_simple(run, 2, keep_last=keep_last)
                raised = False
            except OSError:
                raised = True
        monkeypatch.setattr(os, call, real)

        # a failure is never silent: the save raises, or (pruning, once the save is done) warns
        assert raised or any("could not prune" in str(w.message) for w in caught), fail_at
        latest = (run / "checkpoints" / "latest").read_text()
        ckpt = load_checkpoint(run)
        if latest == "step-000001\n":  # the pointer did not move: the previous checkpoint is intact
            assert raised and ckpt.step == 1 and ckpt.model_state["w"][0, 0] == 1
            kept += 1
        else:  # the pointer moves only once the new checkpoint is complete
            assert latest == "step-000002\n" and ckpt.step == 2 and ckpt.model_state["w"][0, 0] == 2
        save_simple(run, 3, keep_last=keep_last)  # the next save cleans up what the crash left
        assert load_checkpoint(run).step == 3 and leftovers(run) == []
    # every failure up to the pointer's own rename kept the previous checkpoint as latest
    assert kept >= (6 if call == "replace" else 10)


SAVE_LOOP = textwrap.dedent(
    """
    import sys, torch
    from rnnkit.training import CheckpointError, load_checkpoint, save_checkpoint
    run = sys.argv[1]
    try:
        step = load_checkpoint(run).step
    except CheckpointError:
        step = 0
    while True:
        step += 1
        save_checkpoint(
            run,
            model_state={"w": torch.full((256, 64), float(step))},
            train_state={"step": step, "v": torch.arange(step), "rng": {"s": [step] * 50}},
            step=step,
            keep_last=2,
            is_best=step % 3 == 0,
        )
        if step % 5 == 1:
            print(step, flush=True)
    """
)


def check_after_kill(run: Path) -> int:
    ckpt = load_checkpoint(run)
    step = ckpt.step
    assert ckpt.train_state == {"step": step, "v": ckpt.train_state["v"], "rng": {"s": [step] * 50}}
    assert torch.equal(ckpt.model_state["w"], torch.full((256, 64), float(step)))
    assert torch.equal(ckpt.train_state["v"], torch.arange(step))
    if (run / "checkpoints" / "best").exists():
        assert load_checkpoint(run, which="best").step % 3 == 0
    return step


def kill_while_saving(run: Path, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    last = 0
    for _ in range(kills):
        child = subprocess.Popen(
            [sys.executable, "-c", SAVE_LOOP, str(run)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout is not None
            child.stdout.readline()  # it has imported, loaded the latest and saved once
            time.sleep(rng.uniform(0, 0.05))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stdout.close()
        step = check_after_kill(run)
        assert step > last  # it made progress, and resumed from where it was killed
        last = step


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_while_saving_leaves_a_latest_that_loads(tmp_path: Path) -> None:
    kill_while_saving(tmp_path, kills=3, seed=0)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_many_sigkills_while_saving(tmp_path: Path) -> None:
    kill_while_saving(tmp_path, kills=40, seed=1)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.json"
    atomic_write(path, b"old")

    def fail(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, b"new")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["config.json"]


# -- corrupt, foreign and hostile checkpoints ---------------------------------------------------------------


class Evil:
    """Unpickling this creates a directory: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def flip_bit(path: Path, at: float = 0.5, bit: int = 3) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 1 << bit
    path.write_bytes(bytes(data))


def flip_hash_bit(manifest: Path) -> None:
    """Flip the lowest bit of the first digit of a file's SHA-256 in the manifest (still valid JSON)."""
    text = manifest.read_text()
    at = text.index('"sha256": "') + len('"sha256": "')
    manifest.write_text(text[:at] + chr(ord(text[at]) ^ 1) + text[at + 1 :])


def rewrite_manifest(ckpt: Path, **changes: Any) -> None:
    """Change manifest fields and recompute its checksum, as someone who knows the format would."""
    manifest = json.loads((ckpt / "manifest.json").read_text())
    manifest.update(changes)
    manifest.pop("checksum")
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    manifest["checksum"] = hashlib.sha256(canonical).hexdigest()
    (ckpt / "manifest.json").write_text(json.dumps(manifest))


def forge(ckpt: Path, name: str, data: bytes) -> None:
    """Replace a file and give the manifest its size and hash: only the content checks are left."""
    (ckpt / name).write_bytes(data)
    files = json.loads((ckpt / "manifest.json").read_text())["files"]
    files[name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    rewrite_manifest(ckpt, files=files)


def torch_pickle(obj: Any, path: Path) -> bytes:
    torch.save(obj, path)
    return path.read_bytes()


DAMAGE = {
    "deleted": (lambda c, m: (c / "weights.safetensors").unlink(), "weights.safetensors: missing"),
    "truncated": (
        lambda c, m: os.truncate(c / "state.safetensors", 100),
        "state.safetensors: size mismatch (truncated or changed): expected",
    ),
    "bit flipped": (
        lambda c, m: flip_bit(c / "weights.safetensors"),
        "weights.safetensors: SHA-256 mismatch",
    ),
    "bit flipped json": (lambda c, m: flip_bit(c / "state.json", 0.3, 1), "state.json: SHA-256 mismatch"),
    "manifest missing": (lambda c, m: (c / "manifest.json").unlink(), "manifest.json: missing"),
    "manifest garbage": (
        lambda c, m: (c / "manifest.json").write_bytes(os.urandom(300)),
        "manifest.json: not valid JSON",
    ),
    "manifest bit flipped": (
        lambda c, m: flip_hash_bit(c / "manifest.json"),
        "manifest.json: checksum mismatch",
    ),
    "wrong format tag": (
        lambda c, m: (c / "manifest.json").write_text('{"format": "someone-else", "files": {}}'),
        "manifest.json: not an rnnkit checkpoint (format tag 'someone-else'",
    ),
    "no format tag": (
        lambda c, m: (c / "manifest.json").write_text("[1, 2]"),
        "manifest.json: not an rnnkit",
    ),
    "newer version": (
        lambda c, m: rewrite_manifest(c, version=99),
        "manifest.json: format version 99 is newer",
    ),
    "torch.save planted": (
        lambda c, m: torch_pickle({"w": Evil(m)}, c / "weights.safetensors"),
        "weights.safetensors: size mismatch",
        "it is a zip archive, as torch.save writes (rnnkit never unpickles",
    ),
    "pickle planted": (
        lambda c, m: (c / "state.safetensors").write_bytes(pickle.dumps(Evil(m))),
        "state.safetensors: size mismatch",
        "it looks like a pickle",
    ),
    "pickle planted, manifest forged": (
        lambda c, m: forge(c, "weights.safetensors", pickle.dumps(Evil(m))),
        "weights.safetensors: not a safetensors file",
        "it looks like a pickle",
    ),
    "foreign safetensors, manifest forged": (
        lambda c, m: forge(c, "weights.safetensors", safetensors.torch.save({"w": torch.zeros(2)})),
        "weights.safetensors: unexpected content",
    ),
    "weights and state swapped, manifest forged": (
        lambda c, m: forge(c, "weights.safetensors", (c / "state.safetensors").read_bytes()),
        "weights.safetensors: unexpected content",
    ),
    "path traversal in manifest": (
        lambda c, m: rewrite_manifest(c, files={"../../secret": {"size": 1, "sha256": "0" * 64}}),
        "manifest.json: unexpected file entry '../../secret'",
    ),
    "huge declared size": (
        lambda c, m: rewrite_manifest(
            c,
            files={
                **json.loads((c / "manifest.json").read_text())["files"],
                "state.json": {"size": 10**18, "sha256": "0" * 64},
            },
        ),
        "state.json: size mismatch (truncated or changed): expected 1000000000000000000 bytes",
    ),
    "state.json nested deep, manifest forged": (
        lambda c, m: forge(c, "state.json", b"[" * 100_000 + b"]" * 100_000),
        "state.json: not valid JSON",
    ),
    "state.json names a missing tensor": (
        lambda c, m: forge(c, "state.json", b'{"x": {"$tensor": "../../etc/passwd"}}'),
        "state.json: names the tensor '../../etc/passwd', which state.safetensors does not hold",
    ),
    "state.json with an unknown tag": (
        lambda c, m: forge(c, "state.json", b'{"x": {"$pickle": "gASV"}}'),
        "state.json: unknown or malformed entry {'$pickle'",
    ),
    "step does not match the name": (
        lambda c, m: rewrite_manifest(c, step=2),
        "manifest.json: step 2 does not match the directory name step-000001",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_is_one_clear_error(tmp_path: Path, damage: str) -> None:
    run, marker = tmp_path / "run", tmp_path / "code-ran"
    ckpt = save_simple(run, 1)
    do, *messages = DAMAGE[damage]
    do(ckpt, marker)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(run)
    text = str(info.value)
    assert text.startswith(str(ckpt)) and all(m in text for m in messages), text
    assert "checkpoints/latest points to step-000001" in text and "no other checkpoint" in text
    with pytest.raises(CheckpointError) as direct:  # the checkpoint's own directory: the bare message
        load_checkpoint(ckpt)
    assert str(direct.value).startswith(str(ckpt)) and all(m in str(direct.value) for m in messages)
    assert not marker.exists()


def test_a_corrupt_latest_names_the_previous_good_checkpoint(tmp_path: Path) -> None:
    for step in (1, 2, 3):
        save_simple(tmp_path, step)
    flip_bit(tmp_path / "checkpoints" / "step-000003" / "weights.safetensors")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path)
    text = str(info.value)
    assert "checkpoints/step-000003/weights.safetensors: SHA-256 mismatch (file changed or corrupt)" in text
    assert "the newest good checkpoint is" in text and "which='step-000002'" in text
    assert load_checkpoint(tmp_path, which="step-000002").step == 2  # what the message says to do

    os.truncate(tmp_path / "checkpoints" / "step-000002" / "state.json", 3)
    with pytest.raises(CheckpointError, match="which='step-000001'"):
        load_checkpoint(tmp_path)


def test_missing_checkpoints_are_errors_not_fresh_starts(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such run directory"):
        load_checkpoint(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="checkpoints/latest: missing"):
        load_checkpoint(tmp_path)
    save_simple(tmp_path, 1)
    with pytest.raises(CheckpointError, match="checkpoints/best: missing .*is_best=True"):
        load_checkpoint(tmp_path, which="best")
    (tmp_path / "checkpoints" / "latest").unlink()
    with pytest.raises(CheckpointError, match="latest: missing.*which='step-000001'"):
        load_checkpoint(tmp_path)
    (tmp_path / "checkpoints" / "latest").write_text("step-000009\n")
    with pytest.raises(CheckpointError, match="step-000009: missing; .*latest points to step-000009"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="step-000004: missing"):
        load_checkpoint(tmp_path, which="step-000004")
    with pytest.raises(InputError, match="checkpoint directory"):
        load_checkpoint(tmp_path / "checkpoints" / "step-000001", which="best")


@pytest.mark.parametrize("pointer", ["../../../etc/passwd", "step-000001/../../x", "/tmp", "", "\xff" * 10])
def test_a_pointer_is_only_ever_a_checkpoint_name(tmp_path: Path, pointer: str) -> None:
    save_simple(tmp_path, 1)
    (tmp_path / "checkpoints" / "latest").write_bytes(pointer.encode("latin-1"))
    with pytest.raises(CheckpointError, match="latest: not a checkpoint pointer"):
        load_checkpoint(tmp_path)


@pytest.mark.skipif(os.name != "posix", reason="symbolic links")
def test_symbolic_links_are_refused(tmp_path: Path) -> None:
    run, outside = tmp_path / "run", tmp_path / "outside"
    ckpt = save_simple(run, 1)
    outside.mkdir()
    (ckpt / "state.json").rename(outside / "state.json")
    (ckpt / "state.json").symlink_to(outside / "state.json")
    with pytest.raises(CheckpointError, match="state.json: is a symbolic link"):
        load_checkpoint(run)
    (ckpt / "state.json").unlink()
    (outside / "state.json").rename(ckpt / "state.json")
    assert load_checkpoint(run).step == 1

    ckpt.rename(outside / "step-000002")  # a checkpoint directory that lies outside the run
    (run / "checkpoints" / "step-000002").symlink_to(outside / "step-000002")
    (run / "checkpoints" / "latest").write_text("step-000002\n")
    with pytest.raises(CheckpointError, match="step-000002: not a directory"):
        load_checkpoint(run)
