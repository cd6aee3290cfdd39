"""Plot learning curves of run directories: any result key against env steps or wall time.

    python scripts/plot.py runs/a runs/b runs/c --out curves.png
    python scripts/plot.py runs/* --key evaluation/env_runners/episode_return_mean --x time

A run directory holds what scripts/train.py writes: ``args.json`` (its flags) and
``results.jsonl`` (one results dict per iteration). Keys are the "/"-joined paths of the
results' numbers, as in TensorBoard. Each run is labelled by its algorithm, env and seed from
args.json; runs whose flags differ only in the seed are drawn as one line, their mean, with a
band from their min to their max. Needs matplotlib (pip install -e ".[plot]").
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path

import numpy as np

from algorithms.run_log import _scalars, read_results

DEFAULT_KEY = "env_runners/episode_return_mean"
X_LABELS = {"steps": "env steps", "time": "wall time (s)"}
# Flags that do not change what a run learns: runs differing only in these are seeds of one curve.
NOT_CONFIG = {"seed", "checkpoint_dir", "checkpoint_every", "stop_reward", "stop_timesteps",
              "stop_iters", "address", "eval_interval", "eval_duration"}


def load_curve(run_dir: Path, key: str = DEFAULT_KEY, x: str = "steps"
               ) -> tuple[np.ndarray, np.ndarray]:
    """(x, value of ``key``) for each iteration with a finite value there (e.g. evaluation
    keys exist only in evaluation iterations; NaN means no episode ended)."""
    rows = [dict(_scalars(row)) for row in read_results(run_dir)]
    xs = _wall_time(rows, run_dir) if x == "time" else \
        [row["num_env_steps_sampled_lifetime"] for row in rows]
    points = [(t, row[key]) for t, row in zip(xs, rows) if key in row]
    if not points:
        keys = sorted({k for row in rows for k in row})
        like = difflib.get_close_matches(key, keys, n=6, cutoff=0.3) or keys[:6]
        raise ValueError(f"{run_dir}/results.jsonl has no number under --key {key!r} in any of "
                         f"its {len(rows)} rows; keys like it: {', '.join(like)} "
                         f"({len(keys)} keys in all).")
    return np.array([p[0] for p in points], float), np.array([p[1] for p in points], float)


def _wall_time(rows: list[dict[str, float]], run_dir: Path) -> list[float]:
    """Seconds of training at each row: RLlib's time_total_s, else the summed iteration times."""
    if all("time_total_s" in row for row in rows):
        return [row["time_total_s"] for row in rows]
    if all("time_this_iter_s" in row for row in rows):
        return list(np.cumsum([row["time_this_iter_s"] for row in rows]))
    raise ValueError(f"{run_dir}/results.jsonl has no timing field (time_total_s or "
                     "time_this_iter_s) in every row; plot against --x steps instead.")


def run_flags(run_dir: Path) -> dict | None:
    """The run's flags from args.json (None without one, e.g. a run logged by hand)."""
    path = run_dir / "args.json"
    return json.loads(path.read_text()) if path.is_file() else None


def group_runs(run_dirs: list[Path]) -> dict[str, list[Path]]:
    """Label -> the runs drawn as one curve: same flags but NOT_CONFIG (seeds of a config).

    A label names algorithm, env and seed(s), plus any other flag the plotted groups differ in.
    """
    groups: dict[str, tuple[dict | None, list[Path]]] = {}
    for run_dir in run_dirs:
        flags = run_flags(run_dir)
        config = None if flags is None else {k: v for k, v in flags.items() if k not in NOT_CONFIG}
        key = str(run_dir) if config is None else json.dumps(config, sort_keys=True)
        groups.setdefault(key, (config, []))[1].append(run_dir)
    configs = [config for config, _ in groups.values() if config is not None]
    differing = sorted({k for c in configs for k in c if k not in ("algo", "env")
                        and any(other.get(k) != c[k] for other in configs)})
    labels = {}
    for key, (config, runs) in groups.items():
        if config is None:
            labels[key] = runs
            continue
        seeds = [run_flags(run).get("seed") for run in runs]
        label = " ".join([str(config.get("algo", "?")), str(config.get("env", "?")),
                          *(f"{k}={config.get(k)}" for k in differing)])
        label += f" seed {seeds[0]}" if len(runs) == 1 else \
            f" seeds {', '.join(map(str, seeds))} (mean, min-max)"
        labels[label] = runs
    return labels


def mean_band(curves: list[tuple[np.ndarray, np.ndarray]], runs: list[Path]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, mean, min, max) of several runs, interpolated on every x where all runs have data."""
    start, end = max(x[0] for x, _ in curves), min(x[-1] for x, _ in curves)
    grid = np.unique(np.concatenate([x for x, _ in curves]))
    grid = grid[(grid >= start) & (grid <= end)]
    if not grid.size:
        raise ValueError(f"runs {', '.join(map(str, runs))} (seeds of one config) share no "
                         "x range to average over; plot them one at a time.")
    ys = np.stack([np.interp(grid, x, y) for x, y in curves])
    return grid, ys.mean(axis=0), ys.min(axis=0), ys.max(axis=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run directories to plot")
    parser.add_argument("--key", default=DEFAULT_KEY,
                        help="result to plot, a '/'-joined path (default: %(default)s)")
    parser.add_argument("--x", choices=sorted(X_LABELS), default="steps",
                        help="x axis: env steps sampled or wall time (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("learning_curves.png"),
                        help="PNG file to write (default: %(default)s)")
    parser.add_argument("--title", default=None, help="(default: the key)")
    args = parser.parse_args(argv)

    lines = {}  # label -> (x, y) of one run, or (x, mean, min, max) of its seeds
    try:
        for label, runs in group_runs(args.run_dirs).items():
            curves = [load_curve(run, args.key, args.x) for run in runs]
            lines[label] = curves[0] if len(curves) == 1 else mean_band(curves, runs)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for label, (x, y, *band) in lines.items():
        (line,) = ax.plot(x, y, label=label, marker="o" if len(x) == 1 else None)
        if band:
            ax.fill_between(x, *band, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel(X_LABELS[args.x])
    ax.set_ylabel(args.key)
    ax.set_title(args.title or args.key)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
