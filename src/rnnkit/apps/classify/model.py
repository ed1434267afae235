"""Many-to-one: a class for each variable-length sequence.

:class:`SequenceClassifier` normalises each channel, runs a :class:`~rnnkit.layers.Recurrent` stack over
the true length of every series, pools its outputs over time into one vector, and reads out class
scores. :class:`MLPClassifier` is the simple baseline: an MLP on the zero-padded, flattened series
(Wang et al. 2017, https://arxiv.org/abs/1611.06455, the "MLP" of Fawaz et al. 2019's comparison).

Both take batch-first input, the layout of a dataset of series, and compute no loss.

Shape legend: B batch, T padded length, C channels, H hidden size, D = H or 2H (bidirectional) the
recurrent output size, K classes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...cells import registry
from ...cells.base import State
from ...errors import InputError
from ...layers.recurrent import Recurrent
from .config import POOLS, ClassifierConfig, cell_names

CELLS = {name: entry.cls for name, entry in registry.CELLS.items() if name in cell_names()}  # old name


def build_classifier(config: ClassifierConfig) -> SequenceClassifier | MLPClassifier:
    """The model ``config.model`` names."""
    return SequenceClassifier(config) if config.model == "rnn" else MLPClassifier(config)


class Normalizer(nn.Module):
    """Per-channel standardisation, ``(x - mean) / std``, with statistics fitted on training data.

    ``mean`` and ``std`` are buffers, so they are saved and loaded with the weights: a trained model
    normalises new data with its training set's statistics, never with the new data's own.
    """

    def __init__(self, channels: int, noise: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels))  # (C,)
        self.register_buffer("std", torch.ones(channels))  # (C,)
        self.noise = noise

    @torch.no_grad()
    def fit(self, x: Tensor, lengths: Tensor) -> None:
        """Set the statistics from the valid steps of ``x`` (N, T, C) (padding is not data)."""
        valid = _mask(lengths.to(x.device), x.shape[1])[..., None]  # (N, T, 1)
        count = valid.sum()
        mean = (x * valid).sum((0, 1)) / count  # (C,)
        var = (((x - mean) * valid) ** 2).sum((0, 1)) / count  # (C,)
        std = var.sqrt()
        # a constant channel carries no information; dividing by ~0 would only blow up noise
        self.mean.copy_(mean)
        self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def forward(self, x: Tensor) -> Tensor:
        z = (x - self.mean) / self.std  # (B, T, C)
        if self.training and self.noise > 0:  # the model never sees the same series twice
            z = z + self.noise * torch.randn_like(z)
        return z


def _mask(lengths: Tensor, T: int) -> Tensor:
    """(B, T) bool: step t is inside series b."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


def _check_input(x: Tensor, lengths: Tensor | None, channels: int) -> Tensor:
    """Check (B, T, C) input and return the (B,) lengths (T for every series if omitted)."""
    if not isinstance(x, Tensor) or x.dim() != 3 or not x.is_floating_point():
        what = f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise InputError(f"the classifier expects float series (B, T, C), got {what}")
    B, T, C = x.shape
    if channels != C:
        raise InputError(f"the classifier was built for {channels} channels per step, got {C}")
    if lengths is None:
        return torch.full((B,), T, dtype=torch.long, device=x.device)
    lengths = torch.as_tensor(lengths, device=x.device)
    if lengths.shape != (B,) or lengths.is_floating_point():
        raise InputError(
            f"lengths must be ({B},) integers, got {lengths.dtype} of shape {tuple(lengths.shape)}"
        )
    if B and not (int(lengths.min()) >= 1 and int(lengths.max()) <= T):
        raise InputError(f"lengths must be in [1, {T}], got {lengths.min().item()}..{lengths.max().item()}")
    return lengths.long()


