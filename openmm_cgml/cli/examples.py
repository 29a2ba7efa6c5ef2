"""``cgml examples [-o DIR]``: the example configurations that ship with the package.

Without ``-o`` it lists them, each with its first comment line; with ``-o DIR`` it copies them into DIR (the
same names as in the repository's ``examples/``), refusing to replace a file unless ``--overwrite``.  An
installed package (wheel or conda) carries them as ``openmm_cgml/examples``; an editable install reads the
checkout's ``examples/``.
"""

from __future__ import annotations

import shutil
from importlib.resources import files
from pathlib import Path

from ..exceptions import ConfigurationError, MissingDependencyError

#: What an example is (the build hook in setup.py installs the same patterns).
PATTERNS = ("*.yaml", "*.py", "*/*.yaml", "*/*.py", "*/*.offxml")


def examples_dir() -> Path:
    """The folder of example configurations: the installed copy, else the source checkout's ``examples/``."""
    installed = Path(str(files("openmm_cgml"))) / "examples"
    if installed.is_dir():
        return installed
    checkout = Path(__file__).resolve().parents[2] / "examples"
    if checkout.is_dir() and (checkout.parent / "pyproject.toml").is_file():
        return checkout
    raise MissingDependencyError("this installation of openmm_cgml has no example configurations (neither "
                                 f"{installed} nor a source checkout's examples/); reinstall it from a wheel or sdist")


def example_files() -> list[Path]:
    """Every example, as paths relative to :func:`examples_dir`, sorted."""
    root = examples_dir()
    return sorted({p.relative_to(root) for pattern in PATTERNS for p in root.glob(pattern)})


def _summary(path: Path) -> str:
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("#") and not line.startswith("#!"):
            return line.lstrip("# ").strip()
        if line.startswith('"""'):
            return line.strip('"').strip()
    return ""


def copy_examples(target: Path, *, overwrite: bool = False) -> list[Path]:
    """Copy every example into ``target`` (created); refuses before copying anything if one would be replaced."""
    root, names = examples_dir(), example_files()
    target = Path(target)
    clashes = [str(target / n) for n in names if (target / n).exists()]
    if clashes and not overwrite:
        raise ConfigurationError(f"{len(clashes)} example file(s) already exist in {target} (first: {clashes[0]}); "
                                 "pass --overwrite to replace them")
    written = []
    for name in names:
        dest = target / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / name, dest)
        written.append(dest)
    return written


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("examples", help="list the example configurations, or copy them into a folder (-o)",
                              description=__doc__)
    p.add_argument("-o", "--output", type=Path, help="folder to copy the examples into")
    p.add_argument("--overwrite", action="store_true", help="replace example files that already exist there")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.output is None:
        root = examples_dir()
        print(f"examples in {root} (cgml examples -o DIR copies them):")
        for name in example_files():
            print(f"  {str(name):32s} {_summary(root / name)}")
        return 0
    written = copy_examples(args.output, overwrite=args.overwrite)
    print(f"copied {len(written)} example files into {args.output}")
    return 0
