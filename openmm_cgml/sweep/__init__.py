"""Parameter sweeps: many AA -> mapping -> IBI -> CG -> alpha pipelines over sampled force-field parameters,
run as idempotent tasks on Dask (a LocalCluster here, any scheduler, or SLURM / PBS through dask-jobqueue).

:class:`SweepConfig` is the definition (``cgml sweep``'s YAML), :func:`generate_samples` its samples,
:func:`run_sweep` runs (or resumes) it and writes the index (``index.csv``).  :func:`run_temperature_study`
(``cgml temperature``) runs one system across temperatures: AA references as tasks on the same executor, then
temperature-conditioned models tested at temperatures they never saw, and the Arrhenius comparison.
:func:`archive_sweep` (``cgml sweep --archive``) keeps a sweep's results without its trajectories.
"""

from __future__ import annotations

from .archive import archive_sweep
from .definition import OpenFFMolecule, ParameterSpec, Sample, SweepConfig, UnitedAtomMolecule, generate_samples
from .execution import (
    SweepResult,
    estimate_cost,
    jobqueue_cluster,
    make_cluster,
    run_sample_task,
    run_sweep,
    sample_status,
    write_index,
)
from .temperature import HeldOut, TemperatureStudyConfig, prepare_references, run_temperature_study, study_plan

__all__ = ["OpenFFMolecule", "ParameterSpec", "Sample", "UnitedAtomMolecule", "SweepConfig", "SweepResult", "generate_samples", "run_sweep",
           "run_sample_task", "write_index", "estimate_cost", "make_cluster", "jobqueue_cluster", "sample_status",
           "HeldOut", "TemperatureStudyConfig", "prepare_references", "run_temperature_study", "study_plan", "archive_sweep"]
