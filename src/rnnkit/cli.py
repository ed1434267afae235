"""The ``rnnkit`` command line: a thin shell over the library (no logic of its own).

Heavy imports (torch) happen inside the commands, so ``rnnkit --help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence


def cmd_demo(args: argparse.Namespace) -> int:
    """Build a model from each cell family, run a batch through it and report the shapes."""
    import torch

    from rnnkit import ElmanCell, GRUCell, JordanCell, LSTMCell, Recurrent
    from rnnkit import nn as rnn

    torch.manual_seed(args.seed)
    T, B, F, H = args.seq_len, args.batch, args.features, args.hidden
    x = torch.randn(B, T, F)
    lengths = torch.randint(1, T + 1, (B,))
    models = {
        "rnnkit.nn.LSTM (2 layers, bidirectional)": rnn.LSTM(
            F, H, num_layers=2, bidirectional=True, batch_first=True
        ),
        "Recurrent(ElmanCell relu)": Recurrent(ElmanCell(F, H, "relu"), batch_first=True),
        "Recurrent(JordanCell)": Recurrent(JordanCell(F, H, 4), batch_first=True),
        "Recurrent(GRUCell textbook, bidirectional sum)": Recurrent(
            GRUCell(F, H, reset_after=False), bidirectional=True, merge="sum", batch_first=True
        ),
        "Recurrent(LSTMCell peephole+layernorm, 2 layers)": Recurrent(
            LSTMCell(F, H, peephole=True, layer_norm=True, forget_bias=1.0),
            num_layers=2,
            batch_first=True,
        ),
    }
    report = {"input": list(x.shape), "lengths": lengths.tolist(), "models": {}}
    for name, model in models.items():
        y, state = model(x, lengths=lengths)
        fields = state if isinstance(state, tuple) else (state,)
        report["models"][name] = {
            "output": list(y.shape),
            "state": [list(s.shape) for s in fields],
            "parameters": sum(p.numel() for p in model.parameters()),
        }
    if args.json:
        print(json.dumps(report))
    else:
        print(f"input (B, T, F) = {tuple(x.shape)}, lengths = {lengths.tolist()}")
        for name, r in report["models"].items():
            print(
                f"{name:50s} output {tuple(r['output'])}  state {[tuple(s) for s in r['state']]}"
                f"  params {r['parameters']}"
            )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the side-by-side benchmark grid and print a table (or one JSON object)."""
    from rnnkit import bench

    report = bench.run(
        quick=args.quick,
        models=args.model or None,
        repeats=args.repeats,
        progress=not args.no_progress,
        stream=not args.no_stream,
        options=args.options or args.options_only,
        grid_rows=not args.options_only,
        peers=("torch", "loop", "python-loops") if args.python_loops else ("torch", "loop"),
    )
    if args.json:
        print(json.dumps(report))
    else:
        m = report["machine"]
        print(
            f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads); "
            f"packed GEMM {report['packed_gemm_gflops']:.0f} GFLOP/s"
        )
        print(bench.table(report))
    return 0


def cmd_train_lm(args: argparse.Namespace) -> int:
    """Train a character- or word-level language model; report the validation loss per token."""
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _torchrun(args.nproc, args.argv)
    from rnnkit import lm
    from rnnkit.training import distributed

    model_opts, train_opts = lm.options_from(
        args.preset, cell=args.cell, hidden=args.hidden, layers=args.layers, dropout=args.dropout,
        tie_weights=args.tie_weights, seq_len=args.seq_len, batch_size=args.batch, steps=args.steps,
        lr=args.lr, seed=args.seed, minutes=args.minutes, **_training_overrides(args),
    )  # fmt: skip
    _clip_off(args, train_opts)
    report = lm.train_language_model(
        args.data, args.out, model_opts, train_opts, tokenizer=args.tokenizer, vocab_size=args.vocab_size,
        reset_on=_unescape(args.reset_on), resume=args.resume, progress=not args.no_progress,
    )  # fmt: skip
    report["run_dir"] = str(report["run_dir"])
    if not distributed.is_main():
        return 0  # rank 0 reports for all
    if args.json:
        print(json.dumps(report))
    else:
        unit = lm.token_unit(report["run_dir"])
        print(
            f"trained {report['steps']} steps -> {report['run_dir']}: valid loss {report['valid_loss']:.4f} "
            f"nats/{unit}, {report['valid_bpc']:.4f} bits/{unit} ({report['parameters']:,} parameters, "
            f"a vocabulary of {report['vocab_size']:,} {unit}s)"
        )
    return 0


def cmd_train_tag(args: argparse.Namespace) -> int:
    """Train a tagger that restores letter case; report its scores next to the rule baseline's."""
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _torchrun(args.nproc, args.argv)
    from rnnkit import tagging
    from rnnkit.training import distributed

    model_opts, train_opts = tagging.options(
        cell=args.cell, hidden=args.hidden, layers=args.layers, dropout=args.dropout,
        bidirectional=args.bidirectional, seq_len=args.seq_len, batch_size=args.batch, steps=args.steps,
        lr=args.lr, seed=args.seed, minutes=args.minutes, **_training_overrides(args),
    )  # fmt: skip
    _clip_off(args, train_opts)
    report = tagging.train_case_tagger(
        args.data, args.out, model_opts, train_opts, resume=args.resume, progress=not args.no_progress
    )
    if not distributed.is_main():
        return 0
    if args.json:
        print(json.dumps(report))
    else:
        b = report["baseline"]
        kind = "bidirectional" if report["bidirectional"] else "unidirectional"
        print(
            f"{kind} tagger, {report['steps']} steps -> {report['run_dir']}\n"
            f"  model: accuracy {report['accuracy']:.4f} (letters {report['letter_accuracy']:.4f}), "
            f"uppercase F1 {report['upper_f1']:.4f}\n"
            f"  rule:  accuracy {b['accuracy']:.4f} (letters {b['letter_accuracy']:.4f}), "
            f"uppercase F1 {b['upper_f1']:.4f}"
        )
    return 0


