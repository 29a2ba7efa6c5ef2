"""``cgml temperature config.yaml``: temperature-transferable CG models and the Arrhenius comparison, from AA
references at several temperatures to leave-one-temperature-out tests
(:func:`openmm_cgml.sweep.temperature.run_temperature_study`)."""

from __future__ import annotations


def run(args) -> int:
    from ..config import load_config
    from ..sweep.temperature import TemperatureStudyConfig, run_temperature_study

    cfg = load_config(args.config, TemperatureStudyConfig)
    if args.overwrite:
        cfg = cfg.model_copy(update={"overwrite": True})
    summary = run_temperature_study(cfg, progress=not args.quiet)
    print(f"summary: {cfg.output.resolve() / 'summary.md'}; Arrhenius plot: {summary['arrhenius_plot']}")
    return 0


def add_parser(subparsers) -> None:
    from ..sweep import temperature as workflow
    from ._help import add_config_command

    add_config_command(subparsers, "temperature", "temperature-transferable CG models: AA references at several "
                       "temperatures, one mapping, IBI per temperature, temperature-conditioned neural models left one "
                       "temperature out, Arrhenius fits and alpha(T)", workflow, run,
                       overwrite="redo every step (default: resume)", quiet=True)
