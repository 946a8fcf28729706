"""The nbgrader edition (tools/student_edition.py --nbgrader), graded by nbgrader itself.

- The conversion, on a small notebook in the series' convention and on the five notebooks:
  solution regions, autograded test cells with grade ids and points, written answers, and
  a clear error where a notebook departs from the convention (no nbgrader needed).
- nbgrader itself (skipped when it is not installed: `pip install -r requirements-nbgrader.txt`):
  `nbgrader generate_assignment`, then `nbgrader autograde` on one submission made from the
  solutions (the source notebook) and one from the starters (the released notebook, as
  handed out). The solutions get every autograded point and their written answers wait
  for a manual grade; the starters get zero. On the small notebook always, on notebook 02
  with the real MNIST, and on all five with RUN_SLOW_NOTEBOOK_TESTS=1 (several minutes).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import NO_MNIST_MESSAGE, real_mnist_available

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import student_edition  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
RUN_SLOW = os.environ.get("RUN_SLOW_NOTEBOOK_TESTS", "") == "1"
IN_CI = ("02_gaussian_mle",)  # the quickest notebook that needs no torch (01 runs torchvision)
HIDDEN = {"tags": ["solution"], "jupyter": {"source_hidden": True}, "cellView": "form"}

try:
    import nbgrader.api  # noqa: F401

    HAVE_NBGRADER = True
except ImportError:
    HAVE_NBGRADER = False
needs_nbgrader = pytest.mark.skipif(
    not HAVE_NBGRADER, reason="nbgrader is not installed: pip install -r requirements-nbgrader.txt"
)


def synthetic_notebook():
    """Two exercises in the series' convention: code and written solutions, a skeleton."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    code, md = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    check_1 = (
        "def check_exercise_1(f):\n"
        "    if f(3) is None:\n"
        "        print('Exercise 1: not done yet (square returns None)')\n"
        "    elif f(3) == 9:\n"
        "        print('Exercise 1: correct')\n"
        "    else:\n"
        "        print('Exercise 1: not the square')\n"
    )
    check_2 = (
        "def check_exercise_2(answer):\n"
        "    if answer is None:\n"
        "        print('Exercise 2: not done yet (set answer)')\n"
        "        return False\n"
        "    print('Exercise 2: correct' if answer == 42 else 'Exercise 2: no')\n"
        "    return answer == 42\n"
    )
    nb.cells = [
        md("# Synthetic\n\n## Exercises\n\n### Exercise 1 · implement · ★★\n\nSquare a number."),
        code(
            "def square(x):\n    return None  # your code here\n\n\n" + check_1 + "\n\n"
            "check_exercise_1(square)",
            metadata={"tags": ["exercise"]},
        ),
        code(
            "#@title Solution (exercise 1)\ndef square(x):\n    return x * x  # SECRET-CODE\n\n\n"
            "check_exercise_1(square)",
            metadata=HIDDEN,
        ),
        md("**Solution (exercise 1).** SECRET-WORDS.", metadata=HIDDEN),
        md("### Exercise 2 · derive · ★\n\nDerive the answer, then set it."),
        md(
            "**Exercise 2: your derivation** (double-click to edit)\n\n$x = \\dots$",
            metadata={"tags": ["exercise"]},
        ),  # fmt: skip
        code(
            "answer = None  # your answer\n\n\n" + check_2 + "\n\n"
            "if check_exercise_2(answer):\n    print('and the bonus runs')",
            metadata={"tags": ["exercise"]},
        ),
        md("#### Solution (exercise 2)\n\nSECRET-PROOF.", metadata=HIDDEN),
        code(
            "# @title Solution (exercise 2)\nanswer = 42  # SECRET-ANSWER\n"
            "if check_exercise_2(answer):\n    print('and the bonus runs')",
            metadata=HIDDEN,
        ),
        code("print('after the exercises')"),
    ]
    return nb


def graded(nb):
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if "nbgrader" in c.metadata}


