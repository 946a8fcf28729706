"""Write the student edition of the series: every notebook without its solution cells.

    python tools/student_edition.py OUTDIR [--notebooks notebooks]
    python tools/student_edition.py --nbgrader OUTDIR [--notebooks notebooks]

For each notebook in the notebooks folder (every *.ipynb), writes a copy into OUTDIR with
every cell tagged "solution" removed (code and markdown alike), all outputs and execution
counts cleared and the execution timestamps dropped from the cell metadata. The exercise
starters (tagged "exercise") and their self-checks stay. helpers.py is copied into OUTDIR
too, so the folder is self-contained: the setup cell of each notebook finds helpers.py in
its own folder (or a parent), and then reads the data from OUTDIR/.tmp (downloaded there on
first run, or link it to an existing data folder). Every written notebook is validated with
nbformat. The tool refuses to write into the source notebooks folder.

With --nbgrader, OUTDIR becomes an nbgrader course folder instead: OUTDIR/nbgrader_config.py
and, for each notebook, an assignment OUTDIR/source/NAME/ holding NAME.ipynb and helpers.py.
In each exercise (the convention of the series: a starter cell tagged "exercise" that
defines a stub and `check_exercise_N`, then calls it; solution cells tagged "solution",
the code ones starting "#@title Solution (exercise N)"):

- the starter becomes an autograded answer cell: the stub as handed out, then the code of
  the solution cells (without their title and their call of the check) between
  `### BEGIN SOLUTION` and `### END SOLUTION`, which nbgrader replaces by a comment;
- its self-check becomes an autograded test cell (locked, `grade_id` exercise_N_check,
  points = the exercise's stars): the check function, then its call with the printed text
  captured, shown, and asserted to say "Exercise N: correct";
- each written solution (a markdown solution cell) becomes a manually graded answer (1
  point), the model answer between the markers; a markdown starter tagged "exercise" (a
  skeleton to fill in) takes the model answers of its exercise.

Then, in OUTDIR: `nbgrader generate_assignment NAME` writes the student version to
release/NAME/, and `nbgrader autograde NAME` grades submitted/STUDENT/NAME/.

Why the self-study edition does not use nbgrader or jupytext: nbgrader needs its solution
markers, its database and its course folder layout, and jupytext converts formats but does
not drop cells; the self-study edition needs only "drop the cells tagged solution, clear
outputs", which this script does (nbformat aside) in a few lines. The nbgrader edition is
derived from the same tags.
"""

import argparse
import ast
import re
import shutil
import sys
import textwrap
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
SOLUTION_TAG = "solution"


def student_copy(nb):
    """`nb` (nbformat v4) without solution cells and outputs; returns (nb, cells removed)."""
    kept, removed = [], 0
    for cell in nb.cells:
        if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            removed += 1
            continue
        cell.metadata.pop("execution", None)  # timestamps of the instructor's run
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        kept.append(cell)
    nb.cells = kept
    return nb, removed


# --- the nbgrader edition --------------------------------------------------------------------

EXERCISE_TAG = "exercise"
CHECK_RE = re.compile(r"^check_exercise_(\d+)$")
TITLE_RE = re.compile(r"^#\s*@title Solution \(exercise (\d+)\)[^\n]*\n?")
HEADING_RE = re.compile(r"^#+ .*\bExercise (\d+)\b(.*)$", re.MULTILINE)
WRITTEN_RE = re.compile(r"Solution \(exercise (\d+)[a-z]?\)")
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
NBGRADER_CONFIG = """\
# nbgrader configuration of the course folder written by tools/student_edition.py --nbgrader.
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "gmm-mnist"
# The stub of each exercise stays above its solution region: the region becomes a comment
# (nbgrader's default, `raise NotImplementedError()`, would stop "Run All" at the first
# exercise), and a written answer becomes a prompt.
c.ClearSolutions.code_stub = {"python": "# YOUR ANSWER: complete the stub above"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE (double-click to edit)"
# The notebooks fit models on 60,000 digits: allow a cell up to 15 minutes.
c.Execute.timeout = 900
"""


