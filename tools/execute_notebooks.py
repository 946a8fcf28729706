"""Re-execute notebooks as they are committed: fresh kernel, top to bottom, no timestamps.

    python tools/execute_notebooks.py notebooks/02_gaussian_mle.ipynb [...]
    python tools/execute_notebooks.py            # all of notebooks/*.ipynb, in order

Each notebook runs in a new kernel with its own folder as the working directory (as
JupyterLab and nbval run it), is saved in place with its outputs, and loses the per-cell
``metadata.execution`` timestamps that Jupyter writes, so that a re-execution changes only
lines that carry content. The wall time of each notebook is printed (the README's table).
A cell that raises stops the run with a non-zero exit and the notebook is not written.
"""

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def strip_execution_metadata(nb):
    """Drop the timestamps Jupyter writes into ``cell.metadata.execution``; return ``nb``."""
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    return nb


def execute(path, timeout=900):
    """Execute the notebook at ``path`` in place; return its wall time in seconds."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    nbformat.validate(nb)
    nbformat.write(strip_execution_metadata(nb), path)
    return elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    total = 0.0
    for path in paths:
        elapsed = execute(path, args.timeout)
        total += elapsed
        print(f"{path.name}: {elapsed:.1f} s", flush=True)
    if len(paths) > 1:
        print(f"all {len(paths)}: {total:.1f} s ({total / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