def test_conversion_of_a_synthetic_notebook():
    nb, grades = student_edition.nbgrader_source(synthetic_notebook(), "synthetic.ipynb")
    nbformat.validate(nb)
    cells = graded(nb)
    assert grades == {
        "exercise_1_check": 2, "exercise_1_written": 1, "exercise_2_written": 1,
        "exercise_2_check": 1,
    }  # fmt: skip
    assert list(cells) == [
        "exercise_1_answer", "exercise_1_check", "exercise_1_written",
        "exercise_2_written", "exercise_2_answer", "exercise_2_check",
    ]  # fmt: skip
    answer = cells["exercise_1_answer"]
    assert answer.cell_type == "code"
    assert answer.metadata["nbgrader"] | {"grade_id": None} == {
        "grade": False, "grade_id": None, "locked": False, "schema_version": 3,
        "solution": True, "task": False,
    }  # fmt: skip
    assert answer.source == (
        "def square(x):\n    return None  # your code here\n\n"
        "### BEGIN SOLUTION\ndef square(x):\n    return x * x  # SECRET-CODE\n### END SOLUTION"
    )
    check = cells["exercise_1_check"]
    assert check.metadata["nbgrader"] == {
        "grade": True, "grade_id": "exercise_1_check", "locked": True, "points": 2,
        "schema_version": 3, "solution": False, "task": False,
    }  # fmt: skip
    assert "def check_exercise_1(f):" in check.source
    assert "    check_exercise_1(square)\n" in check.source  # inside the captured block
    assert 'line.startswith("Exercise 1: correct")' in check.source
    written = cells["exercise_1_written"]
    assert written.cell_type == "markdown" and written.metadata["nbgrader"]["points"] == 1
    assert "### BEGIN SOLUTION\n**Solution (exercise 1).** SECRET-WORDS.\n### END" in written.source
    skeleton = cells["exercise_2_written"]
    assert skeleton.source.startswith("**Exercise 2: your derivation**")
    assert skeleton.source.endswith(
        "### BEGIN SOLUTION\n#### Solution (exercise 2)\n\nSECRET-PROOF.\n### END SOLUTION"
    )
    assert cells["exercise_2_answer"].source == (
        "answer = None  # your answer\n\n"
        "### BEGIN SOLUTION\nanswer = 42  # SECRET-ANSWER\n### END SOLUTION"
    )
    assert "    if check_exercise_2(answer):\n        print('and the bonus runs')" in (
        cells["exercise_2_check"].source
    )
    # nothing else: no solution cell left, nothing folded, the other cells in order
    assert not [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    assert not [c for c in nb.cells if "jupyter" in c.metadata or "cellView" in c.metadata]
    assert nb.cells[0].source.startswith("# Synthetic") and nb.cells[-1].source == (
        "print('after the exercises')"
    )
    assert all(c.outputs == [] for c in nb.cells if c.cell_type == "code")


def run_in_kernel(nb, cwd):
    """Execute `nb` with errors allowed; returns it with its outputs."""
    from nbclient import NotebookClient

    NotebookClient(
        nb, timeout=600, kernel_name="python3", allow_errors=True,
        resources={"metadata": {"path": str(cwd)}},
    ).execute()  # fmt: skip
    return nb


def errors(cell):
    return [o for o in cell.outputs if o.output_type == "error"]


def test_source_passes_its_tests_and_the_stubs_fail_them(tmp_path):
    """Without nbgrader: the source notebook passes every test cell; with the solution
    regions replaced by nbgrader's stub (as generate_assignment does) every one fails,
    with the check's own "not done yet" shown, and the cells after still run."""
    nb, _ = student_edition.nbgrader_source(synthetic_notebook())
    run_in_kernel(nb, tmp_path)
    assert not [c for c in nb.cells if c.cell_type == "code" and errors(c)]
    tests = [
        c for c in graded(nb).values() if c.metadata["nbgrader"]["grade"] and c.cell_type == "code"
    ]
    assert [o.text for c in tests for o in c.outputs] == [
        "Exercise 1: correct\n", "Exercise 2: correct\nand the bonus runs\n",
    ]  # fmt: skip

    stub, _ = student_edition.nbgrader_source(synthetic_notebook())
    for cell in stub.cells:
        if "### BEGIN SOLUTION" in cell.source:
            head, rest = cell.source.split("### BEGIN SOLUTION", 1)
            cell.source = head + "# YOUR ANSWER" + rest.split("### END SOLUTION", 1)[1]
    run_in_kernel(stub, tmp_path)
    tests = [
        c
        for c in graded(stub).values()
        if c.metadata["nbgrader"]["grade"] and c.cell_type == "code"
    ]
    for number, cell in enumerate(tests, start=1):
        assert errors(cell) and errors(cell)[0].ename == "AssertionError"
        printed = "".join(o.get("text", "") for o in cell.outputs)
        assert printed.startswith(f"Exercise {number}: not done yet")
    assert stub.cells[-1].outputs[0].text == "after the exercises\n"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda cells: cells[1].update(source="def square(x):\n    return None\n"),
         "cell 1: an exercise cell defines one check_exercise_N, this one 0"),
        (lambda cells: cells[1].update(source=cells[1].source.replace("check_exercise_1(square)", "")),
         "cell 1: the exercise cell never calls check_exercise_1"),
        (lambda cells: cells.pop(2), "cell 1: exercise 1 has no code solution cell"),
        (lambda cells: cells[2].update(source=cells[2].source.replace("exercise 1)", "exercise 7)")),
         "cell 2: a code solution of exercise 7, which has no exercise cell"),
        (lambda cells: cells.insert(2, nbformat.from_dict(dict(cells[1], id="copy"))),
         "2 exercise cells call check_exercise_1"),
    ],
    ids=["no-check", "never-called", "no-solution", "orphan-solution", "twice"],
)  # fmt: skip
def test_departures_from_the_convention_are_named(tmp_path, edit, message):
    nb = synthetic_notebook()
    edit(nb.cells)
    with pytest.raises(student_edition.ConventionError, match=message.replace("(", r"\(")):
        student_edition.nbgrader_source(nb, "synthetic.ipynb")


