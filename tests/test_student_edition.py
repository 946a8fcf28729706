"""The student edition as handed out runs top to bottom (issue 19, class 7).

tools/student_edition.py writes the notebooks without their solutions; a student who runs
one with every exercise left as it is must see each self-check say "Exercise N: not done
yet", nothing raise, nothing printed to stderr, and every cell after it run. Notebooks 01-03
always (with the real MNIST); 04 and 05 (several minutes) with RUN_SLOW_NOTEBOOK_TESTS=1.
The notebooks are read when the test runs, whatever they hold then.
"""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import NO_MNIST_MESSAGE, real_mnist_available

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
QUICK = ("01", "02", "03")  # run in CI; the others are opt-in
RUN_SLOW = os.environ.get("RUN_SLOW_NOTEBOOK_TESTS", "") == "1"
CHECK_RE = re.compile(r"^check_exercise_(\d+)$")


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    """The student edition, written once, reading the repository's data (as a linked .tmp)."""
    out = tmp_path_factory.mktemp("student")
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "student_edition.py"), str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (out / ".tmp").symlink_to(ROOT / ".tmp", target_is_directory=True)  # DATA_ROOT = PROJECT/.tmp
    return out


def exercise_number(cell):
    """N of the check_exercise_N that a starter cell defines."""
    names = [
        node.name for node in ast.parse(cell.source).body
        if isinstance(node, ast.FunctionDef) and CHECK_RE.match(node.name)
    ]  # fmt: skip
    assert len(names) == 1, f"a starter cell defines one check_exercise_N: {names}"
    return int(CHECK_RE.match(names[0]).group(1))


def stdout(cell):
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def params():
    for path in NOTEBOOKS:
        slow = path.name[:2] not in QUICK and not RUN_SLOW
        marks = [pytest.mark.skip(reason="slow: set RUN_SLOW_NOTEBOOK_TESTS=1")] if slow else []
        yield pytest.param(path.name, marks=marks, id=path.stem)


@pytest.mark.skipif(not real_mnist_available(), reason=NO_MNIST_MESSAGE)
@pytest.mark.parametrize("notebook", list(params()))
def test_handed_out_edition_runs_with_every_exercise_undone(edition, notebook):
    from nbclient import NotebookClient

    nb = nbformat.read(edition / notebook, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("print(Path(helpers.__file__).resolve())"))
    NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(edition)}}
    ).execute()  # raises CellExecutionError, naming the cell, on the first error
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))  # every cell ran
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    stderr = [o.text for c in code for o in c.outputs if o.get("name") == "stderr"]
    assert not stderr, f"{notebook} prints to stderr: {stderr[:2]}"
    starters = [c for c in code if "exercise" in c.metadata.get("tags", [])]
    assert starters, f"{notebook} has no exercise cells"
    for cell in starters:
        number, lines = exercise_number(cell), stdout(cell).splitlines()
        assert any(line.startswith(f"Exercise {number}: not done yet") for line in lines), (
            f"{notebook}, exercise {number}: the check of the untouched stub printed {lines}"
        )
        assert not any(line.startswith(f"Exercise {number}: correct") for line in lines)
    assert stdout(code[-1]) == f"{(edition / 'helpers.py').resolve()}\n"  # the edition's copy
