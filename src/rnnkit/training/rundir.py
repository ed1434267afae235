"""The run directory's one rule for a fresh run: it never writes over another run's checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError

CLI_HINT = "pass --resume, or choose a new --out"


def check_fresh(run_dir: str | os.PathLike[str], hint: str = CLI_HINT) -> None:
    """Refuse to start a fresh run in ``run_dir`` if it already holds checkpoints (say how to go on)."""
    if (Path(run_dir) / "checkpoints").exists():
        raise InputError(f"{run_dir} already holds checkpoints: {hint}")
