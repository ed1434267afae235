"""The explorer's JSON API (Flask's test client) against the library functions it serves, on a tiny
language model trained here, and the hypothesis search worked by hand."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
import torch

pytest.importorskip("flask", reason="the explorer needs the web extra: pip install 'rnnkit[web]'")
pytest.importorskip("orjson", reason="the explorer needs the web extra: pip install 'rnnkit[web]'")

from rnnkit.diagnostics import core  # noqa: E402
from rnnkit.diagnostics import units as du  # noqa: E402
from rnnkit.errors import InputError  # noqa: E402
from rnnkit.serve.app import create_app  # noqa: E402
from rnnkit.serve.explorer import Explorer, Limits  # noqa: E402

CORPUS = 'the quick brown fox jumps over the lazy dog. "she said (quietly) that it was so."\n' * 40
TEXT = "the lazy fox said (so quietly) that the dog was quick."
DIGITS = 6e-5  # the API rounds to 4 decimals


def train_tiny_lm(tmp_path, layers: int = 2):
    """A 2-layer LSTM of 12 units, 25 steps on a small text (a few seconds)."""
    from rnnkit.apps.lm.run import train_language_model

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    options = {"steps": 25, "batch_size": 4, "seq_len": 16, "plots": False, "eval_every": 10, "lr": 1e-2}
    train_language_model(
        str(corpus), tmp_path / "run", {"hidden": 12, "layers": layers}, options, progress=False
    )
    return tmp_path / "run"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield train_tiny_lm(tmp_path_factory.mktemp("serve"))
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def explorer(run_dir):
    return Explorer(run_dir, {"corpus.txt": CORPUS}, Limits(max_chars=3000, max_generate=300))


@pytest.fixture(scope="module")
def client(explorer):
    return create_app(explorer).test_client()


def ok(response):
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def error(response, status=400):
    assert response.status_code == status, response.get_json()
    return response.get_json()["error"]


def reference_trace(explorer, text):
    """core.trace called directly, as `rnnkit diagnose` does, and the model's own forward pass."""
    model, tok = explorer.lm.model, explorer.lm.tokenizer
    ids = tok.encode(text)
    with torch.no_grad():
        t = core.trace(model.rnn, model.embedding(ids[:, None]), gates=True)
        logits, _ = model(ids[:, None])  # (N, 1, V) through torch's fused LSTM, not the step loop
    return ids, t, logits[:, 0]


# -- what the run is ---------------------------------------------------------------------------------


def test_info_describes_the_run(client):
    info = ok(client.get("/api/info"))
    assert info["kind"] == "lm" and info["layers"] == 2 and info["hidden"] == 12 and info["token"] == "char"
    assert info["fields"] == ["h", "c", "input", "forget", "cell", "output"]
    assert info["texts"] == ["corpus.txt"] and info["limits"]["max_chars"] == 3000
    assert ok(client.get("/api/text?name=corpus.txt")) == {"text": CORPUS[:3000], "cut": (
        f"the file corpus.txt has {len(CORPUS):,} characters: only the first 3,000 are shown (the limit; "
        "rnnkit serve --max-chars)")}  # fmt: skip
    assert "no text named 'x'" in error(client.get("/api/text?name=x"))


