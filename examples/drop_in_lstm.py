"""rnnkit.nn.LSTM in place of torch.nn.LSTM: same arguments, weights, shapes and numbers.

python examples/drop_in_lstm.py
"""

import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit.nn as rnn


def main() -> None:
    torch.manual_seed(0)
    theirs = torch.nn.LSTM(8, 32, num_layers=2, bidirectional=True, proj_size=16)
    ours = rnn.LSTM(8, 32, num_layers=2, bidirectional=True, proj_size=16, impl="reference")
    ours.load_state_dict(theirs.state_dict())  # the same names, shapes and layout

    x = pack_padded_sequence(torch.randn(10, 4, 8), torch.tensor([10, 7, 3, 1]), enforce_sorted=False)
    with torch.no_grad():
        (y1, (h1, c1)), (y2, (h2, c2)) = theirs(x), ours(x)
    dy, dh, dc = ((a - b).abs().max().item() for a, b in ((y1.data, y2.data), (h1, h2), (c1, c2)))
    print(f"max |difference| output {dy:.1e}, h {dh:.1e}, c {dc:.1e}")
    print("packed in, packed out:", type(y2).__name__)


if __name__ == "__main__":
    main()
