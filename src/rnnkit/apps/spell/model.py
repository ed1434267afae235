"""One-to-many: a sequence from one vector. A decoder spells a word from an encoded input.

    features (B, F) -> encoder (an MLP, not recurrent) -> z (B, H)
    h_0 = tanh(W z)                                       the decoder starts from the code
    x_t = [embed(previous character), z]                  and sees it again at every step
    (y_t, h_t) = cell(x_t, h_{t-1});  scores_t = readout(y_t)   (B, V), until <eos>

Token ids: 0 is ``<eos>``, 1 is ``<bos>`` (the first input), the characters follow.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...cells import LSTMState
from ...cells.base import State
from ...cells.registry import CELLS
from ...errors import InputError
from .config import SpellerConfig

EOS, BOS = 0, 1


class Speller(nn.Module):
    def __init__(self, config: SpellerConfig) -> None:
        super().__init__()
        self.config = config
        F, H, V = config.features, config.hidden, config.vocab_size
        self.encoder = nn.Sequential(
            nn.Linear(F, 2 * H), nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(2 * H, H), nn.Tanh()
        )
        self.init = nn.Linear(H, H)
        self.embedding = nn.Embedding(V, H)
        # one step at a time: the cell itself (the layer's machinery is for whole sequences)
        self.decoder = CELLS[config.cell].build(2 * H, H)
        self.readout = nn.Linear(H, V)
        self._ids = {c: k + 2 for k, c in enumerate(config.alphabet)}

    def encode_words(self, words: list[str]) -> Tensor:
        """Target ids (L + 1, B): each word's characters then <eos>, padded with <eos>."""
        longest = max(len(w) for w in words) + 1
        out = torch.full((longest, len(words)), EOS, dtype=torch.long)
        for b, word in enumerate(words):
            unknown = sorted(set(word) - set(self._ids))
            if unknown:
                raise InputError(f"{word!r} has characters outside the alphabet: {unknown}")
            out[: len(word), b] = torch.tensor([self._ids[c] for c in word], dtype=torch.long)
        return out

    def decode_ids(self, ids: Tensor) -> list[str]:
        """(L, B) ids -> B words, each cut at its first <eos>."""
        words = []
        for column in ids.t().tolist():
            chars = []
            for i in column:
                if i == EOS:
                    break
                chars.append(self.config.alphabet[i - 2] if i >= 2 else "")
            words.append("".join(chars))
        return words

    def _start(self, features: Tensor) -> tuple[Tensor, State]:
        if features.dim() != 2 or features.shape[1] != self.config.features:
            raise InputError(
                f"features must be (B, {self.config.features}), got shape {tuple(features.shape)}"
            )
        z = self.encoder(features)  # (B, H)
        h = torch.tanh(self.init(z))  # (B, H)
        state = LSTMState(h, torch.zeros_like(h)) if self.config.cell == "lstm" else h
        return z, state

    def _step(self, z: Tensor, previous: Tensor, state: State) -> tuple[Tensor, State]:
        x = torch.cat([self.embedding(previous), z], -1)  # (B, 2H)
        y, state = self.decoder.step(x, state)  # (B, H)
        return self.readout(y), state  # (B, V)

    def forward(self, features: Tensor, targets: Tensor, teacher_forcing: float = 1.0) -> Tensor:
        """Scores (L, B, V) for target ids (L, B) (from :meth:`encode_words`). The input at step t is
        the target at t - 1 with probability ``teacher_forcing``, else the model's own sample there
        (scheduled sampling); step 0 reads <bos>."""
        z, state = self._start(features)
        previous = torch.full((features.shape[0],), BOS, dtype=torch.long, device=features.device)
        scores = []
        for t in range(targets.shape[0]):
            s, state = self._step(z, previous, state)
            scores.append(s)
            previous = targets[t]
            if teacher_forcing < 1.0:
                with torch.no_grad():
                    own = torch.multinomial(torch.softmax(s, -1), 1).squeeze(1)
                    keep = torch.rand(previous.shape, device=previous.device) < teacher_forcing
                    previous = torch.where(keep, previous, own)
        return torch.stack(scores)  # (L, B, V)

    @torch.no_grad()
    def spell(self, features: Tensor) -> list[str]:
        """Greedy decoding: the most likely character at every step, until <eos> or ``max_length``."""
        z, state = self._start(features)
        previous = torch.full((features.shape[0],), BOS, dtype=torch.long, device=features.device)
        out, done = [], torch.zeros(features.shape[0], dtype=torch.bool, device=features.device)
        for _ in range(self.config.max_length + 1):
            s, state = self._step(z, previous, state)
            previous = s.argmax(-1).masked_fill(done, EOS)  # (B,)
            out.append(previous)
            done |= previous == EOS
            if bool(done.all()):
                break
        return self.decode_ids(torch.stack(out))
