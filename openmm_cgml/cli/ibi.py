"""``cgml ibi CONFIG.yaml``: iterative Boltzmann inversion of the pair potentials of a mapped dataset
(:func:`openmm_cgml.workflows.run_ibi`)."""

from __future__ import annotations


def run(args) -> int:
    from ..config import load_config
    from ..workflows.ibi import IBIConfig, run_ibi

    config = load_config(args.config, IBIConfig)
    if args.overwrite:
        config = config.model_copy(update={"overwrite": True})
    result = run_ibi(config, progress=True).result
    print(f"IBI {'converged' if result.converged else 'stopped'} after {result.iterations} iterations; best "
          f"iteration {result.best_iteration} with RDF error {result.history[result.best_iteration]['error']:.4f}; "
          f"tables in {config.output_dir}")
    return 0


def add_parser(subparsers) -> None:
    from ..workflows import ibi as workflow
    from ._help import add_config_command

    add_config_command(subparsers, "ibi", "iterative Boltzmann inversion of CG pair potentials", workflow, run, overwrite="start again, replacing output_dir's checkpoint (overwrite: true)")
