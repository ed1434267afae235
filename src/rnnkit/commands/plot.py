"""``rnnkit plot``: a run's training curves."""

from __future__ import annotations

import argparse
import json


def cmd_plot(args: argparse.Namespace) -> int:
    """Draw a run's loss, gradient-norm and learning-rate curves as PNG files."""
    from rnnkit.training.plots import plot_run

    paths = [str(p) for p in plot_run(args.run_dir)]
    print(json.dumps({"plots": paths}) if args.json else "\n".join(paths))
    return 0


def register(p: argparse.ArgumentParser) -> None:
    """The flags of this command."""
    p.add_argument("run_dir", help="a run directory (with metrics.jsonl)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_plot)