def cmd_train_spell(args: argparse.Namespace) -> int:
    """Train a decoder that spells the digit in an 8x8 image (one-to-many); report held-out exact match."""
    from rnnkit import spelling

    model_opts, train_opts = spelling.options(
        cell=args.cell, hidden=args.hidden, dropout=args.dropout, batch_size=args.batch, steps=args.steps,
        lr=args.lr, seed=args.seed, minutes=args.minutes, **_training_overrides(args),
    )  # fmt: skip
    _clip_off(args, train_opts)
    report = spelling.train_speller(
        args.out, model_opts, train_opts, resume=args.resume, progress=not args.no_progress
    )
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{report['steps']} steps -> {report['run_dir']}: exact match {report['exact_match']:.4f} on "
            f"{report['test_examples']} held-out images"
        )
        for e in report["errors"][:10]:
            print(f"  a {e['truth']} spelled {e['spelled']!r}")
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    """Gradient flow, Jacobians, gates, hidden-state PCA or unit activations, as a PNG and numbers."""
    from rnnkit.diagnostics.commands import diagnose

    units = None
    if args.units:
        try:
            units = [int(u) for u in args.units.split(",")]
        except ValueError:
            raise ValueError(f"--units must be comma-separated integers, got {args.units!r}") from None
    text = args.text
    if args.text_file:
        from rnnkit.data import read_text

        text = read_text(args.text_file)
    out = args.out or f"{args.kind}.png"
    report = diagnose(args.kind, out, run_dir=args.run, task=args.task, cell=args.cell, hidden=args.hidden,
                      length=args.length, batch=args.batch, seed=args.seed, layer=args.layer, units=units,
                      text=text, data=args.data)  # fmt: skip
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{args.kind}: {report['subject']} -> {report['plot']}")
        if "ratio" in report:
            print("  ||dL/dh_0|| / ||dL/dh_T|| per layer: " + ", ".join(f"{r:.3g}" for r in report["ratio"]))
        if "product_norm" in report:
            print(f"  ||ds_T/ds_0|| = {report['product_norm'][-1]:.3g}")
        for name, g in report.get("gates", {}).items():
            print(f"  {name}: mean {g['mean']:.3f}, {100 * g['saturated']:.1f}% saturated")
    return 0


def cmd_train_task(args: argparse.Namespace) -> int:
    """Train a fresh model on a synthetic long-range task; report its test score, the baseline's, and
    the gradient flow before and after."""
    from rnnkit import synthetic

    options = {k: v for k, v in _training_overrides(args).items() if v is not None}
    given = {"steps": args.steps, "batch_size": args.batch, "lr": args.lr, "seed": args.seed,
             "minutes": args.minutes}  # fmt: skip
    for key, value in given.items():
        if value is not None:
            options[key] = value
    _clip_off(args, options)
    report = synthetic.train_synthetic(
        args.task, args.out, cell=args.cell, hidden=args.hidden, length=args.length, train_options=options,
        resume=args.resume, progress=not args.no_progress,
    )  # fmt: skip
    if args.json:
        print(json.dumps(report))
    else:
        test = ", ".join(f"{k} {v:.4f}" for k, v in report["test"].items())
        base = ", ".join(f"{k} {v:.4f}" for k, v in report["baseline"].items())
        print(
            f"{args.cell} on {args.task} (T={args.length}), {report['steps']} steps: test {test} "
            f"(baseline {base}); ||dL/dh_0||/||dL/dh_T|| {report['gradient_ratio_before']:.3g} before, "
            f"{report['gradient_ratio_after']:.3g} after"
        )
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    """Restore the letter case of a text with a trained tagger."""
    from rnnkit import tagging
    from rnnkit.data.checks import check_text, read_stdin_text

    text = check_text(" ".join(args.text), "the text") if args.text else read_stdin_text()
    restored = tagging.restore_case(args.run_dir, text, which=args.checkpoint)
    print(json.dumps({"text": restored}) if args.json else restored)
    return 0


