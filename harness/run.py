"""`python -m harness.run`: train and evaluate a grid of (method, suite, seed) jobs, locally or on SLURM.

    python -m harness.run --list
    python -m harness.run --methods all --suite maze-40 --seeds 3
    python -m harness.run --methods sac --suite maze-tiny --seeds 2 --scale smoke --dry-run
    python -m harness.run --methods simpl,spirl --suite kitchen --seeds 0-4 --executor slurm \\
        --slurm-partition gpu --slurm-gpus-per-job 1 --timeout-min 720
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness.grid import Grid, UsageError, build_grid
from harness.launcher import SLURM_FLAGS, LaunchOptions, launch

EXIT_USAGE = 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--list", action="store_true", help="list methods, suites and scales, then exit")
    p.add_argument("--methods", default="all", help="'all' or a comma-separated list (see --list)")
    p.add_argument("--suite", help="task suite (see --list)")
    p.add_argument("--seeds", default="3", help="a count (3 = seeds 0,1,2), a range (0-4) or a list (1,5,7)")
    p.add_argument("--scale", default="smoke", help="smoke (minutes) | small (local CPU reproduction) | paper")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="METHOD.FIELD=VALUE",
                   help="override one setting, e.g. --set sac.batch_size=256 (repeatable)")
    p.add_argument("--grid", help="results/<grid>/ folder name (default: the scale)")
    p.add_argument("--results", default=os.environ.get("SIMPL_BENCH_RESULTS", "results"),
                   help="results root (default: ./results or $SIMPL_BENCH_RESULTS)")
    p.add_argument("--dry-run", action="store_true", help="print the job grid and where each job writes, run nothing")
    p.add_argument("--executor", default="local", choices=("local", "debug", "slurm"))
    p.add_argument("--max-parallel", type=int, default=os.cpu_count() or 1,
                   help="local executor: jobs at once (default: number of cores)")
    p.add_argument("--threads-per-job", type=int, default=1, help="torch threads per job (default 1)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"),
                   help="where jobs compute: auto = cuda where the job's machine has a GPU, else cpu")
    p.add_argument("--timeout-min", type=int, default=60 * 24, help="per-job time limit (SLURM requeues on it)")
    p.add_argument("--quiet", action="store_true", help="log lines instead of the live table and progress bars")
    g = p.add_argument_group("SLURM (with --executor slurm)")
    g.add_argument("--slurm-partition")
    g.add_argument("--slurm-gpus-per-job", type=int)
    g.add_argument("--slurm-cpus-per-job", type=int)
    g.add_argument("--slurm-mem-gb", type=int)
    g.add_argument("--slurm-account")
    g.add_argument("--slurm-qos")
    g.add_argument("--slurm-constraint")
    g.add_argument("--slurm-array-parallelism", type=int)
    g.add_argument("--slurm-max-num-timeout", type=int, help="requeues after a time-out (submitit default 3)")
    return p


ZERO_ALLOWED = ("slurm_gpus_per_job", "slurm_max_num_timeout")  # SLURM count flags that may be 0


def print_list() -> None:
    from methods import get_method, method_names
    from methods.base import SCALES
    from tasks import suite_descriptions

    print("methods:")
    for name in method_names():
        print(f"  {name:24s} {get_method(name).description}")
    stages = [n for n in method_names(include_stages=True) if get_method(n).stage]
    if stages:
        print("shared stages (run automatically for the methods that need them):")
        for name in stages:
            print(f"  {name:24s} {get_method(name).description}")
    print("suites:")
    for name, desc in suite_descriptions().items():
        print(f"  {name:24s} {desc}")
    print("scales:")
    notes = {"smoke": "minutes for a whole suite on 2 CPU cores (tests, quick checks)",
             "small": "the local CPU reproduction scale (reduced, documented per method)",
             "paper": "the SiMPL paper's appendix settings (GPU cluster)"}
    for s in SCALES:
        print(f"  {s:24s} {notes[s]}")


def print_grid(grid: Grid) -> None:
    print(f"grid {grid.name!r}: {len(grid.stages)} shared stage job(s), {len(grid.jobs)} job(s)")
    for job in grid.all_jobs:
        kind = "stage" if job.stage else "job"
        needs = f"  after {', '.join(job.prerequisites)}" if job.prerequisites else ""
        print(f"  {kind:5s} {job.job_id}  {job.label:40s} -> {job.run_dir}{needs}")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.list:
            print_list()
            return 0
        if not args.suite:
            raise UsageError("--suite is required (see --list for the suites)")
        slurm = {k: getattr(args, k) for k in SLURM_FLAGS if getattr(args, k) is not None}
        if slurm and args.executor != "slurm":
            flag = "--" + next(iter(slurm)).replace("_", "-")
            raise UsageError(f"{flag} only applies with --executor slurm; add it or drop the flag")
        counts = {"--max-parallel": (args.max_parallel, 1), "--timeout-min": (args.timeout_min, 1)}
        for key, value in slurm.items():  # the SLURM counts: 0 GPUs and 0 requeues are valid choices
            if isinstance(value, int):
                counts["--" + key.replace("_", "-")] = (value, 0 if key in ZERO_ALLOWED else 1)
        for flag, (value, least) in counts.items():
            if value < least:
                raise UsageError(f"{flag} {value}: must be at least {least}")
        device = args.device if args.dry_run else job_device(args.device, args.executor, slurm)
        grid = build_grid(args.methods, args.suite, args.seeds, args.scale, args.overrides, args.grid, args.results,
                          threads=args.threads_per_job, device=device)
        if args.dry_run:
            print_grid(grid)
            if args.scale == "paper":
                from harness.cost import estimate, format_estimate

                print(format_estimate(estimate(grid)))
            return 0
        _check_writable(Path(args.results))
        options = LaunchOptions(executor=args.executor, max_parallel=args.max_parallel, timeout_min=args.timeout_min,
                                quiet=args.quiet, show_job_progress=not args.quiet, slurm=slurm)
        results = launch(grid, options)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    failed = [r for r in results if r.status == "failed"]
    busy = [r for r in results if r.status == "busy"]
    done = sum(r.status == "done" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    print(f"grid {grid.name!r}: {done} ran, {skipped} already finished, {len(failed)} failed or not run"
          + (f", {len(busy)} running in another launcher" if busy else ""))
    for r in failed + busy:
        print(f"  {r.status}: {r.label}: {r.message}")
    return 1 if failed else 0


def job_device(device: str, executor: str, slurm: dict) -> str:
    """The --device the jobs get. Local jobs run on this machine: 'cuda' must exist here, 'auto' is decided here.
    SLURM jobs run on other nodes: 'cuda' needs GPUs requested, 'auto' is decided by each job on its node."""
    import torch

    if executor == "slurm":
        if device == "cuda" and not slurm.get("slurm_gpus_per_job"):
            raise UsageError("--device cuda with --executor slurm: request the GPUs, e.g. --slurm-gpus-per-job 1")
        return device
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device cuda: this machine has no usable CUDA GPU (torch {torch.__version__}); "
                         f"use --device cpu or auto, or launch on a GPU machine (or --executor slurm "
                         f"--slurm-gpus-per-job 1)")
    return device


def _check_writable(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"results folder {root} is not writable ({e.strerror}); pass --results to a writable folder") from None


if __name__ == "__main__":
    sys.exit(main())
