"""Sequence to sequence: an encoder reads the source, a decoder writes the target one token at a time.

Three decoders, chosen by ``Seq2SeqConfig.attention``:

- ``"none"``: the context vector only (Sutskever et al. 2014, https://arxiv.org/abs/1409.3215). The
  decoder starts from the encoder's final state and never sees the source again::

      s_0 = bridge(h_enc)                  s_i = RNN(s_{i-1}, y_{i-1})          p(y_i) = softmax(W s_i)

- ``"additive"``: Bahdanau et al. 2015 (https://arxiv.org/abs/1409.0473, section 3.1 and appendix A).
  The previous decoder state asks where to look, and the context is an input of the step::

      c_i = attend(s_{i-1}, h)             s_i = RNN(s_{i-1}, [y_{i-1}; c_i])
      p(y_i) = softmax(W tanh(W_o [s_i; c_i]))

  (The paper's output layer is a maxout over [s_{i-1}; y_{i-1}; c_i]; one tanh layer over [s_i; c_i] is
  the common simplification.)

- ``"dot"`` and ``"general"``: Luong et al. 2015 (https://arxiv.org/abs/1508.04025, section 3, global
  attention with input feeding, section 3.3). The new decoder state asks, and the attentional vector
  h~ is both the output and the next step's extra input::

      s_i = RNN(s_{i-1}, [y_{i-1}; h~_{i-1}])       c_i = attend(s_i, h)
      h~_i = tanh(W_c [c_i; s_i])                   p(y_i) = softmax(W h~_i)

``bridge``: the identity for a unidirectional encoder (as Sutskever); for a bidirectional one, each
layer's forward and backward final states are joined, ``tanh(W [s_fwd; s_bwd])`` (as Bahdanau's
``s_0 = tanh(W_s h_1_backward)``, with both directions), field by field (an LSTM's h and c).

Shape legend: S source length, T target length, B batch, E embedding size, H hidden size, M encoder
output size (H, or 2H bidirectional), K decoder layers, V target vocabulary.

Token ids: 0 is padding on both sides; the target side has 1 = start ``<s>`` and 2 = end ``</s>``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ...cells.base import State, map_state, state_fields
from ...cells.registry import CELLS
from ...errors import check
from ...layers.attention import ATTENTIONS, Attention, Memory
from ...layers.recurrent import Recurrent
from .config import Seq2SeqConfig

PAD, BOS, EOS = 0, 1, 2
DECODERS = ("none", *ATTENTIONS)


class DecoderState(NamedTuple):
    """The decoder's state between steps.

    rnn: the decoder stack's state, (K, B, H) or an LSTMState of them.
    feed: Luong's attentional vector h~ of the previous step (B, H), fed back as input; (B, 0) otherwise.
    weights: the last step's attention weights (B, S); (B, 0) without attention.
    """

    rnn: State
    feed: Tensor
    weights: Tensor


class Seq2Seq(nn.Module):
    """Encoder-decoder over padded, time-first token ids. Losses are computed by the caller.

    The decoding loops (:func:`rnnkit.generate.greedy_decode`, :func:`rnnkit.generate.beam_search`) use
    :meth:`encode`, :meth:`step` and :meth:`select`; :meth:`forward` is the training pass.
    """

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        if config.src_vocab is None or config.tgt_vocab is None:
            raise ValueError("Seq2SeqConfig.src_vocab and tgt_vocab must be set (the vocabularies' sizes)")
        self.config = config
        H, E = config.hidden, config.embed or config.hidden
        D = 2 if config.bidirectional else 1
        M = D * H
        between = config.dropout if config.layers > 1 else 0.0  # Recurrent warns on dropout with 1 layer
        make = CELLS[config.cell].build
        self.src_embedding = nn.Embedding(config.src_vocab, E, padding_idx=PAD)
        self.encoder = Recurrent(make(E, H), config.layers, config.bidirectional, dropout=between)
        cell = self.encoder.layer_cells()[0]
        self.bridge = (
            nn.ModuleList([nn.Linear(2 * n, n) for n in state_fields(cell.state_size)])
            if config.bidirectional
            else None
        )
        self.kind = config.attention
        self.luong = self.kind in ("dot", "general")
        extra = {"none": 0, "additive": M}.get(self.kind, H)  # the context (Bahdanau) or h~ (Luong)
        self.tgt_embedding = nn.Embedding(config.tgt_vocab, E, padding_idx=PAD)
        self.decoder = Recurrent(make(E + extra, H), config.layers, dropout=between)
        self.attention = Attention(self.kind, H, M) if self.kind != "none" else None
        self.combine = nn.Linear(M + H, H) if self.kind != "none" else None  # W_o / W_c
        self.dropout = nn.Dropout(config.dropout)
        self.readout = nn.Linear(H, config.tgt_vocab)

    # -- the encoder ----------------------------------------------------------------------------------

    def encode(self, src: Tensor, lengths: Tensor) -> tuple[Memory, DecoderState]:
        """Read the source.

        Arguments:
            src: (S, B) int64 source ids, padded with 0 past each length.
            lengths: (B,) true lengths, >= 1.

        Returns:
            ``(memory, state)``: the encoder's outputs as a :class:`Memory` (batch-first, (B, S, M),
            padded positions masked), and the decoder's start state.
        """
        self._check_tokens("src", src, self.config.src_vocab)
        lengths = torch.as_tensor(lengths)
        check(
            lengths.shape == src.shape[1:],
            f"lengths must be ({src.shape[1]},), one per source column, got {tuple(lengths.shape)}",
        )
        x = self.src_embedding(src)  # (S, B, E)
        y, final = self.encoder(x, lengths=lengths)  # (S, B, M), (K*D, B, H) each field
        values = y.transpose(0, 1)  # (B, S, M)
        if self.attention is not None:
            memory = self.attention.prepare(values, lengths)
        else:
            mask = torch.arange(src.shape[0])[None, :] < lengths.cpu()[:, None]  # (B, S)
            memory = Memory(values, values, mask.to(values.device))
        rnn = final if self.bridge is None else self._bridge(final)  # (K, B, H) each field
        B, H = src.shape[1], self.config.hidden
        feed = values.new_zeros(B, H if self.luong else 0)
        weights = values.new_zeros(B, src.shape[0] if self.attention is not None else 0)
        return memory, DecoderState(rnn, feed, weights)

    def _bridge(self, final: State) -> State:
        """(2K, B, n) per field, directions interleaved per layer -> (K, B, n): tanh(W [fwd; bwd])."""
        fields = [
            torch.tanh(linear(torch.cat([s[0::2], s[1::2]], -1)))  # (K, B, 2n) -> (K, B, n)
            for linear, s in zip(self.bridge, state_fields(final), strict=True)  # type: ignore[arg-type]
        ]
        return type(final)(*fields) if isinstance(final, tuple) else fields[0]

    # -- one decoder step ------------------------------------------------------------------------------

    def step(self, prev: Tensor, state: DecoderState, memory: Memory) -> tuple[Tensor, DecoderState]:
        """One decoder step: the previous token (B,) and state -> (logits (B, V), new state).

        The new state's ``weights`` are this step's attention weights (B, S).
        """
        e = self.tgt_embedding(prev)  # (B, E)
        weights = state.weights
        if self.kind == "none":
            out, rnn = self.decoder.step(e, state.rnn)  # (B, H)
            h = out
        elif self.kind == "additive":
            query = state_fields(state.rnn)[0][-1]  # (B, H): the top layer's s_{i-1}
            context, weights = self.attention(query, memory)  # (B, M), (B, S)
            out, rnn = self.decoder.step(torch.cat([e, context], -1), state.rnn)  # (B, H)
            h = torch.tanh(self.combine(torch.cat([out, context], -1)))  # (B, H)
        else:  # Luong: input feeding, then attend with the new state
            out, rnn = self.decoder.step(torch.cat([e, state.feed], -1), state.rnn)  # (B, H)
            context, weights = self.attention(out, memory)  # (B, M), (B, S)
            h = torch.tanh(self.combine(torch.cat([context, out], -1)))  # (B, H): h~_i
        logits = self.readout(self.dropout(h))  # (B, V)
        return logits, DecoderState(rnn, h if self.luong else state.feed, weights)

    @staticmethod
    def select(state: DecoderState, index: Tensor) -> DecoderState:
        """The batch rows ``index`` (N,) of a state (beam search reorders and expands with this)."""
        rnn = map_state(lambda s: s.index_select(1, index), state.rnn)  # (K, N, H)
        return DecoderState(rnn, state.feed.index_select(0, index), state.weights.index_select(0, index))

    # -- training ------------------------------------------------------------------------------------

    def forward(
        self, src: Tensor, lengths: Tensor, tgt_in: Tensor, teacher_forcing: float = 1.0
    ) -> tuple[Tensor, DecoderState]:
        """Score every target position.

        Arguments:
            src: (S, B) int64 source ids, padded with 0. lengths: (B,) their true lengths.
            tgt_in: (T, B) int64 decoder inputs: ``<s>`` then the target, padded (padded positions are
                computed and should be ignored by the loss).
            teacher_forcing: the probability of reading ``tgt_in[t]`` at step t >= 1. Below 1 (scheduled
                sampling, Bengio et al. 2015), each sequence's input at step t is, with probability
                ``1 - teacher_forcing``, a token sampled from the model's own distribution at step t - 1
                instead (not differentiated through, as in the paper); step 0 always reads ``<s>``.

        Returns:
            ``(logits, state)``: logits (T, B, V) (unnormalised; ``logits[t]`` scores ``tgt_in[t + 1]``,
            the last one ``</s>``) and the decoder's state after step T - 1.
        """
        self._check_tokens("src", src, self.config.src_vocab)
        self._check_tokens("tgt_in", tgt_in, self.config.tgt_vocab)
        check(
            tgt_in.shape[1] == src.shape[1],
            f"src and tgt_in must have the same batch size, got {src.shape[1]} and {tgt_in.shape[1]}",
        )
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"teacher_forcing must be a probability in [0, 1], got {teacher_forcing!r}")
        memory, state = self.encode(src, lengths)
        if self.kind == "none" and teacher_forcing == 1.0:
            # nothing depends on the decoder's own outputs: run the whole target through the fast path
            y, rnn = self.decoder(self.tgt_embedding(tgt_in), state.rnn)  # (T, B, H)
            return self.readout(self.dropout(y)), DecoderState(rnn, state.feed, state.weights)
        steps = []
        inputs = tgt_in[0]  # (B,)
        for t in range(tgt_in.shape[0]):
            if t > 0:
                inputs = tgt_in[t]
                if teacher_forcing < 1.0:
                    with torch.no_grad():
                        own = torch.multinomial(torch.softmax(steps[-1], -1), 1).squeeze(1)  # (B,)
                        truth = torch.rand(tgt_in.shape[1], device=tgt_in.device) < teacher_forcing
                        inputs = torch.where(truth, tgt_in[t], own)
            logits, state = self.step(inputs, state, memory)  # (B, V)
            steps.append(logits)
        return torch.stack(steps), state  # (T, B, V)

    @staticmethod
    def _check_tokens(name: str, ids: Tensor, vocab: int) -> None:
        got = f"shape {tuple(ids.shape)}, {ids.dtype}" if isinstance(ids, Tensor) else type(ids).__name__
        check(
            isinstance(ids, Tensor) and ids.dim() == 2 and ids.dtype == torch.long,
            f"{name} must be (length, batch) int64 token ids, got {got}",
        )
        check(ids.numel() > 0, f"{name} is empty: shape {tuple(ids.shape)}")
        lo, hi = int(ids.min()), int(ids.max())
        check(lo >= 0 and hi < vocab, f"{name} ids must be in [0, {vocab}), got values in [{lo}, {hi}]")


__all__ = ["BOS", "DECODERS", "EOS", "PAD", "DecoderState", "Seq2Seq", "Seq2SeqConfig"]
