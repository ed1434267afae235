"""What the trainer trains: a task hands out batches, computes a loss, evaluates, and saves its place.

:func:`rnnkit.training.trainer.fit` runs any object with the methods of :class:`Task`. The language model
task below is truncated BPTT over B parallel streams of one corpus; classification and sequence-to-
sequence tasks plug into the same loop.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..cells.base import State, map_state
from ..data.text import TBPTTStream
from ..errors import InputError, check_int
from . import distributed

LN2 = math.log(2.0)


class Task(Protocol):
    """The interface :func:`~rnnkit.training.trainer.fit` trains through."""

    def shard(self, rank: int, world: int) -> None:
        """Train and evaluate on this rank's share of every batch from now on (many processes)."""

    def train_step(self, model: nn.Module, teacher_forcing: float) -> tuple[Tensor, dict[str, float]]:
        """Take the next batch and return its loss (a scalar with a graph, the mean over this rank's
        share) and numbers to log (their means over ranks are logged). ``"items"``, if given, counts
        what throughput is measured in (tokens); it is summed over ranks instead."""

    def after_backward(self) -> None:
        """Called after ``loss.backward()``: cut what must not be differentiated through next time."""

    def reset(self) -> None:
        """Forget any carried state (after a skipped non-finite step)."""

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Validation numbers, over all ranks, including ``"loss"`` (lower is better)."""

    def state_dict(self) -> dict[str, Any]:
        """Where the task is (data position, carried state), as tensors and plain values."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class LMTask:
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


@contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode (no dropout) for the block, then back in the mode it was in."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


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


