"""How long `rnnkit serve` takes to answer ``/api/trace`` for a 2,000-character text (the issue's bar:
under 1 s on 2 CPU cores, on the quick preset's run: a 1-layer LSTM of 256 units).

Each round asks for a different 2,000-character slice of the text (the explorer keeps the last few
traced texts, so the same text twice would be a cache hit) and times, in turn:

- ``http``: a real request to werkzeug's threaded server (what `rnnkit serve` runs) on a free port, the
  answer read and parsed: everything a page or a script waits for;
- ``client``: the same through Flask's test client (no socket);
- ``trace``: the explorer's states alone (``Recurrent.forward_with_states``: h, c, gates), no JSON;
- ``core.trace``: :func:`rnnkit.diagnostics.core.trace` with gates, the step loop over ``cell.step``
  that the explorer does not use for this (kept as the reason);

and reports the median of ``--repeats`` rounds after a warm-up (wall time, and this process's CPU time,
which a busy machine disturbs less), the answer's size, the CPU and the load.

    python benchmarks/serve_trace.py --run runs/quick --text ../shared/data/tinyshakespeare.txt
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable

import torch

from rnnkit.bench import machine
from rnnkit.diagnostics import core
from rnnkit.serve.app import create_app
from rnnkit.serve.explorer import Explorer, Limits


def in_thread(fn: Callable[[], int]) -> int:
    """Run ``fn`` in a fresh thread, as the server runs each request (on the busy 2-core machine, with
    2 torch threads, the same work in the main thread took 10-100x longer; not understood)."""
    out: list[int] = []
    worker = threading.Thread(target=lambda: out.append(fn()))
    worker.start()
    worker.join()
    return out[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="a language-model run directory (the quick preset's)")
    ap.add_argument("--text", default="../shared/data/tinyshakespeare.txt", help="where the slices come from")
    ap.add_argument("--chars", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the bar is for 2 cores)")
    ap.add_argument("--out", help="write the numbers here as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from werkzeug.serving import make_server

    with open(args.text, encoding="utf-8") as f:
        corpus = f.read()
    explorer = Explorer(args.run, limits=Limits(max_chars=max(args.chars, 5000)))
    app = create_app(explorer)
    client = app.test_client()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.port}/api/trace"
    model = explorer.lm.model
    slices = iter(corpus[i * args.chars : (i + 1) * args.chars] for i in range(4 * (args.repeats + 1) + 1))

    def http() -> int:
        body = json.dumps({"text": next(slices)}).encode()
        request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request) as response:
            data = response.read()  # the whole answer has arrived: the clock stops here
        answers.append(data)
        return len(data)

    def via_client() -> int:
        response = client.post("/api/trace", json={"text": next(slices)})
        assert response.status_code == 200, response.get_json()
        return len(response.data)

    def trace_only() -> int:
        explorer.traced(next(slices))  # the states, without the JSON
        return 0

    def step_loop() -> int:
        ids = explorer.lm.tokenizer.encode(next(slices))
        with torch.no_grad():
            core.trace(model.rnn, model.embedding(ids[:, None]), gates=True)
        return 0

    contenders = {"http": http, "client": via_client, "trace": trace_only, "core.trace": step_loop}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}  # this process's CPU seconds
    sizes: dict[str, int] = {}
    answers: list[bytes] = []
    for round_ in range(args.repeats + 1):
        for name, fn in contenders.items():
            c0, t0 = time.process_time(), time.perf_counter()
            sizes[name] = in_thread(fn)
            if round_:  # the first round warms up
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    server.shutdown()
    for data in answers:  # parsed after the clock (the client's cost, not the server's)
        answer = json.loads(data)
        assert len(answer["tokens"]) == args.chars and len(answer["layers"][0]["h"]) == args.chars
    result = {
        "chars": args.chars,
        "model": vars(model.config),
        "median_s": {name: statistics.median(v) for name, v in times.items()},
        "all_s": times,
        "median_cpu_s": {name: statistics.median(v) for name, v in cpu.items()},
        "answer_bytes": sizes["http"],
        "load_average": os.getloadavg(),
        "machine": machine(),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