class ConventionError(ValueError):
    """A notebook's exercises do not follow the convention the nbgrader edition reads."""


def nbgrader_metadata(grade_id, solution, grade, points=None, locked=False):
    meta = {
        "grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
        "solution": solution, "task": False,
    }  # fmt: skip
    if points is not None:
        meta["points"] = points
    return meta


def split_starter(text, where):
    """(number, stub, check definition, check calls) of a starter code cell's source."""
    try:
        tree = ast.parse(text)
    except SyntaxError as error:
        raise ConventionError(f"{where}: the exercise cell does not parse ({error})") from None
    lines = text.splitlines()
    checks = [
        node for node in tree.body
        if isinstance(node, ast.FunctionDef) and CHECK_RE.match(node.name)
    ]  # fmt: skip
    if len(checks) != 1:
        raise ConventionError(
            f"{where}: an exercise cell defines one check_exercise_N, this one {len(checks)}"
        )
    number = int(CHECK_RE.match(checks[0].name).group(1))
    calls = [node for node in tree.body if calls_check(node, number)]
    if not calls:
        raise ConventionError(f"{where}: the exercise cell never calls {checks[0].name}")
    taken = set()

    def segment(node):
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        taken.update(range(first - 1, node.end_lineno))
        return "\n".join(lines[first - 1 : node.end_lineno])

    definition = segment(checks[0])
    call_texts = [segment(call) for call in calls]
    stub = "\n".join(line for i, line in enumerate(lines) if i not in taken)
    return number, tidy(stub), definition, call_texts


def tidy(text):
    """`text` without leading and trailing blank lines, and at most two blank lines in a row."""
    return re.sub(r"\n{4,}", "\n\n\n", text.strip("\n"))


def calls_check(node, number):
    """Whether the statement `node` calls check_exercise_<number> (anywhere inside it)."""
    name = f"check_exercise_{number}"
    return not isinstance(node, ast.FunctionDef) and any(
        isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id == name
        for sub in ast.walk(node)
    )


def solution_code(text, number, where):
    """A code solution cell's source without its #@title line and its calls of the check."""
    text = TITLE_RE.sub("", text, count=1)
    try:
        tree = ast.parse(text)
    except SyntaxError as error:
        raise ConventionError(f"{where}: the solution cell does not parse ({error})") from None
    lines = text.splitlines()
    drop = set()
    for node in tree.body:
        if calls_check(node, number):  # the statement that calls the check goes to the test
            drop.update(range(node.lineno - 1, node.end_lineno))
    return tidy("\n".join(line for i, line in enumerate(lines) if i not in drop))


def graded_check(number, definition, calls):
    """Source of the autograded test cell: the check, called with its printed text asserted."""
    called = textwrap.indent("\n".join(calls), "    ")
    return (
        "import contextlib\nimport io\n\n\n"
        f"{definition}\n\n\n"
        f'# Graded: full points when the self-check says "Exercise {number}: correct".\n'
        "with contextlib.redirect_stdout(io.StringIO()) as _printed:\n"
        f"{called}\n"
        'print(_printed.getvalue(), end="")\n'
        "assert any(\n"
        f'    line.startswith("Exercise {number}: correct") '
        "for line in _printed.getvalue().splitlines()\n"
        f'), "Exercise {number} is not done yet, or not right: see the message above"\n'
    )


def stars(text):
    return text.count("\u2605")


def is_tagged(cell, tag):
    return tag in cell.get("metadata", {}).get("tags", [])


