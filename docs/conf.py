"""Sphinx configuration of the course website (built by ``python tools/build_site.py``).

The pages are MyST-NB renderings of the committed, executed notebooks: nothing is
re-executed and nothing is fetched from a network, at build time or when a page is read.
MathJax comes from a pinned PyPI package (requirements-site.txt) and is copied into the
site's ``_static`` folder. ``tools/build_site.py`` stages the sources (README as the index
page, the notebooks with their solutions folded, ``docs/api.md``) and runs
``sphinx-build -c docs STAGE OUT``, so this file is read from ``docs/``.
"""

import shutil
import sys
from importlib.resources import files
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # helpers.py, for autodoc
sys.path.insert(0, str(ROOT / "tools"))  # publish.py knows where the series is published

import publish  # noqa: E402

project = "Gaussian mixture models on MNIST"
author = "the authors of the series"
copyright = "the authors of the series; MNIST by Y. LeCun, C. Cortes and C. J. C. Burges"

extensions = [
    "myst_nb",  # notebooks and Markdown (MyST), with dollar math
    "sphinx.ext.autodoc",  # the API page, from helpers.py's docstrings
    "sphinx.ext.napoleon",  # ... which are in numpydoc style
    "sphinx.ext.mathjax",
    "sphinx_design",  # the dropdowns that fold the written solutions
]

# --- notebooks: render what is committed, never execute -----------------------------------
nb_execution_mode = "off"
nb_merge_streams = True  # one block per cell for consecutive prints
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_dmath_double_inline = True  # `$$...$$` inside a paragraph is display math too
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]  # notebooks go from their title (#) to ### exercises

# --- mathematics offline: MathJax 3 from the pinned package, served from _static ----------
MATHJAX_ES5 = files("mathjax") / "static" / "mathjax" / "es5"  # django-static-mathjax
mathjax_path = "mathjax/es5/tex-chtml.js"  # relative to _static; fonts load from beside it

# --- API page -------------------------------------------------------------------------------
autodoc_member_order = "bysource"  # the order of helpers.py: the order of the series
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_rtype = False

# --- theme; a Colab launch button on every notebook page once the series is published ------
html_theme = "sphinx_book_theme"
html_title = project
html_static_path = []
html_theme_options = {
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "use_download_button": True,
}


def launch_buttons(app, config):
    """Colab launch button (and repository link) on every notebook page, once published.

    The repository comes from the notebooks being built (their HELPERS_URL line, which
    tools/publish.py sets): none until the series is published.
    """
    published = publish.published_repository(Path(app.srcdir) / "notebooks")
    if published is not None:
        repo_url, branch = published
        config.html_theme_options.update(
            repository_url=repo_url,
            repository_branch=branch,
            path_to_docs="",  # the staged tree mirrors the repository: notebooks/NAME.ipynb
            use_repository_button=True,
            launch_buttons={"colab_url": "https://colab.research.google.com"},
        )


exclude_patterns = ["_build", "**.ipynb_checkpoints", ".tmp"]


def copy_mathjax(app, exception):
    """Put MathJax (script and fonts) into the built site's _static folder."""
    if exception is None and app.builder.format == "html":
        target = Path(app.outdir) / "_static" / "mathjax" / "es5"
        shutil.copytree(MATHJAX_ES5, target, dirs_exist_ok=True)


def setup(app):
    app.connect("config-inited", launch_buttons)
    app.connect("build-finished", copy_mathjax)
