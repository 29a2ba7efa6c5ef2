"""The documentation builds without warnings, and the README stays a short front door into it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_docs_build_without_warnings(tmp_path):
    """Sphinx with warnings as errors: a docstring that no longer renders, a page that refers to a removed object,
    or a results file whose structure changed fails here."""
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q", str(DOCS), str(tmp_path / "html")],
        capture_output=True, text=True, cwd=ROOT, timeout=900,
    )
    assert proc.returncode == 0, f"the documentation build failed:\n{proc.stderr[-8000:]}\n{proc.stdout[-2000:]}"
    assert (tmp_path / "html" / "results.html").exists()


def _readme_links() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)


def test_readme_is_short_and_links_to_docs_pages_that_exist():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; it is the front door, the rest goes to docs/"
    local = [link for link in _readme_links() if not re.match(r"[a-z]+://", link)]
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
    linked = {str(Path(link)) for link in local}
    for page in ("docs/index.md", "docs/installation.md", "docs/quickstart.md", "docs/formats.md", "docs/units.md",
                 "docs/extending.md", "docs/architecture.md", "docs/api/index.md", "docs/results.md"):
        assert (ROOT / page).exists(), f"{page} is missing"
        assert page in linked, f"README.md does not link to {page}"


def test_every_benchmark_result_is_on_the_results_page():
    page = (DOCS / "results.md").read_text()
    shown = set(re.findall(r"```\{cgml-(?:benchmark|provenance)\} (\S+)", page))
    results = {p.stem for p in (ROOT / "benchmarks" / "results").glob("*.json")}
    assert results <= shown, f"benchmark results not on docs/results.md: {sorted(results - shown)}"


def test_literature_is_cited_by_reference():
    """Sources are cited by authors and venue ("Bag et al., J. Chem. Theory Comput. 2022"), not by the numbers of
    internal notes ("source 003")."""
    offenders = []
    for folder in ("openmm_cgml", "docs", "examples", "benchmarks", "tests"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".md", ".yaml", ".toml") and "_build" not in path.parts:
                for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                    if re.search(r"\bsources? 00\d", line) and path.name != "test_docs.py":
                        offenders.append(f"{path.relative_to(ROOT)}:{n}")
    readme = (ROOT / "README.md").read_text()
    offenders += ["README.md"] if re.search(r"\bsources? 00\d", readme) else []
    assert not offenders, offenders