def nbgrader_source(nb, name="notebook"):
    """`nb` (nbformat v4) as an nbgrader source notebook; returns (nb, {grade_id: points}).

    Reads the convention of the series (see the module docstring) and raises
    ConventionError, naming the cell, where a notebook departs from it.
    """
    cells = nb.cells
    # pass 1: number each exercise cell and solution cell, and collect the solutions
    current, points, numbered = None, {}, []
    for index, cell in enumerate(cells):
        tags = cell.get("metadata", {}).get("tags", [])
        where = f"{name}, cell {index}"
        number = None
        if cell.cell_type == "markdown":
            for match in HEADING_RE.finditer(cell.source):
                current = int(match.group(1))
                points[current] = max(stars(match.group(2)), 1)
        if EXERCISE_TAG in tags and cell.cell_type == "code":
            number = split_starter(cell.source, where)[0]
            current = number
        elif SOLUTION_TAG in tags and cell.cell_type == "code":
            match = TITLE_RE.match(cell.source)
            number = int(match.group(1)) if match else current
        elif SOLUTION_TAG in tags or EXERCISE_TAG in tags:  # markdown
            match = WRITTEN_RE.search(cell.source.split("\n", 1)[0])
            number = int(match.group(1)) if match and SOLUTION_TAG in tags else current
        if (SOLUTION_TAG in tags or EXERCISE_TAG in tags) and number is None:
            raise ConventionError(f"{where}: a {' and '.join(tags)} cell before any exercise")
        numbered.append(number)

    starters = [
        n for n, c in zip(numbered, cells) if c.cell_type == "code" and is_tagged(c, EXERCISE_TAG)
    ]
    for number in set(starters):
        if starters.count(number) > 1:
            raise ConventionError(
                f"{name}: {starters.count(number)} exercise cells call check_exercise_{number}"
            )
    for index, (number, cell) in enumerate(zip(numbered, cells)):
        if cell.cell_type == "code" and is_tagged(cell, SOLUTION_TAG) and number not in starters:
            raise ConventionError(
                f"{name}, cell {index}: a code solution of exercise {number}, "
                "which has no exercise cell (tagged exercise, defining check_exercise_N)"
            )

    def of(number, kind, tag):
        return [
            i for i, cell in enumerate(cells)
            if numbered[i] == number and cell.cell_type == kind
            and tag in cell.get("metadata", {}).get("tags", [])
        ]  # fmt: skip

    out, grades = [], {}
    for index, cell in enumerate(cells):
        tags = cell.get("metadata", {}).get("tags", [])
        number, where = numbered[index], f"{name}, cell {index}"
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        if SOLUTION_TAG not in tags and EXERCISE_TAG not in tags:
            out.append(cell)
            continue
        if EXERCISE_TAG in tags and cell.cell_type == "code":
            _, stub, definition, calls = split_starter(cell.source, where)
            solutions = [
                solution_code(cells[i].source, number, f"{name}, cell {i}")
                for i in of(number, "code", SOLUTION_TAG)
            ]
            if not solutions:
                raise ConventionError(f"{where}: exercise {number} has no code solution cell")
            answer = nbformat.v4.new_code_cell(
                (f"{stub}\n\n" if stub else "") + f"{BEGIN}\n" + "\n\n".join(solutions) + f"\n{END}",
                metadata={"tags": tags, "nbgrader": nbgrader_metadata(
                    f"exercise_{number}_answer", solution=True, grade=False)},
            )  # fmt: skip
            answer.id = cell.get("id", answer.id)  # ids follow the source: reproducible output
            check_id = f"exercise_{number}_check"
            grades[check_id] = points.get(number, 1)
            test = nbformat.v4.new_code_cell(
                graded_check(number, definition, calls),
                metadata={"nbgrader": nbgrader_metadata(
                    check_id, solution=False, grade=True, points=grades[check_id], locked=True)},
            )  # fmt: skip
            test.id = f"{answer.id}-check"[:64]
            out += [answer, test]
        elif EXERCISE_TAG in tags:  # a markdown starter: the skeleton of a written answer
            models = [cells[i].source.strip() for i in of(number, "markdown", SOLUTION_TAG)]
            grade_id = f"exercise_{number}_written"
            grades[grade_id] = 1
            cell.source = tidy(cell.source) + f"\n\n{BEGIN}\n" + "\n\n".join(models) + f"\n{END}"
            cell.metadata["nbgrader"] = nbgrader_metadata(
                grade_id, solution=True, grade=True, points=1
            )
            out.append(cell)
        elif cell.cell_type == "markdown" and not of(number, "markdown", EXERCISE_TAG):
            # a written solution with no skeleton: a written answer of its own
            written = of(number, "markdown", SOLUTION_TAG)
            grade_id = f"exercise_{number}_written" + (
                f"_{written.index(index) + 1}" if len(written) > 1 else ""
            )
            grades[grade_id] = 1
            answer = nbformat.v4.new_markdown_cell(
                f"**Exercise {number}: your written answer**\n\n{BEGIN}\n"
                f"{cell.source.strip()}\n{END}",
                metadata={"nbgrader": nbgrader_metadata(grade_id, solution=True, grade=True, points=1)},
            )  # fmt: skip
            answer.id = cell.get("id", answer.id)
            out.append(answer)
        # code solution cells went into their answer cell; written ones into their skeleton
    nb.cells = out
    for cell in nb.cells:
        cell.metadata.pop("jupyter", None)  # nothing folded: solutions are markers now
        cell.metadata.pop("cellView", None)
    return nb, grades


