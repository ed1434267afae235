"""Any NamedTuple state round-trips through a checkpoint and through the diagnostics, not only LSTMState."""

from __future__ import annotations

import json
from typing import NamedTuple

import pytest
import torch

from rnnkit.apps.seq2seq.model import DecoderState
from rnnkit.cells import LSTMState
from rnnkit.errors import InputError
from rnnkit.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


class PairState(NamedTuple):  # a user's own state type, defined outside rnnkit
    h: torch.Tensor
    m: torch.Tensor


def test_named_tuple_states_come_back_as_their_own_types(tmp_path):
    lstm = LSTMState(torch.randn(2, 3), torch.randn(2, 3))
    decoder = DecoderState(lstm, torch.randn(3, 4), torch.zeros(3, 0))
    mine = PairState(torch.arange(3.0), torch.ones(2))
    save_checkpoint(tmp_path, model_state={}, train_state={"a": decoder, "b": [mine, (1, 2)]}, step=1)
    back = load_checkpoint(tmp_path).train_state
    assert type(back["a"]) is DecoderState and type(back["a"].rnn) is LSTMState
    assert torch.equal(back["a"].rnn.c, lstm.c) and torch.equal(back["a"].feed, decoder.feed)
    assert type(back["b"][0]) is PairState and torch.equal(back["b"][0].m, mine.m)
    assert back["b"][1] == (1, 2) and type(back["b"][1]) is tuple
    # LSTMState keeps its old tag, so older readers still read it
    state = json.loads((tmp_path / "checkpoints" / "step-000001" / "state.json").read_text())
    assert "$lstm_state" in state["a"]["$namedtuple"][1][0]


@pytest.mark.parametrize(
    "name, message",
    [
        ("os:path", "not a NamedTuple class"),
        ("no_such_module_xyz:State", "its module is not imported"),
        ("rnnkit.cells:NoSuchState", "not a NamedTuple class"),
        ("nocolon", "needs 'module:Class'"),
    ],
)
def test_a_named_tuple_that_cannot_be_found_is_refused(tmp_path, name, message):
    save_checkpoint(
        tmp_path, model_state={}, train_state={"s": PairState(torch.ones(1), torch.ones(1))}, step=1
    )
    ckpt = tmp_path / "checkpoints" / "step-000001"
    state = json.loads((ckpt / "state.json").read_text())
    state["s"]["$namedtuple"][0] = name
    # rewrite the file and its manifest entry, as a hostile writer could
    import hashlib

    data = (json.dumps(state) + "\n").encode()
    (ckpt / "state.json").write_bytes(data)
    manifest = json.loads((ckpt / "manifest.json").read_text())
    manifest["files"]["state.json"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    del manifest["checksum"]
    body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    manifest["checksum"] = hashlib.sha256(body).hexdigest()
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path)


def test_a_state_of_two_fields_flattens_for_the_jacobian_and_back():
    from rnnkit.diagnostics.core import _flatten, _unflatten

    s = PairState(torch.randn(4, 3), torch.randn(4, 5))
    flat = _flatten(s)
    assert flat.shape == (4, 8)
    back = _unflatten(flat, s)
    assert type(back) is PairState and torch.equal(back.h, s.h) and torch.equal(back.m, s.m)


def test_a_plain_object_is_still_refused(tmp_path):
    with pytest.raises(InputError, match="cannot store a builtins.object"):
        save_checkpoint(tmp_path, model_state={}, train_state={"x": object()}, step=1)
