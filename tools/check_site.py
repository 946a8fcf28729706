"""Check the built website in a real browser: figures shown, mathematics typeset, offline.

    python tools/check_site.py [--site _build/site/html] [--screens DIR] [--chromium PATH]

needs Debian's Chromium (``apt-get install -y chromium``) and the Python package
playwright (requirements-site.txt), which drives that Chromium: no browser is downloaded.
Serves the site on 127.0.0.1 and opens every notebook page, then the index and API pages,
in headless Chromium with a fresh profile, and checks on each notebook page, after its
scripts ran:

- figures: as many figure images as the notebook has image outputs, and every image on
  the page loaded (``complete`` and ``naturalWidth > 0``);
- mathematics: MathJax typeset the page (``mjx-container`` elements present, every math
  element of the page holds one, no ``mjx-merror``) and no raw ``$$``, ``\\(`` or ``\\[``
  is left in the text outside code;
- solutions folded: every solution sits in a closed ``<details>`` (its code is not in the
  visible text);
- offline: the page requested nothing but the local server (no CDN, no font service);
- Colab: a launch link to colab.research.google.com once the series is published
  (``HELPERS_URL`` set by tools/publish.py), none before.

What each page should show is read from the notebooks the site was built from (those that
build_site.py staged beside it). Writes screenshots of each page (solutions folded) to DIR (default: screens/ beside the
site): NAME.png (the top), NAME.full.png (the whole page), NAME.figure.png and NAME.math.png
(the first figure and the first displayed equation, centred). Prints one line per page; exits 1 if any check fails.
"""

import argparse
import functools
import http.server
import json
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from publish import published_repository  # noqa: E402

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Everything the page shows, measured once its scripts (MathJax included) have run.
MEASURE = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const details = [...document.querySelectorAll("details")];
  const visibleText = document.body.innerText;
  const solutionsFolded = details.filter(d => !d.open).length;
  const waitImage = img => img.complete ? null
    : new Promise(done => { img.addEventListener("load", done); img.addEventListener("error", done); });
  await Promise.all([...document.images].map(waitImage));
  const images = [...document.images].map(img => ({
    src: img.getAttribute("src"), complete: img.complete, width: img.naturalWidth,
  }));
  const rawText = [];
  const walker = document.createTreeWalker(document.querySelector("main") || document.body,
                                           NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentElement.closest("pre, code, script, style, mjx-container, textarea")) continue;
    if (/\\$\\$|\\\\\\(|\\\\\\[/.test(node.textContent)) rawText.push(node.textContent.trim().slice(0, 80));
  }
  const mathElements = [...document.querySelectorAll(".math")];
  return {
    title: document.title,
    images,
    mjx: document.querySelectorAll("mjx-container").length,
    mathElements: mathElements.length,
    untypeset: mathElements.filter(e => !e.querySelector("mjx-container")).length,
    merror: document.querySelectorAll("mjx-merror").length,
    rawText,
    details: details.length,
    solutionsFolded,
    solutionCodeVisible: /#\s*@title Solution/.test(visibleText),
    colabLinks: [...document.querySelectorAll("a[href^='https://colab.research.google.com/']")]
      .map(a => a.href),
  };
}"""


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def record_external(base, found, request):
    """Note the URL of `request` in `found` unless it is served by the local server."""
    if not request.url.startswith((base, "data:", "blob:")):
        found.append(request.url)


def serve(folder):
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def expected_figures(path):
    """Number of image outputs of the committed notebook at `path`."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    return sum(
        any(key.startswith("image/") for key in output.get("data", {}))
        for cell in nb["cells"]
        if cell["cell_type"] == "code"
        for output in cell.get("outputs", [])
    )


