"""``rnnkit diagnose``: the command line of :mod:`rnnkit.commands.diagnose`."""

from __future__ import annotations

import argparse
import json

from ..apps.synthetic.config import CELL_NAMES, TASK_SHAPES
from ..configs import Lazy


def _kinds() -> tuple[str, ...]:
    from .diagnose import KINDS  # torch: only when a kind is checked or listed

    return KINDS


def cmd_diagnose(args: argparse.Namespace) -> int:
    """Gradient flow, Jacobians, gates, hidden-state PCA or unit activations, as a PNG and numbers."""
    from rnnkit.commands.diagnose import diagnose

    units = None
    if args.units:
        try:
            units = [int(u) for u in args.units.split(",")]
        except ValueError:
            raise ValueError(f"--units must be comma-separated integers, got {args.units!r}") from None
    text = args.text
    if args.text_file:
        from rnnkit.data import read_text

        text = read_text(args.text_file)
    out = args.out or f"{args.kind}.png"
    report = diagnose(args.kind, out, run_dir=args.run, task=args.task, cell=args.cell, hidden=args.hidden,
                      length=args.length, batch=args.batch, seed=args.seed, layer=args.layer, units=units,
                      text=text, data=args.data)  # fmt: skip
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{args.kind}: {report['subject']} -> {report['plot']}")
        if "ratio" in report:
            print("  ||dL/dh_0|| / ||dL/dh_T|| per layer: " + ", ".join(f"{r:.3g}" for r in report["ratio"]))
        if "product_norm" in report:
            print(f"  ||ds_T/ds_0|| = {report['product_norm'][-1]:.3g}")
        for name, g in report.get("gates", {}).items():
            print(f"  {name}: mean {g['mean']:.3f}, {100 * g['saturated']:.1f}% saturated")
    return 0


def register(p: argparse.ArgumentParser) -> None:
    """The flags of this command."""
    p.add_argument("kind", choices=Lazy(_kinds), metavar="KIND", help="one of %(choices)s")
    p.add_argument("--run", help="a language-model run directory, or a classifier's (pca by class)")
    p.add_argument("--data", help="with a classifier's --run: the .ts series (default its training set)")
    p.add_argument("--task", choices=tuple(TASK_SHAPES),
                    help="a fresh model on a synthetic task instead of a run")  # fmt: skip
    p.add_argument("--cell", default="lstm", choices=CELL_NAMES, help="with --task")
    p.add_argument("--hidden", type=int, default=64, help="with --task (default 64)")
    p.add_argument("--length", type=int, default=100, help="with --task: sequence length T (default 100)")
    p.add_argument("--batch", type=int, default=32, help="with --task: batch size (default 32)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--layer", type=int, help="which layer (default 0; a classifier's pca: the top one)")
    p.add_argument("--units", help="units: which hidden units, e.g. 3,17,42 (default the first 4)")
    p.add_argument("--text", help="with --run: the text to read (default a passage of Romeo and Juliet)")
    p.add_argument("--text-file", help="with --run: read the text from this file")
    p.add_argument("--out", help="the PNG to write (default KIND.png)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_diagnose)
