"""The command line: the README's main job runs and reports what it built."""

import json
import subprocess
import sys

import pytest

from rnnkit.cli import main


def test_demo_json_reports_shapes(capsys):
    assert main(["demo", "--json", "--seq-len", "5", "--batch", "3", "--features", "4", "--hidden", "6"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["input"] == [3, 5, 4]
    assert len(report["lengths"]) == 3 and all(1 <= n <= 5 for n in report["lengths"])
    lstm = report["models"]["rnnkit.nn.LSTM (2 layers, bidirectional)"]
    assert lstm["output"] == [3, 5, 12]  # 2 directions * hidden 6
    assert lstm["state"] == [[4, 3, 6], [4, 3, 6]]  # (layers * directions, B, H) for h and c
    # parameter count of a 2-layer bidirectional LSTM, as torch counts it
    expected = sum(p.numel() for p in __import__("torch").nn.LSTM(4, 6, 2, bidirectional=True).parameters())
    assert lstm["parameters"] == expected


def test_demo_text_and_bad_option(capsys):
    assert main(["demo", "--seq-len", "3"]) == 0
    assert "output" in capsys.readouterr().out
    assert main(["demo", "--hidden", "0"]) == 2
    assert "--hidden must be >= 1" in capsys.readouterr().err


def test_console_script_help_is_fast_and_works():
    out = subprocess.run(
        [sys.executable, "-m", "rnnkit.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "demo" in out.stdout


@pytest.mark.parametrize("argv", [["--version"]])
def test_version(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    assert "rnnkit 0.1.0" in capsys.readouterr().out


def test_help_does_not_import_torch():
    code = (
        "import sys\nfrom rnnkit.cli import build_parser\n"
        "build_parser().format_help()\nassert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lazy_exports_resolve():
    import rnnkit

    for name in rnnkit.__all__:
        assert getattr(rnnkit, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rnnkit.nope  # noqa: B018


def test_all_matches_lazy_table():
    import rnnkit

    assert sorted(rnnkit.__all__) == sorted([*rnnkit._EXPORTS, "nn"])
