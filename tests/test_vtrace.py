"""V-trace against values worked out by hand, and the properties that make it V-trace."""

from __future__ import annotations

import numpy as np

from algorithms.appo import vtrace

# Two pieces laid end to end: steps 0-2 an episode truncated by its time limit (bootstrap
# V = 4 after step 2), steps 3-4 one that terminates with step 4 (its next value 100 is
# meaningless). gamma = 0.5; importance weights rho = [2, 0.5, 1, 4, 0.25].
CASE = dict(
    behaviour_logp=np.zeros(5),
    target_logp=np.log([2.0, 0.5, 1.0, 4.0, 0.25]),
    rewards=np.array([1.0, 2.0, 3.0, 4.0, 5.0]),
    values=np.array([2.0, 4.0, 1.0, 3.0, 2.0]),
    next_values=np.array([4.0, 1.0, 4.0, 2.0, 100.0]),
    terminateds=np.array([False, False, False, False, True]),
    ends=np.array([False, False, True, False, True]),
    gamma=0.5, clip_rho_threshold=1.0, clip_pg_rho_threshold=1.5)


def test_a_truncated_and_a_terminated_piece_by_hand():
    vs, pg = vtrace(**CASE)
    # Clipped rho = c = [1, 0.5, 1, 1, 0.25]; discounts [0.5, 0.5, 0.5, 0.5, 0 (terminated)].
    # deltas = rho_c * (r + disc * V' - V) = [1, 0.5 * -1.5, 4, 2, 0.25 * 3]
    #        = [1, -0.75, 4, 2, 0.75]
    # Backwards, the sum restarting at each piece end (steps 2 and 4):
    #   vs4 = 2 + 0.75 = 2.75;  vs3 = 3 + 2 + 0.5 * 1 * 0.75 = 5.375
    #   vs2 = 1 + 4 = 5;  vs1 = 4 + (-0.75 + 0.5 * 0.5 * 4) = 4.25
    #   vs0 = 2 + (1 + 0.5 * 1 * 0.25) = 3.125
    np.testing.assert_allclose(vs, [3.125, 4.25, 5.0, 5.375, 2.75])
    # pg = min(1.5, rho) * (r + disc * vs_next - V), vs_next = [vs1, vs2, 4 (bootstrap), vs4, -]:
    #   1.5 * (1 + 0.5 * 4.25 - 2) = 1.6875;  0.5 * (2 + 0.5 * 5 - 4) = 0.25
    #   1 * (3 + 0.5 * 4 - 1) = 4;  1.5 * (4 + 0.5 * 2.75 - 3) = 3.5625;  0.25 * (5 - 2) = 0.75
    np.testing.assert_allclose(pg, [1.6875, 0.25, 4.0, 3.5625, 0.75])


def test_pieces_do_not_leak_into_each_other():
    vs, pg = vtrace(**CASE)
    other = dict(CASE, rewards=CASE["rewards"] * [1, 1, 1, 9, 9], next_values=np.r_[
        CASE["next_values"][:4], -7.0])  # Only the second piece changes; its end is terminal.
    vs2, pg2 = vtrace(**other)
    np.testing.assert_allclose(vs2[:3], vs[:3])
    np.testing.assert_allclose(pg2[:3], pg[:3])
    # A terminal step ignores its next value.
    vs3, _ = vtrace(**dict(CASE, next_values=np.r_[CASE["next_values"][:4], -7.0]))
    np.testing.assert_allclose(vs3, vs)


def test_lambda_shortens_the_traces_by_hand():
    vs, pg = vtrace(**CASE, lambda_=0.5)
    # c = lambda * disc * min(1, rho) = 0.25 * [1, 0.5, 1, 1, 0.25] (0 after the termination).
    #   vs4 = 2 + 0.75 = 2.75;  vs3 = 3 + 2 + 0.25 * 0.75 = 5.1875
    #   vs2 = 1 + 4 = 5;  vs1 = 4 + (-0.75 + 0.125 * 4) = 3.75
    #   vs0 = 2 + (1 + 0.25 * -0.25) = 2.9375
    np.testing.assert_allclose(vs, [2.9375, 3.75, 5.0, 5.1875, 2.75])
    # pg as above with vs_next = [3.75, 5, 4 (bootstrap), 2.75, -]: 1.5 * (1 + 1.875 - 2) ...
    np.testing.assert_allclose(pg, [1.3125, 0.25, 4.0, 3.5625, 0.75])


def test_on_policy_it_is_the_n_step_return_with_bootstrap():
    rng = np.random.default_rng(0)
    rewards, values = rng.normal(size=6), rng.normal(size=6)
    bootstrap, gamma = 1.5, 0.9
    logp = rng.normal(size=6)
    vs, pg = vtrace(behaviour_logp=logp, target_logp=logp, rewards=rewards, values=values,
                    next_values=np.r_[values[1:], bootstrap], terminateds=np.zeros(6, bool),
                    ends=np.eye(6, dtype=bool)[-1], gamma=gamma)
    returns = [sum(gamma ** (k - t) * rewards[k] for k in range(t, 6)) + gamma ** (6 - t) *
               bootstrap for t in range(6)]
    np.testing.assert_allclose(vs, returns, rtol=1e-5)
    np.testing.assert_allclose(pg, rewards + gamma * np.r_[returns[1:], bootstrap] - values,
                               rtol=1e-5, atol=1e-6)
