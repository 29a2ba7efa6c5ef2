"""``cgml report DIR [-o FILE]``: one self-contained HTML page (:mod:`openmm_cgml.report`) for a workflow directory."""

from __future__ import annotations

from pathlib import Path


def add_parser(subparsers) -> None:
    from .. import report

    p = subparsers.add_parser("report", help="one self-contained HTML page (report.html) for a workflow directory",
                              description=report.__doc__)
    p.add_argument("directory", type=Path, help="what the demo or a cgml command wrote")
    p.add_argument("-o", "--output", type=Path, help="the HTML file (default: DIRECTORY/report.html)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..report import build_report

    report = build_report(args.directory)
    path = report.write(args.output)
    print(f"{path}: {len(report.sections)} sections, {report.figures} figures, {len(report.flags)} failed checks"
          + (f", missing: {'; '.join(report.missing)}" if report.missing else ""))
    return 0
