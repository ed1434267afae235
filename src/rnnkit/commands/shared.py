"""What every training command shares: the run flags, the training flags (built from
:class:`~rnnkit.training.config.TrainConfig`'s fields, one group), torchrun, and the run check.

Torch-free: ``rnnkit --help`` builds parsers from these without importing torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from ..configs import add_flag, add_options, given
from ..training.config import BPTT_FLAGS, CHECKPOINT_FLAGS, OPTIMIZER_FLAGS, SAMPLING_FLAGS, TrainConfig

_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def train_flag(p: Any, name: str, help: str, preset: TrainConfig | None = None) -> None:
    """A TrainConfig field's flag in this command's own words (``--batch``: "windows per step"), its help
    ending with the ``preset``'s value."""
    add_flag(p, _FIELDS[name], preset, help=help)


def training(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields the user gave flags for (``--clip-norm 0`` is ``clip_norm=None``)."""
    return given(args, TrainConfig)


def add_training_options(p: argparse.ArgumentParser, bptt: bool = False, sampling: bool = False) -> None:
    """The run options (--minutes, --resume, --no-progress, --json, --threads) and TrainConfig's
    optimizer, schedule, clipping and checkpoint flags; the truncated BPTT window only where there is
    a stream to truncate (``bptt``), the teacher-forcing schedule only for models that feed back their
    own predictions (``sampling``)."""
    run = p.add_argument_group("the run")
    add_flag(run, _FIELDS["minutes"])
    run.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its latest checkpoint"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    run.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    run.add_argument(
        "--threads", type=int,
        help="torch threads for this process (default: torch's, one per core; 1 is often faster for "
        "small models or on a busy machine)",
    )  # fmt: skip
    g = p.add_argument_group("training")
    names = (
        OPTIMIZER_FLAGS
        + (BPTT_FLAGS if bptt else ())
        + (SAMPLING_FLAGS if sampling else ())
        + CHECKPOINT_FLAGS
    )
    add_options(g, TrainConfig, only=names)
    g.add_argument("--nproc", type=int, default=1, help="train in this many processes (DDP via torchrun)")


def torchrun(nproc: int, argv: Sequence[str]) -> int:
    """Run this same command in ``nproc`` processes under torchrun (DDP, gloo on CPU)."""
    rest = [a for i, a in enumerate(argv) if not _is_nproc(argv, i)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "rnnkit", *rest]  # fmt: skip
    return subprocess.call(cmd)


def _is_nproc(argv: Sequence[str], i: int) -> bool:
    a = argv[i]
    return a == "--nproc" or a.startswith("--nproc=") or (i > 0 and argv[i - 1] == "--nproc")


def unescape(text: str | None) -> str | None:
    """Backslash escapes typed on a command line ('\\f', '\\n', '\\x1e') as the characters."""
    if text is None:
        return None
    try:
        return text.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError as e:
        raise ValueError(f"cannot read the escapes in {text!r}: {e}") from None