def test_the_page_and_its_scripts_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and b"<title>rnnkit explorer</title>" in page.data
    for name in ("app.js", "charts.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    assert client.get("/static/../explorer.py").status_code == 404


# -- trace: every layer's h, c and gates ---------------------------------------------------------------


def test_trace_matches_core_trace_and_the_models_forward(client, explorer):
    got = ok(client.get("/api/trace", query_string={"text": TEXT, "top": 3}))
    ids, t, logits = reference_trace(explorer, TEXT)
    N = len(TEXT)
    assert got["tokens"] == list(TEXT) and got["ids"] == ids.tolist()
    assert [layer["layer"] for layer in got["layers"]] == [0, 1]
    for k, layer in enumerate(got["layers"]):
        assert set(layer) == {"layer", "h", "c", "input", "forget", "cell", "output"}
        h = np.array(layer["h"])
        assert h.shape == (N, 12)
        np.testing.assert_allclose(h, torch.stack(t.hidden[k])[:, 0].numpy(), atol=DIGITS)
        np.testing.assert_allclose(
            layer["c"], torch.stack([s.c for s in t.states[k]])[:, 0].numpy(), atol=DIGITS
        )
        for gate in ("input", "forget", "cell", "output"):
            np.testing.assert_allclose(layer[gate], t.gates[k][gate][:, 0].numpy(), atol=DIGITS)
    # the top layer's h is what the readout reads: its scores equal the model's own (fused) forward pass
    probs = torch.softmax(logits, -1)
    values, indices = probs.topk(3, -1)
    for step, (pv, iv) in enumerate(zip(values.tolist(), indices.tolist(), strict=True)):
        assert [p for _, p in got["predictions"][step]] == pytest.approx(pv, abs=DIGITS)
        assert [tok for tok, _ in got["predictions"][step]] == [explorer.lm.tokenizer.decode([i]) for i in iv]


def test_trace_of_some_layers_and_fields(client):
    got = ok(client.post("/api/trace", json={"text": "the dog", "layers": [1], "fields": ["h", "forget"]}))
    assert len(got["layers"]) == 1 and set(got["layers"][0]) == {"layer", "h", "forget"}
    assert np.array(got["layers"][0]["forget"]).shape == (7, 12) and "predictions" not in got
    assert "layer must be in [0, 2), got 2" in error(client.get("/api/trace?text=the&layers=2"))
    assert "field must be one of ['h', 'c', 'input'" in error(client.get("/api/trace?text=the&fields=zz"))
    assert "top must be in [0, 20], got 99" in error(client.get("/api/trace?text=the&top=99"))


def test_long_texts_and_bad_arguments_get_clear_messages(client):
    assert error(client.post("/api/trace", json={"text": "a" * 3001})) == (
        "the text has 3,001 characters; the limit is 3,000 (rnnkit serve --max-chars)"
    )
    assert "character 'Z' (U+005A)" in error(client.get("/api/trace?text=Zebra"))
    assert error(client.get("/api/trace")) == "missing argument 'text'"
    assert error(client.get("/api/trace?text=")) == "the text is empty"
    assert error(client.get("/api/units?text=the&layer=one")) == "layer must be an integer, got 'one'"
    assert error(client.get("/api/generate?greedy=maybe")) == "greedy must be true or false, got 'maybe'"
    assert "a POST body must be a JSON object" in error(client.post("/api/trace", json=[1, 2]))
    assert error(client.get("/api/nothing"), 404).startswith("404 Not Found")


def test_only_localhost_is_answered(explorer):
    local = create_app(explorer).test_client()
    assert "answers only on localhost" in error(local.get("/api/info", headers={"Host": "evil.test"}), 403)
    assert local.get("/api/info", headers={"Host": "127.0.0.1:8000"}).status_code == 200
    anywhere = create_app(explorer, local_only=False).test_client()
    assert anywhere.get("/api/info", headers={"Host": "evil.test"}).status_code == 200


# -- generate ----------------------------------------------------------------------------------------


def test_generate_is_generate_py_sampling_with_its_probabilities(client, explorer):
    from rnnkit.generate import filter_logits, sample_text

    model, tok = explorer.lm.model, explorer.lm.tokenizer
    args = {"prime": "the ", "length": 30, "temperature": 0.9, "top_k": 5, "seed": 3, "top": 4}
    got = ok(client.get("/api/generate", query_string=args))
    expected = sample_text(model, tok, "the ", 30, temperature=0.9, top_k=5,
                           generator=torch.Generator().manual_seed(3))  # fmt: skip
    assert got["prime"] + got["text"] == expected and len(got["steps"]) == 30
    # each step's numbers, recomputed by stepping the model one token at a time with its state
    ids = tok.encode(expected)
    with torch.no_grad():
        logits, state = model(ids[:4, None])
        scores = [logits[-1, 0]]
        for i in range(4, len(ids) - 1):
            logits, state = model(ids[i : i + 1, None], state)
            scores.append(logits[0, 0])
    for step, token, s in zip(got["steps"], ids[4:].tolist(), scores, strict=True):
        probs = torch.softmax(s, -1)
        sampled = torch.softmax(filter_logits(s, temperature=0.9, top_k=5), -1)
        assert step["token"] == tok.decode([token])
        assert step["p"] == pytest.approx(float(probs[token]), abs=DIGITS)
        assert step["p_sampled"] == pytest.approx(float(sampled[token]), abs=DIGITS)
        assert step["p_sampled"] > 0 and len(step["top"]) == 4
        assert [p for _, p in step["top"]] == pytest.approx(probs.topk(4).values.tolist(), abs=DIGITS)


def test_generate_streams_one_line_per_token_then_the_result(client):
    response = client.get("/api/generate?prime=the&length=12&seed=1&stream=true")
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson"
    events = [json.loads(line) for line in response.data.decode().splitlines()]
    assert len(events) == 13 and events[-1]["done"] is True
    assert "".join(e["token"] for e in events[:-1]) == events[-1]["text"]
    plain = ok(client.get("/api/generate?prime=the&length=12&seed=1"))
    assert plain == events[-1]


def test_generate_greedy_and_limits(client):
    got = ok(client.get("/api/generate?prime=the&length=5&greedy=1&top=1"))
    assert all(s["p_sampled"] == 1.0 and s["top"][0][0] == s["token"] for s in got["steps"])
    assert ok(client.get("/api/generate?prime=the&length=0"))["steps"] == []
    assert error(client.get("/api/generate?length=301")) == (
        "length must be in [0, 300] tokens (the limit; rnnkit serve --max-generate), got 301"
    )
    assert "temperature must be a number > 0" in error(client.get("/api/generate?temperature=0"))
    assert "top_p must be a number in (0, 1]" in error(client.get("/api/generate?top_p=2"))
    assert "prime has 3,001 characters" in error(client.post("/api/generate", json={"prime": "a" * 3001}))


# -- units, hypothesis search, state space -------------------------------------------------------------


def test_units_scores_match_numpy(client, explorer):
    query = {"text": TEXT, "layer": 1, "field": "h", "pattern": "[aeiou]"}
    got = ok(client.get("/api/units", query_string={**query, "sort": "correlation", "count": 5}))
    _, t, _ = reference_trace(explorer, TEXT)
    h = torch.stack(t.hidden[1])[:, 0].double().numpy()  # (N, H)
    pattern = np.array([float(ch in "aeiou") for ch in TEXT])
    assert got["pattern"] == pattern.astype(int).tolist()
    np.testing.assert_allclose(got["variance"], h.var(0), atol=DIGITS)
    r = [np.corrcoef(h[:, u], pattern)[0, 1] for u in range(12)]
    np.testing.assert_allclose(got["correlation"], r, atol=DIGITS)
    np.testing.assert_allclose(got["saturation"], (np.abs(h) > 0.9).mean(0), atol=DIGITS)
    assert got["top"] == np.argsort(-np.abs(r), kind="stable")[:5].tolist()
    gates = ok(client.get("/api/units", query_string={"text": TEXT, "field": "forget", "sort": "saturation"}))
    f = t.gates[0]["forget"][:, 0].numpy()
    np.testing.assert_allclose(gates["saturation"], ((f < 0.1) | (f > 0.9)).mean(0), atol=DIGITS)
    assert gates["correlation"] is None
    assert "sorting by saturation needs a field with a fixed range, not 'c'" in error(
        client.get("/api/units", query_string={"text": TEXT, "field": "c", "sort": "saturation"})
    )
    assert "sorting by correlation needs a pattern" in error(
        client.get("/api/units", query_string={"text": TEXT, "sort": "correlation"})
    )
    assert "not a valid regular expression" in error(client.get("/api/units?text=the&pattern=("))


def test_search_follows_the_rule_on_the_models_states(client, explorer):
    _, t, _ = reference_trace(explorer, TEXT)
    h = torch.stack(t.hidden[0])[:, 0]  # (N, H)
    # pick a span and a threshold for which at least one unit qualifies
    start, end = 9, 12
    candidates = [
        (float(h[start:end, u].min()), u) for u in range(12) if h[start:end, u].min() > h[start - 1, u]
    ]
    threshold, unit = max(candidates)
    got = ok(client.get("/api/search", query_string={"text": TEXT, "start": start, "end": end,
                                                      "threshold": threshold, "left": 1}))  # fmt: skip
    assert unit in got["units"] and got["selection"] == TEXT[start:end]
    on = (h >= threshold).numpy()
    for u in got["units"]:  # on all through the span, off just before it
        assert on[start:end, u].all() and not on[start - 1, u]
    assert any(m["selected"] for m in got["matches"])
    for m in got["matches"]:
        assert on[m["start"] : m["end"]][:, got["units"]].all() and m["text"] == TEXT[m["start"] : m["end"]]
        assert m["start"] == 0 or not on[m["start"] - 1, got["units"]].all()  # maximal runs
    far = {"text": TEXT, "start": 5, "end": 99}
    assert "0 <= start < end <= 54" in error(client.get("/api/search", query_string=far))


def test_pca_is_core_pca(client, explorer):
    got = ok(client.get("/api/pca", query_string={"text": TEXT, "layer": 1, "field": "c"}))
    _, t, _ = reference_trace(explorer, TEXT)
    proj, explained = core.pca(torch.stack([s.c for s in t.states[1]]))  # (N, 1, H) -> (N, 1, 2)
    np.testing.assert_allclose(got["points"], proj[:, 0].numpy(), atol=DIGITS)
    assert got["explained"] == pytest.approx(explained.tolist()) and got["tokens"] == list(TEXT)
    assert "at least 2 tokens" in error(client.get("/api/pca?text=t"))


# -- curves, other kinds of run, the command -------------------------------------------------------------


def test_metrics_are_the_runs_log(client, run_dir):
    got = ok(client.get("/api/metrics"))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "loss" in r]
    assert got["train"]["step"] == [r["step"] for r in train] == list(range(1, 26))
    assert got["train"]["loss"] == [r["loss"] for r in train] and got["bits"] is True
    assert got["valid"]["step"] == [10, 20, 25]
    thin = ok(client.get("/api/metrics?points=10"))["train"]["step"]
    assert thin[0] == 1 and thin[-1] == 25 and len(thin) <= 11


