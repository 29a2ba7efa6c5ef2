"""``cgml sweep SWEEP.yaml``: run or resume a parameter sweep on Dask (:func:`openmm_cgml.sweep.run_sweep`)."""

from __future__ import annotations


def run(args) -> int:
    from ..config import load_config
    from ..sweep import SweepConfig, estimate_cost, generate_samples, run_sweep

    config = load_config(args.config, SweepConfig)
    directory = args.config.parent / config.output if not args.output else args.output
    if args.archive is not None:
        from ..sweep import archive_sweep

        kept = archive_sweep(directory, args.archive, references=args.with_references)
        print(f"archived {kept['samples']} finished and {kept['failed']} failed samples of {directory} into "
              f"{kept['destination']} ({kept['files']} files, {kept['bytes'] / 1024 ** 2:.1f} MB)")
        return 0
    samples = generate_samples(config)  # every check (the force field's SMIRKS too) before any work starts
    if args.dry_run:
        from ..sweep.execution import sample_status

        names = [p.column() for p in config.parameters]
        units = {p.column(): p.unit for p in config.parameters}
        print(f"sweep {config.name!r}: {len(samples)} samples ({config.family} family, {config.sampling.method}, "
              f"seed {config.sampling.seed}) in {directory}")
        print("\t".join(["sample_id", "T [K]", *(f"{n} [{units[n]}]" for n in names), "status"]))
        for s in samples:
            record = sample_status(directory, s) if directory.exists() else None
            print("\t".join([s.sample_id, f"{s.temperature:g}", *(f"{s.parameters[n]:.6g}" for n in names),
                             (record or {}).get("status", "pending")]))
        cost = estimate_cost(config, samples, directory)
        print(f"estimated cost: {cost['left']} samples left x {cost['per_sample_s']:.0f} s ({cost['basis']}) = "
              f"{cost['core_seconds'] / 3600:.2f} worker-hours; about {cost['wall_s_estimate'] / 3600:.2f} h on "
              f"{cost['worker_slots']} worker(s)")
        return 0
    result = run_sweep(config, directory, scheduler=args.scheduler, progress=not args.quiet,
                       max_samples=args.max_samples, samples=samples)
    overhead = result.timing.get("overhead_fraction")
    print(f"sweep {config.name!r}: {result.computed} computed, {result.skipped} already finished, {result.failed} "
          f"failed, of {result.n_samples}, in {result.wall_s:.0f} s"
          + (f"; scheduler overhead {100 * overhead:.2g} % of a task" if overhead is not None else "")
          + f"; index: {result.index}")
    return 0 if result.failed == 0 else 3


def add_parser(subparsers) -> None:
    from pathlib import Path

    from .. import sweep as workflow
    from ._help import add_config_command

    p = add_config_command(subparsers, "sweep", "run or resume a parameter sweep (AA -> IBI -> CG -> alpha per sample) "
                           "on Dask", workflow, run, quiet=True)
    p.add_argument("--scheduler", metavar="ADDRESS", help="run on this Dask scheduler (e.g. tcp://host:8786) "
                   "instead of execution's cluster")
    p.add_argument("--dry-run", action="store_true", help="print the samples, their status and the estimated cost")
    p.add_argument("--max-samples", type=int, metavar="N", help="submit at most N of the samples still to do")
    p.add_argument("-o", "--output", type=Path, help="sweep directory (default: output, relative to the YAML's "
                   "folder)")
    p.add_argument("--archive", type=Path, metavar="DEST", help="copy the sweep's results without its trajectories "
                   "(definition, index, every sample's record and IBI tables) to DEST, a sweep directory that "
                   "`cgml learn` reads and `cgml sweep -o DEST` continues; runs nothing")
    p.add_argument("--with-references", action="store_true", help="with --archive: keep each sample's mapped AA "
                   "reference (cg_reference.h5, which running a predicted potential needs)")
