"""The explorer in a real browser: headless Chromium (Debian's package, driven by playwright; no browser
is downloaded) loads the page of `rnnkit serve` on a tiny trained run, generates text, colours a unit,
runs a hypothesis search, projects the states and draws the curves, with no JavaScript error.

Screenshots go to the test's folder, or to $RNNKIT_SCREENSHOTS (the README's come from there, taken on
the run in $RNNKIT_SERVE_RUN when set). Skips when chromium or playwright is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is missing (apt-get install chromium)")
pytest.importorskip("flask", reason="the explorer needs the web extra: pip install 'rnnkit[web]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is missing (pip install playwright)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`rnnkit serve` on a tiny run trained here (or on $RNNKIT_SERVE_RUN), on a free port."""
    from test_serve import CORPUS, train_tiny_lm

    tmp = tmp_path_factory.mktemp("browser")
    if os.environ.get("RNNKIT_SERVE_RUN"):
        run = Path(os.environ["RNNKIT_SERVE_RUN"])
    else:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        run = train_tiny_lm(tmp)
        torch.set_num_threads(threads)
    sample = tmp / "sample.txt"
    sample.write_text(CORPUS[:400])
    cmd = [sys.executable, "-m", "rnnkit", "serve", str(run), "--port", "0", "--text", str(sample)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert "http://127.0.0.1:" in line, line + proc.stderr.read()
        yield line.split(" at ")[1].split()[0]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def page(tmp_path):
    """A fresh Chromium profile; every page error and console error is collected in page.errors."""
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 860},
        )  # fmt: skip
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda e: page.errors.append(f"page error: {e}"))
        page.on("console", lambda m: m.type == "error" and page.errors.append(f"console: {m.text}"))
        page.set_default_timeout(60_000)
        yield page
        context.close()


def shot(page, tmp_path, name):
    folder = Path(os.environ.get("RNNKIT_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name), full_page=False)
    assert (folder / name).stat().st_size > 5000


def threshold_for_a_hypothesis(server, start, end):
    """A threshold at which some unit of layer 0 is on all through [start, end) and off just before."""
    import json
    import urllib.request

    from test_serve import CORPUS

    text = CORPUS[:400]
    body = json.dumps({"text": text, "layers": [0], "fields": ["h"]}).encode()
    request = urllib.request.Request(server + "api/trace", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        h = torch.tensor(json.loads(response.read())["layers"][0]["h"])  # (N, H)
    lows = h[start:end].min(0).values  # (H,)
    gap, unit = (lows - h[start - 1]).max(0)
    assert gap > 3e-4, "no unit is on in the span and off before it"  # the API rounds to 4 decimals
    return float(lows[unit]) - 1e-4


def test_the_explorer_in_chromium(server, page, tmp_path):
    page.goto(server)
    page.wait_for_function("document.getElementById('run-info').textContent.includes('lm run')")

    # generate: text streams in; once done, hovering a token shows the top next-token probabilities
    page.fill("#prime", "the ")
    page.fill("#length", "60")
    page.click("#generate-btn")
    page.wait_for_function("document.querySelectorAll('#gen-out span.gen[data-p]').length === 60")
    page.hover("#gen-out span.gen >> nth=5")
    assert page.is_visible("#tip") and "%" in page.inner_text("#tip")
    shot(page, tmp_path, "serve_generate.png")

    # units over text: the named file's text, traced and coloured by a unit; then units ranked by a pattern
    page.click("nav button[data-tab=units]")
    page.select_option("#text-source", "sample.txt")
    page.wait_for_function("document.getElementById('text').value.startsWith('the quick')")
    page.click("#trace-btn")
    page.wait_for_function("document.querySelectorAll('#units-text span').length === 400")
    page.fill("#unit", "3")
    page.dispatch_event("#unit", "change")
    colours = page.eval_on_selector_all("#units-text span", "spans => spans.map(s => s.style.background)")
    assert len(set(colours)) > 10  # a unit's values differ along the text
    page.select_option("#sort", "correlation")
    page.fill("#pattern", r"\(.*?\)")
    page.click("#rank-btn")
    page.wait_for_function("document.querySelectorAll('#unit-list li').length > 0")
    assert page.inner_text("#unit-list li >> nth=0").startswith("unit ")
    shot(page, tmp_path, "serve_units.png")

    # hypothesis search: click a span's first token, shift-click its last, search
    start, end = 55, 59  # "(qui"
    page.click("nav button[data-tab=search]")
    page.fill("#threshold", str(threshold_for_a_hypothesis(server, start, end) - 1e-4))
    page.click(f"#search-text span[data-i='{start}']")
    page.click(f"#search-text span[data-i='{end - 1}']", modifiers=["Shift"])
    assert page.input_value("#sel-start") == str(start) and page.input_value("#sel-end") == str(end)
    page.click("#search-btn")
    page.wait_for_function("document.getElementById('search-units').textContent.includes('units on in')")
    page.wait_for_function("document.querySelectorAll('#search-matches li').length > 0")
    assert page.locator("#search-text span.sel").count() == end - start
    assert page.locator("#search-text span.match").count() >= end - start
    shot(page, tmp_path, "serve_search.png")

    # state space and training curves
    page.click("nav button[data-tab=space]")
    page.click("#pca-btn")
    page.wait_for_function("document.querySelectorAll('#pca-plot circle.point').length === 400")
    shot(page, tmp_path, "serve_pca.png")
    page.click("nav button[data-tab=curves]")
    page.wait_for_function("document.querySelectorAll('#curves svg').length === 3")
    shot(page, tmp_path, "serve_curves.png")

    assert page.errors == []

    # a refused request shows its message in the page, not as a script error
    page.click("nav button[data-tab=units]")
    page.fill("#text", "naïve")  # "ï" is in neither vocabulary
    page.click("#trace-btn")
    page.wait_for_function("!document.getElementById('error').hidden")
    assert "not in the vocabulary" in page.inner_text("#error")
    assert all("status of 400" in e for e in page.errors), page.errors  # the browser logs the 400 itself