def test_a_run_still_training_shows_new_steps(explorer, run_dir, tmp_path):
    import shutil

    live = tmp_path / "live"
    shutil.copytree(run_dir, live)
    client = create_app(Explorer(live)).test_client()
    before = ok(client.get("/api/metrics"))["train"]["step"][-1]
    with open(live / "metrics.jsonl", "a") as log:
        log.write(json.dumps({"step": 26, "loss": math.nan, "grad_norm": 1.0, "lr": 0.01}) + '\n{"step": 2')
    got = ok(client.get("/api/metrics"))["train"]
    assert before == 25 and got["step"][-1] == 26 and got["loss"][-1] is None  # NaN is not JSON: null


@pytest.mark.parametrize(
    "cell, fields", [("gru", ["h", "reset", "update", "new"]), ("mingru", ["h", "update"])]
)
def test_other_cells(tmp_path, one_thread, cell, fields):
    from rnnkit.apps.lm.run import train_language_model

    (tmp_path / "c.txt").write_text(CORPUS)
    options = {"steps": 2, "batch_size": 2, "seq_len": 8, "plots": False}
    train_language_model(str(tmp_path / "c.txt"), tmp_path / "run", {"hidden": 6, "cell": cell}, options,
                         progress=False)  # fmt: skip
    explorer = Explorer(tmp_path / "run")
    client = create_app(explorer).test_client()
    assert ok(client.get("/api/info"))["fields"] == fields
    got = ok(client.get("/api/trace?text=the dog"))["layers"][0]
    assert set(got) == {"layer", *fields} and np.array(got[fields[-1]]).shape == (7, 6)
    _, t, _ = reference_trace(explorer, "the dog")
    np.testing.assert_allclose(got["h"], torch.stack(t.hidden[0])[:, 0].numpy(), atol=DIGITS)
    units = ok(client.get("/api/units?text=the dog"))
    assert (units["saturation"] is None) == (cell == "mingru")  # minGRU's h has no fixed range


