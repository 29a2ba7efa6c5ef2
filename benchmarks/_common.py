"""Shared helpers for benchmark scripts: medians of repeats and result files with provenance."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from openmm_cgml._io import atomic_write_text, machine_info, package_versions

RESULTS = Path(__file__).resolve().parent / "results"


def median_time(fn: Callable[[], object], repeats: int = 3) -> tuple[float, list[float]]:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` runs (and all the samples)."""
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), samples


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
