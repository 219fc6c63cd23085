"""Generate the scripted kitchen dataset: `python -m tasks.kitchen.generate --workers 2 --n 600`.

Writes the Minari dataset (under MINARI_DATASETS_PATH, default ~/.minari/datasets) and prints the
generation figures: acceptance rate, per-subtask success, steps per subtask and sequence, throughput.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from tasks.kitchen.data import GenerationConfig, KitchenDataError, dataset_dir, generate_dataset, is_local


def main(argv: list[str] | None = None) -> int:
    default = GenerationConfig()
    parser = argparse.ArgumentParser(prog="python -m tasks.kitchen.generate", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=default.n_sequences, help="accepted sequences to store")
    parser.add_argument("--subtasks", type=int, default=default.subtasks_per_sequence, help="subtasks per sequence")
    parser.add_argument("--seed", type=int, default=default.seed)
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (one core each)")
    parser.add_argument("--force", action="store_true", help="regenerate even if the dataset exists")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.n < 1 or args.workers < 1 or not 1 <= args.subtasks <= 7:
        parser.error("--n and --workers must be >= 1 and --subtasks in 1..7")
    config = dataclasses.replace(default, n_sequences=args.n, subtasks_per_sequence=args.subtasks, seed=args.seed)
    dataset_id = config.dataset_id()
    if is_local(dataset_id) and not args.force:
        print(f"{dataset_id} already exists at {dataset_dir(dataset_id)} (use --force to regenerate)")
        return 0
    try:
        _, report = generate_dataset(config, workers=args.workers, progress=not args.no_progress)
    except KitchenDataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"dataset_id": dataset_id, "path": str(dataset_dir(dataset_id)), **report["stats"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
