"""Classify variable-length multivariate series: UEA Japanese Vowels (9 speakers, 12 LPC channels,
7-29 steps per utterance) with the default of `rnnkit train classify`, then label new series.

    python examples/classify_vowels.py [--data DIR] [--steps N]

DIR holds JapaneseVowels_TRAIN.ts and JapaneseVowels_TEST.ts (default: the copy the aeon package ships,
found through rnnkit.data.uea; `pip install "rnnkit[timeseries]"`).
"""

import argparse
import tempfile
from pathlib import Path

from rnnkit.apps import classify
from rnnkit.data import read_ts, uea

parser = argparse.ArgumentParser()
parser.add_argument("--data", type=Path, help="a folder with the two .ts files (default: aeon's copy)")
parser.add_argument("--steps", type=int, help="optimizer steps (default: the preset's)")
args = parser.parse_args()

if args.data is None:
    train_file, test_file = uea.files("JapaneseVowels")  # offline: the files in aeon's wheel
else:
    train_file, test_file = args.data / "JapaneseVowels_TRAIN.ts", args.data / "JapaneseVowels_TEST.ts"
train = read_ts(train_file)  # SeriesDataset: a (T_i, C) array per series
test = read_ts(test_file)
print(f"{len(train)} training / {len(test)} test series, {train.channels} channels, lengths "
      f"{test.lengths.min()}-{test.lengths.max()}, classes {train.classes}")  # fmt: skip

# the defaults (a bidirectional GRU, mean pooling over each series' true length), any field overridable
model_options, train_options = classify.options_from("rnn", steps=args.steps)
with tempfile.TemporaryDirectory() as run_dir:
    report = classify.train_classifier(train, test, run_dir, model_options, train_options, progress=False)
    print(f"trained {report['steps']} steps in {report['elapsed_s']:.1f} s: test accuracy "
          f"{report['test_accuracy']:.4f}, train accuracy {report['train_accuracy']:.4f}")  # fmt: skip

    # a trained run directory labels new series (their labels, if any, are only used to score)
    predicted = classify.predict(run_dir, test)
    print("first test series: predicted", predicted["predictions"][:8], "true", test.labels[:8])
