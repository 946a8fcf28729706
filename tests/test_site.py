"""The course website: tools/build_site.py builds it offline, tools/check_site.py checks it
in headless Chromium.

Needs the packages of requirements-site.txt (skipped without them); the browser check needs
Debian's Chromium too (`apt-get install chromium`; skipped without it, except in CI). The
site is built from the notebooks as they are when the test runs, never executed.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("myst_nb", reason="the site needs requirements-site.txt")
pytest.importorskip("sphinx_book_theme", reason="the site needs requirements-site.txt")

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
sys.path.insert(0, str(ROOT))

import helpers  # noqa: E402


def build(out, root=ROOT):
    result = subprocess.run(
        [sys.executable, str(TOOLS / "build_site.py"), "--out", str(out), "--root", str(root)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return out / "html"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return build(tmp_path_factory.mktemp("site"))


def staged(html):
    return sorted((html.parent / "source" / "notebooks").glob("*.ipynb"))


def image_outputs(path):
    nb = json.loads(path.read_text("utf-8"))
    return sum(
        any(k.startswith("image/") for k in o.get("data", {}))
        for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
    )  # fmt: skip


def test_pages_of_the_series_in_order(site):
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert [p.name for p in staged(site)] == [p.name for p in notebooks]
    index = (site / "index.html").read_text("utf-8")
    assert "<h1>Gaussian mixture models on MNIST" in index  # the README
    links = re.findall(r'class="reference internal" href="(notebooks/[\w.-]+\.html)"', index)
    assert list(dict.fromkeys(links)) == [f"notebooks/{p.stem}.html" for p in notebooks]
    for path in notebooks:
        assert (site / "notebooks" / f"{path.stem}.html").is_file()


def test_notebook_pages_show_the_committed_outputs_offline(site):
    mathjax = site / "_static" / "mathjax" / "es5"
    assert (mathjax / "tex-chtml.js").is_file()
    assert any((mathjax / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    for path in staged(site):
        html = (site / "notebooks" / f"{path.stem}.html").read_text("utf-8")
        figures = re.findall(r'<img [^>]*src="\.\./_images/([\w.-]+)"', html)
        assert len(figures) == image_outputs(path), path.name  # every figure, none re-made
        assert all((site / "_images" / name).is_file() for name in figures)
        assert 'src="../_static/mathjax/es5/tex-chtml.js"' in html
        # no resource from elsewhere: every script, style sheet and image is local
        assert not re.findall(r'<(?:script|img|link)\b[^>]*(?:src|href)="(?:https?:)?//', html)
        assert 'class="math' in html
        # solutions folded: each code solution in a closed <details>, each written one too
        nb = json.loads(path.read_text("utf-8"))
        solutions = [c for c in nb["cells"] if "solution" in c["metadata"].get("tags", [])]
        code = sum(c["cell_type"] == "code" for c in solutions)
        assert html.count('<details class="admonition hide above-input">') == code
        assert html.count("sd-dropdown") >= len(solutions) - code
        assert "<details open" not in html


def test_api_page_documents_every_public_name(site):
    html = (site / "api.html").read_text("utf-8")
    for name in helpers.__all__:
        assert f'id="helpers.{name}"' in html, name
    assert "Parameters" in html and "Returns" in html  # numpydoc sections rendered


def test_colab_launch_buttons_once_published(site, tmp_path):
    for page in staged(site):  # unpublished: none
        assert "colab.research.google.com" not in (
            site / "notebooks" / f"{page.stem}.html"
        ).read_text("utf-8")
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "notebooks", repo / "notebooks", ignore=shutil.ignore_patterns(".*"))
    for name in ("README.md", "helpers.py"):
        shutil.copyfile(ROOT / name, repo / name)
    published = subprocess.run(
        [sys.executable, str(TOOLS / "publish.py"), "https://github.com/example/gmm-mnist",
         "--branch", "dev", "--root", str(repo)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    html = build(tmp_path / "site", root=repo)
    colab = "https://colab.research.google.com/github/example/gmm-mnist/blob/dev/notebooks"
    for page in staged(html):
        text = (html / "notebooks" / f"{page.stem}.html").read_text("utf-8")
        assert f'href="{colab}/{page.name}"' in text  # launch button and the badge's link
        assert "colab-badge.svg" not in text  # the badge's image lives on Colab's server
    index = (html / "index.html").read_text("utf-8")
    assert index.count(f"{colab}/") >= len(staged(html))


def browser_available():
    try:
        import playwright  # noqa: F401
    except ImportError:
        return False
    return Path(CHROMIUM).is_file()


needs_browser = pytest.mark.skipif(
    not browser_available() and os.environ.get("CI", "").lower() != "true",
    reason="the browser check needs Chromium (apt-get install chromium) and playwright",
)


def check(html, screens, *args):
    return subprocess.run(
        [sys.executable, str(TOOLS / "check_site.py"), "--site", str(html), "--screens",
         str(screens), "--chromium", CHROMIUM, *args],
        capture_output=True, text=True,
    )  # fmt: skip


@needs_browser
def test_browser_shows_figures_and_typeset_mathematics(site, tmp_path):
    result = check(site, tmp_path / "screens")
    assert result.returncode == 0, result.stdout + result.stderr
    n = len(staged(site))
    assert f"{n + 2} pages ok, 0 failed" in result.stdout
    for page in staged(site):
        line = next(x for x in result.stdout.splitlines() if x.startswith(f"notebooks/{page.stem}"))
        assert f"{image_outputs(page)} figures loaded" in line and "0 external requests" in line
        assert (tmp_path / "screens" / f"{page.stem}.png").stat().st_size > 10_000


@needs_browser
def test_browser_check_fails_without_mathjax(site, tmp_path):
    broken = tmp_path / "html"
    shutil.copytree(site, broken)
    shutil.rmtree(broken / "_static" / "mathjax")
    one = tmp_path / "one"
    one.mkdir()
    shutil.copyfile(staged(site)[1], one / staged(site)[1].name)
    result = check(broken, tmp_path / "screens", "--notebooks", str(one))
    assert result.returncode == 1
    assert "no typeset mathematics (no mjx-container)" in result.stdout
