"""tools/publish.py and tools/student_edition.py, always run on copies (never on the repository)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
GITHUB = "https://github.com/example/gmm-mnist"
BADGE = "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({})"


def run_tool(name, *args):
    return subprocess.run(
        [sys.executable, str(TOOLS / name), *map(str, args)], capture_output=True, text=True
    )


def tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def setup_index(nb):
    return next(
        i
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and re.search(r"^HELPERS_URL =", "".join(c["source"]), re.M)
    )


def strings(node):
    """Every string anywhere in a JSON document (keys and values), decoded."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


@pytest.fixture
def repo_copy(tmp_path):
    """notebooks/, README.md and helpers.py copied into tmp_path/repo."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "notebooks", repo / "notebooks", ignore=shutil.ignore_patterns(".*"))
    for name in ("README.md", "helpers.py"):
        shutil.copyfile(ROOT / name, repo / name)
    return repo


def snapshot(repo):
    return {p.relative_to(repo): p.read_bytes() for p in sorted(repo.rglob("*")) if p.is_file()}


# --- publish ---------------------------------------------------------------------------------


def check_published(repo, before, helpers_url, link):
    for path in sorted((repo / "notebooks").glob("*.ipynb")):
        name = path.stem
        nbformat.validate(nbformat.read(path, as_version=4))
        nb, old = json.loads(path.read_text("utf-8")), json.loads(before[path.relative_to(repo)])
        setup = setup_index(nb)
        lines = "".join(nb["cells"][setup]["source"]).splitlines()
        url_lines = [line for line in lines if line.startswith("HELPERS_URL =")]
        assert url_lines == [f'HELPERS_URL = "{helpers_url}"']
        first = next(i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "markdown")
        text = "".join(nb["cells"][first]["source"])
        assert text.splitlines()[0] == BADGE.format(link(name))
        assert text.count("Open In Colab") == 1
        # the badge line is added above the old text (without an earlier badge), nothing else
        old_text = "".join(old["cells"][first]["source"])
        old_text = re.sub(r"\A\[!\[Open In Colab\].*\n+", "", old_text)
        assert text == BADGE.format(link(name)) + "\n\n" + old_text
        assert sum("Open In Colab" in "".join(c["source"]) for c in nb["cells"]) == 1
        for i, (new_cell, old_cell) in enumerate(zip(nb["cells"], old["cells"], strict=True)):
            if i in (setup, first):
                new_cell, old_cell = dict(new_cell, source=None), dict(old_cell, source=None)
            assert new_cell == old_cell, f"{name}: cell {i} changed beyond its source"
        assert {k: v for k, v in nb.items() if k != "cells"} == {
            k: v for k, v in old.items() if k != "cells"
        }
    readme = (repo / "README.md").read_text("utf-8")
    for path in sorted((repo / "notebooks").glob("*.ipynb")):
        row = f"| [`{path.stem}`](notebooks/{path.name}) {BADGE.format(link(path.stem))} |"
        assert readme.count(row) == 1, row
    assert readme.count("Open In Colab") == len(list((repo / "notebooks").glob("*.ipynb")))


def github_link(owner_repo, branch="main"):
    return lambda name: (
        "https://colab.research.google.com/github/"
        f"{owner_repo}/blob/{branch}/notebooks/{name}.ipynb"
    )


def test_publish_sets_url_and_badges_and_is_idempotent(repo_copy):
    before = snapshot(repo_copy)
    result = run_tool("publish.py", GITHUB, "--root", repo_copy)
    assert result.returncode == 0, result.stderr
    raw = "https://raw.githubusercontent.com/example/gmm-mnist/main/helpers.py"
    check_published(repo_copy, before, raw, github_link("example/gmm-mnist"))
    once = snapshot(repo_copy)
    assert once[Path("helpers.py")] == before[Path("helpers.py")]

    assert run_tool("publish.py", GITHUB, "--root", repo_copy).returncode == 0
    assert snapshot(repo_copy) == once  # byte-identical on a second run

    other = "https://github.com/someone/fork.git"
    assert run_tool("publish.py", other, "--branch", "dev", "--root", repo_copy).returncode == 0
    check_published(
        repo_copy,
        before,
        "https://raw.githubusercontent.com/someone/fork/dev/helpers.py",
        github_link("someone/fork", "dev"),
    )
    assert not any(b"example/gmm-mnist" in data for data in snapshot(repo_copy).values())


def test_publish_refuses_bad_input_and_writes_nothing(repo_copy):
    before = snapshot(repo_copy)
    result = run_tool("publish.py", "https://gitlab.com/a/b", "--root", repo_copy)
    assert result.returncode == 1 and "REPO_URL" in result.stderr
    # a notebook without its setup cell: a clear message, and no file touched
    path = sorted((repo_copy / "notebooks").glob("*.ipynb"))[-1]
    nb = json.loads(path.read_text("utf-8"))
    nb["cells"][setup_index(nb)]["source"] = ["print('no setup here')"]
    path.write_text(json.dumps(nb, indent=1), "utf-8")
    before[path.relative_to(repo_copy)] = path.read_bytes()
    result = run_tool("publish.py", GITHUB, "--root", repo_copy)
    assert result.returncode == 1
    assert f"{path.name} has no setup cell" in result.stderr and "nothing written" in result.stderr
    assert snapshot(repo_copy) == before


def test_published_notebook_alone_fetches_helpers(repo_copy, tmp_path):
    """End to end, a file:// URL standing in for GitHub: one notebook alone in an empty folder."""
    url = repo_copy.as_uri()
    before = snapshot(repo_copy)
    result = run_tool("publish.py", url, "--root", repo_copy)
    assert result.returncode == 0, result.stderr
    link = lambda name: f"{url}/notebooks/{name}.ipynb"  # noqa: E731
    check_published(repo_copy, before, url + "/helpers.py", link)
    alone = tmp_path / "alone"
    alone.mkdir()
    assert not any((f / "helpers.py").exists() for f in (alone, *alone.parents))
    notebook = NOTEBOOKS[0].name
    shutil.copyfile(repo_copy / "notebooks" / notebook, alone / notebook)
    nb = json.loads((alone / notebook).read_text("utf-8"))
    setup = "".join(next(c for c in nb["cells"] if c["cell_type"] == "code")["source"])
    assert f'HELPERS_URL = "{url}/helpers.py"' in setup
    check = setup + "\nprint('IMPORTED', Path(helpers.__file__).resolve(), PROJECT.resolve())\n"
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH="")
    result = subprocess.run(
        [sys.executable, "-c", check], cwd=alone, capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    assert (alone / "helpers.py").read_bytes() == (repo_copy / "helpers.py").read_bytes()
    assert f"IMPORTED {alone.resolve() / 'helpers.py'} {alone.resolve()}" in result.stdout

    # unpublished, the same cell stops with a message that says what to do
    (alone / "helpers.py").unlink()
    setup = re.sub(r"^HELPERS_URL = .*$", 'HELPERS_URL = ""', setup, flags=re.M)
    result = subprocess.run(
        [sys.executable, "-c", setup], cwd=alone, capture_output=True, text=True, env=env
    )
    assert result.returncode != 0 and "HELPERS_URL" in result.stderr


# --- student edition -------------------------------------------------------------------------


def check_student_edition(source_dir, outdir):
    """The checks every written notebook must pass; returns the number of solution cells removed."""
    removed = 0
    for src in sorted(source_dir.glob("*.ipynb")):
        out = outdir / src.name
        nb = nbformat.read(out, as_version=4)
        nbformat.validate(nb)
        original = nbformat.read(src, as_version=4)
        solutions = [c for c in original.cells if "solution" in tags(c)]
        kept = [c for c in original.cells if "solution" not in tags(c)]
        removed += len(solutions)
        assert not [c for c in nb.cells if "solution" in tags(c)]
        assert [c.source for c in nb.cells] == [c.source for c in kept]  # all the others, in order
        assert [c.source for c in nb.cells if "exercise" in tags(c)] == [
            c.source for c in original.cells if "exercise" in tags(c)
        ]
        text = "\n".join(strings(json.loads(out.read_text("utf-8"))))
        kept_lines = {line.strip() for c in kept for line in c.source.splitlines()}
        text_lines = {line.strip() for line in text.splitlines()}
        for cell in solutions:
            assert cell.source.strip() not in text
            for line in cell.source.splitlines():  # every line not also in a kept cell
                if len(line.strip()) > 3 and line.strip() not in kept_lines:
                    assert line.strip() not in text_lines, (
                        f"{src.name}: solution line left: {line!r}"
                    )
        assert not re.search(r"#\s*@title Solution", text)
        for cell in nb.cells:
            assert "execution" not in cell.metadata
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None
    assert (outdir / "helpers.py").read_bytes() == (ROOT / "helpers.py").read_bytes()
    return removed


def synthetic_notebook():
    """A small notebook in the series' convention: a starter, its code and markdown solutions."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    hidden = {"tags": ["solution"], "jupyter": {"source_hidden": True}, "cellView": "form"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Synthetic\n\n### Exercise 1 · implement · ★"),
        nbformat.v4.new_code_cell(
            "def square(x):\n    return None  # your code here\n\n\n"
            "def check_ex1(f):\n    if f(3) is None:\n        print('Exercise 1: not done yet')\n"
            "    elif f(3) == 9:\n        print('Exercise 1: correct')\n"
            "    else:\n        print('Exercise 1: wrong value')\n\n\ncheck_ex1(square)",
            metadata={"tags": ["exercise"]},
        ),
        nbformat.v4.new_code_cell(
            "#@title Solution (exercise 1)\ndef square(x):\n    return x * x  # SECRET-ANSWER\n\n\n"
            "check_ex1(square)",
            metadata=hidden,
            execution_count=3,
            outputs=[nbformat.v4.new_output("stream", text="Exercise 1: correct\n")],
        ),
        nbformat.v4.new_markdown_cell("**Answer.** SECRET-DERIVATION.", metadata=hidden),
        nbformat.v4.new_code_cell(
            "print('after the exercises')",
            execution_count=4,
            outputs=[nbformat.v4.new_output("stream", text="after the exercises\n")],
            metadata={"execution": {"iopub.execute_input": "2026-11-26T20:26:29.458939Z"}},
        ),
    ]
    return nb


def execute(path, cwd, extra=None):
    """Run the notebook at `path` in the venv's kernel, with cwd `cwd` (and a last cell `extra`)."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    if extra:
        nb.cells.append(nbformat.v4.new_code_cell(extra))
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()  # raises CellExecutionError on the first error
    return nb


def test_student_edition_of_a_synthetic_notebook(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    nbformat.write(synthetic_notebook(), source / "synthetic.ipynb")
    before = (source / "synthetic.ipynb").read_bytes()

    refused = run_tool("student_edition.py", source, "--notebooks", source)
    assert refused.returncode != 0 and "refusing" in refused.stderr
    assert sorted(p.name for p in source.iterdir()) == ["synthetic.ipynb"]

    out = tmp_path / "student"
    result = run_tool("student_edition.py", out, "--notebooks", source)
    assert result.returncode == 0, result.stderr
    assert "synthetic.ipynb: 3 cells kept, 2 solution cells removed" in result.stdout
    assert (source / "synthetic.ipynb").read_bytes() == before
    assert check_student_edition(source, out) == 2
    text = (out / "synthetic.ipynb").read_text("utf-8")
    assert "SECRET" not in text and "exercise" in text
    # the starter runs without its solution and says it is not done yet
    nb = execute(out / "synthetic.ipynb", out)
    printed = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert printed == ["Exercise 1: not done yet\n", "after the exercises\n"]


def test_student_edition_of_the_series(tmp_path):
    out = tmp_path / "student"
    result = run_tool("student_edition.py", out)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.glob("*.ipynb")) == [p.name for p in NOTEBOOKS]
    assert len(result.stdout.splitlines()) == len(NOTEBOOKS) + 1
    check_student_edition(ROOT / "notebooks", out)


# Running the edition top to bottom with every exercise undone: tests/test_student_edition.py.
