"""Text classification: reading .csv/.tsv/.jsonl (and every bad input), tokens, per-class scores against
scikit-learn, attention pooling over true lengths, learning a separable set, predict == the trained
model, and the CLI (`train classify`, `predict --text`, `diagnose attention`) with its errors."""

from __future__ import annotations

import csv
import dataclasses
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnkit.apps.classify import text as text_classify
from rnnkit.apps.classify.config import TEXT_PRESET, TextClassifierConfig, TextOptions
from rnnkit.apps.classify.text_model import TextClassifier
from rnnkit.cli import main
from rnnkit.data.labelled_text import encode_texts, fit_tokenizer, read_labelled_text, token_strings
from rnnkit.errors import InputError
from rnnkit.training.metrics import classification_report, confusion_matrix

pytestmark = pytest.mark.usefixtures("one_thread")

SRC = Path(__file__).resolve().parents[1] / "src"


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


# -- reading each format ---------------------------------------------------------------------------------


def test_the_three_formats_read_the_same(tmp_path):
    rows = [("Hello, world", "pos"), ('a "quoted"\nline', "neg"), ("tab\there", "1")]
    with (tmp_path / "a.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("id", "text", "label"), *[(i, t, lab) for i, (t, lab) in enumerate(rows)]])
    with (tmp_path / "a.tsv").open("w", newline="") as f:
        csv.writer(f, delimiter="\t").writerows([("text", "label"), *rows])
    write(tmp_path / "a.jsonl", "\n".join(json.dumps({"text": t, "label": int(lab) if lab == "1" else lab})
                                           for t, lab in rows) + "\n\n")  # fmt: skip
    for name in ("a.csv", "a.tsv", "a.jsonl"):
        data = read_labelled_text(tmp_path / name)
        assert data.texts == [t for t, _ in rows], name
        assert data.labels == ["pos", "neg", "1"], name  # the JSON integer 1 reads as "1"
        assert data.classes == ["1", "neg", "pos"]
    assert read_labelled_text(tmp_path / "a.csv").lines == [2, 3, 5]  # the quoted newline spans lines 3-4
    assert read_labelled_text(tmp_path / "a.jsonl").lines == [1, 2, 3]


def test_columns_by_name_bom_crlf_and_blank_lines(tmp_path):
    path = write(tmp_path / "b.CSV", b"\xef\xbb\xbfsentence,y,extra\r\none,A,x\r\n\r\ntwo,B,y\r\n")
    data = read_labelled_text(path, text_column="sentence", label_column="y")
    assert data.texts == ["one", "two"] and data.labels == ["A", "B"] and data.lines == [2, 4]


def test_labels_optional_for_prediction(tmp_path):
    path = write(tmp_path / "c.csv", "text\nsome words\n")
    assert read_labelled_text(path, require_labels=False).labels is None
    with pytest.raises(InputError, match=r"no label column 'label'.*the columns are 'text'"):
        read_labelled_text(path)


def test_classes_sort_numerically():
    from rnnkit.data.labelled_text import sort_labels

    assert sort_labels({"10", "2", "1"}) == ["1", "2", "10"]
    assert sort_labels({"b", "a", "10"}) == ["10", "a", "b"]


BAD = [
    ("x.csv", "words,label\nhi,a\n",
     r"x\.csv: no column 'text' \(choose one with --text-column\); the header has 'words', 'label'"),
    ("x.csv", "text,label\nhi,a\n\n  ,b\n", r"x\.csv, line 4: the text \('text'\) is empty"),
    ("x.csv", "text,label\nhi,\n", r"line 2: the label \('label'\) is empty"),
    ("x.csv", "text,label\nhi,a\nhi,a,b\n", r"line 3: 3 fields, but the header has 2 \(a ragged row"),
    ("x.tsv", "text\tlabel\nhi\n", r"line 2: 1 fields, but the header has 2"),
    ("x.csv", b"text,label\nok,a\ncaf\xe9,b\n", r"invalid UTF-8 at byte offset 19 \(line 3, byte 0xE9\)"),
    ("x.csv", "", r"x\.csv is empty"),
    ("x.csv", "text,label\n", r"no records"),
    ("x.csv", 'text,label\n"unclosed,a\n', r"not valid CSV"),
    ("x.txt", "text,label\n", r"expected a \.csv, \.tsv or \.jsonl file, got the extension '\.txt'"),
    ("x.jsonl", '{"text": "a", "label": 1}\n{"text": "b", label: 2}\n', r"line 2: not valid JSON"),
    ("x.jsonl", '["a", 1]\n', r"line 1: expected a JSON object, got list"),
    ("x.jsonl", '{"sentence": "a", "label": 1}\n', r"no key 'text' .*its keys are 'sentence', 'label'"),
    ("x.jsonl", '{"text": 3, "label": 1}\n', r"'text' must be a string, got 3"),
    ("x.jsonl", '{"text": "a", "label": [1]}\n', r"'label' must be a string or an integer, got \[1\]"),
    ("x.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n', r"line 2: some records have the key 'label'"),
    ("x.jsonl", '{"text": "", "label": 1}\n', r"line 1: the text \('text'\) is empty"),
]  # fmt: skip


@pytest.mark.parametrize("name, content, message", BAD)
def test_bad_files_are_named_with_their_line(tmp_path, name, content, message):
    with pytest.raises(InputError, match=message):
        read_labelled_text(write(tmp_path / name, content))


def test_a_test_label_training_never_saw(tmp_path):
    data = read_labelled_text(write(tmp_path / "t.csv", "text,label\na,x\nb,y\nc,z\n"))
    message = (
        r"line 3: label 'y' never occurs in the training file \(unseen labels: 'y', 'z'\); the known labels"
    )
    with pytest.raises(InputError, match=message + " are 'x'"):
        data.targets(["x"])


# -- tokens ----------------------------------------------------------------------------------------------


def test_vocabulary_from_training_texts_rare_to_unk():
    tok = fit_tokenizer(["the cat sat", "the dog sat", "a zebra"], "word", min_count=2)
    assert set(tok.tokens) == {"<unk>", " <unk>", " the", " sat"}
    assert token_strings(tok, "the zebra sat") == [" the", " <unk>", " sat"]  # the first word too: " the"
    ids, lengths, cut = encode_texts(tok, ["the sat", "sat the the sat the", "cat"], max_tokens=4)
    assert lengths.tolist() == [2, 4, 1] and cut == 1
    assert (
        ids.shape == (3, 4) and ids[0, 2:].tolist() == [0, 0] and ids[2, 0].item() == 1
    )  # " cat" -> " <unk>"
    chars = fit_tokenizer(["aab", "ab"], "char", min_count=2)
    assert chars.tokens == ["<unk>", "a", "b"] and token_strings(chars, "abc") == ["a", "b", "<unk>"]


# -- scores ----------------------------------------------------------------------------------------------


def test_report_matches_scikit_learn():
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (200,), generator=g)
    p = torch.where(torch.rand(200, generator=g) < 0.6, y, torch.randint(0, 3, (200,), generator=g))
    p[p == 2] = 1  # class 2 is never predicted: its precision is 0/0 -> 0
    report = classification_report(confusion_matrix(y, p, 4), ["a", "b", "c", "d"])
    prec, rec, f1, support = precision_recall_fscore_support(y, p, labels=[0, 1, 2, 3], zero_division=0)
    for k, name in enumerate("abcd"):
        got = report["per_class"][name]
        assert got["precision"] == pytest.approx(prec[k]) and got["recall"] == pytest.approx(rec[k])
        assert got["f1"] == pytest.approx(f1[k]) and got["support"] == support[k]
    assert report["accuracy"] == pytest.approx(accuracy_score(y, p))
    assert report["macro_f1"] == pytest.approx(f1_score(y, p, average="macro", zero_division=0))
    assert sum(map(sum, report["confusion"])) == 200 and report["confusion"][0][0] == int(
        ((y == 0) & (p == 0)).sum()
    )


# -- the model -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_attention_sums_to_one_over_the_true_length_and_ignores_padding(cell):
    torch.manual_seed(0)
    config = TextClassifierConfig(30, 3, embed=8, cell=cell, hidden=6, layers=2, pool="attention")
    model = TextClassifier(config).eval()
    lengths = torch.tensor([7, 3, 1, 5])
    tokens = torch.randint(0, 30, (4, 7))
    a = model.attention(tokens, lengths)  # (B, T)
    valid = torch.arange(7)[None, :] < lengths[:, None]
    assert torch.allclose(a.sum(1), torch.ones(4)) and (a[~valid] == 0).all() and (a[valid] > 0).all()
    scrambled = torch.where(valid, tokens, torch.randint(0, 30, (4, 7)))  # other tokens in the padding
    assert torch.equal(model.attention(scrambled, lengths), a)
    for b in range(4):  # each text alone, unpadded: the same weights and logits
        alone = tokens[b : b + 1, : lengths[b]]
        assert torch.allclose(model.attention(alone)[0], a[b, : lengths[b]], atol=1e-6)
        assert torch.allclose(model(alone)[0][0], model(tokens, lengths)[0][b], atol=1e-5)


@pytest.mark.parametrize("pool", ["last", "mean", "max"])
def test_other_pools_ignore_padding(pool):
    torch.manual_seed(0)
    model = TextClassifier(TextClassifierConfig(30, 2, embed=8, hidden=6, pool=pool)).eval()
    tokens, lengths = torch.randint(0, 30, (3, 6)), torch.tensor([6, 2, 4])
    logits = model(tokens, lengths)[0]
    for b in range(3):
        assert torch.allclose(model(tokens[b : b + 1, : lengths[b]])[0][0], logits[b], atol=1e-5)
    with pytest.raises(InputError, match="attention weights exist only with pool='attention'"):
        model.attention(tokens, lengths)


def test_model_input_checks():
    model = TextClassifier(TextClassifierConfig(10, 2))
    with pytest.raises(InputError, match=r"integer token ids \(B, T\)"):
        model(torch.zeros(2, 3))
    with pytest.raises(InputError, match=r"token ids must be in \[0, 10\), got 0\.\.10"):
        model(torch.tensor([[0, 10]]))
    with pytest.raises(InputError, match=r"lengths must be in \[1, 2\]"):
        model(torch.tensor([[0, 1]]), torch.tensor([3]))


# -- training end to end ---------------------------------------------------------------------------------

WORDS = {
    "pos": ["good", "great", "fine"],
    "neg": ["bad", "awful", "poor"],
    "meh": ["okay", "average", "so-so"],
}
FILLER = ["the", "a", "film", "was", "it", "really", "plot", "and", "very"]


def separable(n: int, seed: int) -> list[tuple[str, str]]:
    """Texts whose class is set by one cue word among 2-8 fillers."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(sorted(WORDS))
        words = rng.choices(FILLER, k=rng.randint(2, 8))
        words.insert(rng.randint(0, len(words)), rng.choice(WORDS[label]))
        rows.append((" ".join(words), label))
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    return path


TINY = {"embed": 16, "hidden": 16, "dropout": 0.0, "pool": "attention"}
TINY_TRAIN = {"steps": 150, "batch_size": 16, "lr": 1e-2, "warmup_steps": 10, "eval_every": 50,
              "checkpoint_every": 50, "plots": False}  # fmt: skip


def options(model: dict, train: dict) -> tuple:
    """The text preset with these fields changed."""
    return dataclasses.replace(TEXT_PRESET[0], **model), dataclasses.replace(TEXT_PRESET[1], **train)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text")
    train, test = (
        write_csv(folder / "train.csv", separable(240, 0)),
        write_csv(folder / "test.csv", separable(60, 1)),
    )
    model_opts, train_opts = options(TINY, TINY_TRAIN)
    with torch.random.fork_rng():
        torch.set_num_threads(1)
        text_opts = TextOptions(min_count=1)
        report = text_classify.train_text_classifier(
            train, test, folder / "run", model_opts, train_opts, text_opts, progress=False
        )
    return folder, report


def test_a_separable_set_is_learned_to_100_percent(trained):
    folder, report = trained
    assert report["train"]["accuracy"] == 1.0 and report["test"]["accuracy"] == 1.0
    assert report["test"]["macro_f1"] == 1.0 and report["classes"] == ["meh", "neg", "pos"]
    run = folder / "run"
    saved = json.loads((run / "results.json").read_text())
    assert (
        saved["test"]["per_class"]["neg"]["f1"] == 1.0
        and saved["test"]["confusion"] == report["test"]["confusion"]
    )
    assert (run / "confusion.png").stat().st_size > 0
    assert "good" in (run / "tokenizer.json").read_text()  # the vocabulary is kept with the run


def test_predict_equals_the_trained_model(trained):
    folder, _ = trained
    texts = ["the film was great", "awful", "it was a so-so plot and very the"]
    got = text_classify.predict_texts(folder / "run", texts)
    loaded = text_classify.load_text_classifier(folder / "run")
    model = TextClassifier(loaded.model.config)
    model.load_state_dict(loaded.model.state_dict())
    model.eval()
    for text, pred in zip(texts, got["predictions"], strict=True):
        ids = torch.tensor([loaded.tokenizer.tokens.index(t) for t in token_strings(loaded.tokenizer, text)])
        with torch.no_grad():
            probs = torch.softmax(model(ids[None])[0][0], -1)
        assert [pred["probabilities"][c] for c in loaded.classes] == pytest.approx(probs.tolist(), abs=1e-6)
    assert [p["label"] for p in got["predictions"]] == ["pos", "neg", "meh"]


def test_predict_scores_a_labelled_file_and_reads_plain_lines(trained, tmp_path):
    folder, report = trained
    scored = text_classify.predict_texts(folder / "run", file=folder / "test.csv")
    assert scored["scores"]["accuracy"] == report["test"]["accuracy"] and len(scored["predictions"]) == 60
    plain = write(tmp_path / "t.txt", "great film\n\npoor plot\n")
    predictions = text_classify.predict_texts(folder / "run", file=plain)["predictions"]
    assert [p["label"] for p in predictions] == ["pos", "neg"]


def test_resume_refuses_other_text_options(trained):
    folder, _ = trained
    model_opts, train_opts = options(TINY, {**TINY_TRAIN, "steps": 160})
    with pytest.raises(InputError, match="started with text="):
        text_classify.train_text_classifier(
            folder / "train.csv", None, folder / "run", model_opts, train_opts,
            TextOptions(min_count=3), resume=True, progress=False,
        )  # fmt: skip


# -- the command line ------------------------------------------------------------------------------------


def test_cli_predict_and_attention(trained, capsys, tmp_path):
    folder, _ = trained
    run = str(folder / "run")
    assert main(["predict", run, "--text", "a great film", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    first = report["predictions"][0]
    assert first["label"] == "pos" and sum(first["probabilities"].values()) == pytest.approx(1.0)
    assert main(["predict", run, "--text", "awful plot"]) == 0
    assert capsys.readouterr().out.startswith("neg\tneg ")
    png = tmp_path / "att.png"
    assert main(["diagnose", "attention", "--run", run, "--text", "the plot was awful", "--out", str(png),
                 "--json"]) == 0  # fmt: skip
    att = json.loads(capsys.readouterr().out)
    assert att["tokens"] == [" the", " plot", " was", " awful"] and sum(att["weights"]) == pytest.approx(1.0)
    assert max(zip(att["weights"], att["tokens"], strict=True))[1] == " awful" and png.stat().st_size > 0


def test_cli_train_json(tmp_path, capsys):
    train = write_csv(tmp_path / "train.csv", separable(40, 2))
    argv = ["train", "classify", "--train", str(train), "--test", str(train), "--out", str(tmp_path / "r"),
            "--steps", "3", "--hidden", "4", "--embed", "4", "--pool", "mean", "--tokenizer", "char",
            "--no-progress", "--no-plots", "--json"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] == 3 and set(report["test"]["per_class"]) == {"meh", "neg", "pos"}
    assert json.loads((tmp_path / "r" / "classes.json").read_text())["text"]["tokenizer"] == "char"


def test_cli_text_flags_reach_the_tokenizer_and_the_text_preset(tmp_path, capsys):
    train = write_csv(tmp_path / "train.csv", separable(40, 2))
    argv = ["train", "classify", "--train", str(train), "--out", str(tmp_path / "r"), "--steps", "2",
            "--hidden", "4", "--embed", "4", "--vocab-size", "5", "--min-count", "1", "--no-progress",
            "--no-plots", "--json"]  # fmt: skip
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["vocab_size"] == 5  # --vocab-size caps the vocabulary
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    model, trained = config["model"], config["train"]
    assert (model["hidden"], model["embed"], model["vocab_size"]) == (4, 4, 5)
    assert (model["layers"], model["dropout"], trained["lr"]) == (1, 0.3, 3e-3)  # TEXT_PRESET, not .ts's


def test_cli_text_flags_are_refused_for_series(tmp_path, capsys):
    argv = ["train", "classify", "--train", str(tmp_path / "x.ts"), "--out", str(tmp_path / "r"),
            "--tokenizer", "char", "--embed", "8"]  # fmt: skip
    assert main(argv) == 2
    assert "--tokenizer, --embed: only for text files" in capsys.readouterr().err


@pytest.mark.parametrize("content, flags, message", [
    ("words,label\nhi,a\n", [], "no column 'text' (choose one with --text-column); the header has 'words'"),
    (b"text,label\nhi,a\nh\xffo,b\n", [], "invalid UTF-8 at byte offset 17"),
    ("text,label\nhi,a\nho,b,c\n", [], "line 3: 3 fields, but the header has 2"),
    ("text,label\nhi,a\n   ,b\n", [], "line 3: the text ('text') is empty"),
    ("text,label\nhi,a\nho,b\n", ["--model", "mlp"], "--model: only for .ts series"),
    ("text,label\nhi,a\nho,a\n", [], "classification needs at least 2 classes"),
])  # fmt: skip
def test_cli_bad_input_one_line_exit_2(tmp_path, capsys, content, flags, message):
    path = write(tmp_path / "train.csv", content)
    assert main(["train", "classify", "--train", str(path), "--out", str(tmp_path / "r"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("rnnkit: error: ")


def test_cli_unseen_test_label(tmp_path, capsys):
    train = write(tmp_path / "train.csv", "text,label\nhi,a\nho,b\n")
    test = write(tmp_path / "test.jsonl", '{"text": "hey", "label": "c"}\n')
    assert (
        main(["train", "classify", "--train", str(train), "--test", str(test), "--out", str(tmp_path / "r")])
        == 2
    )
    assert "test.jsonl, line 1: label 'c' never occurs in the training file" in capsys.readouterr().err


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "rnnkit", *argv], capture_output=True, text=True, env=env,
                          timeout=300)  # fmt: skip


def test_cli_subprocess_errors_have_no_traceback(tmp_path, trained):
    folder, _ = trained
    bad = write(tmp_path / "bad.tsv", b"text\tlabel\nfine\tx\n\xc3(\ty\n")
    done = run_cli("train", "classify", "--train", str(bad), "--out", str(tmp_path / "r"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    expected = f"{bad}: invalid UTF-8 at byte offset 18 (line 3, byte 0xC3): invalid continuation byte."
    assert done.stderr.strip() == f"rnnkit: error: {expected} Save the file as UTF-8."
    done = run_cli("diagnose", "attention", "--run", str(folder / "run"))
    assert done.returncode == 2 and "needs --text" in done.stderr and "Traceback" not in done.stderr
    done = run_cli("predict", str(folder / "run"), "--text", "  ", "--json")
    assert done.returncode == 2 and "non-empty string" in done.stderr and done.stdout == ""


def test_genre_example_keeps_only_spoken_lines():
    import runpy

    example = runpy.run_path(str(Path(__file__).resolve().parents[1] / "examples" / "classify_genre.py"))
    play = (
        "HAMLET\n\nPERSONS REPRESENTED.\n\nClaudius, King of Denmark.\n\nACT I.\n\nScene I. Elsinore.\n\n"
        "[Francisco at his post. Enter\nto him Bernardo.]\n\nBer.\nWho's there?\n\nFirst Citizen.\n"
        "Nay, answer me: stand, [Aside.] and unfold yourself.\n\nKING HENRY.\nLong live the king!\n"
    )
    lines = example["spoken_lines"](play, poem=False)
    assert lines == ["Who's there?", "Nay, answer me: stand,  and unfold yourself.", "Long live the king!"]
    poem = "A POEM\n\nby William Shakespeare\n\n\nI.\n\nFrom off a hill\nA plaintful story\n"
    assert example["spoken_lines"](poem, poem=True) == ["From off a hill", "A plaintful story"]
    assert example["passages"](["a b c", "d e", "f g h i", "j"], 4) == ["a b c\nd e", "f g h i"]
