"""The workflows behind the ``cgml`` commands, as library functions.

Each takes the same pydantic configuration its YAML file holds (``load_config(path, MapConfig)`` reads
one) and returns what it made; the command line only parses, calls and prints.  Library calls draw no
progress bars unless asked (``progress=True``; the CLI asks).

============  ===========================  =====================================================
command       function                     configuration
============  ===========================  =====================================================
cgml map      :func:`run_map`              :class:`MapConfig`
cgml ibi      :func:`run_ibi`              :class:`IBIConfig` (:class:`~openmm_cgml.ibi.IBISettings` + data)
cgml train    :func:`run_train`            :class:`TrainConfig`
cgml build    :func:`run_build`            :class:`BuildConfig`
cgml run      :func:`run_cg`               :class:`RunConfig`
cgml compare  :func:`run_compare`          :class:`CompareConfig`
cgml demo     :func:`run_demo`             :class:`DemoConfig`
============  ===========================  =====================================================

``cgml reference`` is :func:`run_reference` with its :class:`ReferenceConfig` (:mod:`openmm_cgml.reference`,
where the AA side lives, with the diffusion check that ``max_production`` uses).
"""

from .build import BuildConfig, BuildResult, build_system, default_topology_path, run_build
from .compare import CompareConfig, CompareResult, TemperatureRun, run_compare
from .demo import DemoConfig, run_demo
from .export import ExportConfig, ExportResult, run_export
from .ibi import IBIConfig, IBIRun, interpolate_refinements, run_ibi
from .map import MapConfig, MappingSpec, MapResult, build_mapping, run_map
from .polymer import PolymerConfig, TransferTarget, run_polymer
from .reference import ReferenceConfig, ReferenceResult, run_reference
from .run import RunConfig, RunInputs, RunResult, prepare_run, run_cg
from .train import TemperatureDataset, TrainConfig, model_arguments, run_train

__all__ = [
    "ReferenceConfig",
    "ReferenceResult",
    "run_reference",
    "BuildConfig",
    "BuildResult",
    "build_system",
    "run_build",
    "default_topology_path",
    "CompareConfig",
    "CompareResult",
    "TemperatureRun",
    "run_compare",
    "DemoConfig",
    "run_demo",
    "ExportConfig",
    "ExportResult",
    "run_export",
    "PolymerConfig",
    "TransferTarget",
    "run_polymer",
    "IBIConfig",
    "IBIRun",
    "run_ibi",
    "interpolate_refinements",
    "MapConfig",
    "MappingSpec",
    "MapResult",
    "build_mapping",
    "run_map",
    "RunConfig",
    "RunInputs",
    "RunResult",
    "prepare_run",
    "run_cg",
    "TrainConfig",
    "TemperatureDataset",
    "model_arguments",
    "run_train",
]
