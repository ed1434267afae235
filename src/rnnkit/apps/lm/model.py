"""A recurrent language model: embedding -> Recurrent stack -> dropout -> linear readout.

Shape legend: T time steps, B batch, V vocabulary size, H hidden size, K layers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...cells.base import State, stack_states
from ...cells.registry import CELLS
from ...layers.recurrent import Recurrent
from .config import LMConfig


class LanguageModel(nn.Module):
    """Next-token model over time-first token ids. Losses are computed by the caller.

    ``logits[t, b]`` scores the token that follows ``tokens[t, b]``; the returned state continues the
    sequence, so feeding the next chunk with it is the same as one long forward pass (truncated BPTT
    and generation both rely on this).
    """

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        if config.vocab_size is None:
            raise ValueError("LMConfig.vocab_size must be set (it is the tokenizer's vocabulary size)")
        self.config = config
        H, V = config.hidden, config.vocab_size
        self.embedding = nn.Embedding(V, H)
        cell = CELLS[config.cell].build(H, H)
        # Recurrent's dropout acts between layers only (and warns with one layer), so pass it only then
        between = config.dropout if config.layers > 1 else 0.0
        self.rnn = Recurrent(cell, num_layers=config.layers, dropout=between)
        self.dropout = nn.Dropout(config.dropout)
        self.readout = nn.Linear(H, V)
        if config.tie_weights:
            self.readout.weight = self.embedding.weight  # one Parameter, (V, H), used twice

    def init_state(self, batch: int) -> State:
        """The zero state for ``batch`` streams: (K, B, H), or LSTMState(h, c) of them for an LSTM."""
        p = self.embedding.weight
        return stack_states([c.init_state(batch, dtype=p.dtype, device=p.device) for c in self.rnn.cells])

    def forward(
        self,
        tokens: Tensor,
        state: State | None = None,
        teacher_forcing: float = 1.0,
        reset: Tensor | None = None,
    ) -> tuple[Tensor, State]:
        """Score the next token at every position.

        Arguments:
            tokens: (T, B) int64 token ids.
            state: from :meth:`init_state` or a previous call; zeros if omitted.
            teacher_forcing: the probability of reading ``tokens[t]`` at step t >= 1. Below 1 (scheduled
                sampling, Bengio et al. 2015), each stream's input at step t is, with probability
                ``1 - teacher_forcing``, a token sampled from the model's own distribution at step t - 1
                instead; step 0 always reads ``tokens[0]``. The sampled inputs are not differentiated
                through (as in the paper). Runs one step at a time, so it is slower than 1.0.
            reset: (T, B) bool or None: before step t, stream b starts again from the initial state
                (a document boundary; see ``Recurrent.forward``).

        Returns:
            ``(logits, state)``: logits (T, B, V) (unnormalised) and the final state (as ``state``).
        """
        if tokens.dim() != 2 or tokens.dtype != torch.long:
            raise ValueError(
                f"tokens must be (T, B) int64, got shape {tuple(tokens.shape)} and dtype {tokens.dtype}"
            )
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"teacher_forcing must be a probability in [0, 1], got {teacher_forcing!r}")
        if teacher_forcing < 1.0:
            return self._scheduled_sampling(tokens, state, teacher_forcing, reset)
        x = self.embedding(tokens)  # (T, B, H)
        y, state = self.rnn(x, state, reset=reset)  # (T, B, H)
        logits = self.readout(self.dropout(y))  # (T, B, V)
        return logits, state

    def _scheduled_sampling(
        self, tokens: Tensor, state: State | None, ratio: float, reset: Tensor | None = None
    ) -> tuple[Tensor, State]:
        steps = []
        inputs = tokens[0]  # (B,)
        for t in range(tokens.shape[0]):
            if t > 0:
                with torch.no_grad():
                    own = torch.multinomial(torch.softmax(steps[-1][0], -1), 1).squeeze(1)  # (B,)
                    truth = torch.rand(tokens.shape[1], device=tokens.device) < ratio  # (B,)
                    inputs = torch.where(truth, tokens[t], own)
            step_reset = reset[t] if reset is not None else None
            y, state = self.rnn.step(self.embedding(inputs), state, reset=step_reset)  # (B, H)
            steps.append(self.readout(self.dropout(y))[None])  # (1, B, V)
        return torch.cat(steps), state  # (T, B, V)
