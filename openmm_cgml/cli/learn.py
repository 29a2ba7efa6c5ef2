"""``cgml learn LEARN.yaml``: predicted alpha and IBI potential from parameter sweeps (:func:`openmm_cgml.learn.run_learn`)."""

from __future__ import annotations


def run(args) -> int:
    from ..config import load_config
    from ..learn import LearnConfig, run_learn

    config = load_config(args.config, LearnConfig)
    result = run_learn(config, base=args.config.parent, progress=not args.quiet)
    t, b = result.evaluation["test"], result.evaluation["constant_baseline"]
    print(f"predicted alpha: {result.alpha_model}; on {t['n']} test samples the median relative error is "
          f"{100 * t['median_relative_error']:.1f} % (constant alpha: {100 * b['median_relative_error']:.1f} %), "
          f"{100 * t['within_95']:.0f} % of the measured alphas inside the 95 % interval; "
          f"evaluation: {result.output / 'evaluation.md'}")
    sim = (result.evaluation.get("potential") or {}).get("simulated")
    if sim and sim["n"]:
        print(f"predicted potential: {result.output / 'predicted_potential.json'}; its RDF error over the samples' own "
              f"IBI one on {sim['n']} test samples: median {sim['ratio_median']:.3g}, largest {sim['ratio_max']:.3g}")
    dyn = (result.evaluation.get("dynamics") or {}).get("simulated")
    if dyn and dyn["n"]:
        print(f"dynamics-preserving potential: {result.output / 'dynamics_potential.json'}; D_CG against the target "
              f"D_AA on {dyn['n']} test samples: median relative error {100 * dyn['relative_error_median']:.1f} %, "
              f"{100 * dyn['within_15_percent']:.0f} % within 15 %")
    return 0


def add_parser(subparsers) -> None:
    from ..learn import workflow
    from ._help import add_config_command

    add_config_command(subparsers, "learn", "train networks that predict alpha and the IBI potential from "
                       "force-field parameters (parameter sweeps in)", workflow, run, quiet=True)
