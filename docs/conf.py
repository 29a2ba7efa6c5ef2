"""Sphinx configuration of the openmm_cgml documentation (Sphinx + MyST, no network needed).

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` (``tests/test_docs.py`` runs it,
warnings are errors).
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(ROOT))  # the package itself, also when it is not installed

import openmm_cgml  # noqa: E402

project = "openmm_cgml"
author = "the openmm_cgml developers"
copyright = "the openmm_cgml developers"  # noqa: A001
release = version = openmm_cgml.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "cgml_docs",  # docs/_ext/cgml_docs.py: results tables, layers and entry points read from the repository
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# API reference: numpydoc docstrings through napoleon; attributes as fields so dataclass fields documented by
# autodoc and by an "Attributes" section do not describe the same object twice.
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_ivar = True
napoleon_use_rtype = False
# pydantic models: their model_config is configuration, not API
autodoc_default_options = {"members": True, "member-order": "bysource",
                           "exclude-members": "model_config, model_fields, model_computed_fields"}
autodoc_typehints = "none"  # the numpydoc sections carry types and units
autodoc_class_signature = "mixed"
autodoc_inherit_docstrings = True
add_module_names = False
python_display_short_literal_types = True
suppress_warnings: list[str] = []

html_theme = "alabaster"
html_title = f"openmm_cgml {release}"
html_static_path: list[str] = []
html_theme_options = {"description": "Coarse-grained models from all-atom OpenFF/OpenMM references, run in OpenMM",
                      "fixed_sidebar": False, "page_width": "1200px", "sidebar_width": "260px"}
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]}
html_show_sourcelink = False
