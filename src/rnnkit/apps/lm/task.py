"""Next-token prediction with truncated BPTT: the language model's task, and its scoring."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...cells.base import State, map_state
from ...data.text import TBPTTStream
from ...errors import InputError, check_int
from ...training import distributed
from ...training.task import Task, evaluating

LN2 = math.log(2.0)


class LMTask(Task):
    """Next-token prediction with truncated BPTT over ``batch_size`` parallel streams.

    Each step takes the next chunk of ``seq_len`` (k1) tokens of every stream and starts from the
    hidden state the previous chunk left (detached: gradients stop at the chunk boundary). With
    ``bptt_window`` k2 < k1 (Williams & Peng 1990), the first k1 - k2 steps of the chunk only advance
    the state, without a graph, and the loss and gradient come from the last k2 steps, so gradients flow
    back at most k2 steps. At the end of the corpus a new epoch starts from the beginning with a zero
    state.

    Validation reports the teacher-forced numbers (every chunk read from the true text) and, over the
    first ``free_chunks`` chunks, the free-running ones: from the state the true text before the chunk
    left, the model reads the chunk's first token and then its own greedy predictions, and is scored on
    the true tokens (``free_loss``, ``free_accuracy``). The gap between the two is the exposure bias
    scheduled sampling addresses.

    Arguments:
        train_ids, valid_ids: (N,) int64 token ids.
        batch_size: B streams (the global batch; each of W ranks takes B / W of them).
        seq_len: k1, tokens per step and stream.
        bptt_window: k2 <= k1, or None for k1.
        free_chunks: validation chunks also run free (0: none).
        reset_on: a token id that starts a document (e.g. a separator), or None. Where a stream reads
            it, its state starts again from the model's initial state (``reset`` of the recurrent
            layer), in training and in validation, so documents do not leak into each other.
    """

    def __init__(
        self,
        train_ids: Tensor,
        valid_ids: Tensor,
        batch_size: int,
        seq_len: int,
        bptt_window: int | None = None,
        device: torch.device | str = "cpu",
        free_chunks: int = 4,
        reset_on: int | None = None,
    ) -> None:
        self.free_chunks = check_int("free_chunks", free_chunks, minimum=0)
        self.train = TBPTTStream(train_ids, batch_size, seq_len)
        self.valid = TBPTTStream(valid_ids, batch_size, seq_len)
        if bptt_window is not None:
            check_int("bptt_window", bptt_window)
            if bptt_window > seq_len:
                raise InputError(f"bptt_window (k2) must be <= seq_len (k1) = {seq_len}, got {bptt_window}")
        self.bptt_window = bptt_window
        if reset_on is not None:
            check_int("reset_on", reset_on, minimum=0)
        self.reset_on = reset_on
        self.device = torch.device(device)
        self.columns = slice(None)  # this rank's streams
        self.state: State | None = None  # carried from chunk to chunk
        self._parts: list[State] = []  # the micro-batches' new states, until the last one has run

    def shard(self, rank: int, world: int) -> None:
        B = self.train.batch_size
        if B % world:
            raise InputError(f"batch_size {B} must be divisible by the number of processes, {world}")
        b = B // world
        self.columns = slice(rank * b, (rank + 1) * b)

    def _next_chunk(self) -> tuple[Tensor, Tensor]:
        if self.train.position == len(self.train):
            # a new epoch starts at the corpus' beginning: the end's hidden state means nothing there
            self.train.load_state_dict({"position": 0, "epoch": self.train.epoch + 1})
            self.state = None
        x, y = self.train[self.train.position]  # (T, B) each
        self.train.position += 1
        return x[:, self.columns].to(self.device), y[:, self.columns].to(self.device)

    micro_batches = True  # train_step takes part=(i, n): gradient accumulation over shares of the streams

    def train_step(
        self, model: nn.Module, teacher_forcing: float, part: tuple[int, int] = (0, 1)
    ) -> tuple[Tensor, dict[str, float]]:
        """The next chunk's loss; with ``part=(i, n)``, of the i-th of n equal shares of the streams
        (part 0 takes the next chunk, the others reuse it; each share carries its own state)."""
        i, n = part
        if i == 0:
            self._chunk, self._carried, self._parts = self._next_chunk(), self.state, []
        x, y = self._chunk  # (T, b)
        if x.shape[1] % n:
            raise InputError(f"{x.shape[1]} streams per process do not split into {n} equal micro-batches")
        share = slice(i * x.shape[1] // n, (i + 1) * x.shape[1] // n)
        x, y = x[:, share], y[:, share]
        state = None if self._carried is None else map_state(lambda s: s[:, share], self._carried)
        k2 = self.bptt_window
        if k2 is not None and k2 < x.shape[0]:
            head = x[: x.shape[0] - k2]
            with torch.no_grad():  # advance the state through the first k1 - k2 steps, no graph
                _, state = model(head, state, **resets(head, self.reset_on))
            x, y = x[-k2:], y[-k2:]
        if teacher_forcing < 1.0:
            logits, state = model(x, state, teacher_forcing=teacher_forcing, **resets(x, self.reset_on))
        else:
            logits, state = model(x, state, **resets(x, self.reset_on))  # (T, b, V)
        self._parts.append(state)
        if i == n - 1:  # every share has run: the carried state, streams in order
            self.state = state if n == 1 else map_state(lambda *s: torch.cat(s, 1), *self._parts)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        with torch.no_grad():
            accuracy = (logits.argmax(-1) == y).float().mean().item()
        return loss, {"bpc": loss.item() / LN2, "accuracy": accuracy, "items": float(y.numel())}

    def after_backward(self) -> None:
        # Truncated BPTT: the next chunk starts from this state's values, but its graph is cut here.
        # Without detach the next backward would run back through every chunk since the start
        # (memory and time growing without bound), and through a graph already freed by backward.
        detach = lambda state: None if state is None else map_state(lambda s: s.detach(), state)  # noqa: E731
        self.state = detach(self.state)
        self._parts = [detach(s) for s in self._parts]

    def reset(self) -> None:
        self.state, self._parts = None, []

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        sums = evaluate_stream(model, self.valid, self.columns, self.free_chunks, self.reset_on)
        total, correct, count, free_total, free_correct, free_count = distributed.all_reduce_sum(
            list(sums), self.device
        )
        loss = total / count
        scores = {
            "loss": loss,
            "bpc": loss / LN2,
            "perplexity": math.exp(min(loss, 700.0)),
            "accuracy": correct / count,
        }
        if free_count:
            scores.update(free_loss=free_total / free_count, free_accuracy=free_correct / free_count)
        return scores

    def state_dict(self) -> dict[str, Any]:
        # every rank's streams joined in order, so the checkpoint is the same as one process would write
        hidden = None if self.state is None else map_state(distributed.gather_batch, self.state)
        return {"stream": self.train.state_dict(), "hidden": hidden}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.train.load_state_dict(state["stream"])
        hidden = state["hidden"]
        self.state = (
            None if hidden is None else map_state(lambda s: s[:, self.columns].to(self.device), hidden)
        )


def resets(tokens: Tensor, reset_on: int | None) -> dict[str, Tensor]:
    """The model's ``reset`` keyword for a chunk (T, B): where ``tokens == reset_on``; {} for None, so
    models without resets are called as before."""
    return {} if reset_on is None else {"reset": tokens == reset_on}


@torch.no_grad()
def evaluate_stream(
    model: nn.Module,
    stream: TBPTTStream,
    columns: slice = slice(None),
    free_chunks: int = 0,
    reset_on: int | None = None,
) -> tuple[float, float, float, float, float, float]:
    """Summed cross-entropy (nats), correct argmax predictions and token count over every chunk of
    ``stream`` (its ``columns``), state carried across chunks (and reset where a stream reads
    ``reset_on``); then the same three free-running (see :func:`free_run`) over the first
    ``free_chunks`` chunks, each from the state the true text left. Uses no randomness (eval mode,
    greedy), so running it does not change what training draws next."""
    with evaluating(model):
        device = next(model.parameters()).device
        sums, state = [0.0] * 6, None
        for k in range(len(stream)):
            x, y = (t[:, columns].to(device) for t in stream[k])  # (T, b)
            if k < free_chunks:
                _add_scores(sums, 3, free_run(model, x, state, reset_on), y)
            logits, state = model(x, state, **resets(x, reset_on))  # (T, b, V)
            _add_scores(sums, 0, logits, y)
    return tuple(sums)  # type: ignore[return-value]


def _add_scores(sums: list[float], at: int, logits: Tensor, y: Tensor) -> None:
    sums[at] += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
    sums[at + 1] += (logits.argmax(-1) == y).sum().item()
    sums[at + 2] += y.numel()


@torch.no_grad()
def free_run(model: nn.Module, tokens: Tensor, state: State | None, reset_on: int | None = None) -> Tensor:
    """The model fed its own predictions: step 0 reads ``tokens[0]`` (T, B), every later step the argmax
    of the step before (a stream that writes ``reset_on`` starts a new document, as it would reading
    it). Returns the logits (T, B, V), to be scored against the true next tokens."""
    steps, inputs = [], tokens[:1]  # (1, B)
    for _ in range(tokens.shape[0]):
        logits, state = model(inputs, state, **resets(inputs, reset_on))  # (1, B, V)
        steps.append(logits)
        inputs = logits.argmax(-1)
    return torch.cat(steps)


def evaluate(model: nn.Module, stream: TBPTTStream) -> float:
    """Mean cross-entropy (nats per token) over every chunk of ``stream``, state carried across chunks."""
    total, _, count, *_ = evaluate_stream(model, stream)
    return total / count
