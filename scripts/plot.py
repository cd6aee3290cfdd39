"""Plot learning curves: mean episode return against env steps, one line per run directory.

    python scripts/plot.py runs/2026-11-21_12-00-00 runs/other_run --out curves.png

Each run directory holds the ``results.jsonl`` that scripts/train.py writes (one JSON
object per training iteration).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from algorithms.run_log import read_results


def load_curve(run_dir: Path) -> tuple[list[int], list[float]]:
    """(env steps, mean return) per iteration of one run; iterations without episodes are skipped."""
    steps, returns = [], []
    for row in read_results(run_dir):
        ret = row["env_runners"]["episode_return_mean"]
        if not math.isnan(ret):
            steps.append(row["num_env_steps_sampled_lifetime"])
            returns.append(ret)
    return steps, returns


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run directories to plot")
    parser.add_argument("--out", type=Path, default=Path("learning_curves.png"),
                        help="PNG file to write (default: %(default)s)")
    parser.add_argument("--title", default="Mean episode return")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for run_dir in args.run_dirs:
        try:
            steps, returns = load_curve(run_dir)
        except (FileNotFoundError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        ax.plot(steps, returns, label=str(run_dir))
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return (mean of last 100)")
    ax.set_title(args.title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
