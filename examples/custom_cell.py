"""Write your own cell: one step of its equation, and Recurrent does the rest.

IndRNN (Li et al. 2018, https://arxiv.org/abs/1803.04831): each unit recurs only on itself,
    h_t = relu(x_t W^T + b + u * h_{t-1})
Recurrent stacks it, runs it backwards, handles padded batches and initial states, unchanged.

    python examples/custom_cell.py
"""

import torch
from torch import Tensor, nn

import rnnkit


class IndRNNCell(rnnkit.Cell):
    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.output_size = self.state_size = hidden_size
        self.weight = nn.Parameter(torch.empty(hidden_size, input_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size))
        self.u = nn.Parameter(torch.empty(hidden_size))
        self.reset_parameters()

    def step(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        h = torch.relu(nn.functional.linear(x, self.weight, self.bias) + self.u * h)  # (B, H)
        return h, h


def main() -> None:
    torch.manual_seed(0)
    layer = rnnkit.Recurrent(IndRNNCell(5, 16), num_layers=2, bidirectional=True, batch_first=True)
    x = torch.randn(3, 7, 5)  # (B, T, F)
    lengths = torch.tensor([7, 4, 2])
    y, h = layer(x, lengths=lengths)
    print("output", tuple(y.shape), "final state", tuple(h.shape))  # (3, 7, 32), (4, 3, 16)
    print("padded steps are zero:", bool((y[1, 4:] == 0).all() and (y[2, 2:] == 0).all()))
    y.sum().backward()
    print("gradient reaches u of every layer and direction:", all(c.u.grad is not None for c in layer.cells))


if __name__ == "__main__":
    main()
