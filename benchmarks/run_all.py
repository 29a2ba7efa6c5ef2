"""Refresh ``benchmarks/results/``: run every benchmark and study script of ``benchmarks/`` in turn, then rebuild the
documentation, whose results page is generated from those files.

Each script runs as a subprocess of this Python (its output streamed), in the order of :data:`ENTRIES`, so that a
study that reads what an earlier benchmark wrote (``study_learn`` reads the sweep ``bench_sweep`` writes to
``runs/sweeps/fast``) finds it.  Scripts that work on a finished run directory are run only when their input is
given (``--polymer-output``, ``--study-output``, ``--demo-output``) or is found, finished, at its documented default
path; otherwise they are skipped with a message saying what to run first.  ``bench_gpu.py`` skips itself quickly on
a machine without CUDA.  A script that exits non-zero, or runs past ``--timeout`` (its whole process group is then
stopped), counts as failed and the others go on.  The summary at the end lists what ran, what failed (exit codes)
and what was skipped (why); the exit code is 1 when anything failed.  Then, unless ``--no-docs``, the documentation
is rebuilt: ``python -m sphinx -b html docs docs/_build/html``.

Most scripts take minutes to hours on a small machine (``--list`` gives what each needs, and its cost where its own
documentation states one).

Usage::

    python benchmarks/run_all.py --list                      # the scripts, what each needs, whether it is there
    python benchmarks/run_all.py --dry-run                   # the commands it would run
    python benchmarks/run_all.py --only bench_pair_layout bench_neural --timeout 7200
    python benchmarks/run_all.py --skip bench_sweep study_dynamics --polymer-output runs/polymer_pe
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: Files of ``benchmarks/`` that are not benchmarks.
# extend_melt_gpu.py is a tool in three steps over two machines (prepare here, run on a GPU machine, ingest here),
# whose output study_melt_start.py analyses; not a benchmark that one command runs
NOT_BENCHMARKS = ("_common.py", "_trimethylpentane.py", "extend_melt_gpu.py", "run_all.py")
DOCS_COMMAND = ("-m", "sphinx", "-b", "html", "docs", "docs/_build/html")


@dataclass(frozen=True)
class Entry:
    """One run of a script.  ``input_option`` names the option (of this script and of the benchmark) that gives the
    run directory it works on; ``default_inputs`` are the documented places it is looked for, finished when it holds
    every file of ``markers``.  ``requires``: files (relative to the repository) that must exist when it starts,
    made by ``made_by`` (an earlier entry) or as ``how`` says."""

    name: str
    script: str
    args: tuple[str, ...] = ()
    cost: str = ""
    input_option: str | None = None
    default_inputs: tuple[str, ...] = ()
    markers: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    made_by: str | None = None
    how: str = ""
    note: str = ""

    @property
    def stem(self) -> str:
        return Path(self.script).stem


_DEMO_MARKERS = ("cg_reference.h5", "neural_run.h5", "neural/model.cgml", "compare", "neural_compare")
_DEMO = dict(input_option="--demo-output", default_inputs=("demo-output",), markers=_DEMO_MARKERS,
             how="cgml demo examples/demo.yaml (the full demo, about 40 minutes)")
_TRANSFER = ("fast", "npentane", "nhexane", "23dimethylbutane", "2methylpentane")

#: Every benchmark run, in the order they run.
ENTRIES: tuple[Entry, ...] = (
    Entry("bench_aa_reference", "bench_aa_reference.py", note="runs an AA reference (OpenFF, AM1-BCC)"),
    Entry("bench_cg_speed", "bench_cg_speed.py", note="runs an AA reference (OpenFF, AM1-BCC) in /tmp/cg_bench"),
    Entry("bench_ibi", "bench_ibi.py", note="runs an AA reference (OpenFF, AM1-BCC) in /tmp/ibi_bench"),
    Entry("bench_neural", "bench_neural.py", note="runs an AA reference (OpenFF, AM1-BCC) in /tmp/neural_bench"),
    Entry("bench_neural_scaling", "bench_neural_scaling.py", cost="about 10 min"),
    Entry("bench_training_peer", "bench_training_peer.py", cost="a few min",
          note="installs torchmd-net 3.1.0 (pip --no-deps; benchmark-only) when missing; uses /tmp/neural_bench"),
    Entry("bench_pair_layout", "bench_pair_layout.py", note="its LAMMPS arm only if lmp is on PATH"),
    Entry("bench_analysis", "bench_analysis.py"),
    Entry("bench_thermostat_interval", "bench_thermostat_interval.py", cost="a few min",
          note="CPU; on a GPU machine run it again with --platform CUDA"),
    Entry("bench_gpu", "bench_gpu.py",
          note="needs a CUDA device; without one it prints a skip message and exits at once, writing nothing"),
    Entry("bench_sweep", "bench_sweep.py", cost="hours", note="writes runs/sweeps/ (outside git); resumes"),
    Entry("study_learn", "study_learn.py", cost="a few min", requires=("runs/sweeps/fast/index.csv",),
          made_by="bench_sweep", how="python benchmarks/bench_sweep.py"),
    Entry("study_learn_transfer", "study_learn.py",
          args=("--config", "examples/learn_transfer.yaml", "--name", "study_learn_transfer"), cost="a few min",
          requires=tuple(f"runs/sweeps/{m}/index.csv" for m in _TRANSFER),
          how="bench_sweep.py for runs/sweeps/fast, and cgml sweep examples/transfer/<molecule>.yaml -o "
              "runs/sweeps/<molecule> for the four others (examples/learn_transfer.yaml)"),
    Entry("study_dynamics", "study_dynamics.py", args=("all",), cost="about 1.7 h on two cores",
          note="work directory runs/study_dynamics; resumes"),
    Entry("study_hexane_priors", "study_hexane_priors.py", cost="about 35 min on two cores",
          note="runs an AA reference (OpenFF, AM1-BCC) in runs/hexane"),
    Entry("study_neural_structure", "study_neural_structure.py", cost="about half an hour on two cores", **_DEMO),
    Entry("study_neural_structure_force_map", "study_neural_structure.py", args=("--stage", "force-map"),
          cost="a minute", **_DEMO),
    Entry("study_neural_structure_force_map_train", "study_neural_structure.py",
          args=("--stage", "force-map-train"), cost="about 10 min", **_DEMO),
    Entry("study_neural_structure_speed", "study_neural_structure.py", args=("--stage", "speed"),
          cost="a few min", **_DEMO),
    Entry("bench_polymer", "bench_polymer.py", input_option="--polymer-output",
          default_inputs=("runs/polymer_pe", "runs/polymer_pe_cpu", "runs/polymer_pe_cpu_ibi"),
          markers=("summary.json", "chains.json", "aa.h5", "aa.system.xml"),
          how="cgml polymer examples/polymer/pe.yaml (or pe_cpu.yaml, pe_cpu_ibi.yaml)"),
    Entry("study_melt_start", "study_melt_start.py", cost="about 1.5 h on two cores",
          note="runs an AA melt of 48 n-C32 (OpenFF, AM1-BCC) in runs/melt_start; resumes; analyses "
               "runs/melt_start/cg_c32_extended.h5 (extend_melt_gpu.py) when it is there"),
    Entry("study_il_references", "study_il_references.py", input_option="--study-output",
          default_inputs=("runs/temperature_bmim_bf4_gpu",), markers=("T400/aa.h5",), cost="seconds",
          how="cgml temperature examples/ionic_liquid/bmim_bf4_gpu.yaml --prepare-references, then "
              "devtools/gpu_references.py on a GPU (the example's header)"),
    Entry("bench_temperature", "bench_temperature.py", input_option="--study-output",
          default_inputs=("runs/temperature_tmp_two_cores", "runs/temperature_bmim_bf4"), markers=("summary.json",),
          how="cgml temperature examples/temperature/tmp_two_cores.yaml (or examples/ionic_liquid/bmim_bf4.yaml)"),
)


def benchmark_scripts() -> list[str]:
    """The benchmark and study scripts of ``benchmarks/`` (file names)."""
    return sorted(p.name for p in HERE.glob("*.py") if p.name not in NOT_BENCHMARKS)


def unregistered() -> list[str]:
    """Scripts of ``benchmarks/`` that no entry runs (add them to :data:`ENTRIES`)."""
    known = {e.script for e in ENTRIES}
    return [s for s in benchmark_scripts() if s not in known]


@dataclass
class Plan:
    entry: Entry
    command: list[str] = field(default_factory=list)
    skip: str | None = None
    note: str = ""


def _finished(path: Path, markers: tuple[str, ...]) -> list[str]:
    """The markers missing from ``path``."""
    return [m for m in markers if not (path / m).exists()]


def plan(entry: Entry, given: Path | None, selected: set[str]) -> Plan:
    """The command of ``entry`` (with its input: ``given``, else the first finished default), or why it is skipped.
    A required file that an earlier selected entry makes (``made_by``) is a note, not a skip, until it runs."""
    p = Plan(entry, [sys.executable, str(HERE / entry.script), *entry.args])
    if entry.input_option:
        if given is not None:
            path = given if given.is_absolute() else Path.cwd() / given
            missing = _finished(path, entry.markers)
            if not path.is_dir() or missing:
                p.skip = (f"{entry.input_option} {given} is not a finished run directory (missing: "
                          f"{', '.join(missing) if path.is_dir() else 'the directory'}); make it with: {entry.how}")
                return p
        else:
            found = [ROOT / d for d in entry.default_inputs if (ROOT / d).is_dir() and not _finished(ROOT / d,
                                                                                                     entry.markers)]
            if not found:
                p.skip = (f"needs a finished run directory: give {entry.input_option} PATH, or make one at "
                          f"{' or '.join(entry.default_inputs)} with: {entry.how}")
                return p
            path = found[0]
        p.command += [entry.input_option, str(path)]
    missing = [r for r in entry.requires if not (ROOT / r).exists()]
    if missing:
        if entry.made_by and entry.made_by in selected:
            p.note = f"needs {', '.join(missing)}, which {entry.made_by} (run before it) writes"
        else:
            p.skip = f"needs {', '.join(missing)}: make it with: {entry.how}"
    return p


def describe(entry: Entry, given: Path | None) -> str:
    """One ``--list`` line: the name, the command, its cost and what it needs (and whether that is there)."""
    p = plan(entry, given, set())
    parts = [f"{entry.name}: {' '.join([entry.script, *entry.args])}"]
    if entry.cost:
        parts.append(entry.cost)
    if entry.note:
        parts.append(entry.note)
    if entry.input_option:
        parts.append(f"needs a finished run directory ({entry.input_option}; default "
                     f"{' or '.join(entry.default_inputs)}; made by: {entry.how})")
    if entry.requires:
        parts.append(f"needs {', '.join(entry.requires)} (made by: {entry.how})")
    if entry.input_option or entry.requires:
        parts.append("input MISSING now" if p.skip else "input present")
    return "; ".join(parts)


def _select(names: list[str] | None, parser: argparse.ArgumentParser, option: str) -> set[str]:
    """Entry names matching ``names`` (an entry's name, or its script's name with or without ``.py``)."""
    if not names:
        return set()
    chosen, unknown = set(), []
    for name in names:
        key = name.removesuffix(".py")
        hits = {e.name for e in ENTRIES if key in (e.name, e.stem)}
        if hits:
            chosen |= hits
        else:
            unknown.append(name)
    if unknown:
        parser.error(f"{option}: unknown benchmark name(s) {', '.join(unknown)}; known: "
                     f"{', '.join(e.name for e in ENTRIES)}")
    return chosen


def _stop_group(proc: subprocess.Popen) -> None:
    """Stop the process group this script started for ``proc`` (TERM, then KILL after 30 s)."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_command(command: list[str], timeout: float | None) -> tuple[int | None, float]:
    """Run ``command`` in the repository root in its own process group; ``(exit code or None on timeout, s)``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, start_new_session=True)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        return None, time.perf_counter() - t0
    except KeyboardInterrupt:
        _stop_group(proc)
        raise
    return code, time.perf_counter() - t0


def _fmt_s(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min" if seconds >= 60 \
        else f"{seconds:.0f} s"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="list the scripts, what each needs, and exit")
    parser.add_argument("--dry-run", action="store_true", help="print the commands (and the skips) and exit")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these (entry or script names)")
    parser.add_argument("--skip", nargs="+", metavar="NAME", help="do not run these")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="stop a script that runs longer (default: no limit)")
    parser.add_argument("--no-docs", action="store_true", help="do not rebuild the documentation")
    parser.add_argument("--polymer-output", type=Path, help="finished cgml polymer directory for bench_polymer")
    parser.add_argument("--study-output", type=Path, help="finished cgml temperature directory for bench_temperature")
    parser.add_argument("--demo-output", type=Path, help="finished cgml demo directory for study_neural_structure")
    args = parser.parse_args(argv)
    if args.timeout is not None and args.timeout <= 0:
        parser.error("--timeout must be positive")
    only = _select(args.only, parser, "--only")
    skip = _select(args.skip, parser, "--skip")
    given = {"--polymer-output": args.polymer_output, "--study-output": args.study_output,
             "--demo-output": args.demo_output}
    strays = unregistered()
    if args.list:
        for entry in ENTRIES:
            print(describe(entry, given.get(entry.input_option)))
        for script in strays:
            print(f"{script}: NOT REGISTERED in benchmarks/run_all.py (add it to ENTRIES); not run")
        return 0
    for script in strays:
        print(f"warning: {script} is not registered in benchmarks/run_all.py (ENTRIES): it is not run",
              file=sys.stderr)
    selected = [e for e in ENTRIES if (not only or e.name in only) and e.name not in skip]
    names = {e.name for e in selected}
    skipped = [(e.name, "--skip" if e.name in skip else "not in --only") for e in ENTRIES if e.name not in names]
    ran, failed = [], []
    for k, entry in enumerate(selected, 1):
        p = plan(entry, given.get(entry.input_option), names)
        if p.skip:
            print(f"[{k}/{len(selected)}] {entry.name}: skipped: {p.skip}", flush=True)
            skipped.append((entry.name, p.skip))
            continue
        line = shlex.join(p.command)
        if args.dry_run:
            print(f"[{k}/{len(selected)}] {entry.name}: {line}" + (f"   ({p.note})" if p.note else ""))
            continue
        print(f"\n=== [{k}/{len(selected)}] {entry.name} ({entry.cost or 'cost unknown'}): {line}", flush=True)
        try:
            code, seconds = run_command(p.command, args.timeout)
        except KeyboardInterrupt:
            failed.append((entry.name, "interrupted", 0.0))
            print("\ninterrupted", file=sys.stderr)
            _summary(ran, failed, skipped)
            return 130
        if code == 0:
            ran.append((entry.name, seconds))
        else:
            failed.append((entry.name, f"timed out after {_fmt_s(seconds)}" if code is None else f"exit code {code}",
                           seconds))
        print(f"=== {entry.name}: {'ok' if code == 0 else failed[-1][1]} ({_fmt_s(seconds)})", flush=True)
    docs = [sys.executable, *DOCS_COMMAND]
    if args.dry_run:
        print(f"docs: {shlex.join(docs)}" if not args.no_docs else "docs: not rebuilt (--no-docs)")
        return 0
    if not args.no_docs:
        print(f"\n=== docs: {shlex.join(docs)}", flush=True)
        code, seconds = run_command(docs, args.timeout)
        if code == 0:
            ran.append(("docs", seconds))
        else:
            failed.append(("docs", f"timed out after {_fmt_s(seconds)}" if code is None else f"exit code {code}",
                           seconds))
    _summary(ran, failed, skipped)
    return 1 if failed else 0


def _summary(ran, failed, skipped) -> None:
    print("\n=== summary")
    print(f"ran ({len(ran)}): " + (", ".join(f"{n} ({_fmt_s(s)})" for n, s in ran) or "none"))
    print(f"failed ({len(failed)}): " + (", ".join(f"{n} ({why}, {_fmt_s(s)})" for n, why, s in failed) or "none"))
    print(f"skipped ({len(skipped)}):" + ("" if skipped else " none"))
    for name, why in skipped:
        print(f"  {name}: {why}")


if __name__ == "__main__":
    sys.exit(main())
