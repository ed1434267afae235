"""One-to-many: spell the digit in an 8x8 image ("seven"), letter by letter, with a recurrent decoder
that starts from the image's code.

    python examples/spell_digits.py [--steps N]
"""

import argparse
import tempfile

from rnnkit.apps import spell as spelling
from rnnkit.apps.spell.model import Speller, SpellerConfig
from rnnkit.training.checkpoint import load_checkpoint

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, help="optimizer steps (default: the preset's 1,000)")
args = parser.parse_args()

model_options, train_options = spelling.options(steps=args.steps, plots=False)
with tempfile.TemporaryDirectory() as run_dir:
    report = spelling.train_speller(run_dir, model_options, train_options, progress=False)
    print(f"exact match on {report['test_examples']} held-out images: {report['exact_match']:.4f}")
    for error in report["errors"][:5]:
        print(f"  a {error['truth']} spelled {error['spelled']!r}")

    # the trained model spells any image: rebuild it from the run and read the first test images
    _, _, x_test, y_test = spelling.load_digits_split()
    model = Speller(SpellerConfig(features=64, alphabet=sorted(set("".join(spelling.WORDS))),
                                  max_length=5, **model_options))  # fmt: skip
    model.load_state_dict(load_checkpoint(run_dir, which="best").model_state)
    model.eval()
    for word, digit in zip(model.spell(x_test[:5]), y_test[:5].tolist(), strict=True):
        print(f"  image of a {digit}: {word}")