def solution_cells(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    return sum("solution" in c.get("metadata", {}).get("tags", []) for c in nb["cells"])


def has_math(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    return any(c["cell_type"] == "markdown" and "$" in "".join(c["source"]) for c in nb["cells"])


def problems_of(page, expected, published):
    """The failed checks of one measured page, as sentences (empty when all pass)."""
    problems = []
    figures = [i for i in page["images"] if "_images/" in (i["src"] or "")]
    broken = [i["src"] for i in page["images"] if not (i["complete"] and i["width"] > 0)]
    if expected.get("figures") is not None and len(figures) != expected["figures"]:
        problems.append(
            f"{len(figures)} figures on the page, the notebook has {expected['figures']}"
        )
    if broken:
        problems.append(f"images not loaded: {broken[:3]}")
    if expected.get("math"):
        if page["mjx"] == 0:
            problems.append("no typeset mathematics (no mjx-container)")
        if page["untypeset"]:
            problems.append(f"{page['untypeset']} math elements not typeset")
    if page["merror"]:
        problems.append(f"{page['merror']} MathJax errors (mjx-merror)")
    if page["rawText"]:
        problems.append(f"raw TeX left in the text: {page['rawText'][:2]}")
    if expected.get("solutions"):
        if page["solutionsFolded"] < expected["solutions"]:
            problems.append(
                f"{page['solutionsFolded']} folded blocks for {expected['solutions']} solution cells"
            )
        if page["solutionCodeVisible"]:
            problems.append("solution code visible without unfolding")
    if page["external"]:
        problems.append(f"requests beyond the local server: {page['external'][:3]}")
    if expected.get("colab") is not None:
        links = page["colabLinks"]
        if expected["colab"] and expected["colab"] not in links:
            problems.append(f"no Colab launch link {expected['colab']}")
        if not expected["colab"] and links:
            problems.append(f"Colab links before publication: {links[:2]}")
    return problems


def check(site, screens, chromium, notebooks_dir):
    """Open every page of the site at `site`; returns (report lines, number of failures)."""
    from playwright.sync_api import sync_playwright

    notebooks = sorted(notebooks_dir.glob("*.ipynb"))
    published = published_repository(notebooks_dir)
    pages = []
    for path in notebooks:
        colab = ""
        if published is not None:
            repo, branch = published
            colab = (
                f"https://colab.research.google.com/github/{repo.removeprefix('https://github.com/')}"
                f"/blob/{branch}/notebooks/{path.name}"
            )
        pages.append((
            f"notebooks/{path.stem}.html",
            {"figures": expected_figures(path), "math": has_math(path),
             "solutions": solution_cells(path), "colab": colab},
        ))  # fmt: skip
    pages += [("index.html", {}), ("api.html", {})]
    screens.mkdir(parents=True, exist_ok=True)
    server = serve(site)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    lines, failures = [], 0
    try:
        with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
            context = pw.chromium.launch_persistent_context(
                profile, executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
                viewport={"width": 1280, "height": 900},
            )  # fmt: skip
            for relative, expected in pages:
                page = context.new_page()
                external = []
                page.on("request", functools.partial(record_external, base, external))
                response = page.goto(base + relative, wait_until="load")
                if response is None or not response.ok:
                    lines.append(f"{relative}: FAIL (HTTP {response and response.status})")
                    failures += 1
                    page.close()
                    continue
                measured = page.evaluate(MEASURE)
                page.wait_for_timeout(300)  # late requests (fonts, lazy components) show up too
                measured["external"] = external
                problems = problems_of(measured, expected, published)
                shot = screens / (Path(relative).stem + ".png")
                page.screenshot(path=str(shot))  # the top of the page, as a reader lands
                page.screenshot(path=str(shot.with_suffix(".full.png")), full_page=True)
                for what, selector in (("figure", "img[src*='_images/']"), ("math", "div.math")):
                    first = page.locator(selector).first
                    if first.count():
                        first.evaluate("e => e.scrollIntoView({block: 'center'})")
                        page.screenshot(path=str(shot.with_suffix(f".{what}.png")))
                figures = sum("_images/" in (i["src"] or "") for i in measured["images"])
                summary = (
                    f"{figures} figures loaded, {measured['mjx']} math typeset, "
                    f"{measured['solutionsFolded']} folded, "
                    f"{len(measured['colabLinks'])} Colab links, {len(external)} external requests"
                )
                if problems:
                    failures += 1
                    lines.append(f"{relative}: FAIL ({summary}): " + "; ".join(problems))
                else:
                    lines.append(f"{relative}: ok ({summary}); screenshot {shot}")
                page.close()
            context.close()
    finally:
        server.shutdown()
    return lines, failures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=ROOT / "_build" / "site" / "html")
    parser.add_argument("--screens", type=Path, default=None, help="screenshot folder")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable")
    parser.add_argument(
        "--notebooks", type=Path, default=None,
        help="the notebooks the site was built from (default: those build_site.py staged)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not (args.site / "index.html").is_file():
        parser.error(f"no site in {args.site}: build it with python tools/build_site.py")
    if not Path(args.chromium).is_file():
        parser.error(f"{args.chromium} not found: apt-get install -y chromium")
    screens = args.screens or args.site.parent / "screens"
    notebooks = args.notebooks or args.site.parent / "source" / "notebooks"
    if not any(notebooks.glob("*.ipynb")):
        parser.error(f"no notebooks in {notebooks}: pass --notebooks")
    lines, failures = check(args.site, screens, args.chromium, notebooks)
    print("\n".join(lines))
    print(f"{len(lines) - failures} pages ok, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