def test_the_tool_names_the_departure_and_writes_nothing(tmp_path):
    nb = synthetic_notebook()
    nb.cells.pop(2)  # exercise 1 without its code solution
    source = tmp_path / "source"
    source.mkdir()
    nbformat.write(nb, source / "synthetic.ipynb")
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "student_edition.py"), "--nbgrader",
         str(tmp_path / "course"), "--notebooks", str(source)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 1
    assert "synthetic.ipynb, cell 1: exercise 1 has no code solution cell" in result.stderr
    assert not (tmp_path / "course" / "source").exists()


def test_the_series_converts(tmp_path):
    """Every notebook as it is now: one answer and one autograded check per exercise cell."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "student_edition.py"), "--nbgrader", str(tmp_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "nbgrader_config.py").is_file()
    for path in NOTEBOOKS:
        folder = tmp_path / "source" / path.stem
        assert (folder / "helpers.py").read_bytes() == (ROOT / "helpers.py").read_bytes()
        nb = nbformat.read(folder / path.name, as_version=4)
        original = nbformat.read(path, as_version=4)
        starters = [
            c for c in original.cells if c.cell_type == "code" and "exercise" in c.metadata.get("tags", [])
        ]  # fmt: skip
        cells = graded(nb)
        checks = [g for g in cells if g.endswith("_check")]
        assert len(checks) == len(starters) > 0, path.name
        for grade_id in checks:
            meta = cells[grade_id].metadata["nbgrader"]
            assert meta["locked"] and meta["grade"] and meta["points"] >= 1
            answer = cells[grade_id.replace("_check", "_answer")].source
            assert answer.count("### BEGIN SOLUTION") == answer.count("### END SOLUTION") == 1
        assert len(set(cells)) == len(cells)  # grade ids unique
        assert f"{path.stem}: {len(checks)} autograded checks" in result.stdout


# --- nbgrader itself -------------------------------------------------------------------------


def nbgrader(course, *args):
    """Run `nbgrader ARGS` in the course folder with this interpreter; fail on an error."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def grade_course(course, assignments, data=None):
    """generate_assignment, then autograde a solutions and a starters submission of each
    assignment; returns {(assignment, student): [(grade_id, auto_score, max, manual?)]}."""
    from nbgrader.api import Gradebook

    for assignment in assignments:
        nbgrader(course, "generate_assignment", assignment, "--force")
        release = course / "release" / assignment
        assert (release / "helpers.py").is_file()
        for student, folder in (("solutions", course / "source"), ("starters", course / "release")):
            submitted = course / "submitted" / student / assignment
            submitted.mkdir(parents=True)
            for notebook in (folder / assignment).glob("*.ipynb"):
                shutil.copyfile(notebook, submitted / notebook.name)
            if data:  # the cache of resized digits, as a student's first run leaves it
                (submitted / ".tmp").mkdir()
                for cache in data:
                    shutil.copyfile(cache, submitted / ".tmp" / cache.name)
        nbgrader(course, "autograde", assignment, "--force")
    scores = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for assignment in assignments:
            for student in ("solutions", "starters"):
                submission = gb.find_submission(assignment, student)
                scores[assignment, student] = [
                    (g.name, g.auto_score, g.max_score, g.needs_manual_grade)
                    for notebook in submission.notebooks
                    for g in notebook.grades
                ]
    return scores


