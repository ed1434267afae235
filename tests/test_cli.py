"""The command line: the README's main job runs and reports what it built."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_HEAD

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


@pytest.mark.parametrize("module", ["rnnkit.cli", "rnnkit"])
def test_console_script_help_is_fast_and_works(module):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=True)
    assert "demo" in out.stdout and "generate" in out.stdout


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
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TINY_HEAD.read_text()[:20000])
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
    held_out.write_text(TINY_HEAD.read_text()[20000:23000] + "\u00e9\u00e9")
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
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TINY_HEAD.read_text()[:8000])
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


# -- word-level runs, streaming generation, stop strings -------------------------------------------------

VERSE = [
    "the king is dead, long live the king.",
    "my lord, the queen is walking in the garden.",
    "what news from the court? the king is sick, my lord.",
    "go tell the queen the king would speak with her.",
    "the garden gate is shut, and the night is cold.",
]
TINY = ["--steps", "3", "--hidden", "16", "--batch", "4", "--seq-len", "16", "--no-progress"]


def write_corpus(path: Path) -> Path:
    """About 4,000 characters of made-up verse: a few dozen distinct words, each seen many times."""
    lines = [VERSE[(7 * i) % len(VERSE)] for i in range(90)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A character run and a word run (vocabulary of 12: rarer words are <unk>), 3 steps each."""
    import contextlib
    import io

    root = tmp_path_factory.mktemp("runs")
    corpus = write_corpus(root / "verse.txt")
    out = {"char": root / "char", "word": root / "word"}
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", "lm", "--data", str(corpus), "--out", str(out["char"]), *TINY]) == 0
        assert main(["train", "lm", "--data", str(corpus), "--out", str(out["word"]), "--tokenizer", "word",
                     "--vocab-size", "12", *TINY]) == 0  # fmt: skip
    return out


