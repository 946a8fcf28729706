"""Build the course website from the committed, executed notebooks (no execution, offline).

    python tools/build_site.py [--out _build/site] [--root REPOSITORY]

needs the packages of requirements-site.txt (Sphinx, MyST-NB, the book theme, MathJax):
``.venv/bin/pip install -r requirements-site.txt`` once. Writes OUT/html/index.html.

Stages a Sphinx source tree in OUT/source that mirrors the repository:

- ``index.md``: README.md, followed by the table of contents (the five notebooks in order,
  then the API page and CONTRIBUTING.md);
- ``notebooks/NAME.ipynb``: each notebook as committed, outputs included, with its code
  solution cells folded (MyST-NB's ``hide-cell``: a "Solution (exercise N)" toggle) and its
  written solutions inside a closed dropdown; each "Open in Colab" badge becomes a plain
  "Open in Colab" link, because the badge's image lives on Colab's server (the pages load
  nothing from elsewhere), and the theme adds a Colab launch button to every notebook page;
- ``api.md``: ``docs/api.md``, the public functions of helpers.py from their docstrings;
- ``CONTRIBUTING.md``, as it is;

then runs ``sphinx-build -c docs OUT/source OUT/html`` with this interpreter. The notebooks
are never executed (``nb_execution_mode = "off"`` in docs/conf.py), so the site shows the
committed outputs. Check the result in a browser with ``python tools/check_site.py``.
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from publish import BADGE_RE  # noqa: E402

SOLUTION_TAG = "solution"
TITLE_RE = re.compile(r"^#\s*@title (Solution \(exercise (\d+)\))")
WRITTEN_RE = re.compile(r"\A\s*\*\*(Solution \(exercise (\d+)[a-z]?\))")


def source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def colab_links(text):
    """`text` with each "Open in Colab" badge as a plain link (its image is on Colab's server)."""
    return BADGE_RE.sub(lambda m: f"[Open in Colab]({m.group(0).rsplit('](', 1)[1][:-1]})", text)


def site_notebook(nb):
    """The notebook JSON `nb` as the site shows it: solutions folded, badges as plain links."""
    for cell in nb["cells"]:
        text = source(cell)
        tags = cell.get("metadata", {}).get("tags", [])
        if cell["cell_type"] == "markdown":
            text = colab_links(text).replace("](../README.md", "](../index.md")
            if SOLUTION_TAG in tags:
                match = WRITTEN_RE.match(text)
                title = match.group(1) if match else "Solution"
                text = f"::::::{{dropdown}} {title}\n\n{text}\n\n::::::"
            cell["source"] = text
        elif cell["cell_type"] == "code" and SOLUTION_TAG in tags:
            match = TITLE_RE.match(text)
            title = match.group(1) if match else "Solution"
            cell["metadata"]["tags"] = [*tags, "hide-cell"]
            cell["metadata"]["mystnb"] = {
                "code_prompt_show": f"Show {title[0].lower()}{title[1:]}",
                "code_prompt_hide": f"Hide {title[0].lower()}{title[1:]}",
            }
    return nb


def index_page(readme, notebooks, contributing=False):
    """README.md's text (badges as plain links), then the site's table of contents."""
    toc = "\n".join(f"notebooks/{path.stem}" for path in notebooks)
    return (
        colab_links(readme).rstrip()
        + "\n\n```{toctree}\n:caption: The notebooks\n:maxdepth: 1\n\n"
        + toc
        + "\n```\n\n```{toctree}\n:caption: Reference\n:maxdepth: 1\n\napi\n"
        + ("CONTRIBUTING\n" if contributing else "")
        + "```\n"
    )


def stage(root, out):
    """Write the Sphinx source tree of the repository `root` into `out` (emptied first).

    Returns the notebook paths."""
    if out.exists():
        shutil.rmtree(out)
    (out / "notebooks").mkdir(parents=True)
    notebooks = sorted((root / "notebooks").glob("*.ipynb"))
    if not notebooks:
        raise SystemExit(f"build_site: no notebooks in {root / 'notebooks'}")
    for path in notebooks:
        nb = site_notebook(json.loads(path.read_text(encoding="utf-8")))
        (out / "notebooks" / path.name).write_text(
            json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    readme = (root / "README.md").read_text(encoding="utf-8")
    contributing = (root / "CONTRIBUTING.md").is_file()
    if contributing:  # a page of its own, so that the README's link to it works
        shutil.copyfile(root / "CONTRIBUTING.md", out / "CONTRIBUTING.md")
    (out / "index.md").write_text(index_page(readme, notebooks, contributing), encoding="utf-8")
    shutil.copyfile(ROOT / "docs" / "api.md", out / "api.md")
    return notebooks


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "_build" / "site", help="build folder (emptied)"
    )
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="repository whose README and notebooks to build"
    )
    args = parser.parse_args(argv)
    out, root = args.out.resolve(), args.root.resolve()
    if any(folder.is_relative_to(out) for folder in (ROOT, root)):
        parser.error(f"refusing to empty {out}: it holds the repository")
    notebooks = stage(root, out / "source")
    html = out / "html"
    if html.exists():
        shutil.rmtree(html)
    command = [
        sys.executable, "-m", "sphinx", "-b", "html", "-q", "-E",
        "-c", str(ROOT / "docs"), str(out / "source"), str(html),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT)
    if result.returncode != 0:
        print(f"build_site: sphinx-build failed (exit {result.returncode})", file=sys.stderr)
        return result.returncode
    print(f"{len(notebooks)} notebooks, index and API page: {html / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
