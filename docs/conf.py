"""Sphinx configuration: ``python3 -m sphinx -W -b html docs docs/_build/html``.

Needs ``pip install 'pcvae-sklearn[docs]'`` (sphinx, numpydoc, myst-parser,
sphinx-gallery, matplotlib). The gallery runs every ``examples/plot_*.py`` in
its fast mode (``PCVAE_EXAMPLE_FAST=1``) unless that variable is set to 0.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PCVAE_EXAMPLE_FAST", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pcvae_sklearn  # noqa: E402

project = "pcvae_sklearn"
author = "pcvae_sklearn developers"
copyright = "pcvae_sklearn developers"
release = pcvae_sklearn.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip",
                    "auto_examples/*.json", "auto_examples/*.md5", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

# API reference: autosummary pages from the numpydoc docstrings
autosummary_generate = True
autodoc_default_options = {"members": False, "inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = set()

# docstrings write absolute values as |Spearman|, |correlation| (reST would read substitutions)
rst_prolog = "\n".join(
    f".. |{word}| replace:: \\|{word}\\|" for word in ("Spearman", "correlation", "rho", "Pearson", "r")
)

myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

intersphinx_mapping = {}  # the docs build offline; no inventories are fetched

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "min_reported_time": 1,
}

html_theme = "alabaster"
html_theme_options = {"description": "Continuous structural heterogeneity in SMLM particles with a point-cloud VAE"}
html_static_path = []
