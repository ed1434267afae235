"""A small model for the synthetic tasks of :mod:`rnnkit.data.tasks`: inputs -> Recurrent -> readout.

Real-valued inputs (T, B, F) go straight in; token inputs (T, B) int64 go through an embedding. The
readout scores every step (many-to-many) or only the last (many-to-one).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...cells import ElmanCell
from ...cells.registry import CELLS
from ...errors import InputError
from ...layers.recurrent import Recurrent
from .config import CELL_NAMES, TASK_SHAPES


class TaskModel(nn.Module):
    """``cell``: "lstm", "gru", "rnn" (tanh Elman) or "irnn" (ReLU Elman with identity recurrent weights
    and zero biases, Le et al. 2015)."""

    def __init__(self, task: str, cell: str = "lstm", hidden: int = 64, layers: int = 1) -> None:
        super().__init__()
        if task not in TASK_SHAPES:
            raise InputError(f"task must be one of {', '.join(TASK_SHAPES)}; got {task!r}")
        if cell not in CELL_NAMES:
            raise InputError(f"cell must be one of {', '.join(CELL_NAMES)}; got {cell!r}")
        self.task, self.cell_name = task, cell
        inputs, outputs, self.tokens, self.every_step, self.loss_kind = TASK_SHAPES[task]
        self.embedding = nn.Embedding(inputs, hidden) if self.tokens else None
        width = hidden if self.tokens else inputs
        if cell == "irnn":
            first = ElmanCell(width, hidden, "relu")
            with torch.no_grad():
                first.weight_hh.copy_(torch.eye(hidden))
                first.bias_ih.zero_()
                first.bias_hh.zero_()
        else:
            first = CELLS[cell].build(width, hidden)
        self.rnn = Recurrent(first, num_layers=layers)
        if cell == "irnn":  # the other layers' copies start from the same identity
            for c in self.rnn.layer_cells()[1:]:
                with torch.no_grad():
                    c.weight_hh.copy_(torch.eye(hidden))
                    c.bias_ih.zero_()
                    c.bias_hh.zero_()
        self.readout = nn.Linear(hidden, outputs)

    def features(self, x: Tensor) -> Tensor:
        """The recurrent layer's input (T, B, F)."""
        return self.embedding(x) if self.embedding is not None else x

    def head(self, y: Tensor) -> Tensor:
        """Recurrent outputs (T, B, H) -> predictions: (T, B, O) every step, or (B, O) at the last."""
        return self.readout(y if self.every_step else y[-1])

    @property
    def autoregressive(self) -> bool:
        """Whether the input at step t + 1 is the target at step t (sine: next-value prediction), so the
        model can be fed its own predictions (scheduled sampling, free-running generation)."""
        return self.task == "sine"

    def forward(self, x: Tensor, teacher_forcing: float = 1.0) -> Tensor:
        """Predictions for inputs ``x`` (T, B, F) or tokens (T, B). Below ``teacher_forcing`` 1
        (autoregressive tasks only; scheduled sampling, Bengio et al. 2015), each sequence reads at step
        t >= 1 its own prediction of step t - 1 instead of ``x[t]`` with probability 1 - teacher_forcing
        (not differentiated through, as in the paper)."""
        if teacher_forcing < 1.0:
            if not self.autoregressive:
                raise InputError(
                    f"teacher forcing below 1 needs a task whose next input is its target (sine); the "
                    f"{self.task} task's inputs are not the model's predictions"
                )
            truth = torch.rand(x.shape[:2], device=x.device) < teacher_forcing  # (T, B)
            return self.feed_back(x, truth)
        y, _ = self.rnn(self.features(x))
        return self.head(y)

    def feed_back(self, x: Tensor, truth: Tensor) -> Tensor:
        """Run step by step, reading ``x[t]`` where ``truth[t]`` (T, B) is True (always at t = 0) and the
        previous step's prediction elsewhere. ``truth[:P] = True`` and False after is free-running
        generation primed with P true values. Returns predictions (T, B, O)."""
        predictions, state = [], None
        for t in range(x.shape[0]):
            inputs = x[t]
            if t > 0:
                inputs = torch.where(truth[t, :, None], x[t], predictions[-1].detach())
            y, state = self.rnn.step(inputs, state)  # (B, H); a third of a one-step forward's overhead
            predictions.append(self.readout(y))
        return torch.stack(predictions)

    def loss(self, prediction: Tensor, y: Tensor) -> Tensor:
        if self.loss_kind == "mse":
            return F.mse_loss(prediction, y)
        return F.cross_entropy(prediction.flatten(0, -2), y.flatten())
