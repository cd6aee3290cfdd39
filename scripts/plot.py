"""Plot learning curves: mean episode return against env steps, one line per run directory.

    python scripts/plot.py runs/2026-11-21_12-00-00 runs/other_run --out curves.png

Each run directory holds the ``results.jsonl`` that scripts/train.py writes (one JSON
object per training iteration).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def load_curve(run_dir: Path) -> tuple[list[int], list[float]]:
    """(env steps, mean return) per iteration of one run; iterations without episodes are skipped."""
    path = run_dir / "results.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: pass run directories written by "
                                "scripts/train.py (they contain results.jsonl).")
    steps, returns = [], []
    with path.open() as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                if line_no > 1 and not line.endswith("\n"):
                    break  # A run killed mid-write leaves a partial last line.
                raise ValueError(f"{path}:{line_no} is not valid JSON.") from None
            ret = row.get("env_runners", {}).get("episode_return_mean")
            if ret is not None and ret == ret:  # Skip NaN (no episode finished yet).
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
        ax.plot(steps, returns, label=run_dir.name)
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
