"""Hooks and a tiny sweep for tests/test_sweep*.py (picklable by value, so Dask worker processes run them)."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def tiny_sweep(output: Path, **overrides) -> dict:
    """A fast-family sweep whose samples take a few seconds: 27 molecules, 6 ps AA, 2 IBI iterations, 5 ps CG."""
    data = {
        "name": "tiny", "output": str(output), "family": "united-atom",
        "molecule": {"count": 27, "cutoff": "0.7 nm", "density": "0.62 g/cm**3"},
        "parameters": [{"handler": "Bonds", "attribute": "k", "factor": [0.5, 2.0]},
                       {"handler": "vdW", "site": "CH3", "attribute": "epsilon", "factor": [0.8, 1.2]}],
        "sampling": {"method": "latin-hypercube", "n_samples": 3, "seed": 5},
        "pipeline": {"aa": {"nvt": "1 ps", "production": "5 ps", "report_interval": "0.1 ps"},
                     "ibi": {"max_iterations": 1, "equilibration_steps": 100, "production_steps": 400,
                             "sample_interval": 20},
                     "cg": {"duration": "4 ps", "equilibration_steps": 100, "report_interval": "0.1 ps"}},
        "execution": {"cluster": "local", "workers": 1, "processes": False},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


class FailFor:
    """Raise for the samples with these indices."""

    def __init__(self, indices):
        self.indices = set(indices)

    def __call__(self, sample):
        if sample.index in self.indices:
            raise RuntimeError(f"deliberate failure of sample {sample.index}")


class CountStarts:
    """Append each pipeline start (sample id) to a file."""

    def __init__(self, path):
        self.path = str(path)

    def __call__(self, sample):
        with open(self.path, "a") as fh:
            fh.write(sample.sample_id + "\n")


class KillWorkerOnce:
    """Record the start, then the first time for sample ``index``: SIGKILL this worker process mid-task."""

    def __init__(self, index, marker, log):
        self.index, self.marker, self.log = index, str(marker), str(log)

    def __call__(self, sample):
        with open(self.log, "a") as fh:
            fh.write(f"{sample.sample_id} {os.getpid()}\n")
        if sample.index == self.index and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