def test_other_kinds_of_run(tmp_path):
    cls = tmp_path / "cls"
    cls.mkdir()
    (cls / "config.json").write_text(json.dumps({"model": {"cell": "gru"}}))
    (cls / "classes.json").write_text(json.dumps({"classes": ["a", "b"]}))
    client = create_app(Explorer(cls)).test_client()
    assert ok(client.get("/api/info"))["kind"] == "classifier"
    assert ok(client.get("/api/metrics"))["train"] == {}
    assert "cls is a classifier run: this needs a language model's run" in error(
        client.get("/api/trace?text=a")
    )
    assert "translation needs a seq2seq run" in error(client.get("/api/translate?text=a"))
    with pytest.raises(InputError, match="no such run directory"):
        Explorer(tmp_path / "missing")


def test_seq2seq_attention_is_translate(tmp_path, one_thread):
    from rnnkit import translation

    model_opts, train_opts, data_opts = translation.options_from(
        "addition", hidden=8, attention="general", steps=4, batch_size=8, n_train=64, n_valid=8, n_test=8,
        plots=False)  # fmt: skip
    translation.train_seq2seq("addition", tmp_path / "s2s", model_opts, train_opts, data_opts, progress=False)
    explorer = Explorer(tmp_path / "s2s")
    got = ok(create_app(explorer).test_client().get("/api/translate?text=12%2B7"))
    expected = translation.translate(explorer.seq2seq, "12+7")
    assert got["translation"] == expected.translation and got["source"] == expected.source
    assert got["output"] == expected.output
    np.testing.assert_allclose(got["weights"], expected.weights.numpy(), atol=DIGITS)
    assert np.array(got["weights"]).shape == (len(got["output"]), len(got["source"]))