class ClassifyTask:
    """Many-to-one classification of padded, variable-length series: shuffled minibatches, cross-entropy.

    Every epoch visits the training series in a fresh random order, ``batch_size`` at a time (the last
    batch of an epoch may be smaller). The order of epoch e is a permutation drawn from a generator
    seeded with ``(seed, e)`` alone, so the task's place is just ``(epoch, position)``: a resumed run
    draws the same batches without storing a generator, and the draws do not touch torch's global
    generator (which drives dropout).

    Arguments:
        x, lengths, y: the training series, (N, T, C) float zero-padded batch first (or (N, T) int64
            token ids), (N,) int64 true lengths and (N,) int64 class ids.
        valid: the same three for the series :meth:`evaluate` scores.
        batch_size: B series per step (the global batch; each of W ranks takes its share).
        seed: the shuffling seed.
    """

    def __init__(
        self,
        x: Tensor,
        lengths: Tensor,
        y: Tensor,
        valid: tuple[Tensor, Tensor, Tensor],
        batch_size: int,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        check_int("batch_size", batch_size)
        check_int("seed", seed, minimum=0)
        for name, (a, n, t) in {"training": (x, lengths, y), "validation": valid}.items():
            if a.dim() not in (2, 3) or n.shape != (a.shape[0],) or t.shape != (a.shape[0],):
                raise InputError(
                    f"the {name} series must be x (N, T, C) or token ids (N, T), lengths (N,) and y (N,); "
                    f"got {tuple(a.shape)}, {tuple(n.shape)}, {tuple(t.shape)}"
                )
            if a.shape[0] == 0:
                raise InputError(f"no {name} series")
        self.x, self.lengths, self.y = x, lengths, y
        self.valid = valid
        self.batch_size, self.seed = batch_size, seed
        self.device = torch.device(device)
        self.epoch, self.position = 0, 0  # the next batch starts at order(epoch)[position]
        self.rank, self.world = 0, 1

    def shard(self, rank: int, world: int) -> None:
        if self.batch_size < world:
            raise InputError(
                f"batch_size {self.batch_size} must be at least the number of processes, {world}"
            )
        self.rank, self.world = rank, world

    def order(self, epoch: int) -> Tensor:
        """(N,) the order of the training series in ``epoch``."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.x.shape[0], generator=generator)

    def _next_batch(self) -> Tensor:
        if self.position >= self.x.shape[0]:
            self.epoch, self.position = self.epoch + 1, 0
        index = self.order(self.epoch)[self.position : self.position + self.batch_size]  # (B,)
        self.position += len(index)
        return index.tensor_split(self.world)[self.rank]  # this rank's share

    def _batch(self, x: Tensor, lengths: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        lengths = lengths[index]
        T = int(lengths.max())  # cut the padding no series in this batch needs
        return x[index, :T].to(self.device), lengths.to(self.device)

    def train_step(self, model: nn.Module, teacher_forcing: float) -> tuple[Tensor, dict[str, float]]:
        index = self._next_batch()
        x, lengths = self._batch(self.x, self.lengths, index)  # (b, T, C), (b,)
        y = self.y[index].to(self.device)  # (b,)
        logits, _ = model(x, lengths)  # (b, K)
        loss = F.cross_entropy(logits, y)
        with torch.no_grad():
            accuracy = (logits.argmax(-1) == y).float().mean().item()
        return loss, {"accuracy": accuracy, "items": float(len(index))}

    def after_backward(self) -> None:
        pass  # nothing is carried from one batch to the next

    def reset(self) -> None:
        pass

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        x, lengths, y = self.valid
        share = torch.arange(x.shape[0]).tensor_split(self.world)[self.rank]
        total, correct = evaluate_classifier(model, x[share], lengths[share], y[share])
        total, correct, count = distributed.all_reduce_sum([total, correct, float(len(share))], self.device)
        return {"loss": total / count, "accuracy": correct / count}

    def state_dict(self) -> dict[str, Any]:
        return {"classify": {"epoch": self.epoch, "position": self.position, "seed": self.seed}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        place = state["classify"]
        if place["seed"] != self.seed:
            raise InputError(f"the checkpoint shuffled with seed {place['seed']}, this task with {self.seed}")
        self.epoch, self.position = place["epoch"], place["position"]


@torch.no_grad()
def predict_classes(model: nn.Module, x: Tensor, lengths: Tensor, batch_size: int = 256) -> Tensor:
    """Logits (N, K) of a classifier for series x (N, T, C) with lengths (N,), in eval mode, in
    batches (each cut to its longest series). Uses no randomness."""
    with evaluating(model):
        device = next(model.parameters()).device
        out = []
        for start in range(0, x.shape[0], batch_size):
            n = lengths[start : start + batch_size]
            T = int(n.max())
            logits, _ = model(x[start : start + batch_size, :T].to(device), n.to(device))  # (b, K)
            out.append(logits.float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


def evaluate_classifier(model: nn.Module, x: Tensor, lengths: Tensor, y: Tensor) -> tuple[float, float]:
    """Summed cross-entropy (nats) and number of correct argmax predictions over the series x (N, T, C)."""
    if x.shape[0] == 0:
        return 0.0, 0.0
    logits = predict_classes(model, x, lengths)  # (N, K)
    total = F.cross_entropy(logits, y, reduction="sum").item()
    return total, float((logits.argmax(-1) == y).sum())


class Seq2SeqTask:
    """Sequence to sequence: shuffled minibatches of (source, target) pairs, a new order every epoch.

    Each step takes the next ``batch_size`` pairs of the epoch's order (a permutation drawn from the
    task's own generator, seeded with ``seed``; the last partial batch of an epoch is dropped, so every
    step sees the same number of pairs), and returns the mean cross-entropy over the real target tokens
    (``</s>`` included, padding not). Below teacher forcing 1 the model feeds its own samples
    (``Seq2Seq.forward(..., teacher_forcing=p)``).

    Exact resume: the state is the epoch, the position in it and the generator's state at the epoch's
    start (the permutation is drawn again from it, not stored).

    Arguments:
        train, valid: encoded pairs ``(source ids, target ids)``, without ``<s>`` and ``</s>``.
        batch_size: B pairs per step (the global batch; each of W ranks takes B / W of them).
        seed: seeds the shuffling.
        eval_batch: pairs per validation batch.
    """

    def __init__(
        self,
        train: Sequence[tuple[list[int], list[int]]],
        valid: Sequence[tuple[list[int], list[int]]],
        batch_size: int,
        seed: int = 0,
        device: torch.device | str = "cpu",
        eval_batch: int = 500,
    ) -> None:
        self.train, self.valid = list(train), list(valid)
        self.batch_size = check_int("batch_size", batch_size)
        check_int("eval_batch", eval_batch)
        if len(self.train) < self.batch_size:
            raise InputError(f"batch_size {batch_size} is larger than the {len(self.train)} training pairs")
        if not self.valid:
            raise InputError("valid is empty: evaluation needs at least one pair")
        self.device, self.eval_batch = torch.device(device), eval_batch
        self.generator = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
        self.rows, self.valid_rows = slice(None), slice(None)  # this rank's share
        self.epoch, self.position = 0, 0
        self._start_epoch()

    def _start_epoch(self) -> None:
        self.epoch_rng = self.generator.get_state()  # enough to draw this epoch's order again on resume
        self.order = torch.randperm(len(self.train), generator=self.generator).tolist()

    def shard(self, rank: int, world: int) -> None:
        B = self.batch_size
        if B % world:
            raise InputError(f"batch_size {B} must be divisible by the number of processes, {world}")
        self.rows = slice(rank * (B // world), (rank + 1) * (B // world))
        self.valid_rows = slice(rank, None, world)

    def train_step(self, model: nn.Module, teacher_forcing: float) -> tuple[Tensor, dict[str, float]]:
        from ..data.pairs import make_batch

        if self.position + self.batch_size > len(self.train):
            self.epoch, self.position = self.epoch + 1, 0
            self._start_epoch()
        picked = self.order[self.position : self.position + self.batch_size][self.rows]
        self.position += self.batch_size
        batch = make_batch([self.train[i] for i in picked])
        src, tgt = batch.src.to(self.device), batch.tgt.to(self.device)  # (S, b), (T + 2, b)
        logits, _ = model(src, batch.lengths, tgt[:-1], teacher_forcing=teacher_forcing)  # (T + 1, b, V)
        y = tgt[1:]  # (T + 1, b): the target and </s>, then padding
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=0)
        with torch.no_grad():
            real = y != 0
            accuracy = ((logits.argmax(-1) == y) & real).sum().item() / max(1, int(real.sum()))
        return loss, {"accuracy": accuracy, "items": float(real.sum())}

    def after_backward(self) -> None:
        pass  # nothing is carried from batch to batch

    def reset(self) -> None:
        pass

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Teacher-forced loss and token accuracy, and the exact match of greedy decoding, over ``valid``."""
        from ..data.pairs import make_batch
        from ..generate import greedy_decode

        with evaluating(model):
            pairs = self.valid[self.valid_rows]
            total = correct = tokens = exact = 0.0
            for start in range(0, len(pairs), self.eval_batch):
                chunk = pairs[start : start + self.eval_batch]
                batch = make_batch(chunk)
                src, tgt = batch.src.to(self.device), batch.tgt.to(self.device)
                logits, _ = model(src, batch.lengths, tgt[:-1])  # (T + 1, b, V)
                y = tgt[1:]
                real = y != 0
                nats = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=0, reduction="sum")
                total += nats.item()
                correct += ((logits.argmax(-1) == y) & real).sum().item()
                tokens += real.sum().item()
                longest = max(len(t) for _, t in chunk) + 1  # a longer output cannot match any target here
                decoded = greedy_decode(model, src, batch.lengths, max_len=longest)
                exact += sum(out == t for out, (_, t) in zip(decoded.tokens, chunk, strict=True))
        sums = distributed.all_reduce_sum([total, correct, tokens, exact], self.device)
        total, correct, tokens, exact = sums
        return {"loss": total / tokens, "accuracy": correct / tokens, "exact_match": exact / len(self.valid)}

    def state_dict(self) -> dict[str, Any]:
        return {"pairs": {"epoch": self.epoch, "position": self.position, "rng": self.epoch_rng}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state["pairs"]
        self.generator.set_state(saved["rng"])
        self._start_epoch()
        self.epoch, self.position = int(saved["epoch"]), int(saved["position"])
