"""benchmarks/run_all.py: every benchmark script is listed and planned, selection and skips, the summary and exit code
(with stand-in scripts: no benchmark is run here)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
SCRIPT = BENCHMARKS / "run_all.py"
sys.path.insert(0, str(BENCHMARKS))

import run_all  # noqa: E402

#: Every benchmark and study script, found independently of run_all.py (helpers and extend_melt_gpu.py, a tool in
#: three steps over two machines, are not benchmarks).
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py")
                 if p.name not in ("_common.py", "_trimethylpentane.py", "extend_melt_gpu.py", "run_all.py"))


def _run(*args, timeout=120):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def test_every_benchmark_script_is_registered():
    assert "bench_gpu.py" in SCRIPTS and "bench_neural.py" in SCRIPTS
    assert run_all.benchmark_scripts() == SCRIPTS
    assert run_all.unregistered() == [], "add these scripts to ENTRIES in benchmarks/run_all.py"
    assert {e.script for e in run_all.ENTRIES} == set(SCRIPTS)
    assert len({e.name for e in run_all.ENTRIES}) == len(run_all.ENTRIES)


def test_list_covers_every_script():
    proc = _run("--list")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    listed = {line.split(": ", 1)[1].split(";")[0].split()[0] for line in lines}
    assert listed == set(SCRIPTS)
    assert "NOT REGISTERED" not in proc.stdout
    by_name = {line.split(":", 1)[0]: line for line in lines}
    assert "--polymer-output" in by_name["bench_polymer"] and "runs/polymer_pe" in by_name["bench_polymer"]
    assert "--study-output" in by_name["bench_temperature"]
    assert "CUDA" in by_name["bench_gpu"]


def test_dry_run_covers_every_script_and_the_docs():
    proc = _run("--dry-run")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for entry in run_all.ENTRIES:
        line = next(x for x in out.splitlines() if f"] {entry.name}: " in x)
        assert str(BENCHMARKS / entry.script) in line or "skipped:" in line, line
    for script in SCRIPTS:
        entries = [e.name for e in run_all.ENTRIES if e.script == script]
        assert any(f"] {name}: " in out for name in entries), script
    assert "sphinx -b html docs docs/_build/html" in out
    assert "no CUDA" not in out  # a dry run runs nothing, bench_gpu included
    no_docs = _run("--dry-run", "--no-docs", "--only", "bench_gpu.py", "bench_pair_layout")
    assert no_docs.returncode == 0, no_docs.stderr
    commands = [x for x in no_docs.stdout.splitlines() if x.startswith("[")]
    assert [c.split("] ")[1].split(":")[0] for c in commands] == ["bench_pair_layout", "bench_gpu"]
    assert "docs: not rebuilt" in no_docs.stdout


def test_unknown_names_are_refused_clearly():
    proc = _run("--only", "bench_nothing", "bench_gpu")
    assert proc.returncode == 2
    assert "unknown benchmark name(s) bench_nothing" in proc.stderr and "bench_gpu" in proc.stderr
    proc = _run("--dry-run", "--skip", "nope")
    assert proc.returncode == 2 and "--skip: unknown benchmark name(s) nope" in proc.stderr


def test_run_directory_inputs(tmp_path):
    polymer = next(e for e in run_all.ENTRIES if e.name == "bench_polymer")
    unfinished = tmp_path / "polymer"
    unfinished.mkdir()
    p = run_all.plan(polymer, unfinished, set())
    assert p.skip and "not a finished run directory" in p.skip and "summary.json" in p.skip
    for marker in polymer.markers:
        (unfinished / marker).write_text("")
    p = run_all.plan(polymer, unfinished, set())
    assert p.skip is None and p.command[-2:] == ["--polymer-output", str(unfinished)]
    assert p.command[:2] == [sys.executable, str(BENCHMARKS / "bench_polymer.py")]
    # a study input made earlier in the same run is a note while it is missing, a skip when its maker is not run
    learn = run_all.Entry("x", "study_learn.py", requires=("no/such/index.csv",), made_by="bench_sweep", how="make it")
    assert run_all.plan(learn, None, {"bench_sweep"}).skip is None
    assert "bench_sweep" in run_all.plan(learn, None, {"bench_sweep"}).note
    assert "make it" in run_all.plan(learn, None, set()).skip


def test_run_summary_and_exit_code(tmp_path, monkeypatch, capsys):
    (tmp_path / "ok.py").write_text("print('fine')\n")
    (tmp_path / "bad.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / "slow.py").write_text("import time\ntime.sleep(60)\n")
    monkeypatch.setattr(run_all, "HERE", tmp_path)
    monkeypatch.setattr(run_all, "ENTRIES", (
        run_all.Entry("ok", "ok.py"), run_all.Entry("bad", "bad.py"), run_all.Entry("slow", "slow.py"),
        run_all.Entry("needs_run", "ok.py", input_option="--polymer-output", default_inputs=("no/such/dir",),
                      markers=("summary.json",), how="cgml polymer"),
    ))
    code = run_all.main(["--no-docs", "--timeout", "3", "--skip", "slow"])
    out = capsys.readouterr().out
    assert code == 1
    summary = out[out.index("=== summary"):]
    assert "ran (1): ok" in summary
    assert "failed (1): bad (exit code 3" in summary
    assert "slow: --skip" in summary and "needs_run: needs a finished run directory" in summary
    code = run_all.main(["--no-docs", "--timeout", "2", "--only", "slow", "ok"])
    out = capsys.readouterr().out
    assert code == 1 and "slow (timed out after" in out
    assert run_all.main(["--no-docs", "--only", "ok"]) == 0


def test_timeout_stops_the_whole_process_group(tmp_path):
    child = tmp_path / "child.pid"
    script = (f"import subprocess, sys, time\np = subprocess.Popen([sys.executable, '-c', 'import time; "
              f"time.sleep(60)'])\nopen({str(child)!r}, 'w').write(str(p.pid))\ntime.sleep(60)\n")
    code, seconds = run_all.run_command([sys.executable, "-c", script], timeout=8)  # python starts slowly under load
    assert code is None and seconds < 40
    pid = int(child.read_text())
    for _ in range(50):  # the signal is delivered; the process may take a moment to go
        state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
        if state == "" or state.startswith("Z"):
            break
        time.sleep(0.1)
    assert state == "" or state.startswith("Z"), f"the grandchild {pid} survived: {state}"


@pytest.mark.parametrize("name", ["study_neural_structure", "study_neural_structure.py"])
def test_a_script_name_selects_all_its_entries(name):
    proc = _run("--dry-run", "--no-docs", "--only", name)
    assert proc.returncode == 0, proc.stderr
    stages = [e.name for e in run_all.ENTRIES if e.script == "study_neural_structure.py"]
    assert len(stages) == 4
    for stage in stages:
        assert f"] {stage}: " in proc.stdout
    assert "] bench_gpu: " not in proc.stdout
