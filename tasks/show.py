"""Draw a suite: `python -m tasks.show maze-40 -o maze40.png` (the paper's Figure 7 for maze suites)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.show", description=__doc__)
    parser.add_argument("suite", help="suite name, e.g. maze-40 (see `python -m harness.run --list`)")
    parser.add_argument("-o", "--output", default=None, help="PNG path (default: <suite>.png)")
    parser.add_argument("--dpi", type=int, default=120)
    args = parser.parse_args(argv)

    from tasks import UnknownSuiteError, get_suite

    try:
        suite = get_suite(args.suite)
    except UnknownSuiteError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    if suite.domain != "maze":
        print(f"error: rendering is maze-only; {suite.name!r} is a {suite.domain} suite", file=sys.stderr)
        return 2
    from tasks.maze.render import save_maze_png

    out = Path(args.output or f"{suite.name}.png")
    if out.parent and not out.parent.exists():
        print(f"error: folder {out.parent} does not exist; create it or pick another -o path", file=sys.stderr)
        return 2
    save_maze_png(suite, str(out), dpi=args.dpi)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
