"""simpl-bench harness: the CLI, the job grid, the launcher, the result store and benchmarks."""
