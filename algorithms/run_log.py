"""What a training run leaves behind and shows while it runs.

A run directory holds ``results.jsonl`` (every iteration's results dict as one JSON line; NaN
stays NaN), TensorBoard event files when tensorboard is installed (every number in the results
against env steps: evaluation results and custom metrics from callbacks too, as they are in
the result), and whatever the caller adds (scripts/train.py: its flags and checkpoint).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

RESULTS_FILE = "results.jsonl"


def new_run_dir(root: str | os.PathLike = "runs") -> Path:
    """A fresh ``root/<date>-<time>`` directory (suffixed if a run started in the same second)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        path = Path(root) / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"Cannot create a run directory under '{root}': "
                          f"'{stamp}' and 998 suffixed names exist. Pass a run directory.")


def read_results(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of ``run_dir/results.jsonl``; a partial last line (killed mid-write) is skipped."""
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"'{path}' does not exist: pass a run directory written by "
                                "scripts/train.py (it holds results.jsonl).")
    rows = []
    lines = path.read_text().splitlines(keepends=True)
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if line_no == len(lines) and not line.endswith("\n"):
                break
            raise ValueError(f"{path}:{line_no} is not a JSON line; the file is corrupt.") \
                from None
    return rows


class RunLog:
    """Appends each iteration's results to ``results.jsonl`` (flushed per line: a killed run
    loses at most the line being written) and to TensorBoard event files if installed.

    ``start_iteration`` is where training continues from (0 for a fresh run, the checkpoint's
    iteration after a restore): rows logged after it by a killed run are dropped, from
    results.jsonl and from TensorBoard, so the logs hold one history.
    """

    def __init__(self, run_dir: str | os.PathLike, start_iteration: int = 0) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / RESULTS_FILE
        kept = [row for row in read_results(self.run_dir)
                if row["training_iteration"] <= start_iteration] if path.is_file() else []
        tmp = path.with_name(RESULTS_FILE + ".tmp")
        tmp.write_text("".join(_json_line(row) for row in kept))
        os.replace(tmp, path)
        self._file = path.open("a")
        # TensorBoard hides events at or after the purge step, i.e. those of dropped rows.
        purge_step = kept[-1]["num_env_steps_sampled_lifetime"] + 1 if kept else None
        try:
            from torch.utils.tensorboard import SummaryWriter
            self._tensorboard = SummaryWriter(str(self.run_dir), purge_step=purge_step)
        except ImportError:  # tensorboard is optional: results.jsonl has everything.
            self._tensorboard = None

    def write(self, result: Mapping[str, Any]) -> None:
        self._file.write(_json_line(result))
        self._file.flush()
        if self._tensorboard is not None:
            step = result["num_env_steps_sampled_lifetime"]
            for tag, value in _scalars(result):
                self._tensorboard.add_scalar(tag, value, step)
            self._tensorboard.flush()

    def close(self) -> None:
        self._file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()

    def __enter__(self) -> "RunLog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _json_line(row: Mapping[str, Any]) -> str:
    return json.dumps(row, default=_to_json) + "\n"


def _to_json(value: Any) -> Any:
    """numpy scalars and arrays (which learner results may hold) as JSON numbers and lists."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"results.jsonl: cannot write {value!r} ({type(value).__name__}); results "
                    "hold numbers, strings, lists and dicts.")


def _scalars(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """("env_runners/episode_return_mean", 21.5), ... for every finite number in ``tree``."""
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from _scalars(value, f"{prefix}{key}/")
        elif (isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
              and math.isfinite(value)):
            yield f"{prefix}{key}", float(value)


class Progress:
    """The line printed per iteration: iteration, env steps, mean return, the evaluation's
    mean return in iterations that evaluated, steps/s and the time left to --stop-iters /
    --stop-timesteps at this session's pace (a target return has none)."""

    def __init__(self, stop_iters: int | None = None, stop_timesteps: int | None = None) -> None:
        self.stop_iters = stop_iters
        self.stop_timesteps = stop_timesteps
        self._start = time.perf_counter()
        self._iterations = 0
        self._steps = 0

    def line(self, result: Mapping[str, Any]) -> str:
        self._iterations += 1
        self._steps += result["env_runners"]["num_env_steps_sampled"]
        elapsed = time.perf_counter() - self._start
        rate = self._steps / elapsed
        line = (f"iter {result['training_iteration']:4d}  "
                f"env steps {result['num_env_steps_sampled_lifetime']:8d}  "
                f"mean return {result['env_runners']['episode_return_mean']:8.2f}  ")
        if "evaluation" in result:
            line += (f"eval return "
                     f"{result['evaluation']['env_runners']['episode_return_mean']:8.2f}  ")
        line += f"{rate:7.0f} steps/s"
        left = []
        if self.stop_iters is not None:
            left.append((self.stop_iters - result["training_iteration"])
                        * elapsed / self._iterations)
        if self.stop_timesteps is not None and rate > 0:
            left.append((self.stop_timesteps - result["num_env_steps_sampled_lifetime"]) / rate)
        if left:
            seconds = max(0, round(min(left)))
            line += f"  time left {datetime.timedelta(seconds=seconds)}"
        return line