def write_nbgrader_course(paths, outdir, helpers):
    """Write the nbgrader course folder `outdir`: one assignment per notebook.

    Every notebook is converted before anything is written."""
    converted = []
    for path in paths:
        nb, grades = nbgrader_source(nbformat.read(path, as_version=4), path.name)
        nbformat.validate(nb)
        converted.append((path, nb, grades))
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "nbgrader_config.py").write_text(NBGRADER_CONFIG, encoding="utf-8")
    for path, nb, grades in converted:
        folder = outdir / "source" / path.stem
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / path.name)
        shutil.copyfile(helpers, folder / "helpers.py")
        checks = sum(1 for g in grades if g.endswith("_check"))
        print(
            f"{path.stem}: {checks} autograded checks, {len(grades) - checks} written answers, "
            f"{sum(grades.values())} points"
        )
    print(f"nbgrader course in {outdir}: run `nbgrader generate_assignment NAME` there")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="OUTDIR receives the notebooks and a copy of helpers.py (self-contained edition); "
        "the notebooks read their data from OUTDIR/.tmp.",
    )
    parser.add_argument("outdir", type=Path, help="folder to write the student edition into")
    parser.add_argument(
        "--nbgrader", action="store_true",
        help="write an nbgrader course folder (source/NAME/ per notebook) instead",
    )  # fmt: skip
    parser.add_argument(
        "--notebooks", type=Path, default=ROOT / "notebooks", help="source notebooks folder"
    )
    parser.add_argument(
        "--helpers", type=Path, default=ROOT / "helpers.py", help="helpers.py to copy along"
    )
    args = parser.parse_args(argv)

    source, outdir = args.notebooks.resolve(), args.outdir.resolve()
    paths = sorted(source.glob("*.ipynb"))
    if not paths:
        parser.error(f"no notebooks (*.ipynb) in {source}")
    if outdir == source:
        parser.error(f"refusing to write into the source notebooks folder {source}")
    if not args.helpers.is_file():
        parser.error(f"{args.helpers} not found")
    if (outdir / "helpers.py").exists() and (outdir / "helpers.py").samefile(args.helpers):
        parser.error(f"refusing to write into {outdir}: it holds the source helpers.py")

    if args.nbgrader:
        try:
            write_nbgrader_course(paths, outdir, args.helpers)
        except ConventionError as error:
            print(f"student_edition: {error}", file=sys.stderr)
            return 1
        return 0
    outdir.mkdir(parents=True, exist_ok=True)
    for path in paths:
        nb, removed = student_copy(nbformat.read(path, as_version=4))
        nbformat.validate(nb)
        nbformat.write(nb, outdir / path.name)
        print(f"{path.name}: {len(nb.cells)} cells kept, {removed} solution cells removed")
    shutil.copyfile(args.helpers, outdir / "helpers.py")
    print(f"helpers.py copied; student edition in {outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
