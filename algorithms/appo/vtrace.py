"""V-trace (Espeholt et al. 2018, IMPALA): value targets and policy-gradient advantages for
data sampled with an older ("behaviour") policy, corrected towards a "target" policy."""

from __future__ import annotations

import numpy as np


def vtrace(*, behaviour_logp: np.ndarray, target_logp: np.ndarray, rewards: np.ndarray,
           values: np.ndarray, next_values: np.ndarray, terminateds: np.ndarray,
           ends: np.ndarray, gamma: float, clip_rho_threshold: float = 1.0,
           clip_pg_rho_threshold: float = 1.0, lambda_: float = 1.0
           ) -> tuple[np.ndarray, np.ndarray]:
    """``(vs, pg_advantages)``, both [T], over T steps of pieces of trajectories laid end to
    end (one learner batch of fragments).

    Per step t: ``values[t]`` = V(x_t), ``next_values[t]`` = V(x_{t+1}) (inside a piece
    ``values[t + 1]``; at a piece's last step the value of the observation it ended in: the
    bootstrap after a time-limit truncation or a fragment cut, ignored after a termination);
    ``terminateds[t]``: the episode terminated with this step (no value after it);
    ``ends[t]``: this step is the last of its piece (termination, truncation, cut), so no
    correction flows back across it. rho_t = exp(target - behaviour logp); the trace
    coefficient c_t = lambda_ min(1, rho_t) (IMPALA's remark 2: lambda_ < 1 trades the
    correction's reach for variance; 1 is RLlib's V-trace):

        vs_t = V(x_t) + sum_{s>=t} gamma^(s-t) (prod_{t<=i<s} c_i) min(rho_bar, rho_s) delta_s
        delta_s = r_s + gamma V(x_{s+1}) - V(x_s)
        pg_advantage_t = min(pg_rho_bar, rho_t) (r_t + gamma vs_{t+1} - V(x_t))

    where a piece's end stops the sum, vs after its last step is ``next_values`` there and
    gamma is 0 after a termination.
    """
    rhos = np.exp(np.asarray(target_logp, np.float64) - np.asarray(behaviour_logp, np.float64))
    values = np.asarray(values, np.float64)
    next_values = np.asarray(next_values, np.float64)
    rewards = np.asarray(rewards, np.float64)
    discounts = gamma * (1.0 - np.asarray(terminateds, np.float64))
    deltas = np.minimum(clip_rho_threshold, rhos) * (rewards + discounts * next_values - values)
    traces = discounts * lambda_ * np.minimum(1.0, rhos)
    # Backward pass over plain floats: acc_t = vs_t - V(x_t); next_acc_t = vs_{t+1} - V(x_{t+1}).
    acc, out, next_acc = 0.0, [0.0] * len(values), [0.0] * len(values)
    for t in range(len(values) - 1, -1, -1):
        if ends[t]:
            acc = 0.0
        next_acc[t] = acc
        acc = float(deltas[t]) + float(traces[t]) * acc
        out[t] = acc
    vs = values + np.asarray(out)
    vs_next = next_values + np.asarray(next_acc)
    pg_advantages = np.minimum(clip_pg_rho_threshold, rhos) * (
        rewards + discounts * vs_next - values)
    return vs.astype(np.float32), pg_advantages.astype(np.float32)