def cmd_train_classify(args: argparse.Namespace) -> int:
    """Train a sequence classifier on a .ts file; report train and test accuracy."""
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _torchrun(args.nproc, args.argv)
    from rnnkit import classify
    from rnnkit.training import distributed

    model_opts, train_opts = classify.options_from(
        args.model, cell=args.cell, hidden=args.hidden, layers=args.layers, bidirectional=args.bidirectional,
        pool=args.pool, dropout=args.dropout, input_noise=args.input_noise, batch_size=args.batch,
        steps=args.steps, lr=args.lr, seed=args.seed, minutes=args.minutes, **_training_overrides(args),
    )  # fmt: skip
    _clip_off(args, train_opts)
    train, test = (args.data, args.data) if args.data else (args.train, args.test)  # a name: both splits
    report = classify.train_classifier(
        train, test, args.out, model_opts, train_opts, epochs=args.epochs,
        valid_fraction=args.valid_fraction, resume=args.resume, progress=not args.no_progress,
    )  # fmt: skip
    report["run_dir"] = str(report["run_dir"])
    if not distributed.is_main():
        return 0  # rank 0 reports for all
    if args.json:
        print(json.dumps(report))
    else:
        test = f"test accuracy {report['test_accuracy']:.4f}, " if "test_accuracy" in report else ""
        print(
            f"trained {report['steps']} steps -> {report['run_dir']}: {test}train accuracy "
            f"{report['train_accuracy']:.4f} ({report['parameters']:,} parameters, weights of "
            f"{report['checkpoint']}, {report['elapsed_s']:.1f} s)"
        )
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Label the series of a .ts file with a trained classifier (and score them if labelled)."""
    from rnnkit import classify

    data = args.data_option or args.data
    if data is None:
        raise ValueError("predict needs the series: a .ts file, or --data NAME (a UEA problem's test split)")
    report = classify.predict(args.run_dir, data, which=args.checkpoint)
    if args.json:
        print(json.dumps(report))
        return 0
    print("\n".join(report["predictions"]))  # one label per series, in the file's order
    if "accuracy" in report:
        print(
            f"accuracy {report['accuracy']:.4f} ({report['correct']}/{report['series']}) on {report['file']}",
            file=sys.stderr,
        )
    return 0


def cmd_train_seq2seq(args: argparse.Namespace) -> int:
    """Train an encoder-decoder on a generated task; report the exact match on held-out pairs."""
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _torchrun(args.nproc, args.argv)
    from rnnkit import translation
    from rnnkit.training import distributed

    model_opts, train_opts, data_opts = translation.options_from(
        args.task, attention=args.attention, cell=args.cell, hidden=args.hidden, layers=args.layers,
        bidirectional=args.bidirectional, dropout=args.dropout, batch_size=args.batch, steps=args.steps,
        lr=args.lr, seed=args.seed, minutes=args.minutes, n_train=args.train_pairs, n_valid=args.valid_pairs,
        n_test=args.test_pairs, **{"max_digits" if args.task == "numbers" else "digits": args.digits},
        **_training_overrides(args),
    )  # fmt: skip
    _clip_off(args, train_opts)
    report = translation.train_seq2seq(
        args.task, args.out, model_opts, train_opts, data_opts, resume=args.resume,
        progress=not args.no_progress, beam=args.beam,
    )  # fmt: skip
    if not distributed.is_main():
        return 0  # rank 0 reports for all
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"trained {report['steps']} steps -> {report['run_dir']}: exact match "
            f"{report['exact_match']:.2%} "
            f"on {report['test_pairs']:,} held-out pairs ({report['parameters']:,} parameters, "
            f"{report['elapsed_s']:.0f} s)"
        )
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    """Decode one input with a trained seq2seq model; optionally draw its attention."""
    from rnnkit import translation

    trained = translation.load_seq2seq(args.run_dir, which=args.checkpoint)
    result = translation.translate(trained, args.text, beam=args.beam, alpha=args.alpha)
    plot = str(translation.plot_attention(result, args.plot)) if args.plot else None
    if args.json:
        print(json.dumps({"run_dir": str(trained.run_dir), "text": result.text,
                          "translation": result.translation, "tokens": result.output, "score": result.score,
                          "finished": result.output[-1:] == ["</s>"], "plot": plot}))  # fmt: skip
    else:
        print(result.translation)
        if plot:
            print(f"attention heat map: {plot}", file=sys.stderr)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    """Generate text from a trained language model's run directory, printed as it is sampled."""
    import torch

    from rnnkit import generate, lm

    trained = lm.load_language_model(args.run_dir, which=args.checkpoint)
    generator = torch.Generator().manual_seed(args.seed)
    # every option and the prime are checked here, before anything is printed
    pieces = generate.iter_text(
        trained.model, trained.tokenizer, args.prime, args.length, stop=args.stop,
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, greedy=args.greedy,
        generator=generator,
    )  # fmt: skip
    if args.json:  # one object at the end, nothing streamed
        new = list(pieces)
        text = args.prime + "".join(new)
        stopped = args.stop is not None and args.stop in text[len(args.prime) :]
        print(json.dumps({"run_dir": str(trained.run_dir), "prime": args.prime, "text": text,
                          "tokens": len(new), "stopped": stopped}))  # fmt: skip
        return 0
    try:
        sys.stdout.write(args.prime)
        for piece in pieces:  # one sampling step per piece: flush it before taking the next
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as other Unix tools do
        pieces.close()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush cannot fail again
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score any text with a trained language model (its own vocabulary)."""
    from rnnkit import lm

    report = lm.evaluate_text(args.run_dir, args.data, which=args.checkpoint)
    if args.json:
        print(json.dumps(report))
    else:
        unit = lm.token_unit(args.run_dir)
        print(
            f"{args.data}: {report['loss']:.4f} nats/{unit}, {report['bits_per_token']:.4f} bits/{unit}, "
            f"perplexity {report['perplexity']:.3f} over {report['tokens']:,} {unit}s "
            f"({report['unknown']} unknown)"
        )
    return 0


def cmd_ngram(args: argparse.Namespace) -> int:
    """Fit a Kneser-Ney character n-gram on one text and score another: the Markov baseline."""
    import torch

    from rnnkit.baselines import KneserNeyLM
    from rnnkit.data import CharTokenizer, read_text

    train, evaluation = read_text(args.train), read_text(args.eval)
    tokenizer = CharTokenizer.fit(train, allow_unknown=bool(set(evaluation) - set(train)))
    model = KneserNeyLM(order=args.order).fit(tokenizer.encode(train), vocab_size=tokenizer.vocab_size)
    report = model.evaluate(tokenizer.encode(evaluation, source=args.eval))
    report["order"] = args.order
    if args.generate:
        prime = tokenizer.encode(args.prime).tolist()
        new = model.sample(prime, args.generate, generator=torch.Generator().manual_seed(args.seed))
        report["text"] = args.prime + tokenizer.decode(new)
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{args.order}-gram: {report['loss']:.4f} nats/char, {report['bits_per_token']:.4f} bits/char, "
            f"perplexity {report['perplexity']:.3f} over {report['tokens']:,} characters"
        )
        if args.generate:
            print(report["text"])
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a trained language model to ONNX (ONNX Runtime) or torch.export; report the file."""
    from rnnkit import export

    try:
        report = export.export_run(args.run_dir, args.out, args.format, which=args.checkpoint)
    except ModuleNotFoundError as e:  # the [export] extra is not installed
        print(f"rnnkit: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report))
    else:
        inputs = ", ".join(s["name"] for s in report["inputs"])
        outputs = ", ".join(s["name"] for s in report["outputs"])
        kind = report["format"] + (f" opset {report['opset']}" if report["opset"] else "")
        print(f"{report['path']}: {kind}, {report['size']:,} bytes; ({inputs}) -> ({outputs})")
    return 0


def _torchrun(nproc: int, argv: Sequence[str]) -> int:
    """Run this same command in ``nproc`` processes under torchrun (DDP, gloo on CPU)."""
    rest = [a for i, a in enumerate(argv) if not _is_nproc(argv, i)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "rnnkit", *rest]  # fmt: skip
    return subprocess.call(cmd)


def _is_nproc(argv: Sequence[str], i: int) -> bool:
    a = argv[i]
    return a == "--nproc" or a.startswith("--nproc=") or (i > 0 and argv[i - 1] == "--nproc")


def _unescape(text: str | None) -> str | None:
    """Backslash escapes typed on a command line ('\\f', '\\n', '\\x1e') as the characters."""
    if text is None:
        return None
    try:
        return text.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError as e:
        raise ValueError(f"cannot read the escapes in {text!r}: {e}") from None


def cmd_plot(args: argparse.Namespace) -> int:
    """Draw a run's loss, gradient-norm and learning-rate curves as PNG files."""
    from rnnkit.training.plots import plot_run

    paths = [str(p) for p in plot_run(args.run_dir)]
    print(json.dumps({"plots": paths}) if args.json else "\n".join(paths))
    return 0


# --option -> TrainConfig field, for the options every training command shares
TRAINING_OPTIONS = {
    "optimizer": "optimizer", "weight_decay": "weight_decay", "momentum": "momentum",
    "schedule": "schedule", "warmup": "warmup_steps", "min_lr_ratio": "min_lr_ratio",
    "step_size": "step_size", "gamma": "gamma", "plateau_patience": "plateau_patience",
    "patience": "patience", "clip_norm": "clip_norm", "clip_value": "clip_value",
    "bptt_window": "bptt_window", "accumulate": "accumulate", "teacher_forcing": "teacher_forcing",
    "tf_k": "tf_k", "tf_c": "tf_c", "tf_floor": "tf_floor", "eval_every": "eval_every",
    "checkpoint_every": "checkpoint_every", "keep_last": "keep_last", "max_bad_steps": "max_bad_steps",
    "tensorboard": "tensorboard",
}  # fmt: skip


# rnnkit.training.schedules' names, repeated so that `rnnkit --help` does not import torch (a test checks)
OPTIMIZERS = ("adamw", "adam", "sgd", "rmsprop")
LR_SCHEDULES = ("constant", "cosine", "step", "plateau")
TEACHER_FORCING = ("always", "linear", "exponential", "inverse_sigmoid")


def _clip_off(args: argparse.Namespace, options: dict[str, object]) -> None:
    """--clip-norm 0 turns clipping off. The overrides cannot say so (a None there means "not given",
    so the preset's value stays), hence this, on the options after the preset is applied."""
    if args.clip_norm == 0:
        options["clip_norm"] = None


def _training_overrides(args: argparse.Namespace) -> dict[str, object]:
    # a command without an option (e.g. --bptt-window outside `train lm`) leaves its field alone
    out = {field: getattr(args, option, None) for option, field in TRAINING_OPTIONS.items()}
    if args.clip_norm == 0:
        out["clip_norm"] = None  # a None is no override: _clip_off turns it off after the preset
    if args.no_plots:
        out["plots"] = False
    return out


def add_training_options(p: argparse.ArgumentParser, bptt: bool = False, sampling: bool = False) -> None:
    """The run options (--minutes, --resume, --no-progress, --json) and the optimizer, schedule, clipping
    and checkpoint options of every training command; the truncated
    BPTT window only where there is a stream to truncate (``bptt``), and the teacher-forcing schedule only
    for models that feed back their own predictions (``sampling``)."""
    run = p.add_argument_group("the run")
    run.add_argument("--minutes", type=float, help="wall-time budget: stop (and save) after this long")
    run.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its latest checkpoint"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    run.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    run.add_argument(
        "--threads", type=int,
        help="torch threads for this process (default: torch's, one per core; 1 is often faster for "
        "small models or on a busy machine)",
    )  # fmt: skip
    g = p.add_argument_group("training")
    g.add_argument("--optimizer", choices=OPTIMIZERS, help="default adamw")
    g.add_argument("--weight-decay", type=float, help="AdamW's decoupled decay; an L2 term for the others")
    g.add_argument("--momentum", type=float, help="SGD's and RMSprop's (default 0.9)")
    g.add_argument("--schedule", choices=LR_SCHEDULES, help="learning rate after warmup (default constant)")
    g.add_argument("--warmup", type=int, help="linear warmup steps")
    g.add_argument("--min-lr-ratio", type=float, help="cosine's final lr, and plateau's floor, over lr")
    g.add_argument("--step-size", type=int, help="step schedule: decay every this many steps")
    g.add_argument("--gamma", type=float, help="step and plateau schedules: the decay factor (default 0.5)")
    g.add_argument("--plateau-patience", type=int, help="plateau: validations without a best before decay")
    g.add_argument("--patience", type=int, help="early stopping: validations without a new best")
    g.add_argument(
        "--clip-norm", type=float, help="clip the global gradient norm to this (0 = off; default 1)"
    )
    g.add_argument("--clip-value", type=float, help="clamp every gradient entry to +-this")
    if bptt:
        g.add_argument(
            "--bptt-window", type=int, help="k2 <= seq-len: backpropagate through the last k2 steps"
        )
        g.add_argument(
            "--accumulate", type=int,
            help="run each step's batch as N micro-batches of batch/N streams (same step, less memory)",
        )  # fmt: skip
    if sampling:
        g.add_argument(
            "--teacher-forcing", choices=TEACHER_FORCING, help="scheduled sampling (default always)"
        )
        g.add_argument("--tf-k", type=float, help="the teacher-forcing schedule's k")
        g.add_argument("--tf-c", type=float, help="the linear schedule's slope c")
        g.add_argument("--tf-floor", type=float, help="the teacher-forcing probability never goes below this")
    g.add_argument("--eval-every", type=int, help="validate every this many steps")
    g.add_argument("--checkpoint-every", type=int, help="save a checkpoint every this many steps")
    g.add_argument("--keep-last", type=int, help="checkpoints to keep (besides the best)")
    g.add_argument("--max-bad-steps", type=int, help="stop after this many non-finite steps in a row")
    g.add_argument("--no-plots", action="store_true", help="do not draw loss.png, grad_norm.png, lr.png")
    g.add_argument(
        "--tensorboard", action="store_true", default=None,
        help="also write TensorBoard event files (scalars, gradient histograms) to OUT/tensorboard",
    )  # fmt: skip
    g.add_argument("--nproc", type=int, default=1, help="train in this many processes (DDP via torchrun)")


