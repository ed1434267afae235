"""The old import paths keep working for one release, each with a DeprecationWarning naming the new one."""

from __future__ import annotations

import subprocess
import sys

import pytest

CASES = [
    ("import rnnkit.lm as m; m.train_language_model", "rnnkit.lm moved to rnnkit.apps.lm"),
    ("from rnnkit import tagging; tagging.restore_case", "rnnkit.tagging moved to rnnkit.apps.tag"),
    (
        "from rnnkit import translation; translation.train_seq2seq",
        "rnnkit.translation moved to rnnkit.apps.seq2seq",
    ),
    ("from rnnkit.models import LanguageModel", "rnnkit.models.LanguageModel moved to rnnkit.apps.lm.model"),
    ("from rnnkit.training.tasks import LMTask", "rnnkit.training.tasks.LMTask moved to rnnkit.apps.lm.task"),
    (
        "from rnnkit.training.trainer import train_lm",
        "rnnkit.training.trainer.train_lm moved to rnnkit.apps.lm.run",
    ),
    ("from rnnkit.data import tasks; tasks.make_batch", "rnnkit.data.tasks moved to rnnkit.data.synthetic"),
]


@pytest.mark.parametrize("code, message", CASES)
def test_an_old_path_warns_and_works(code, message):
    run = subprocess.run([sys.executable, "-W", "always::DeprecationWarning", "-c", code],
                         capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "DeprecationWarning" in run.stderr and message in run.stderr


def test_the_old_module_is_the_new_one():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import rnnkit.classify as old

    import rnnkit.apps.classify as new

    assert old is new  # patching one patches the other