def check_grades(scores, assignments):
    for assignment in assignments:
        solutions, starters = scores[assignment, "solutions"], scores[assignment, "starters"]
        assert solutions and {g[0] for g in solutions} == {g[0] for g in starters}
        for name, auto, maximum, manual in solutions:
            if name.endswith("_check"):  # every autograded point
                assert (auto, manual) == (maximum, False), (assignment, name, auto, maximum)
            else:  # a written answer: the model answer waits for the grader
                assert (auto, manual) == (None, True), (assignment, name)
        for name, auto, _, manual in starters:  # nothing: failed checks, unchanged answers
            assert (auto, manual) == (0, False), (assignment, name, auto)


def released_text(course, assignment):
    return "\n".join(
        "".join(c["source"]) for p in (course / "release" / assignment).glob("*.ipynb")
        for c in json.loads(p.read_text("utf-8"))["cells"]
    )  # fmt: skip


@needs_nbgrader
def test_nbgrader_grades_the_synthetic_notebook(tmp_path):
    source = tmp_path / "notebooks"
    source.mkdir()
    nbformat.write(synthetic_notebook(), source / "synthetic.ipynb")
    course = tmp_path / "course"
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "student_edition.py"), "--nbgrader", str(course),
         "--notebooks", str(source)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "synthetic: 2 autograded checks, 2 written answers, 5 points" in result.stdout
    scores = grade_course(course, ["synthetic"])
    check_grades(scores, ["synthetic"])
    released = released_text(course, "synthetic")
    assert "SECRET" not in released and "BEGIN SOLUTION" not in released
    assert "return None  # your code here" in released  # the stub is what the student sees
    assert "# YOUR ANSWER: complete the stub above" in released


@needs_nbgrader
@pytest.mark.skipif(not real_mnist_available(), reason=NO_MNIST_MESSAGE)
@pytest.mark.parametrize(
    "notebook",
    [
        pytest.param(
            p.stem,
            marks=[] if p.stem in IN_CI or RUN_SLOW else pytest.mark.skip(
                reason="slow: set RUN_SLOW_NOTEBOOK_TESTS=1 to grade all five notebooks"
            ),
        )
        for p in NOTEBOOKS
    ],
)  # fmt: skip
def test_nbgrader_grades_the_series(tmp_path, notebook):
    import helpers

    for split in ("train", "test"):  # the repository's cache is current
        helpers.load_mnist(split, root=ROOT / ".tmp")
    cache = sorted((ROOT / ".tmp").glob("mnist-*-16px.npz"))
    course = tmp_path / "course"
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "student_edition.py"), "--nbgrader", str(course)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    scores = grade_course(course, [notebook], data=cache)
    check_grades(scores, [notebook])
    assert "BEGIN SOLUTION" not in released_text(course, notebook)
