"""Record where the series is published: helpers URL and "Open in Colab" badges.

    python tools/publish.py https://github.com/OWNER/REPO [--branch main] [--root DIR]

Sets `HELPERS_URL = "<raw URL of helpers.py>"` in the setup cell of every notebook (the
first code cell with a line starting `HELPERS_URL =`), and writes an "Open in Colab" badge
as the first line of each notebook's first markdown cell and after the notebook link in the
README's notebook table. Only those cell sources change: outputs, ids and metadata are kept
byte for byte. Idempotent: running it again (with the same or another URL) leaves exactly one
badge per place, pointing at the latest URL. Nothing is written unless every notebook has
its setup cell.

REPO_URL may also be a file:// URL of a folder laid out like the repository (used by the
tests): helpers are then fetched from URL/helpers.py and the badges link URL/notebooks/NAME.ipynb.
"""

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
BADGE_RE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")
SETUP_RE = re.compile(r"^HELPERS_URL =.*$", re.MULTILINE)
GITHUB_RE = re.compile(r"^https://github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?/?$")


class PublishError(Exception):
    pass


def locations(repo_url, branch):
    """(raw URL of helpers.py, function NAME -> URL that opens notebooks/NAME.ipynb)."""
    match = GITHUB_RE.match(repo_url)
    if match:
        owner, repo = match.groups()
        raw = f"https://raw.githubusercontent.com/{owner}/{repo}/{branch}/helpers.py"
        colab = f"https://colab.research.google.com/github/{owner}/{repo}/blob/{branch}"
        return raw, lambda name: f"{colab}/notebooks/{name}.ipynb"
    if repo_url.startswith("file://"):
        base = repo_url.rstrip("/")
        return base + "/helpers.py", lambda name: f"{base}/notebooks/{name}.ipynb"
    raise PublishError(
        f"REPO_URL must look like https://github.com/OWNER/REPO (or file:///folder): {repo_url!r}"
    )


RAW_RE = re.compile(r"^https://raw\.githubusercontent\.com/([\w.-]+)/([\w.-]+)/(.+)/helpers\.py$")


def published_repository(notebooks):
    """(https://github.com/OWNER/REPO, branch) recorded by this tool in the folder `notebooks`.

    Read back from the `HELPERS_URL` line of every notebook's setup cell; None while the
    series is unpublished (an empty URL), published elsewhere than GitHub (a file:// URL), or
    when the notebooks disagree. The course website (docs/conf.py) takes its Colab launch
    buttons from here.
    """
    found = set()
    for path in sorted(Path(notebooks).glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            match = cell["cell_type"] == "code" and SETUP_RE.search("".join(cell["source"]))
            if match:
                try:
                    found.add(json.loads(match.group(0).split("=", 1)[1].strip()))
                except ValueError:
                    return None
                break
        else:
            return None
    if len(found) != 1:
        return None
    match = RAW_RE.match(found.pop())
    if not match:
        return None
    owner, repo, branch = match.groups()
    return f"https://github.com/{owner}/{repo}", branch


def badge(link):
    return f"[![Open In Colab]({BADGE_IMAGE})]({link})"


def set_source(cell, text):
    """Store `text` as the cell source, in the same form (list of lines or string) as before."""
    cell["source"] = text.splitlines(keepends=True) if isinstance(cell["source"], list) else text


def publish_notebook(nb, name, helpers_url, link):
    """Edit the parsed notebook JSON `nb` in place (two cell sources only)."""
    cells = nb["cells"]
    source = lambda cell: "".join(cell["source"])  # noqa: E731
    setup = next(
        (c for c in cells if c["cell_type"] == "code" and SETUP_RE.search(source(c))), None
    )
    if setup is None:
        raise PublishError(f"{name}.ipynb has no setup cell (no code line `HELPERS_URL = ...`)")
    set_source(setup, SETUP_RE.sub(f"HELPERS_URL = {json.dumps(helpers_url)}", source(setup), 1))
    first = next((c for c in cells if c["cell_type"] == "markdown"), None)
    if first is None:
        raise PublishError(f"{name}.ipynb has no markdown cell for the badge")
    text = source(first)
    if BADGE_RE.fullmatch(text.split("\n", 1)[0].strip()):  # drop the previous badge line
        text = text.split("\n", 1)[1].lstrip("\n") if "\n" in text else ""
    set_source(first, f"{badge(link)}\n\n{text}" if text else badge(link))


def publish_readme(text, names, link):
    """README text with a badge after each notebook link of the table; returns (text, rows)."""
    rows = 0

    def replace(match):
        nonlocal rows
        rows += 1
        return f"{match.group(1)} {badge(link(match.group(2)))} |"

    link_cell = r"^(\| \[`([\w.-]+)`\]\(notebooks/\2\.ipynb\))"
    row = re.compile(link_cell + r"(?: " + BADGE_RE.pattern + r")? \|", re.MULTILINE)
    return row.sub(lambda m: replace(m) if m.group(2) in names else m.group(0), text), rows


def dump(nb):
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"  # nbformat's layout


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo_url", help="https://github.com/OWNER/REPO (or file:///folder)")
    parser.add_argument("--branch", default="main", help="branch the notebooks are read from")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root to edit")
    args = parser.parse_args(argv)
    try:
        helpers_url, link = locations(args.repo_url, args.branch)
        paths = sorted((args.root / "notebooks").glob("*.ipynb"))
        if not paths:
            raise PublishError(f"no notebooks in {args.root / 'notebooks'}")
        new = {}
        for path in paths:  # everything is checked before anything is written
            nb = json.loads(path.read_text(encoding="utf-8"))
            publish_notebook(nb, path.stem, helpers_url, link(path.stem))
            new[path] = dump(nb)
        readme = args.root / "README.md"
        if readme.is_file():
            text, rows = publish_readme(
                readme.read_text(encoding="utf-8"), {p.stem for p in paths}, link
            )
            if rows != len(paths):
                raise PublishError(
                    f"README.md: {rows} notebook table rows found for {len(paths)} notebooks"
                )
            new[readme] = text
    except PublishError as error:
        print(f"publish: {error}; nothing written", file=sys.stderr)
        return 1
    for path, text in new.items():
        path.write_text(text, encoding="utf-8", newline="\n")
        print(f"{path.relative_to(args.root)}: published")
    print(f"HELPERS_URL = {helpers_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
