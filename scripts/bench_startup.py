"""Start-up: import + build of a PPO algorithm in local mode vs ``python -c "import torch"``.

Each is a fresh interpreter (the way a user starts a run), alternating, median of
``--rounds``. The build side also lists which heavy modules it imported: nothing on the
start path may import torch._dynamo, Ray or Tune (target: ratio <= 1.3).

    python scripts/bench_startup.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

TORCH = "import torch"
BUILD = """
import json, sys
from algorithms.ppo import PPOConfig
algo = PPOConfig().environment("CartPole-v1").build_algo()
heavy = sorted(m for m in ("torch._dynamo", "ray", "ray.tune") if m in sys.modules)
print(json.dumps(heavy))
"""


def timed(code: str) -> tuple[float, str]:
    """Wall seconds of a fresh ``python -c code`` and what it printed."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    timed(TORCH)  # Warm the file cache for both.
    torch_s, build_s, heavy = [], [], []
    for _ in range(args.rounds):
        torch_s.append(timed(TORCH)[0])
        seconds, out = timed(BUILD)
        build_s.append(seconds)
        heavy = json.loads(out.strip().splitlines()[-1])
    ours, base = statistics.median(build_s), statistics.median(torch_s)
    print(f"import + build PPO (local mode): {ours:.2f} s   python -c 'import torch': "
          f"{base:.2f} s   ratio {ours / base:.2f} (target <= 1.3)")
    print("heavy modules on the start path: " + (", ".join(heavy) if heavy else "none "
          "(no torch._dynamo, Ray or Tune)"))


if __name__ == "__main__":
    main()