class AttentionPool(nn.Module):
    """Additive attention over time (Bahdanau et al. 2015; as pooling: Yang et al. 2016,
    https://aclanthology.org/N16-1174, section 2.2): ``a = softmax_t(v . tanh(W y_t + b))``,
    ``z = sum_t a_t y_t``, with padded steps given weight 0."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(size, size)
        self.score = nn.Linear(size, 1, bias=False)  # v

    def forward(self, y: Tensor, valid: Tensor) -> Tensor:
        e = self.score(torch.tanh(self.proj(y))).squeeze(-1)  # (B, T)
        a = torch.softmax(e.masked_fill(~valid, -torch.inf), dim=1)  # (B, T); every series has a step
        return (a.unsqueeze(-1) * y).sum(1)  # (B, D)


def pool(
    y: Tensor, lengths: Tensor, how: str, bidirectional: bool, attention: AttentionPool | None = None
) -> Tensor:
    """Pool recurrent outputs over each series' true length: (B, T, D) -> (B, D).

    - "last": the output at the last step that reads the whole series: for the forward direction
      ``y[b, L_b - 1]``, for the reverse one (the second half of D) ``y[b, 0]``.
    - "mean": the average over the L_b valid steps.
    - "max": the elementwise maximum over the valid steps.
    - "attention": :class:`AttentionPool`'s weighted sum.

    Padded steps (t >= L_b) never enter the result, whatever they hold.
    """
    B, T, D = y.shape
    valid = _mask(lengths, T)  # (B, T)
    if how == "last":
        last = y[torch.arange(B, device=y.device), lengths - 1]  # (B, D)
        if not bidirectional:
            return last
        half = D // 2
        return torch.cat([last[:, :half], y[:, 0, half:]], dim=-1)  # (B, D)
    if how == "mean":
        total = (y * valid.unsqueeze(-1)).sum(1)  # (B, D)
        return total / lengths.unsqueeze(-1).to(y.dtype)
    if how == "max":
        return y.masked_fill(~valid.unsqueeze(-1), -torch.inf).amax(1)  # (B, D)
    if how == "attention":
        assert attention is not None
        return attention(y, valid)
    raise ValueError(f"pool must be one of {list(POOLS)}, got {how!r}")


class SequenceClassifier(nn.Module):
    """normalise -> Recurrent -> pool over the true lengths -> dropout -> linear readout.

    ``forward(x (B, T, C), lengths (B,))`` returns ``(logits (B, K), state)``: unnormalised class
    scores, and the recurrent stack's final state (K_layers * directions, B, H) (a tuple (h, c) for an
    LSTM), each series' state at its own last step. Padding after a series' end does not change either.
    """

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        if config.model != "rnn":
            raise ValueError(f"SequenceClassifier is the rnn model; got model={config.model!r}")
        self.config = config
        C, H = config.input_size, config.hidden
        self.normalizer = Normalizer(C, config.input_noise)
        between = config.dropout if config.layers > 1 else 0.0  # Recurrent warns about dropout with 1 layer
        self.rnn = Recurrent(
            registry.build(config.cell, C, H), num_layers=config.layers, bidirectional=config.bidirectional,
            dropout=between, batch_first=True,
        )  # fmt: skip
        D = self.rnn.output_size
        self.attention = AttentionPool(D) if config.pool == "attention" else None
        self.dropout = nn.Dropout(config.dropout)
        self.readout = nn.Linear(D, config.num_classes)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, State]:
        lengths = _check_input(x, lengths, self.config.input_size)  # (B,)
        y, state = self.rnn(self.normalizer(x), lengths=lengths)  # (B, T, D); padded steps are zero
        z = pool(y, lengths, self.config.pool, self.config.bidirectional, self.attention)  # (B, D)
        return self.readout(self.dropout(z)), state  # (B, K)


class MLPClassifier(nn.Module):
    """The baseline: normalise, zero the padding, flatten ``max_len * C`` values, then ``layers``
    hidden layers of ReLU units with dropout, and a linear readout.

    Series longer than ``max_len`` are cut to it (the MLP has no inputs for later steps). ``forward``
    returns ``(logits (B, K), None)``: there is no recurrent state.
    """

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        if config.model != "mlp" or config.max_len is None:
            raise ValueError(f"MLPClassifier is the mlp model with a max_len; got {config}")
        self.config = config
        self.normalizer = Normalizer(config.input_size, config.input_noise)
        layers: list[nn.Module] = [nn.Flatten(), nn.Dropout(config.dropout)]
        size = config.max_len * config.input_size
        for _ in range(config.layers):
            layers += [nn.Linear(size, config.hidden), nn.ReLU(), nn.Dropout(config.dropout)]
            size = config.hidden
        layers.append(nn.Linear(size, config.num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, None]:
        lengths = _check_input(x, lengths, self.config.input_size)  # (B,)
        L = self.config.max_len
        assert L is not None
        x, lengths = x[:, :L], lengths.clamp(max=L)
        x = self.normalizer(x) * _mask(lengths, x.shape[1]).unsqueeze(-1)  # (B, T, C), zero past the end
        x = nn.functional.pad(x, (0, 0, 0, L - x.shape[1]))  # (B, L, C)
        return self.net(x), None  # (B, K)
