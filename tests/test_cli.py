"""The command line: the README's main job runs and reports what it built."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from rnnkit.cli import main


def test_demo_json_reports_shapes(capsys):
    assert main(["demo", "--json", "--seq-len", "5", "--batch", "3", "--features", "4", "--hidden", "6"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["input"] == [3, 5, 4]
    assert len(report["lengths"]) == 3 and all(1 <= n <= 5 for n in report["lengths"])
    lstm = report["models"]["rnnkit.nn.LSTM (2 layers, bidirectional)"]
    assert lstm["output"] == [3, 5, 12]  # 2 directions * hidden 6
    assert lstm["state"] == [[4, 3, 6], [4, 3, 6]]  # (layers * directions, B, H) for h and c
    # parameter count of a 2-layer bidirectional LSTM, as torch counts it
    expected = sum(p.numel() for p in __import__("torch").nn.LSTM(4, 6, 2, bidirectional=True).parameters())
    assert lstm["parameters"] == expected


def test_demo_text_and_bad_option(capsys):
    assert main(["demo", "--seq-len", "3"]) == 0
    assert "output" in capsys.readouterr().out
    assert main(["demo", "--hidden", "0"]) == 2
    assert "--hidden must be >= 1" in capsys.readouterr().err


def test_console_script_help_is_fast_and_works():
    out = subprocess.run(
        [sys.executable, "-m", "rnnkit.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "demo" in out.stdout


@pytest.mark.parametrize("argv", [["--version"]])
def test_version(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    assert "rnnkit 0.1.0" in capsys.readouterr().out


def test_help_does_not_import_torch():
    code = (
        "import sys\nfrom rnnkit.cli import build_parser\n"
        "build_parser().format_help()\nassert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lazy_exports_resolve():
    import rnnkit

    for name in rnnkit.__all__:
        assert getattr(rnnkit, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rnnkit.nope  # noqa: B018


def test_all_matches_lazy_table():
    import rnnkit

    assert sorted(rnnkit.__all__) == sorted([*rnnkit._EXPORTS, "nn"])


def test_train_lm_then_sample_on_a_real_text(tmp_path, capsys):
    """The README's main job, small: train a character LM on real text, then sample from it."""
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare.txt"
    if not shared.is_file():
        pytest.skip("../shared/data is not here")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(shared.read_text()[:20000])
    run = tmp_path / "run"
    argv = ["train", "lm", "--data", str(corpus), "--out", str(run), "--hidden", "32", "--steps", "40",
            "--batch", "4", "--seq-len", "16", "--no-progress", "--json"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] == 40 and report["vocab_size"] > 30
    assert report["valid_loss"] < math.log(report["vocab_size"])  # it learned something
    assert {"config.json", "tokenizer.json", "metrics.jsonl", "checkpoints"} <= {
        p.name for p in run.iterdir()
    }

    assert main(["generate", str(run), "--prime", "ROMEO:", "--length", "50", "--json"]) == 0
    text = json.loads(capsys.readouterr().out)["text"]
    assert text.startswith("ROMEO:") and len(text) == 56

    # evaluate any text in the run's vocabulary; characters it never saw are counted, not scored
    held_out = tmp_path / "held_out.txt"
    held_out.write_text(shared.read_text()[20000:23000] + "\u00e9\u00e9")
    assert main(["evaluate", str(run), "--data", str(held_out), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["unknown"] == 2 and scores["tokens"] == 2999
    assert scores["perplexity"] == pytest.approx(math.exp(scores["loss"]))
    assert scores["bits_per_token"] == pytest.approx(scores["loss"] / math.log(2))
    assert scores["loss"] < math.log(report["vocab_size"])

    # the same run directory again without --resume is refused, with a message and no traceback
    assert main(argv) == 2
    assert "already holds checkpoints" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "missing")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert main(["sample", str(run), "--prime", "\u00e9"]) == 2  # a character the corpus never had
    assert "é" in capsys.readouterr().err


def test_ngram_command(tmp_path, capsys):
    train, held_out = tmp_path / "train.txt", tmp_path / "eval.txt"
    train.write_text("the cat sat on the mat. " * 200)
    held_out.write_text("the mat sat on the cat. " * 20)
    assert main(["ngram", "--order", "3", "--train", str(train), "--eval", str(held_out), "--json",
                 "--generate", "30", "--prime", "the"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["order"] == 3 and report["tokens"] == len(held_out.read_text())
    assert report["loss"] < 0.5 * math.log(len(set(train.read_text())))  # far better than uniform
    assert report["text"].startswith("the") and len(report["text"]) == 33
    assert main(["ngram", "--order", "0", "--train", str(train), "--eval", str(held_out)]) == 2


def small_corpus(tmp_path: Path) -> Path:
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare.txt"
    if not shared.is_file():
        pytest.skip("../shared/data is not here")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(shared.read_text()[:8000])
    return corpus


def test_training_options_reach_the_config_and_plots_are_drawn(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "lm", "--data", str(small_corpus(tmp_path)), "--out", str(run), "--hidden", "16",
            "--steps", "12", "--batch", "4", "--seq-len", "16", "--optimizer", "sgd", "--momentum", "0.8",
            "--schedule", "cosine", "--warmup", "2", "--clip-norm", "0", "--bptt-window", "8",
            "--teacher-forcing", "inverse_sigmoid", "--tf-k", "5", "--patience", "3", "--eval-every", "4",
            "--no-progress", "--json"]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    train = json.loads((run / "config.json").read_text())["train"]
    assert train["optimizer"] == "sgd" and train["momentum"] == 0.8 and train["schedule"] == "cosine"
    assert train["warmup_steps"] == 2 and train["clip_norm"] is None and train["bptt_window"] == 8
    assert train["teacher_forcing"] == "inverse_sigmoid" and train["tf_k"] == 5 and train["patience"] == 3
    for name in ("loss.png", "grad_norm.png", "lr.png"):
        assert (run / name).read_bytes()[:4] == b"\x89PNG"
        (run / name).unlink()
    assert main(["plot", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["plots"] == [
        str(run / n) for n in ("loss.png", "grad_norm.png", "lr.png")
    ]
    assert (run / "loss.png").is_file()


def test_bad_training_options_are_one_line_errors(tmp_path, capsys):
    base = [
        "train",
        "lm",
        "--data",
        str(small_corpus(tmp_path)),
        "--out",
        str(tmp_path / "r"),
        "--steps",
        "2",
    ]
    assert main([*base, "--bptt-window", "100", "--seq-len", "10"]) == 2
    assert "bptt_window (k2) must be <= seq_len (k1) = 10, got 100" in capsys.readouterr().err
    assert main([*base, "--gamma", "3"]) == 2
    assert "gamma must be <= 1" in capsys.readouterr().err
    assert main([*base, "--nproc", "0"]) == 2
    assert "--nproc must be >= 1" in capsys.readouterr().err


def test_nproc_trains_in_two_processes_through_torchrun(tmp_path):
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "rnnkit", "train", "lm", "--data", str(small_corpus(tmp_path)), "--out",
            str(run), "--hidden", "16", "--steps", "6", "--batch", "4", "--seq-len", "16", "--nproc", "2",
            "--no-progress", "--no-plots", "--json"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    reports = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 1  # rank 0 alone reports
    assert json.loads(reports[0])["steps"] == 6
    state = json.loads((run / "checkpoints" / "step-000006" / "state.json").read_text())
    assert state["world_size"] == 2


def test_cli_choices_are_the_trainers():
    from rnnkit import cli
    from rnnkit.training import schedules

    assert cli.OPTIMIZERS == schedules.OPTIMIZERS
    assert cli.LR_SCHEDULES == schedules.LR_SCHEDULES
    assert cli.TEACHER_FORCING == schedules.TEACHER_FORCING
