"""GAE on hand-made fragments: bootstrap at truncation and cuts, none at termination."""

import numpy as np
import pytest

from algorithms.ppo.gae import compute_gae
from algorithms.returns import discounted_cumsum, fragment_ends
from runners.fragment import Fragment


def fragment(rewards, terminated=False, truncated=False):
    t = len(rewards)
    return Fragment(module_id="default_policy", agent_id=None, episode_id="e",
                    columns={"obs": np.zeros((t, 1), np.float32),
                             "rewards": np.asarray(rewards, np.float32)},
                    last_obs=np.zeros(1, np.float32), terminated=terminated, truncated=truncated)


def reference_gae(rewards, values, bootstrap, gamma, lam):
    """Textbook definition: A_t = sum_l (gamma*lam)^l delta_{t+l}, written out directly."""
    v = list(values) + [bootstrap]
    deltas = [r + gamma * v[t + 1] - v[t] for t, r in enumerate(rewards)]
    return [sum((gamma * lam) ** (k - t) * deltas[k] for k in range(t, len(deltas)))
            for t in range(len(deltas))]


def test_terminated_fragment_ignores_last_value():
    # Two steps, reward 1 each, V = [0.5, 0.25], V(last_obs) = 100 must not count.
    adv, targets = compute_gae([fragment([1.0, 1.0], terminated=True)],
                               [np.array([0.5, 0.25, 100.0])], gamma=0.9, lambda_=1.0)
    # lambda=1: advantage = discounted return - V. Returns: 1 + 0.9 * 1 = 1.9 and 1.
    np.testing.assert_allclose(adv[0], [1.9 - 0.5, 1.0 - 0.25], rtol=1e-6)
    np.testing.assert_allclose(targets[0], [1.9, 1.0], rtol=1e-6)


@pytest.mark.parametrize("flags", [dict(truncated=True), dict()])  # time limit / fragment cut
def test_truncated_or_cut_fragment_bootstraps_from_last_value(flags):
    adv, targets = compute_gae([fragment([1.0, 1.0], **flags)],
                               [np.array([0.5, 0.25, 10.0])], gamma=0.9, lambda_=1.0)
    returns = [1 + 0.9 * (1 + 0.9 * 10.0), 1 + 0.9 * 10.0]
    np.testing.assert_allclose(targets[0], returns, rtol=1e-6)
    np.testing.assert_allclose(adv[0], [returns[0] - 0.5, returns[1] - 0.25], rtol=1e-6)


def test_lambda_zero_is_one_step_td():
    values = np.array([1.0, 2.0, 3.0, 4.0])
    adv, _ = compute_gae([fragment([0.5, 0.5, 0.5])], [values], gamma=0.5, lambda_=0.0)
    np.testing.assert_allclose(adv[0], 0.5 + 0.5 * values[1:] - values[:-1], rtol=1e-6)


def test_several_fragments_match_the_definition_and_never_mix():
    rng = np.random.default_rng(0)
    specs = [(5, dict(terminated=True)), (3, dict()), (7, dict(truncated=True)), (1, dict())]
    frags = [fragment(rng.normal(size=t), **flags) for t, flags in specs]
    values = [rng.normal(size=t + 1) for t, _ in specs]
    adv, targets = compute_gae(frags, values, gamma=0.97, lambda_=0.9)
    for f, v, a, tgt in zip(frags, values, adv, targets):
        bootstrap = 0.0 if f.terminated else v[-1]
        expected = reference_gae(f.columns["rewards"], v[:-1], bootstrap, 0.97, 0.9)
        np.testing.assert_allclose(a, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(tgt, np.asarray(expected) + v[:-1], rtol=1e-5, atol=1e-5)


def test_values_of_wrong_length_name_the_fragment():
    with pytest.raises(ValueError, match="fragment 0 has 2 steps.*need 3"):
        compute_gae([fragment([1.0, 1.0])], [np.zeros(2)], gamma=0.9, lambda_=0.9)


def test_discounted_cumsum_restarts_at_fragment_ends():
    out = discounted_cumsum(np.ones(5, np.float32), 0.5, fragment_ends([2, 3]))
    np.testing.assert_allclose(out, [1.5, 1.0, 1.75, 1.5, 1.0])
