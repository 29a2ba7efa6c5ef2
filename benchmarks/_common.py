"""Shared helpers for benchmark scripts: medians of repeats, round-robin timing, result files with provenance."""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from openmm_cgml._io import atomic_write_text, machine_info, package_versions

#: Where results go: ``benchmarks/results`` (``CGML_BENCH_RESULTS`` overrides it, e.g. for a test of a script).
RESULTS = Path(os.environ.get("CGML_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")


def median_time(fn: Callable[[], object], repeats: int = 3) -> tuple[float, list[float]]:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` runs (and all the samples)."""
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), samples


def interleaved(calls: dict, rounds: int, *, spread: bool = False) -> dict:
    """Median seconds per unit of each ``name: (fn, units)``, timed round-robin: every round runs one block of
    each call, so machine noise (a shared VM) hits all of them alike and the ratios stay meaningful.  With
    ``spread``: ``{name: {"median", "min", "max", "samples"}}`` instead of the medians alone."""
    for fn, _ in calls.values():
        fn()  # warm-up (TorchScript profiling runs, first neighbour-list build)
    times: dict[str, list] = {k: [] for k in calls}
    for _ in range(rounds):
        for key, (fn, units) in calls.items():
            t0 = time.perf_counter()
            fn()
            times[key].append((time.perf_counter() - t0) / units)
    if not spread:
        return {k: statistics.median(v) for k, v in times.items()}
    return {k: {"median": statistics.median(v), "min": min(v), "max": max(v), "samples": v} for k, v in times.items()}


def load_average() -> list[float]:
    """The machine's 1-, 5- and 15-minute load averages (recorded beside timings: the machines are shared)."""
    import os

    return [round(x, 2) for x in os.getloadavg()]


def write_result(name: str, figures: dict, settings: dict) -> Path:
    """Print ``figures`` and write them with settings, machine and versions to results/<name>.json."""
    payload = {"benchmark": name, "figures": figures, "settings": settings, "machine": machine_info(),
               "versions": package_versions(), "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    path = RESULTS / f"{name}.json"
    atomic_write_text(path, json.dumps(payload, indent=2, default=float) + "\n")
    for key, value in figures.items():
        print(f"{key}: {value}")
    print(f"written to {path}")
    return path
