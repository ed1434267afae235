"""Reading labelled series: the sktime/aeon ``.ts`` format (hand-written files and the real UEA Japanese
Vowels), numpy arrays, and the errors for malformed input (file and line named)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rnnkit.data.timeseries import SeriesDataset, read_ts
from rnnkit.errors import InputError

HEADER = """# a comment
@problemName Tiny
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength false
@classLabel true a b c
@data
"""


def write(tmp_path: Path, body: str, header: str = HEADER, name: str = "tiny.ts") -> Path:
    path = tmp_path / name
    path.write_text(header + body, encoding="utf-8")
    return path


def test_multivariate_variable_length(tmp_path):
    path = write(tmp_path, "1,2,3:4,5,6:b\n\n0.5:-1e2:a\n# between\n7,8:9,10:c\n")
    data = read_ts(path)
    assert len(data) == 3 and data.channels == 2 and data.name == "Tiny"
    assert data.lengths.tolist() == [3, 1, 2]
    np.testing.assert_array_equal(data.series[0], [[1, 4], [2, 5], [3, 6]])  # (T, C): one row per step
    np.testing.assert_array_equal(data.series[1], [[0.5, -100.0]])
    assert data.labels == ["b", "a", "c"] and data.classes == ["a", "b", "c"]
    assert data.targets().tolist() == [1, 0, 2]
    x, lengths = data.padded()
    assert x.shape == (3, 3, 2) and lengths.tolist() == [3, 1, 2]
    assert x[1, 1:].abs().sum() == 0 and x[2, 2].abs().sum() == 0  # zero past each end
    assert torch.equal(x[2, :2], torch.tensor([[7.0, 9.0], [8.0, 10.0]]))


def test_univariate_and_unlabelled(tmp_path):
    header = "@problemName U\n@univariate true\n@equalLength true\n@seriesLength 3\n"
    header += "@classLabel false\n@data\n"
    data = read_ts(write(tmp_path, "1,2,3\n4,5,6\n", header))
    assert data.channels == 1 and data.labels is None and data.classes == []
    assert data.padded()[0][:, :, 0].tolist() == [[1, 2, 3], [4, 5, 6]]
    with pytest.raises(InputError, match="no class labels"):
        data.targets()


@pytest.mark.parametrize(
    "body, message",
    [
        ("1,2:3,4:a\n1,x,3:4,5,6:b\n", r"tiny.ts:11: dimension 1, position 2: expected a number, got 'x'"),
        ("1,2:3,4:a\n1,,3:4,5,6:b\n", r"tiny.ts:11: dimension 1, position 2: expected a number, got ''"),
        ("1,2:3,?:a\n", r"tiny.ts:10: missing value '\?' in dimension 2, position 2"),
        ("1,2:NaN,4:a\n", r"tiny.ts:10: missing value 'NaN' in dimension 2, position 1"),
        ("1,2:inf,4:a\n", r"tiny.ts:10: dimension 2: 1 non-finite value .* the first is inf"),
        ("1,2:3,4:a\n1,2:3,4:d\n", r"tiny.ts:11: class label 'd' is not declared in @classLabel \['a', 'b'"),
        ("1,2:3,4\n", r"tiny.ts:10: the class label \(after the last ':'\) is missing"),
        ("1,2:3,4:5,6:a\n", r"tiny.ts:10: expected 2 dimensions separated by ':' and then the class"),
        ("1,2,3:3,4:a\n", r"tiny.ts:10: the dimensions have different lengths \[3, 2\]"),
        ("1,2:3,4:a\n@data\n", r"tiny.ts:11: header line '@data' after @data"),
        ("", r"tiny.ts: no series after @data"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, body, message):
    with pytest.raises(InputError, match=message):
        read_ts(write(tmp_path, body))


@pytest.mark.parametrize(
    "header, message",
    [
        ("@problemName X\n1,2:a\n", r"bad.ts:2: expected a header line starting with '@' before @data"),
        ("@problemName X\n@classLabel true a\n", r"bad.ts: no @data line"),
        ("@targetLabel true\n@data\n1:2\n", r"bad.ts:1: unknown header @targetlabel \(regression targets"),
        ("@timeStamps true\n@data\n", r"bad.ts:1: @timeStamps true is not supported"),
        ("@missing maybe\n@data\n", r"bad.ts:1: @missing must be true or false, got 'maybe'"),
        ("@dimensions two\n@data\n", r"bad.ts:1: @dimensions needs an integer >= 1, got 'two'"),
        ("@classLabel true\n@data\n", r"bad.ts:1: @classLabel true must list the class labels"),
        ("@classLabel true a a\n@data\n", r"bad.ts:1: @classLabel lists a label twice"),
        ("@equalLength true\n@classLabel false\n@data\n1,2\n1,2,3\n", r"@equalLength true, but"),
        ("@univariate true\n@classLabel false\n@data\n1,2:3,4\n", r"bad.ts:4: expected 1 dimension "),
    ],
)
def test_malformed_headers(tmp_path, header, message):
    with pytest.raises(InputError, match=message):
        read_ts(write(tmp_path, "", header, "bad.ts"))


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="no-such.ts"):
        read_ts("no-such.ts")


def test_japanese_vowels_shapes_counts_lengths(vowels_files):
    train, test = (read_ts(f) for f in vowels_files)
    assert (len(train), len(test)) == (270, 370)
    assert train.channels == test.channels == 12
    assert train.classes == test.classes == [str(k) for k in range(1, 10)]
    assert (train.lengths.min(), train.lengths.max()) == (7, 26)
    assert (test.lengths.min(), test.lengths.max()) == (7, 29)
    assert np.bincount(train.targets().numpy()).tolist() == [30] * 9  # 30 utterances per speaker
    assert np.bincount(test.targets().numpy()).tolist() == [31, 35, 88, 44, 29, 24, 40, 50, 29]
    assert train.series[0][0, 0] == np.float32(1.860936)  # the first value of the file
    assert train.series[0].shape == (20, 12)
    x, lengths = test.padded()
    assert x.shape == (370, 29, 12) and x.dtype == torch.float32 and int(lengths.sum()) == test.lengths.sum()


def test_from_arrays_list_and_padded():
    rng = np.random.default_rng(0)
    series = [rng.normal(size=(n, 3)) for n in (4, 2, 5)]
    a = SeriesDataset.from_arrays(series, [10, 2, 10])
    assert a.classes == ["2", "10"] and a.targets().tolist() == [1, 0, 1]  # integers sort as numbers
    x, lengths = a.padded()
    assert x.shape == (3, 5, 3) and lengths.tolist() == [4, 2, 5]
    b = SeriesDataset.from_arrays(x.numpy(), ["p", "q", "p"], lengths=lengths)
    assert [s.shape[0] for s in b.series] == [4, 2, 5] and b.classes == ["p", "q"]
    for s, t in zip(a.series, b.series, strict=True):
        np.testing.assert_array_equal(s, t)
    full = SeriesDataset.from_arrays(torch.zeros(2, 6, 1))  # no lengths: every series is T long
    assert full.lengths.tolist() == [6, 6] and full.labels is None
    one = SeriesDataset.from_arrays([np.arange(3.0), np.arange(5.0)], ["u", "v"])  # (T,) = one channel
    assert one.channels == 1 and one.lengths.tolist() == [3, 5]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"X": np.zeros((2, 5))}, r"must be \(N, T, C\), got shape \(2, 5\)"),
        ({"X": np.zeros((2, 5, 1)), "lengths": [5, 6]}, r"lengths must be in \[1, 5\].*series 1 has"),
        ({"X": np.zeros((2, 5, 1)), "lengths": [1.5, 2]}, r"lengths must be 2 integers"),
        ({"X": [np.zeros((3, 2)), np.zeros((3, 4))]}, r"series 1 has shape \(3, 4\); expected \(T >= 1, 2\)"),
        ({"X": [np.zeros((3, 2))], "y": ["a", "b"]}, r"1 series but 2 labels"),
        ({"X": [np.array([[1.0], [np.nan]])]}, r"series 0: 1 non-finite value .* nan at index \(1, 0\)"),
        ({"X": [np.zeros((2, 1))], "y": ["z"], "classes": ["a"]}, r"series 0 has label 'z', not one of"),
        ({"X": "abc"}, r"X must be a list of \(T_i, C\) arrays or one \(N, T, C\) array, got str"),
    ],
)
def test_from_arrays_refuses_bad_input(kwargs, message):
    with pytest.raises(InputError, match=message):
        SeriesDataset.from_arrays(**kwargs)


def test_targets_refuse_labels_the_model_never_saw(tmp_path):
    data = read_ts(write(tmp_path, "1,2:3,4:c\n"))
    with pytest.raises(InputError, match=r"labels \['c'\] are not among the model's classes \['a', 'b'\]"):
        data.targets(["a", "b"])