def test_word_level_train_generate_evaluate(tmp_path, capsys):
    from rnnkit.data import WordTokenizer, load_tokenizer

    corpus = write_corpus(tmp_path / "verse.txt")
    run = tmp_path / "run"
    argv = ["train", "lm", "--data", str(corpus), "--out", str(run), "--tokenizer", "word",
            "--vocab-size", "12"]  # fmt: skip
    assert main([*argv, *TINY, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] == 3 and report["vocab_size"] == 12
    tok = load_tokenizer(run / "tokenizer.json")  # the word tokenizer, back from the run directory
    assert isinstance(tok, WordTokenizer) and len(tok) == 12 and tok.tokens[:2] == ["<unk>", " <unk>"]
    words = WordTokenizer.split(corpus.read_text())
    assert tok.tokens[2] == max(set(words), key=words.count)  # the most frequent token first

    # generate counts words, and words it never saw in the prime are <unk>, not an error
    assert main(["generate", str(run), "--prime", "the king, Zounds", "--length", "15", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["text"].startswith("the king, Zounds") and out["tokens"] == 15 and out["stopped"] is False
    assert main(["generate", str(run), "--prime", "the king, Gadzooks", "--length", "15", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["text"][len("the king, Gadzooks") :] == out["text"][16:]

    # evaluate scores per word token; words outside the 12 are scored as <unk> and counted
    held_out = tmp_path / "held_out.txt"
    held_out.write_text("the king is dead, my lord.\nthe dragon is in the garden, zounds.\n")
    assert main(["evaluate", str(run), "--data", str(held_out), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    held_words = WordTokenizer.split(held_out.read_text())
    assert scores["tokens"] == len(held_words) - 1
    assert scores["unknown"] == sum(w not in tok.tokens for w in held_words) >= 2
    assert scores["perplexity"] == pytest.approx(math.exp(scores["loss"]))
    assert 0 < scores["loss"] < 2 * math.log(12)
    assert main(["evaluate", str(run), "--data", str(held_out)]) == 0
    assert "nats/word" in capsys.readouterr().out

    # the vocabulary limit is for word runs, and needs room for the two <unk> tokens
    char_argv = ["train", "lm", "--data", str(corpus), "--out", str(tmp_path / "x"), "--vocab-size", "12"]
    assert main(char_argv) == 2
    assert "vocab_size limits a word vocabulary" in capsys.readouterr().err
    assert main([*argv[:-1], "2", "--out", str(tmp_path / "y")]) == 2
    assert "vocab_size must be an integer >= 3" in capsys.readouterr().err
    assert main([*argv[:-2], "--tokenizer", "char", "--resume"]) == 2  # a run keeps its tokenizer
    assert "trained with the 'word' tokenizer" in capsys.readouterr().err


class Recorder:
    """A stdout that records every write and counts flushes."""

    def __init__(self) -> None:
        self.writes: list[str] = []
        self.flushed_after: list[int] = []  # len(writes) at each flush

    def write(self, s: str) -> int:
        self.writes.append(s)
        return len(s)

    def flush(self) -> None:
        self.flushed_after.append(len(self.writes))


@pytest.mark.parametrize("kind", ["char", "word"])
def test_generate_streams_the_same_text_as_json(kind, runs, capsys, monkeypatch):
    run = str(runs[kind])
    assert main(["generate", run, "--prime", "the", "--length", "30", "--seed", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)  # --json: one object, nothing streamed before it
    assert out["tokens"] == 30 and out["text"].startswith("the")

    stdout = Recorder()
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["generate", run, "--prime", "the", "--length", "30", "--seed", "3"]) == 0
    monkeypatch.undo()
    assert "".join(stdout.writes) == out["text"] + "\n"  # same seed, same text
    # the prime, then one write per token, each flushed before the next token is sampled
    assert stdout.writes[0] == "the" and len(stdout.writes) == 1 + 30 + 1
    assert all(i in stdout.flushed_after for i in range(2, 32))


@pytest.mark.parametrize("kind", ["char", "word"])
def test_generate_stop(kind, runs, capsys):
    run = str(runs[kind])
    base = ["generate", run, "--prime", "the", "--length", "40", "--seed", "1", "--temperature", "1.5"]
    assert main([*base, "--json"]) == 0
    generated = json.loads(capsys.readouterr().out)["text"][3:]
    stop = generated[12:15]  # three characters from the middle (cutting inside a word: test_generate)
    end = generated.index(stop) + len(stop)

    assert main([*base, "--stop", stop, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["text"] == "the" + generated[:end] and out["stopped"] is True and out["tokens"] <= 15
    assert main([*base, "--stop", stop]) == 0  # streamed: printed through the stop string, then a newline
    assert capsys.readouterr().out == "the" + generated[:end] + "\n"

    # a stop string that never comes: the full length
    assert main([*base, "--stop", "@#", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["text"] == "the" + generated and out["stopped"] is False and out["tokens"] == 40


def test_generate_refuses_bad_stop_and_prime_before_printing(runs, capsys):
    assert main(["generate", str(runs["char"]), "--stop", ""]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "stop must be a non-empty string, got ''" in captured.err
    # a character run has no <unk>: every character outside its vocabulary is named
    assert main(["generate", str(runs["char"]), "--prime", "the Ö and ß"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "'Ö' (U+00D6)" in captured.err and "'ß' (U+00DF) x1" in captured.err


def test_the_seed_fixes_the_language_models_initial_weights(tmp_path):
    from rnnkit.apps.lm import train_language_model
    from rnnkit.training.checkpoint import load_checkpoint

    corpus = tmp_path / "c.txt"
    corpus.write_text("to be, or not to be: that is the question.\n" * 30)
    opts = {"steps": 1, "batch_size": 2, "seq_len": 8, "plots": False, "seed": 5}
    for name in ("a", "b"):
        train_language_model(str(corpus), tmp_path / name, {"hidden": 8}, opts, progress=False)
    wa, wb = (load_checkpoint(tmp_path / n).model_state for n in ("a", "b"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_train_lm_reset_on_a_document_separator(tmp_path, capsys):
    text = small_corpus(tmp_path).read_text()
    corpus = tmp_path / "docs.txt"
    corpus.write_text("\f".join(text[i : i + 500] for i in range(0, len(text), 500)))  # 16 documents
    run = tmp_path / "run"
    assert main(["train", "lm", "--data", str(corpus), "--out", str(run), "--reset-on", "\\f", *TINY]) == 0
    saved = json.loads((run / "config.json").read_text())["train"]
    from rnnkit.apps.lm import load_language_model

    assert load_language_model(run).tokenizer.decode([saved["reset_on"]]) == "\f"
    capsys.readouterr()
    for bad, says in [("ab", "must be exactly one token"), ("\\x1e", "of reset_on is not in the vocabulary")]:
        argv = ["train", "lm", "--data", str(corpus), "--out", str(tmp_path / bad[-1]), "--reset-on", bad]
        assert main([*argv, *TINY]) == 2
        assert says in capsys.readouterr().err


def test_threads_option_sets_torchs_thread_count(tmp_path, capsys):
    import torch

    before = torch.get_num_threads()
    try:
        argv = ["train", "task", "--task", "parity", "--length", "5", "--hidden", "4", "--steps", "2",
                "--out", str(tmp_path / "r"), "--no-progress", "--no-plots", "--threads", "1"]  # fmt: skip
        assert main(argv) == 0 and torch.get_num_threads() == 1
        assert main([*argv[:-1], "0"]) == 2
        assert "--threads must be >= 1" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)
