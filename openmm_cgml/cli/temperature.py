"""``cgml temperature config.yaml``: temperature-transferable CG models and the Arrhenius comparison, from AA
references at several temperatures to leave-one-temperature-out tests
(:func:`openmm_cgml.sweep.temperature.run_temperature_study`)."""

from __future__ import annotations


def run(args) -> int:
    from ..config import load_config
    from ..sweep.temperature import TemperatureStudyConfig, prepare_references, run_temperature_study

    cfg = load_config(args.config, TemperatureStudyConfig)
    if args.overwrite:
        cfg = cfg.model_copy(update={"overwrite": True})
    if args.prepare_references:
        prepared = prepare_references(cfg, progress=not args.quiet)
        for t, record in prepared.items():
            print(f"{t:g} K: {record['checkpoint']} (next stage: {record['stage']})")
        print("resume with `cgml temperature` (here, or on a machine with OpenMM and openmm_cgml alone, the output "
              "folder copied along; each temperature alone: `cgml reference T<K>/reference.yaml -o T<K>/aa.h5`)")
        return 0
    summary = run_temperature_study(cfg, progress=not args.quiet)
    print(f"summary: {cfg.output.resolve() / 'summary.md'}; Arrhenius plot: {summary['arrhenius_plot']}")
    return 0


def add_parser(subparsers) -> None:
    from ..sweep import temperature as workflow
    from ._help import add_config_command

    parser = add_config_command(subparsers, "temperature", "temperature-transferable CG models: AA references at several "
                       "temperatures, one mapping, IBI per temperature, temperature-conditioned neural models left one "
                       "temperature out, Arrhenius fits and alpha(T)", workflow, run,
                       overwrite="redo every step (default: resume)", quiet=True)
    parser.add_argument("--prepare-references", action="store_true",
                        help="only build and minimise every temperature's AA liquid (the steps that need OpenFF) and "
                        "stop: the references then run, or resume, wherever OpenMM and openmm_cgml are installed "
                        "(a GPU node without OpenFF)")