def build_parser() -> argparse.ArgumentParser:
    from rnnkit import __version__  # no torch import: rnnkit's names load lazily

    parser = argparse.ArgumentParser(prog="rnnkit", description="Recurrent neural networks on PyTorch.")
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error (anywhere; or RNNKIT_DEBUG=1)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="build one model per cell family and print shapes")
    demo.add_argument("--seq-len", type=int, default=12, help="time steps T (default 12)")
    demo.add_argument("--batch", type=int, default=4, help="batch size B (default 4)")
    demo.add_argument("--features", type=int, default=8, help="input features F (default 8)")
    demo.add_argument("--hidden", type=int, default=16, help="hidden units H (default 16)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    demo.set_defaults(func=cmd_demo)

    train = sub.add_parser("train", help="train a model").add_subparsers(dest="task", required=True)
    tlm = train.add_parser("lm", help="a character- or word-level language model on a text corpus")
    tlm.add_argument("--data", help="a named dataset (tinyshakespeare, shakespeare) or a path (required)")
    tlm.add_argument("--out", required=True, help="the run directory to create (or resume)")
    tlm.add_argument("--preset", choices=["quick", "best"], help="a set of options (default: quick)")
    tlm.add_argument(
        "--tokenizer", choices=["char", "word"],
        help="one token per character (default), or per word or punctuation mark (with its leading space)",
    )  # fmt: skip
    tlm.add_argument(
        "--vocab-size", type=int,
        help="with --tokenizer word: keep the N most frequent tokens of the training text (two of them "
        "<unk>); rarer words become <unk> (default: every word)",
    )  # fmt: skip
    tlm.add_argument(
        "--reset-on", metavar="TOKEN",
        help="a token that starts each document (e.g. '\\f'; backslash escapes allowed): the hidden "
        "state restarts there instead of running from one document into the next",
    )  # fmt: skip
    tlm.add_argument(
        "--cell", choices=["lstm", "gru", "rnn", "mingru", "minlstm"],
        help="the recurrent cell (mingru, minlstm: the minimal RNNs of Feng et al. 2024, trained by a "
        "parallel scan)",
    )  # fmt: skip
    tlm.add_argument("--hidden", type=int, help="hidden (and embedding) size")
    tlm.add_argument("--layers", type=int, help="stacked recurrent layers")
    tlm.add_argument("--dropout", type=float, help="dropout between layers and before the readout")
    tlm.add_argument("--tie-weights", action="store_true", default=None, help="tie readout and embedding")
    tlm.add_argument("--seq-len", type=int, help="truncated BPTT window (tau)")
    tlm.add_argument("--batch", type=int, help="parallel streams per step")
    tlm.add_argument("--steps", type=int, help="optimizer steps in all")
    tlm.add_argument("--lr", type=float, help="AdamW learning rate")
    tlm.add_argument("--seed", type=int, help="random seed")
    add_training_options(tlm, bptt=True, sampling=True)
    tlm.set_defaults(func=cmd_train_lm)

    tc = train.add_parser("classify", help="a sequence classifier on labelled series (.ts files)")
    tc.add_argument("--train", help="a .ts file of labelled training series (or --data)")
    tc.add_argument("--test", help="a .ts file of labelled test series, scored once at the end")
    tc.add_argument(
        "--data", metavar="NAME",
        help="a UEA/UCR problem by name, e.g. JapaneseVowels: its train and test splits (offline for the "
        "ones the aeon package ships; others are downloaded through aeon)",
    )  # fmt: skip
    tc.add_argument("--out", required=True, help="the run directory to create (or resume)")
    tc.add_argument(
        "--model", choices=["rnn", "mlp"],
        help="rnn (default): recurrent stack + pooling; mlp: the baseline on the flattened padded series",
    )  # fmt: skip
    tc.add_argument("--cell", choices=["lstm", "gru", "rnn"], help="the recurrent cell (default gru)")
    tc.add_argument("--hidden", type=int, help="hidden size (default 96; mlp: units per layer, 500)")
    tc.add_argument("--layers", type=int, help="stacked recurrent layers (default 2; mlp: hidden layers, 3)")
    tc.add_argument(
        "--bidirectional", action=argparse.BooleanOptionalAction, default=None,
        help="read each series both ways (default: on)",
    )  # fmt: skip
    tc.add_argument(
        "--pool", choices=["last", "mean", "max", "attention"],
        help="how the outputs over time become one vector (default mean)",
    )  # fmt: skip
    tc.add_argument("--dropout", type=float, help="dropout between layers and before the readout")
    tc.add_argument(
        "--input-noise", type=float,
        help="training only: Gaussian noise of this std added to the normalised inputs (default 0)",
    )  # fmt: skip
    tc.add_argument(
        "--valid-fraction", type=float, default=0.0,
        help="hold out this fraction of each class for validation, the best checkpoint and --patience "
        "(default 0: validate on the training series)",
    )  # fmt: skip
    length = tc.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="optimizer steps in all (default 800; mlp: 1000)")
    length.add_argument("--epochs", type=float, help="passes over the training series (instead of --steps)")
    tc.add_argument("--batch", type=int, help="series per step (default 32)")
    tc.add_argument(
        "--lr", type=float,
        help="peak learning rate (default 5e-3: 30 warmup steps, then cosine to 0; mlp: 1e-3 constant)",
    )  # fmt: skip
    tc.add_argument("--seed", type=int, help="random seed: initial weights, shuffling, dropout (default 0)")
    add_training_options(tc)
    tc.set_defaults(func=cmd_train_classify)

    pr = sub.add_parser("predict", help="label series (.ts) with a trained classifier")
    pr.add_argument("run_dir", help="a run directory made by `rnnkit train classify`")
    pr.add_argument(
        "data", nargs="?", help="a .ts file; its class labels are optional (with them, accuracy is reported)"
    )
    pr.add_argument("--data", dest="data_option", metavar="NAME",
                    help="a UEA/UCR problem by name (e.g. JapaneseVowels): label and score its test split")
    pr.add_argument("--checkpoint", default="best", help="best (default), latest, or step-NNNNNN")
    pr.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    pr.set_defaults(func=cmd_predict)

    ts = train.add_parser(
        "seq2seq", help="an encoder-decoder on a generated task: number words English -> French, addition"
    )
    ts.add_argument(
        "--task", choices=["numbers", "addition"],
        help="numbers: 'three hundred and forty-two' -> 'trois cent quarante-deux' (words); addition: "
        "'123+45' -> '168' (characters)",
    )  # fmt: skip
    ts.add_argument("--out", required=True, help="the run directory to create (or resume)")
    ts.add_argument(
        "--attention", choices=["none", "additive", "dot", "general"],
        help="none: the context vector only (Sutskever 2014); additive (Bahdanau 2015, the default); dot "
        "or general (Luong 2015)",
    )  # fmt: skip
    ts.add_argument("--cell", choices=["lstm", "gru", "rnn"], help="the recurrent cell (default lstm)")
    ts.add_argument("--hidden", type=int, help="hidden (and embedding) size (default 128)")
    ts.add_argument("--layers", type=int, help="stacked layers of the encoder and the decoder (default 1)")
    ts.add_argument("--bidirectional", action="store_true", default=None, help="a bidirectional encoder")
    ts.add_argument("--dropout", type=float, help="dropout between layers and before the readout")
    ts.add_argument("--batch", type=int, help="pairs per step (default 64)")
    ts.add_argument("--steps", type=int, help="optimizer steps in all")
    ts.add_argument("--lr", type=float, help="AdamW learning rate")
    ts.add_argument("--seed", type=int, help="random seed: the pairs drawn, the weights, the shuffling")
    ts.add_argument("--train-pairs", type=int, help="training pairs to draw (numbers 40000, addition 45000)")
    ts.add_argument(
        "--digits", type=int,
        help="numbers: below 10^N (default 6, up to 12 = hundreds of billions); addition: operands of up to "
        "N digits (default 3)",
    )  # fmt: skip
    ts.add_argument("--valid-pairs", type=int, help="validation pairs, scored during training (1000)")
    ts.add_argument("--test-pairs", type=int, help="held-out test pairs (numbers 2000, addition 4000)")
    ts.add_argument("--beam", type=int, default=1, help="test-set beam width (default 1)")
    add_training_options(ts, sampling=True)
    ts.set_defaults(func=cmd_train_seq2seq)

    tr = sub.add_parser("translate", help="decode one input with a model from `rnnkit train seq2seq`")
    tr.add_argument("run_dir", help="a run directory made by `rnnkit train seq2seq`")
    tr.add_argument("text", help="the input, written as the training sources are")
    tr.add_argument("--beam", type=int, default=1, help="beam width (default 1: greedy)")
    tr.add_argument("--alpha", type=float, default=0.6, help="beam search's length penalty (0.6)")
    tr.add_argument("--plot", metavar="FILE", help="draw the attention weights as a heat map (PNG)")
    tr.add_argument("--checkpoint", default="best", help="best (default), latest, or step-NNNNNN")
    tr.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    tr.set_defaults(func=cmd_translate)

    ttag = train.add_parser("tag", help="a tagger that restores letter case (many-to-many)")
    ttag.add_argument("--data", default="shakespeare", help="a named dataset or a path (default shakespeare)")
    ttag.add_argument("--out", required=True, help="the run directory to create (or resume)")
    ttag.add_argument("--cell", choices=["lstm", "gru", "rnn"], help="the recurrent cell (default lstm)")
    ttag.add_argument("--hidden", type=int, help="hidden size per direction (default 128)")
    ttag.add_argument("--layers", type=int, help="stacked recurrent layers")
    ttag.add_argument("--dropout", type=float, help="dropout between layers and before the readout")
    direction = ttag.add_mutually_exclusive_group()
    direction.add_argument(
        "--bidirectional", action="store_true", default=None, help="read both ways (default)"
    )
    direction.add_argument("--unidirectional", dest="bidirectional", action="store_false",
                           help="read left to right only")  # fmt: skip
    ttag.add_argument("--seq-len", type=int, help="training window length (default 128)")
    ttag.add_argument("--batch", type=int, help="windows per step")
    ttag.add_argument("--steps", type=int, help="optimizer steps in all (default 3000)")
    ttag.add_argument("--lr", type=float, help="learning rate")
    ttag.add_argument("--seed", type=int, help="random seed")
    add_training_options(ttag)
    ttag.set_defaults(func=cmd_train_tag)

    tsp = train.add_parser("spell", help="spell the digit in an 8x8 image, letter by letter (one-to-many)")
    tsp.add_argument("--out", required=True, help="the run directory to create (or resume)")
    tsp.add_argument("--cell", choices=["lstm", "gru", "rnn"], help="the decoder's cell (default gru)")
    tsp.add_argument("--hidden", type=int, help="code and decoder size (default 128)")
    tsp.add_argument("--dropout", type=float, help="dropout in the encoder")
    tsp.add_argument("--batch", type=int, help="images per step")
    tsp.add_argument("--steps", type=int, help="optimizer steps in all (default 1000)")
    tsp.add_argument("--lr", type=float, help="learning rate")
    tsp.add_argument("--seed", type=int, help="random seed")
    add_training_options(tsp, sampling=True)
    tsp.set_defaults(func=cmd_train_spell)

    tt = train.add_parser("task", help="a fresh model on a synthetic long-range task (adding, copy, ...)")
    tt.add_argument("--task", required=True, choices=["adding", "copy", "binary_addition", "parity", "sine"])
    tt.add_argument("--out", required=True, help="the run directory to create (or resume)")
    tt.add_argument("--cell", default="lstm", choices=["lstm", "gru", "rnn", "irnn"], help="default lstm")
    tt.add_argument("--hidden", type=int, default=64, help="hidden units (default 64)")
    tt.add_argument("--length", type=int, default=100, help="sequence length T (copy: the delay)")
    tt.add_argument("--batch", type=int, help="sequences per step (default 64)")
    tt.add_argument("--steps", type=int, help="optimizer steps (default 2000)")
    tt.add_argument("--lr", type=float, help="learning rate (default 1e-3)")
    tt.add_argument("--seed", type=int, help="random seed")
    add_training_options(tt, sampling=True)
    tt.set_defaults(func=cmd_train_task)

    tag = sub.add_parser("tag", help="restore the letter case of a text with a trained tagger")
    tag.add_argument("run_dir", help="a run directory made by `rnnkit train tag`")
    tag.add_argument("text", nargs="*", help="the text (default: read standard input)")
    tag.add_argument("--checkpoint", default="best", help="best (default), latest, or step-NNNNNN")
    tag.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    tag.set_defaults(func=cmd_tag)

    dg = sub.add_parser("diagnose", help="look inside an RNN: gradient flow, Jacobians, gates, PCA, units")
    dg.add_argument("kind", choices=["gradients", "jacobian", "gates", "pca", "units"])
    dg.add_argument("--run", help="a language-model run directory, or a classifier's (pca by class)")
    dg.add_argument("--data", help="with a classifier's --run: the .ts series (default its training set)")
    dg.add_argument("--task", choices=["adding", "copy", "binary_addition", "parity", "sine"],
                    help="a fresh model on a synthetic task instead of a run")  # fmt: skip
    dg.add_argument("--cell", default="lstm", choices=["lstm", "gru", "rnn", "irnn"], help="with --task")
    dg.add_argument("--hidden", type=int, default=64, help="with --task (default 64)")
    dg.add_argument("--length", type=int, default=100, help="with --task: sequence length T (default 100)")
    dg.add_argument("--batch", type=int, default=32, help="with --task: batch size (default 32)")
    dg.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    dg.add_argument("--layer", type=int, help="which layer (default 0; a classifier's pca: the top one)")
    dg.add_argument("--units", help="units: which hidden units, e.g. 3,17,42 (default the first 4)")
    dg.add_argument("--text", help="with --run: the text to read (default a passage of Romeo and Juliet)")
    dg.add_argument("--text-file", help="with --run: read the text from this file")
    dg.add_argument("--out", help="the PNG to write (default KIND.png)")
    dg.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    dg.set_defaults(func=cmd_diagnose)

    plot = sub.add_parser("plot", help="draw a run's loss, gradient-norm and learning-rate curves (PNG)")
    plot.add_argument("run_dir", help="a run directory (with metrics.jsonl)")
    plot.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    plot.set_defaults(func=cmd_plot)

    sample = sub.add_parser(
        "generate", aliases=["sample"], help="generate text from a trained language model"
    )
    sample.add_argument("run_dir", help="a run directory made by `rnnkit train lm`")
    sample.add_argument("--prime", default="\n", help="text to start from (default: a newline)")
    sample.add_argument(
        "--length", type=int, default=500, help="tokens to generate: characters, or words (default 500)"
    )
    sample.add_argument("--temperature", type=float, default=0.8, help="softmax temperature (default 0.8)")
    sample.add_argument("--top-k", type=int, help="sample from the k most likely tokens only")
    sample.add_argument("--top-p", type=float, help="nucleus sampling: the smallest set with this mass")
    sample.add_argument("--greedy", action="store_true", help="always take the most likely token")
    sample.add_argument(
        "--stop", metavar="STRING",
        help="stop as soon as the generated text contains STRING (printed through its end)",
    )  # fmt: skip
    sample.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sample.add_argument("--checkpoint", default="best", help="best (default), latest, or step-NNNNNN")
    sample.add_argument(
        "--json", action="store_true",
        help="print one JSON object on stdout at the end (text, tokens, stopped) instead of streaming",
    )  # fmt: skip
    sample.set_defaults(func=cmd_sample)

    ex = sub.add_parser("export", help="export a trained language model to ONNX or torch.export")
    ex.add_argument("run_dir", help="a run directory made by `rnnkit train lm`")
    ex.add_argument(
        "--format", choices=["onnx", "torch"], default="onnx",
        help="onnx (default: ONNX's LSTM/GRU/RNN operators, for ONNX Runtime) or torch (torch.export, .pt2)",
    )  # fmt: skip
    ex.add_argument("--out", required=True, help="the file to write (atomically), e.g. model.onnx")
    ex.add_argument("--checkpoint", default="best", help="best (default), latest, or step-NNNNNN")
    ex.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ex.set_defaults(func=cmd_export)

    ev = sub.add_parser("evaluate", help="score a text with a trained language model")
    ev.add_argument("run_dir", help="a run directory made by `rnnkit train lm`")
    ev.add_argument("--data", required=True, help="a text file to score")
    ev.add_argument("--checkpoint", default="best", help="best (default), latest, or step-NNNNNN")
    ev.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ev.set_defaults(func=cmd_evaluate)

    ng = sub.add_parser("ngram", help="Kneser-Ney character n-gram baseline: fit on one text, score another")
    ng.add_argument("--order", type=int, default=6, help="n (default 6)")
    ng.add_argument("--train", required=True, help="text file to fit on")
    ng.add_argument("--eval", required=True, help="text file to score")
    ng.add_argument("--generate", type=int, default=0, help="also sample this many characters")
    ng.add_argument("--prime", default="\n", help="text to start sampling from (default: a newline)")
    ng.add_argument("--seed", type=int, default=0, help="random seed for sampling")
    ng.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ng.set_defaults(func=cmd_ngram)

    bench = sub.add_parser("bench", help="time rnnkit against torch.nn and a Python loop, side by side")
    bench.add_argument("--quick", action="store_true", help="one grid point (T=100, B=64, H=256)")
    bench.add_argument("--model", action="append", help="only this model (repeatable), e.g. LSTM, GRU")
    bench.add_argument("--repeats", type=int, default=7, help="timed runs per contender (median; default 7)")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    bench.add_argument(
        "--no-stream", action="store_true", help="skip the streaming rows (one step at B=1, H=512, 2 layers)"
    )
    bench.add_argument(
        "--options",
        action="store_true",
        help="also time each regularisation/state option of LSTM and GRU against the same layer without it "
        "(training, fwd+bwd, T=100, B=64, H=256)",
    )
    bench.add_argument("--options-only", action="store_true", help="only the option rows (implies --options)")
    bench.add_argument(
        "--python-loops",
        action="store_true",
        help="also time rnnkit with its compiled loops switched off (what kernels/compiled.py gains)",
    )
    bench.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from rnnkit.boundary import debug_requested, run_command

    debug, argv = debug_requested(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    args.argv = argv
    for name in ("seq_len", "batch", "features", "hidden", "repeats", "layers", "steps", "order", "nproc",
                 "beam", "train_pairs", "valid_pairs", "test_pairs", "digits", "threads"):  # fmt: skip
        value = getattr(args, name, None)
        if value is not None and value < 1:
            print(f"rnnkit: error: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    if getattr(args, "threads", None) is not None:
        import torch

        torch.set_num_threads(args.threads)
    return run_command(args.func, args, debug)  # one line on stderr for any failure; exit 1, 2 or 130


if __name__ == "__main__":
    sys.exit(main())
