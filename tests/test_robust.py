"""A careless user and a hostile machine: every failure is one line on stderr with a distinct exit status
(2 bad input, 1 failed run, 130 interrupted), never a traceback; a run is never lost or mixed (a lock per
run directory, Ctrl-C and SIGTERM save, --resume needs only --out). Real processes and real signals."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY_HEAD

import rnnkit
from rnnkit.cli import main
from rnnkit.commands import boundary
from rnnkit.training.checkpoint import load_checkpoint

SRC = Path(rnnkit.__file__).resolve().parents[1]
TINY_LM = ["--hidden", "8", "--batch", "2", "--seq-len", "8", "--no-progress", "--no-plots"]

pytestmark = pytest.mark.usefixtures("one_thread")


def one_error_line(err: str) -> str:
    """The one line a failed command prints (and nothing that looks like a traceback)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("rnnkit: "), err
    return lines[0]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(TINY_HEAD.read_text(encoding="utf-8")[:6000], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory, corpus) -> Path:
    run = tmp_path_factory.mktemp("lm") / "run"
    assert main(["train", "lm", "--data", str(corpus), "--out", str(run), "--steps", "3", *TINY_LM]) == 0
    return run


def write_ts(path: Path, labels: list[str], declared: str = "a b") -> Path:
    rows = [f"{i % 3}.0,{i}.5,2.0:1.0,0.{i},3.0:{label}" for i, label in enumerate(labels)]
    path.write_text(f"@dimensions 2\n@classLabel true {declared}\n@data\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def cls_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cls")
    train = write_ts(folder / "train.ts", ["a", "b"] * 6)
    run = folder / "run"
    argv = ["train", "classify", "--train", str(train), "--out", str(run), "--hidden", "4", "--steps", "2",
            "--no-progress", "--no-plots"]  # fmt: skip
    assert main(argv) == 0
    return run


# -- bad input: exit 2, one line naming what is wrong ------------------------------------------------------


