"""Write the student edition of the series: every notebook without its solution cells.

    python tools/student_edition.py OUTDIR [--notebooks notebooks]

For each notebook in the notebooks folder (every *.ipynb), writes a copy into OUTDIR with
every cell tagged "solution" removed (code and markdown alike), all outputs and execution
counts cleared and the execution timestamps dropped from the cell metadata. The exercise
starters (tagged "exercise") and their self-checks stay. helpers.py is copied into OUTDIR
too, so the folder is self-contained: the setup cell of each notebook finds helpers.py in
its own folder (or a parent), and then reads the data from OUTDIR/.tmp (downloaded there on
first run, or link it to an existing data folder). Every written notebook is validated with
nbformat. The tool refuses to write into the source notebooks folder.

Why not nbgrader or jupytext: nbgrader does this job only with its own solution markers,
its database and its course folder layout, and jupytext converts formats but does not drop
cells; the series needs only "drop the cells tagged solution, clear outputs", which this
standard-library script does (nbformat aside) in a few lines.
"""

import argparse
import shutil
import sys
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


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="OUTDIR receives the notebooks and a copy of helpers.py (self-contained edition); "
        "the notebooks read their data from OUTDIR/.tmp.",
    )
    parser.add_argument("outdir", type=Path, help="folder to write the student edition into")
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
