"""Sequence to sequence: attention, the encoder-decoder, greedy and beam search, the generated tasks, the
training task (exact resume) and the command line."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest
import torch
from torch import Tensor, nn

from rnnkit.apps.seq2seq.model import DECODERS, Seq2Seq, Seq2SeqConfig
from rnnkit.apps.seq2seq.task import Seq2SeqTask
from rnnkit.cli import main
from rnnkit.data.pairs import SeqVocab, addition_task, draw_numbers, encode_pairs, make_batch, numbers_task
from rnnkit.errors import InputError
from rnnkit.generate import beam_search, greedy_decode
from rnnkit.layers.attention import ATTENTIONS, Attention, Memory
from rnnkit.training.trainer import TrainConfig, fit

FORMS = [(a, False) for a in DECODERS] + [("additive", True), ("general", True), ("none", True)]


def model_for(attention: str, bidirectional: bool = False, cell: str = "lstm", dtype=torch.float32, **kw):
    torch.manual_seed(0)
    config = Seq2SeqConfig(9, 8, cell=cell, hidden=6, attention=attention, bidirectional=bidirectional, **kw)
    return Seq2Seq(config).to(dtype).eval()


def random_batch(B=4, S=5, T=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([S, 2, S - 1, 1][:B])
    src = torch.randint(1, 9, (S, B), generator=g)
    src[torch.arange(S)[:, None] >= lengths[None, :]] = 0  # padding
    tgt_in = torch.randint(3, 8, (T, B), generator=g)
    tgt_in[0] = 1  # <s>
    return src, lengths, tgt_in


# -- attention ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ATTENTIONS)
def test_attention_shapes_weights_and_mask(kind):
    torch.manual_seed(0)
    B, S, Q = 3, 5, 4
    att = Attention(kind, Q, Q)
    values = torch.randn(B, S, Q)
    lengths = torch.tensor([5, 2, 3])
    query = torch.randn(B, Q)
    context, weights = att(query, att.prepare(values, lengths))
    assert context.shape == (B, Q) and weights.shape == (B, S)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B))
    padded = torch.arange(S)[None, :] >= lengths[:, None]
    assert (weights[padded] == 0).all() and (weights[~padded] > 0).all()
    # garbage in the padded positions changes nothing
    noisy = values.masked_fill(padded[:, :, None], 1e3)
    context2, weights2 = att(query, att.prepare(noisy, lengths))
    torch.testing.assert_close(context2, context)
    torch.testing.assert_close(weights2, weights)
    # and the context is the weighted mean of the values, computed here by hand
    by_hand = torch.stack([(weights[b, :, None] * values[b]).sum(0) for b in range(B)])
    torch.testing.assert_close(context, by_hand)


def test_attention_scores_follow_their_equations():
    torch.manual_seed(0)
    q, m = torch.randn(2, 4), torch.randn(2, 3, 4)
    full = torch.tensor([3, 3])
    add, gen, dot = (
        Attention("additive", 4, 4, hidden_size=5),
        Attention("general", 4, 4),
        Attention("dot", 4, 4),
    )
    e_add = add.v(torch.tanh(add.query_proj(q)[:, None] + add.memory_proj(m))).squeeze(-1)
    e_gen = torch.einsum("bq,qm,bsm->bs", q, gen.memory_proj.weight, m)  # q^T W_a m
    e_dot = torch.einsum("bq,bsq->bs", q, m)
    for att, e in ((add, e_add), (gen, e_gen), (dot, e_dot)):
        torch.testing.assert_close(att.score(q, att.prepare(m, full)), e)


@pytest.mark.parametrize("kind", ATTENTIONS)
def test_attention_gradcheck_float64(kind):
    torch.manual_seed(0)
    att = Attention(kind, 3, 3, hidden_size=2).double()
    lengths = torch.tensor([4, 2])

    def f(query: Tensor, values: Tensor, *params: Tensor) -> tuple[Tensor, Tensor]:
        return torch.func.functional_call(
            att, dict(zip(names, params, strict=True)), (query, att.prepare(values, lengths))
        )

    names = [n for n, _ in att.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in att.named_parameters()]
    query = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    values = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (query, values, *params))
    # the gradient never reaches the padded positions
    context, _ = f(query, values, *params)
    (grad,) = torch.autograd.grad(context.sum(), values)
    assert (grad[1, 2:] == 0).all() and (grad[1, :2] != 0).any()


def test_dot_attention_refuses_mismatched_sizes():
    with pytest.raises(ValueError, match="query size must equal the memory size"):
        Attention("dot", 4, 8)
    with pytest.raises(ValueError, match="use attention='general' with bidirectional=True"):
        Seq2SeqConfig(5, 5, attention="dot", bidirectional=True)


# -- the model -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attention, bidirectional", FORMS)
def test_padding_does_not_change_results(attention, bidirectional):
    model = model_for(attention, bidirectional)
    src, lengths, tgt_in = random_batch()
    logits, _ = model(src, lengths, tgt_in)  # (T, B, V)
    assert logits.shape == (4, 4, 8)
    for b in range(4):
        alone, _ = model(src[: lengths[b], b : b + 1], lengths[b : b + 1], tgt_in[:, b : b + 1])
        torch.testing.assert_close(logits[:, b : b + 1], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention, bidirectional", FORMS)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_teacher_forced_forward_equals_the_step_loop(attention, bidirectional, cell):
    model = model_for(attention, bidirectional, cell=cell, layers=2)
    src, lengths, tgt_in = random_batch()
    logits, final = model(src, lengths, tgt_in, teacher_forcing=1.0)
    memory, state = model.encode(src, lengths)
    steps = []
    for t in range(tgt_in.shape[0]):
        step_logits, state = model.step(tgt_in[t], state, memory)
        steps.append(step_logits)
    torch.testing.assert_close(logits, torch.stack(steps), atol=1e-5, rtol=1e-5)
    for a, b in zip(final, state, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention", DECODERS)
def test_scheduled_sampling_feeds_the_models_own_samples(attention):
    model = model_for(attention)
    src, lengths, tgt_in = random_batch()
    torch.manual_seed(5)
    sampled, _ = model(src, lengths, tgt_in, teacher_forcing=0.0)
    # the same draws by hand: each input after <s> is sampled from the previous step's distribution
    torch.manual_seed(5)
    memory, state = model.encode(src, lengths)
    inputs, steps = tgt_in[0], []
    for t in range(tgt_in.shape[0]):
        if t > 0:
            own = torch.multinomial(torch.softmax(steps[-1], -1), 1).squeeze(1)
            torch.rand(4)  # the coin for "truth or sample" (always sample at teacher_forcing 0)
            inputs = own
        logits, state = model.step(inputs, state, memory)
        steps.append(logits)
    torch.testing.assert_close(sampled, torch.stack(steps))
    # at teacher forcing 0 the ground truth after <s> is never read ...
    other = tgt_in.clone()
    other[1:] = 3
    torch.manual_seed(5)
    torch.testing.assert_close(model(src, lengths, other, teacher_forcing=0.0)[0], sampled)
    # ... and it is what the teacher-forced pass reads
    assert not torch.allclose(model(src, lengths, tgt_in)[0], sampled)


def test_scheduled_sampling_feeds_the_truth_with_probability_p():
    model = model_for("additive")
    src, lengths, tgt_in = random_batch()
    src, lengths, tgt_in = src.repeat(1, 100), lengths.repeat(100), tgt_in.repeat(1, 100)  # B = 400
    read: list[Tensor] = []
    model.tgt_embedding.register_forward_hook(lambda m, args, out: read.append(args[0]))
    torch.manual_seed(0)
    for p, low, high in ((1.0, 1.0, 1.0), (0.5, 0.45, 0.65), (0.0, 0.0, 0.3)):
        read.clear()
        model(src, lengths, tgt_in, teacher_forcing=p)
        inputs = torch.stack(read)  # (T, B): what the decoder read at each step
        assert torch.equal(inputs[0], tgt_in[0])  # <s> always
        truth = (inputs[1:] == tgt_in[1:]).float().mean().item()  # samples match the truth by chance too
        assert low <= truth <= high, (p, truth)


def test_model_rejects_bad_input():
    model = model_for("additive")
    src, lengths, tgt_in = random_batch()
    with pytest.raises(InputError, match=r"src ids must be in \[0, 9\), got values in \[0, 12\]"):
        model(src.masked_fill(src == 1, 12), lengths, tgt_in)
    with pytest.raises(InputError, match="tgt_in must be .* int64"):
        model(src, lengths, tgt_in.float())
    with pytest.raises(InputError, match="same batch size, got 4 and 2"):
        model(src, lengths, tgt_in[:, :2])
    with pytest.raises(InputError, match=r"lengths must be \(4,\)"):
        model(src, lengths[:3], tgt_in)


# -- decoding ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attention, bidirectional", FORMS)
def test_beam_width_one_is_greedy(attention, bidirectional):
    model = model_for(attention, bidirectional)
    src, lengths, _ = random_batch()
    greedy = greedy_decode(model, src, lengths, max_len=7)
    for penalty, alpha in (("gnmt", 0.6), ("length", 1.0), ("none", 0.0)):
        beam = beam_search(model, src, lengths, beam=1, max_len=7, penalty=penalty, alpha=alpha)
        assert beam.tokens == greedy.tokens and beam.finished == greedy.finished
        torch.testing.assert_close(beam.scores, greedy.scores)
        if greedy.weights is not None:
            for a, b in zip(beam.weights, greedy.weights, strict=True):
                torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "attention, bidirectional", [("additive", True), ("general", False), ("none", False)]
)
def test_batched_decoding_equals_one_by_one(attention, bidirectional):
    model = model_for(attention, bidirectional)
    src, lengths, _ = random_batch()
    for decode in (
        lambda s, n: greedy_decode(model, s, n, max_len=6),
        lambda s, n: beam_search(model, s, n, beam=3, max_len=6),
    ):
        batched = decode(src, lengths)
        for b in range(4):
            alone = decode(src[: lengths[b], b : b + 1], lengths[b : b + 1])
            assert alone.tokens[0] == batched.tokens[b]
            torch.testing.assert_close(alone.scores[0], batched.scores[b])
            if batched.weights is not None:
                assert batched.weights[b].shape == (len(batched.tokens[b]) + batched.finished[b], lengths[b])
                torch.testing.assert_close(alone.weights[0], batched.weights[b], atol=1e-6, rtol=1e-5)


class TableDecoder(nn.Module):
    """A hand-built decoder: the next token's probabilities depend only on the previous token. Tokens:
    0 pad, 1 <s>, 2 </s>, 3 "a", 4 "b". Greedy takes "a" (0.6) and then can only end badly; the best
    sequence starts with the less likely "b"."""

    def __init__(self) -> None:
        super().__init__()
        p = torch.full((5, 5), 1e-9, dtype=torch.float64)
        p[1, 3], p[1, 4] = 0.6, 0.4  # after <s>: a 0.6, b 0.4
        p[3, 2], p[3, 3], p[3, 4] = 0.34, 0.33, 0.33  # after a: no clear way on
        p[4, 2] = 0.9  # after b: </s> 0.9
        p[4, 3] = 0.1
        p[2, 2] = p[0, 2] = 1.0
        self.logp = nn.Parameter((p / p.sum(1, keepdim=True)).log(), requires_grad=False)

    def encode(self, src, lengths):
        B = src.shape[1]
        empty = torch.zeros(B, 0, 0)
        return Memory(empty, empty, torch.zeros(B, 0, dtype=torch.bool)), torch.zeros(B, 0)

    def step(self, prev, state, memory):
        return self.logp[prev], state

    @staticmethod
    def select(state, index):
        return state.index_select(0, index)


def test_beam_search_finds_the_best_sequence_where_greedy_fails():
    model = TableDecoder()
    src, lengths = torch.ones(1, 2, dtype=torch.long), torch.tensor([1, 1])
    greedy = greedy_decode(model, src, lengths, max_len=4)
    beam = beam_search(model, src, lengths, beam=2, max_len=4, penalty="none")
    assert greedy.tokens[0] == [3]  # "a </s>": 0.6 * 0.34 = 0.204
    assert beam.tokens == [[4], [4]]  # "b </s>": 0.4 * 0.9 = 0.36
    torch.testing.assert_close(beam.scores, torch.tensor([math.log(0.36)] * 2, dtype=torch.float64))
    # it is the best of every sequence of up to 4 tokens, found by brute force
    logp = model.logp.double()
    best = max(
        sum(float(logp[a, b]) for a, b in itertools.pairwise([1, *seq, 2]))
        for n in range(0, 4)
        for seq in itertools.product([3, 4], repeat=n)
    )
    assert math.isclose(float(beam.scores[0]), best, rel_tol=1e-9)
    assert greedy.scores[0] < beam.scores[0]


def test_length_normalisation_lets_a_longer_output_win():
    model = TableDecoder()
    src, lengths = torch.ones(1, 1, dtype=torch.long), torch.tensor([1])
    # without normalisation the short "b </s>" wins; with the mean log-probability (alpha = 1), a
    # longer sequence whose steps are each likelier on average can win: "b a </s>"... is not, so check
    # the normalised score is what was ranked, for every penalty
    for penalty, alpha in (("none", 0.0), ("length", 1.0), ("gnmt", 0.6)):
        out = beam_search(model, src, lengths, beam=3, max_len=5, penalty=penalty, alpha=alpha)
        n = len(out.tokens[0]) + 1
        lp = {"none": 1.0, "length": n**alpha, "gnmt": ((5 + n) / 6) ** alpha}[penalty]
        torch.testing.assert_close(out.normalized, out.scores / lp)


def test_decoding_rejects_bad_options():
    model = model_for("additive")
    src, lengths, _ = random_batch()
    with pytest.raises(ValueError, match="beam must be greater than zero, got 0"):
        beam_search(model, src, lengths, beam=0)
    with pytest.raises(InputError, match="penalty must be one of"):
        beam_search(model, src, lengths, penalty="wu")
    with pytest.raises(InputError, match="alpha must be a finite number >= 0"):
        beam_search(model, src, lengths, alpha=-1.0)
    with pytest.raises(InputError, match=r"lengths must be \(4,\)"):
        greedy_decode(model, src, lengths[:2])


# -- data -----------------------------------------------------------------------------------------------


def test_number_pairs_and_word_tokens():
    splits = numbers_task(n_train=300, n_valid=50, n_test=100, max_digits=4, seed=3)
    train = {s for s, _ in splits.train}
    held_out = {s for s, _ in splits.valid + splits.test}
    assert len(train) == 300 and len(held_out) == 150 and not train & held_out  # disjoint
    from rnnkit.data.pairs import english, french

    assert (english(342), french(342)) == ("three hundred and forty-two", "trois cent quarante-deux")
    pieces = splits.tgt_vocab.split("quatre-vingt-dix mille")
    assert pieces == ["quatre", "-vingt", "-dix", " mille"] and "".join(pieces) == "quatre-vingt-dix mille"
    for s, t in splits.test:  # every held-out pair encodes and decodes back exactly
        assert splits.tgt_vocab.decode(splits.tgt_vocab.encode(t)) == t
        assert splits.src_vocab.decode(splits.src_vocab.encode(s)) == s
    # short numbers are about as common as long ones (digits drawn uniformly)
    numbers = draw_numbers(3000, 6, random.Random(0))
    counts = [sum(len(str(n)) == d for n in numbers) for d in range(1, 7)]
    assert counts[0] == 10 and counts[1] == 90 and all(c > 500 for c in counts[2:])


def test_addition_pairs():
    splits = addition_task(n_train=500, n_valid=50, n_test=100, digits=3, seed=0)
    seen = set()
    for s, t in splits.train + splits.valid + splits.test:
        a, b = s.split("+")
        assert int(t) == int(a) + int(b) and len(a) <= 3 and len(b) <= 3
        key = tuple(sorted((int(a), int(b))))
        assert key not in seen  # every question once, in one order
        seen.add(key)
    assert splits.src_vocab.kind == "char" and splits.src_vocab.tokens[3:] == list("+0123456789")


def test_vocab_errors_name_the_unknown_tokens():
    words = SeqVocab.fit("word", ["one hundred", "forty-two"])
    with pytest.raises(InputError, match=r"words that are not in the vocabulary: ' thousand'"):
        words.encode("one thousand")
    with pytest.raises(InputError, match="is not written as the training data is"):
        words.encode("one  hundred")
    chars = SeqVocab.fit("char", ["12+3"])
    with pytest.raises(InputError, match=r"characters that are not in the vocabulary: '\*'"):
        chars.encode("12*3")
    with pytest.raises(InputError, match="is empty"):
        chars.encode("")


def test_make_batch_pads_time_first():
    batch = make_batch([([5, 6, 7], [3]), ([4], [3, 4])])
    assert batch.src.tolist() == [[5, 4], [6, 0], [7, 0]] and batch.lengths.tolist() == [3, 1]
    assert batch.tgt.tolist() == [[1, 1], [3, 3], [2, 4], [0, 2]]


# -- training --------------------------------------------------------------------------------------------


def tiny_task(seed=0, batch_size=8):
    splits = addition_task(n_train=64, n_valid=12, n_test=4, digits=2, seed=seed)
    train = encode_pairs(splits.train, splits.src_vocab, splits.tgt_vocab)
    valid = encode_pairs(splits.valid, splits.src_vocab, splits.tgt_vocab)
    config = Seq2SeqConfig(splits.src_vocab.vocab_size, splits.tgt_vocab.vocab_size, hidden=8)
    return Seq2SeqTask(train, valid, batch_size, seed=seed), config


def test_seq2seq_task_resumes_exactly(tmp_path, one_thread):
    # 10 steps of 8 from 64 pairs: crosses an epoch boundary (a new permutation), and the linear
    # teacher-forcing schedule draws samples from the checkpointed generator
    # (tf_c fixed: the default slope is 1 / steps, and the first half runs with steps=5)
    base = dict(lr=1e-2, eval_every=1000, checkpoint_every=1000, plots=False, teacher_forcing="linear")
    base["tf_c"] = 0.08

    def run(name, steps, resume=False):
        task, config = tiny_task()
        torch.manual_seed(123)  # a different init: the resumed run must take the checkpoint's weights
        model = Seq2Seq(config)
        fit(
            model,
            task,
            TrainConfig(**{**base, "steps": steps}),
            tmp_path / name,
            resume=resume,
            progress=False,
        )
        return model, task

    straight, task = run("straight", 10)
    run("split", 5)
    resumed, resumed_task = run("split", 10, resume=True)
    assert (resumed_task.epoch, resumed_task.position) == (task.epoch, task.position) == (1, 16)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    lines = [json.loads(x) for x in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(x) for x in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in lines if "loss" in r] == [r["loss"] for r in ref if "loss" in r]


def test_seq2seq_task_batches_and_evaluates():
    task, config = tiny_task()
    model = Seq2Seq(config)
    seen = []
    for _ in range(8):  # one epoch: every pair once
        before = task.position
        loss, extra = task.train_step(model, 1.0)
        seen += task.order[before : task.position]
        assert loss.dim() == 0 and loss.requires_grad and 0 <= extra["accuracy"] <= 1
    assert sorted(seen) == list(range(64))
    scores = task.evaluate(model)
    assert set(scores) == {"loss", "accuracy", "exact_match"} and scores["loss"] > 0
    assert 0 <= scores["exact_match"] <= scores["accuracy"] <= 1 or scores["exact_match"] == 0
    with pytest.raises(InputError, match="batch_size 100 is larger than the 64 training pairs"):
        Seq2SeqTask(task.train, task.valid, 100)


def test_seq2seq_task_learns_to_copy(one_thread):
    """A hundred steps on copying short strings reach exact matches: the loop, the loss and greedy
    decoding agree about what is being learnt."""
    rng = random.Random(0)
    strings = [[rng.randint(3, 6) for _ in range(rng.randint(1, 3))] for _ in range(576)]
    train, valid = [(s, s) for s in strings[:512]], [(s, s) for s in strings[512:]]
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(7, 7, hidden=24, attention="dot"))
    task = Seq2SeqTask(train, valid, 32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        loss, _ = task.train_step(model, 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert task.evaluate(model)["exact_match"] > 0.9


# -- the command line ----------------------------------------------------------------------------------


def test_cli_trains_and_translates(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "seq2seq", "--task", "addition", "--out", str(out), "--steps", "6", "--hidden", "8",
            "--batch", "8", "--train-pairs", "64", "--valid-pairs", "10", "--test-pairs", "20",
            "--attention", "general",
            "--bidirectional", "--teacher-forcing", "linear", "--no-progress", "--no-plots",
            "--json"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["run_dir"] == str(out) and report["steps"] == 6 and report["test_pairs"] == 20
    assert 0 <= report["exact_match"] <= 1 and report["train_pairs"] == 64
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["attention"] == "general" and saved["train"]["teacher_forcing"] == "linear"

    plot = tmp_path / "attention.png"
    assert main(["translate", str(out), "12+7", "--beam", "2", "--plot", str(plot), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) >= {"translation", "score", "plot"} and result["plot"] == str(plot)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(result["translation"]) <= set("0123456789")

    assert main(["translate", str(out), "12*7"]) == 2
    err = capsys.readouterr().err
    assert "rnnkit: error:" in err and "'*'" in err and "Traceback" not in err
    assert main(["translate", str(tmp_path), "1+1"]) == 2
    assert "not a run directory (no config.json); `translate` needs a seq2seq run" in capsys.readouterr().err


def test_translate_unknown_words_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "numbers"
    argv = ["train", "seq2seq", "--task", "numbers", "--out", str(out), "--steps", "2", "--hidden", "8",
            "--batch", "4", "--train-pairs", "40", "--valid-pairs", "5", "--test-pairs", "5",
            "--attention", "none",
            "--no-progress", "--no-plots", "--json"]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["translate", str(out), "one hundred and fourty-two"]) == 2
    err = capsys.readouterr().err
    assert "'-two'" in err or "' fourty'" in err
    assert "not in the vocabulary" in err and "Traceback" not in err
    # a model without attention has no heat map to draw
    assert main(["translate", str(out), "one", "--plot", str(tmp_path / "x.png")]) == 2
    assert "no attention" in capsys.readouterr().err


# -- quality (slow) ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("task", ["numbers", "addition"])
def test_quality_targets(task, tmp_path, one_thread):
    from rnnkit.apps import seq2seq as translation

    model_opts, train_opts, data_opts = translation.options_from(task, attention="additive")
    report = translation.train_seq2seq(
        task, tmp_path / task, model_opts, train_opts, data_opts, progress=False
    )
    assert report["exact_match"] >= 0.99, report