def test_a_directory_where_a_file_belongs(tmp_path, capsys, lm_run):
    assert main(["ngram", "--train", str(tmp_path), "--eval", str(tmp_path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line == f"rnnkit: error: {tmp_path}: is a directory, expected a file"
    assert main(["evaluate", str(lm_run), "--data", str(tmp_path)]) == 2
    assert f"{tmp_path}: is a directory" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("command", [["generate"], ["export", "--out", "x"], ["evaluate", "--data", "x"]])
def test_a_run_of_the_wrong_kind_is_named(command, capsys, cls_run):
    assert main([command[0], str(cls_run), *command[1:]]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{cls_run} is a classifier run; `{command[0]}` needs a language-model run" in line


def test_predict_and_tag_refuse_a_language_model_run(capsys, lm_run):
    assert main(["predict", str(lm_run), "x.ts"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "is a language-model run; `predict` needs a classifier run" in line
    assert main(["tag", str(lm_run), "x"]) == 2
    assert "is a language-model run; `tag` needs a tagger run" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("config.json", "", "config.json: not valid JSON (Expecting value at line 1 column 1)"),
        ("config.json", '{"train": {}, "model": {"vocab_size": 5, "colour": 1}}',
         "config.json: the model settings do not make a LMConfig"),
        ("config.json", "[1, 2]", "config.json: not a run's config"),
        ("tokenizer.json", "{", "tokenizer.json: not valid JSON"),
        ("tokenizer.json", b"\xff\xfe{", "tokenizer.json: not UTF-8 text"),
    ],
)  # fmt: skip
def test_a_damaged_or_edited_run_file_is_named(tmp_path, capsys, lm_run, name, content, message):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(lm_run, run)
    (run / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main(["generate", str(run), "--length", "3"]) == 2
    assert message in one_error_line(capsys.readouterr().err)


def test_out_is_a_file_and_resume_of_nothing(tmp_path, capsys, corpus):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["train", "lm", "--data", str(corpus), "--out", str(afile), *TINY_LM]) == 2
    assert "exists and is not a directory" in one_error_line(capsys.readouterr().err)
    missing = tmp_path / "missing"
    assert main(["train", "lm", "--out", str(missing), "--resume"]) == 2
    assert f"--resume: {missing} does not exist" in one_error_line(capsys.readouterr().err)
    assert not missing.exists()
    assert main(["train", "lm", "--out", str(missing)]) == 2  # a fresh run needs its data
    assert "needs --data" in one_error_line(capsys.readouterr().err)
    assert not missing.exists()  # a refused start leaves no folder behind
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["train", "lm", "--data", str(empty), "--out", str(missing), *TINY_LM]) == 2
    assert f"{empty} is empty" in one_error_line(capsys.readouterr().err)
    assert not missing.exists()  # refused by the command, after the lock made the folder: removed again


def test_resume_needs_only_out_and_names_each_difference(tmp_path, capsys, corpus):
    run = tmp_path / "run"
    argv = ["train", "lm", "--data", str(corpus), "--out", str(run), "--steps", "2", "--lr", "0.01", *TINY_LM]
    assert main(argv) == 0
    capsys.readouterr()
    # the saved settings are the defaults; --steps and --checkpoint-every may change
    resumed = ["train", "lm", "--out", str(run), "--resume", "--steps", "4", "--checkpoint-every", "7"]
    assert main([*resumed, "--no-progress", "--no-plots", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 4
    changed = ["--steps", "5", "--hidden", "16", "--lr", "0.5", "--no-progress"]
    assert main(["train", "lm", "--out", str(run), "--resume", *changed]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "model.hidden: saved 8, given 16" in line and "train.lr: saved 0.01, given 0.5" in line
    assert "only --steps, --minutes, --checkpoint-every, --keep-last, --tensorboard may change" in line
    assert load_checkpoint(run).step == 4  # the refused resume changed nothing


def test_single_class_training_set_is_refused(tmp_path, capsys):
    train = write_ts(tmp_path / "one.ts", ["a"] * 5)  # two classes declared, one present
    assert main(["train", "classify", "--train", str(train), "--out", str(tmp_path / "r")]) == 2
    assert "all of class 'a'" in one_error_line(capsys.readouterr().err)


# -- the boundary's mapping, exception by exception ------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "words"),
    [
        (KeyboardInterrupt(), 130, "interrupted"),
        (OSError(errno.ENOSPC, "No space left on device", "/runs/x/metrics.jsonl"), 1,
         "/runs/x/metrics.jsonl: no space left on the device"),
        (PermissionError(errno.EACCES, "Permission denied", "/etc/x"), 2, "/etc/x: permission denied"),
        (OSError(errno.EROFS, "Read-only file system", "/ro/run"), 2, "/ro/run: read-only file system"),
        (FileExistsError(errno.EEXIST, "File exists", "/x"), 2, "/x: already exists"),
        (FileNotFoundError(errno.ENOENT, "No such file", "/proc/.tmp-x.onnx-5929-eb8f9483"), 2,
         "/proc/x.onnx: no such file or directory"),
        (MemoryError(), 1, "out of memory"),
        (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory"), 1,
         "out of memory"),
        (rnnkit.errors.TrainingError("step 3: loss not finite"), 1, "step 3: loss not finite"),
        (TypeError("an internal mistake"), 1, "unexpected TypeError: an internal mistake"),
    ],
)  # fmt: skip
def test_every_exception_is_one_line_with_its_status(monkeypatch, capsys, error, status, words):
    def failing(args):
        raise error

    monkeypatch.setattr("rnnkit.commands.demo.cmd_demo", failing)
    assert main(["demo"]) == status
    assert words in one_error_line(capsys.readouterr().err)
    assert main(["demo", "--debug"]) == status  # --debug anywhere: the traceback as well
    err = capsys.readouterr().err
    assert "Traceback" in err and words in err


def test_debug_from_the_environment(monkeypatch):
    monkeypatch.setenv("RNNKIT_DEBUG", "1")
    assert boundary.debug_requested(["demo"]) == (True, ["demo"])
    monkeypatch.setenv("RNNKIT_DEBUG", "0")
    assert boundary.debug_requested(["demo", "--debug"]) == (True, ["demo"])
    assert boundary.debug_requested(["demo"]) == (False, ["demo"])


# -- real processes: signals, two runs on one folder, a dead one's lock -------------------------------------


def start(corpus: Path, run: Path, *extra: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "rnnkit", "train", "lm", "--data", str(corpus), "--out", str(run),
            "--steps", "100000", "--checkpoint-every", "100000", "--eval-every", "100000", "--threads", "1",
            *TINY_LM, *extra]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for_steps(process: subprocess.Popen, run: Path, steps: int) -> None:
    """Until the run has logged ``steps`` steps (a deadline only so that a hang fails the test)."""
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if metrics.exists() and len(metrics.read_text().splitlines()) >= steps:
            return
        time.sleep(0.2)
    process.kill()
    raise AssertionError("the run did not start training")


def rnnkit_cli(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-m", "rnnkit", *argv], capture_output=True, text=True, env=env,
                          timeout=300)  # fmt: skip


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_the_current_step_and_exits_130(tmp_path, corpus, sig):
    run = tmp_path / "run"
    first = start(corpus, run)
    wait_for_steps(first, run, 3)
    first.send_signal(sig)
    _, err = first.communicate(timeout=240)
    assert first.returncode == 130, err
    line = one_error_line(err)
    saved = load_checkpoint(run)
    assert saved.step >= 3  # the default would have saved nothing before step 100000
    assert f"interrupted ({sig.name}) at step {saved.step}, saved in {run}" in line
    assert f"resume with `rnnkit train lm --out {run} --resume`" in line
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, saved.step + 1))
    done = rnnkit_cli("train", "lm", "--out", str(run), "--resume", "--steps", str(saved.step + 2), "--json",
                      "--no-progress", "--no-plots")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["steps"] == saved.step + 2


def test_two_processes_on_one_run_directory(tmp_path, corpus):
    run = tmp_path / "run"
    first = start(corpus, run)
    try:
        wait_for_steps(first, run, 2)
        second = rnnkit_cli("train", "lm", "--data", str(corpus), "--out", str(run), "--steps", "5", *TINY_LM)
        assert second.returncode == 2
        line = one_error_line(second.stderr)
        assert f"{run} is in use by another rnnkit process (pid {first.pid}, since" in line
        resumed = rnnkit_cli("train", "lm", "--out", str(run), "--resume", "--no-progress")
        assert resumed.returncode == 2 and f"pid {first.pid}" in one_error_line(resumed.stderr)
        assert first.poll() is None  # the first run goes on, untouched
    finally:
        first.kill()  # SIGKILL: no clean-up at all; the kernel drops its lock
        first.communicate()
    # a lock left by a dead process is taken over (no checkpoint yet: a fresh start may use the folder)
    after = rnnkit_cli("train", "lm", "--data", str(corpus), "--out", str(run), "--steps", "2", *TINY_LM)
    assert after.returncode == 0, after.stderr
    assert f"pid {first.pid}," not in (run / ".lock").read_text()
    assert load_checkpoint(run).step == 2


# -- input that is not what it claims, sizes that cannot fit -------------------------------------------------


def fake_tagger_run(folder: Path) -> Path:
    """A run directory that passes as a tagger's (the command reads its input before the weights)."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"train": {}, "model": {"vocab_size": 5, "num_tags": 2}}))
    (folder / "tokenizer.json").write_text("{}")
    (folder / "data.json").write_text(json.dumps({"data": "x", "task": "case"}))
    return folder


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"\x7fELF\x02\x01\x01\x00\x00", "standard input: binary data, not text (a NUL character at offset 7"),
     (b"abc\xff\xfe", "standard input: invalid UTF-8 at byte offset 3")],
)  # fmt: skip
def test_tag_refuses_binary_standard_input(tmp_path, capsys, monkeypatch, data, message):
    import io

    run = fake_tagger_run(tmp_path / "tagger")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert main(["tag", str(run)]) == 2
    assert message in one_error_line(capsys.readouterr().err)


def test_parameter_estimate_is_exact_for_language_models():
    from rnnkit.apps.lm import LanguageModel, LMConfig
    from rnnkit.training import resources

    for cell, layers in (("lstm", 2), ("gru", 1), ("rnn", 3)):
        model = LanguageModel(LMConfig(vocab_size=11, cell=cell, hidden=7, layers=layers))
        need = resources.estimate(cell=cell, hidden=7, layers=layers, input_size=7, outputs=11, embedding=11,
                                  batch=2, steps=3)  # fmt: skip
        assert need.parameters == sum(p.numel() for p in model.parameters()), cell


def test_absurd_sizes_are_refused_before_any_work(tmp_path, capsys, monkeypatch, corpus):
    from rnnkit.training import resources

    monkeypatch.setattr(resources, "available_memory", lambda: 8 * 10**9)  # an 8 GB machine
    out = tmp_path / "big"
    assert main(["train", "lm", "--data", str(corpus), "--out", str(out), "--hidden", "10000000"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "--hidden 10000000" in line and "PB (800,005,200,000,256 parameters" in line
    assert "more than the 8.0 GB of memory available" in line and not out.exists()
    assert main(["train", "task", "--task", "parity", "--length", "300000", "--out", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "--length 300000: training would need about 29.8 GB" in line and not out.exists()
    # past half of the memory: a warning, and the run goes on
    monkeypatch.setattr(resources, "available_memory", lambda: 40 * 10**9)
    argv = ["train", "task", "--task", "parity", "--length", "300000", "--out", str(out), "--steps", "1"]

    def cmd_train_task(args):  # the run itself is not the point
        return 0

    monkeypatch.setattr("rnnkit.apps.synthetic.cli.cmd_train_task", cmd_train_task)
    assert main(argv) == 0
    warning = "--hidden 64 --layers 1 --batch 64 --length 300000: training will need about 29.8 GB"
    assert f"rnnkit: warning: {warning}" in capsys.readouterr().err


# -- named UEA problems, results.json ---------------------------------------------------------------------


def test_per_class_scores_by_hand():
    from rnnkit.training.results import per_class_scores

    scores = per_class_scores([[3, 1], [0, 2]], ["x", "y"])  # x: 3 right, 1 taken for y; y: 2 right
    assert scores["x"] == {"precision": 1.0, "recall": 0.75, "f1": pytest.approx(6 / 7), "support": 4}
    assert scores["y"] == {"precision": 2 / 3, "recall": 1.0, "f1": pytest.approx(0.8), "support": 2}
    assert per_class_scores([[0, 0], [0, 1]], ["x", "y"])["x"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                                                   "support": 0}  # fmt: skip


def test_named_uea_problem_trains_predicts_and_keeps_results(tmp_path, capsys, vowels_files):
    run = tmp_path / "run"
    argv = ["train", "classify", "--data", "JapaneseVowels", "--out", str(run), "--hidden", "8",
            "--steps", "3", "--no-progress", "--no-plots", "--json"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    results = json.loads((run / "results.json").read_text())
    assert results["test_accuracy"] == report["test_accuracy"] and results["steps"] == 3
    confusion = results["confusion"]
    assert sum(map(sum, confusion)) == 370  # the test split of the problem
    assert results["per_class"]["1"]["support"] == 31 and set(results["per_class"]) == set(report["classes"])
    assert {"valid_loss", "best_valid_loss", "test_loss", "train_accuracy"} <= set(results)
    assert main(["predict", str(run), "--data", "JapaneseVowels", "--json"]) == 0
    predicted = json.loads(capsys.readouterr().out)
    assert predicted["file"] == str(vowels_files[1]) and predicted["accuracy"] == report["test_accuracy"]


def test_unknown_uea_problem_offline_is_one_clear_line(tmp_path, capsys, monkeypatch, vowels_files):
    import types
    import urllib.error

    def offline(name, save_path=None):
        raise urllib.error.URLError("no network")

    monkeypatch.setitem(sys.modules, "aeon.datasets", types.SimpleNamespace(download_dataset=offline))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["train", "classify", "--data", "NoSuchProblem", "--out", str(tmp_path / "r")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "could not download the UEA problem 'NoSuchProblem' through aeon (URLError" in line
    assert "offline problems: " in line and "JapaneseVowels" in line and "--train/--test" in line


def test_tensorboard_event_files(tmp_path, capsys, corpus):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    argv = ["train", "lm", "--data", str(corpus), "--out", str(run), "--steps", "4", "--eval-every", "2",
            "--tensorboard", *TINY_LM]  # fmt: skip
    assert main(argv) == 0
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"histograms": 0}).Reload()
    tags = events.Tags()
    assert {"train/loss", "train/grad_norm", "train/lr", "valid/loss"} <= set(tags["scalars"])
    losses = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged = {r["step"]: r["loss"] for r in losses if "loss" in r}
    assert {e.step: e.value for e in events.Scalars("train/loss")} == pytest.approx(logged)
    assert [e.step for e in events.Scalars("valid/loss")] == [2, 4]
    grads = [t for t in tags["histograms"] if t.startswith("grad/")]
    from rnnkit.apps import lm

    names = [f"grad/{name}" for name, _ in lm.load_language_model(run).model.named_parameters()]
    assert sorted(grads) == sorted(names) and any("weight_hh" in t for t in grads)
    assert [e.step for e in events.Histograms(grads[0])] == [1]  # and every --log-every (10) steps