def test_the_command_serves_on_localhost(run_dir):
    """`rnnkit serve RUN --port 0` starts, prints its address and answers; then it is stopped."""
    proc = subprocess.Popen([sys.executable, "-m", "rnnkit", "serve", str(run_dir), "--port", "0"],
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = proc.stderr.readline()
        assert "http://127.0.0.1:" in line, line
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(url + "api/info", timeout=30) as response:
            assert json.loads(response.read())["kind"] == "lm"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_command_refuses_bad_input(tmp_path, capsys):
    from rnnkit.cli import main

    assert main(["serve", str(tmp_path / "nope")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--max-chars", "0"]) == 2
    assert "--max-chars must be >= 1, got 0" in capsys.readouterr().err


# -- the hypothesis search and unit scores, worked by hand ---------------------------------------------


def test_select_units_by_hand():
    acts = torch.tensor([
        # u0   u1   u2   u3
        [0.0, 0.9, 0.0, 0.5],  # t0
        [0.8, 0.9, 0.1, 0.5],  # t1  span [1, 3)
        [0.7, 0.8, 0.9, 0.5],  # t2
        [0.1, 0.0, 0.9, 0.5],  # t3
    ])  # fmt: skip
    # u0 on in the span and off before it; u1 was already on before; u2 is off at t1; u3 below 0.6
    assert du.select_units(acts, 1, 3, 0.6).tolist() == [0]
    assert du.select_units(acts, 1, 3, 0.6, left=0).tolist() == [0, 1]
    assert du.select_units(acts, 1, 3, 0.4, left=0, right=1).tolist() == [0, 1]  # u3 still on at t3
    assert du.select_units(acts, 0, 4, 0.4).tolist() == [3]  # nothing before t0 to be off
    with pytest.raises(InputError, match=r"0 <= start < end <= 4 \(tokens\), got \[2, 2\)"):
        du.select_units(acts, 2, 2, 0.5)


def test_match_spans_by_hand():
    on, off = 1.0, 0.0
    acts = torch.tensor([
        [off, off, on],   # t0
        [on,  on,  on],   # t1  run A: t1-t2, u2 also on throughout -> extra 1
        [on,  on,  on],   # t2
        [off, on,  off],  # t3
        [on,  on,  off],  # t4  run B: t4-t6, nothing else on -> extra 0
        [on,  on,  off],  # t5
        [on,  on,  on],   # t6
        [on,  off, off],  # t7  u1 off: B ends; alone with agree=0.5 it joins B
    ])  # fmt: skip
    units = torch.tensor([0, 1])
    spans = du.match_spans(acts, units, 0.5)
    assert [(s["start"], s["end"], s["extra"]) for s in spans] == [(4, 7, 0), (1, 3, 1)]
    assert spans[0]["shared"] == 2 and spans[1]["jaccard"] == pytest.approx(2 / 3)
    assert du.match_spans(acts, units, 0.5, min_length=3)[0]["start"] == 4
    loose = du.match_spans(acts, units, 0.5, agree=0.5)  # one unit of two is enough
    assert [(s["start"], s["end"], s["shared"]) for s in loose] == [(1, 8, 0)]
    assert du.match_spans(acts, torch.tensor([], dtype=torch.long), 0.5) == []


def test_unit_scores_and_regex_patterns_by_hand():
    tokens = ["the", " cat", " sat", "."]
    assert du.pattern_from_regex(tokens, r"at\b").tolist() == [0, 1, 1, 0]
    assert du.pattern_from_regex(tokens, r"e c").tolist() == [1, 1, 0, 0]  # a match across two tokens
    assert du.pattern_from_regex(tokens, r"x*").tolist() == [0, 0, 0, 0]  # empty matches cover nothing
    acts = torch.tensor([[1.0, 2.0], [3.0, 2.0], [1.0, 2.0], [3.0, 2.0]])
    scores = du.unit_scores(acts, acts > 2.5, torch.tensor([0.0, 1.0, 0.0, 1.0]))
    assert scores["variance"].tolist() == [1.0, 0.0]
    assert scores["saturation"].tolist() == [0.5, 0.0]
    assert scores["correlation"].tolist() == [1.0, 0.0]  # a constant unit correlates with nothing
    with pytest.raises(InputError, match=r"pattern must be \(N,\) = \(4,\), got \(3,\)"):
        du.unit_scores(acts, pattern=torch.zeros(3))
