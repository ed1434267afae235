"""``rnnkit demo``: one model per cell family, and the shapes it returns."""

from __future__ import annotations

import argparse
import json


def cmd_demo(args: argparse.Namespace) -> int:
    """Build a model from each cell family, run a batch through it and report the shapes."""
    import torch

    from rnnkit import ElmanCell, GRUCell, JordanCell, LSTMCell, Recurrent
    from rnnkit import nn as rnn

    torch.manual_seed(args.seed)
    T, B, F, H = args.seq_len, args.batch, args.features, args.hidden
    x = torch.randn(B, T, F)
    lengths = torch.randint(1, T + 1, (B,))
    models = {
        "rnnkit.nn.LSTM (2 layers, bidirectional)": rnn.LSTM(
            F, H, num_layers=2, bidirectional=True, batch_first=True
        ),
        "Recurrent(ElmanCell relu)": Recurrent(ElmanCell(F, H, "relu"), batch_first=True),
        "Recurrent(JordanCell)": Recurrent(JordanCell(F, H, 4), batch_first=True),
        "Recurrent(GRUCell textbook, bidirectional sum)": Recurrent(
            GRUCell(F, H, reset_after=False), bidirectional=True, merge="sum", batch_first=True
        ),
        "Recurrent(LSTMCell peephole+layernorm, 2 layers)": Recurrent(
            LSTMCell(F, H, peephole=True, layer_norm=True, forget_bias=1.0),
            num_layers=2,
            batch_first=True,
        ),
    }
    report = {"input": list(x.shape), "lengths": lengths.tolist(), "models": {}}
    for name, model in models.items():
        y, state = model(x, lengths=lengths)
        fields = state if isinstance(state, tuple) else (state,)
        report["models"][name] = {
            "output": list(y.shape),
            "state": [list(s.shape) for s in fields],
            "parameters": sum(p.numel() for p in model.parameters()),
        }
    if args.json:
        print(json.dumps(report))
    else:
        print(f"input (B, T, F) = {tuple(x.shape)}, lengths = {lengths.tolist()}")
        for name, r in report["models"].items():
            print(
                f"{name:50s} output {tuple(r['output'])}  state {[tuple(s) for s in r['state']]}"
                f"  params {r['parameters']}"
            )
    return 0


def register(p: argparse.ArgumentParser) -> None:
    """The flags of this command."""
    p.add_argument("--seq-len", type=int, default=12, help="time steps T (default 12)")
    p.add_argument("--batch", type=int, default=4, help="batch size B (default 4)")
    p.add_argument("--features", type=int, default=8, help="input features F (default 8)")
    p.add_argument("--hidden", type=int, default=16, help="hidden units H (default 16)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_demo)
