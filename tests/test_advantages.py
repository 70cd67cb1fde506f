"""GAE and value targets against numbers worked out by hand on a scripted [T, N] = [5, 3] rollout.

gamma = lambda = 0.5 so that every intermediate value is a dyadic rational and the comparisons
can be exact. Layout (see ppolab.rollout's docstring): the step after an episode end is an
autoreset step (valid=False, reward 0), and its ``values`` entry is V(final observation).

    env 0: t=0 continue, t=1 TERMINATED, t=2 autoreset, t=3..4 new episode that crosses the
           rollout boundary (bootstrapped with last_values[0]).
    env 1: t=0 TRUNCATED (bootstraps with values[1, 1] = V(final obs)), t=1 autoreset,
           t=2 continue, t=3 TERMINATED, t=4 autoreset.
    env 2: t=0 autoreset (the episode ended at the previous rollout's last step),
           t=1..4 an episode TRUNCATED at the last step (bootstrapped with last_values[2],
           which is V(final obs) because the step returned the final observation).
"""

from __future__ import annotations

import pytest
import torch

from ppolab.advantages import gae, value_targets
from ppolab.rollout import Rollout, to_batch

GAMMA = 0.5
LAM = 0.5
T, N = 5, 3
F, Tr = False, True

# rows are t, columns are envs
REWARDS = [
    [1.0, 1.0, 0.0],
    [2.0, 0.0, 1.0],
    [0.0, 2.0, 1.0],
    [1.0, 1.0, 1.0],
    [1.0, 0.0, 1.0],
]
VALUES = [
    [2.0, 2.0, 9.0],  # values[0, 2] = V(final obs of the previous rollout's episode): unused
    [3.0, 4.0, 1.0],  # values[1, 1] = V(final obs of env 1's truncated episode) = 4
    [100.0, 1.0, 2.0],  # values[2, 0] = V(terminal obs): must never be used
    [1.0, 2.0, 2.0],
    [2.0, 7.0, 2.0],  # values[4, 1] = V(terminal obs): must never be used
]
TERMINATED = [
    [F, F, F],
    [Tr, F, F],
    [F, F, F],
    [F, Tr, F],
    [F, F, F],
]
TRUNCATED = [
    [F, Tr, F],
    [F, F, F],
    [F, F, F],
    [F, F, F],
    [F, F, Tr],
]
VALID = [
    [Tr, Tr, F],
    [Tr, F, Tr],
    [F, Tr, Tr],
    [Tr, Tr, Tr],
    [Tr, F, Tr],
]
LAST_VALUES = [4.0, 5.0, 6.0]  # V(s_T); last_values[1] = V(reset obs) only feeds an autoreset step

VALID_STEPS = [(t, n) for t in range(T) for n in range(N) if VALID[t][n]]


def make_rollout(obs_dim: int = 2) -> Rollout:
    # observation of (t, n) encodes its position so that to_batch's order can be checked
    obs = torch.tensor([[[10.0 * t + n] * obs_dim for n in range(N)] for t in range(T)])
    actions = torch.tensor([[(t + n) % 2 for n in range(N)] for t in range(T)])
    log_probs = -torch.arange(T * N, dtype=torch.float32).reshape(T, N) / 100
    return Rollout(
        observations=obs,
        actions=actions,
        log_probs=log_probs,
        values=torch.tensor(VALUES),
        rewards=torch.tensor(REWARDS),
        terminated=torch.tensor(TERMINATED),
        truncated=torch.tensor(TRUNCATED),
        valid=torch.tensor(VALID),
        last_values=torch.tensor(LAST_VALUES),
    )


def run_gae(rollout: Rollout, gamma: float = GAMMA, lam: float = LAM) -> torch.Tensor:
    return gae(rollout.rewards, rollout.values, rollout.next_values, rollout.terminated,
               rollout.episode_end, gamma, lam)


# ---------------------------------------------------------------- hand-computed expectations
g, gl = GAMMA, GAMMA * LAM  # 0.5, 0.25

# TD errors delta_t = r_t + g * (1 - term_t) * V_{t+1} - V_t on the valid steps
D = {
    # env 0
    (0, 0): 1 + g * 3 - 2,  # = 0.5
    (1, 0): 2 - 3,  # terminated: no bootstrap (with one it would be 2 + 0.5*100 - 3 = 49)
    (3, 0): 1 + g * 2 - 1,  # = 1
    (4, 0): 1 + g * 4 - 2,  # boundary: last_values[0] = 4  -> 1
    # env 1
    (0, 1): 1 + g * 4 - 2,  # truncated: bootstrap with V(final obs) = values[1, 1] = 4  -> 1
    (2, 1): 2 + g * 2 - 1,  # = 2
    (3, 1): 1 - 2,  # terminated -> -1
    # env 2
    (1, 2): 1 + g * 2 - 1,  # = 1
    (2, 2): 1 + g * 2 - 2,  # = 0
    (3, 2): 1 + g * 2 - 2,  # = 0
    (4, 2): 1 + g * 6 - 2,  # truncated at the boundary: last_values[2] = 6 -> 2
}

# A_t = delta_t + g*l * A_{t+1}, cut at every episode end (the autoreset step never flows back)
A = {
    (4, 0): 1.0,
    (3, 0): 1 + gl * 1,  # 1.25
    (1, 0): -1.0,  # episode end: nothing from t=2.. flows back
    (0, 0): 0.5 + gl * (-1),  # 0.25
    (3, 1): -1.0,
    (2, 1): 2 + gl * (-1),  # 1.75
    (0, 1): 1.0,  # episode end
    (4, 2): 2.0,
    (3, 2): 0 + gl * 2,  # 0.5
    (2, 2): 0 + gl * 0.5,  # 0.125
    (1, 2): 1 + gl * 0.125,  # 1.03125
}

# Value targets R_t = A_t + V_t
R = {
    (4, 0): 1.0 + 2,
    (3, 0): 1.25 + 1,
    (1, 0): -1.0 + 3,
    (0, 0): 0.25 + 2,
    (3, 1): -1.0 + 2,
    (2, 1): 1.75 + 1,
    (0, 1): 1.0 + 2,
    (4, 2): 2.0 + 2,
    (3, 2): 0.5 + 2,
    (2, 2): 0.125 + 2,
    (1, 2): 1.03125 + 1,
}

# Monte-Carlo returns (lambda = 1): discounted rewards to the episode end, plus g^k * V(s_end)
# for a truncated episode or the rollout boundary, nothing for a terminated one.
G = {
    (0, 0): 1 + g * 2,  # terminated at t=1
    (1, 0): 2.0,
    (3, 0): 1 + g * 1 + g**2 * 4,  # boundary, last_values[0] = 4
    (4, 0): 1 + g * 4,
    (0, 1): 1 + g * 4,  # truncated, V(final obs) = 4
    (2, 1): 2 + g * 1,  # terminated at t=3
    (3, 1): 1.0,
    (1, 2): 1 + g * 1 + g**2 * 1 + g**3 * 1 + g**4 * 6,  # truncated at t=4, V(final obs) = 6
    (2, 2): 1 + g * 1 + g**2 * 1 + g**3 * 6,
    (3, 2): 1 + g * 1 + g**2 * 6,
    (4, 2): 1 + g * 6,
}


def at(x: torch.Tensor, steps) -> list[float]:
    return [float(x[t, n]) for t, n in steps]


# ---------------------------------------------------------------------------------- tests
def test_next_values_and_episode_end():
    r = make_rollout()
    assert r.next_values.shape == (T, N)
    # V(s_{t+1}): the next row of values, and last_values after the last row
    assert r.next_values[:, 0].tolist() == [3.0, 100.0, 1.0, 2.0, 4.0]
    assert r.next_values[:, 1].tolist() == [4.0, 1.0, 2.0, 7.0, 5.0]
    assert r.next_values[:, 2].tolist() == [1.0, 2.0, 2.0, 2.0, 6.0]
    assert r.episode_end.dtype == torch.bool
    ends = sorted((t, n) for t in range(T) for n in range(N) if r.episode_end[t, n])
    assert ends == [(0, 1), (1, 0), (3, 1), (4, 2)]


def test_gae_matches_hand_computation():
    adv = run_gae(make_rollout())
    assert adv.shape == (T, N)
    assert at(adv, VALID_STEPS) == [A[s] for s in VALID_STEPS]  # exact: dyadic arithmetic
    # and the table of TD errors is consistent with the recursion (sanity of the hand numbers)
    assert A[(1, 0)] == D[(1, 0)] and A[(0, 1)] == D[(0, 1)] and A[(4, 2)] == D[(4, 2)]


def test_value_targets_match_hand_computation():
    r = make_rollout()
    ret = value_targets(run_gae(r), r.values)
    assert at(ret, VALID_STEPS) == [R[s] for s in VALID_STEPS]


def test_lambda_zero_is_one_step_td():
    r = make_rollout()
    adv = run_gae(r, lam=0.0)
    assert at(adv, VALID_STEPS) == [D[s] for s in VALID_STEPS]
    # the value target is then the TD(0) target r_t + gamma * V(s_{t+1}) (r_t alone if terminal)
    ret = value_targets(adv, r.values)
    assert float(ret[0, 0]) == 1 + g * 3
    assert float(ret[1, 0]) == 2.0
    assert float(ret[0, 1]) == 1 + g * 4


def test_lambda_one_is_monte_carlo_minus_value():
    r = make_rollout()
    adv = run_gae(r, lam=1.0)
    expected = [G[(t, n)] - VALUES[t][n] for t, n in VALID_STEPS]
    assert at(adv, VALID_STEPS) == pytest.approx(expected, abs=1e-6)
    ret = value_targets(adv, r.values)
    assert at(ret, VALID_STEPS) == pytest.approx([G[s] for s in VALID_STEPS], abs=1e-6)


def test_terminal_final_observation_value_is_never_used():
    """V(terminal obs) (values at the autoreset step after a termination) and V(reset obs) must
    not change any valid advantage; V(final obs) after a truncation must."""
    base = run_gae(make_rollout())
    r = make_rollout()
    r.values[2, 0] = -1e3  # V(terminal obs), env 0
    r.values[4, 1] = 1e3  # V(terminal obs), env 1
    r.values[0, 2] = 1e3  # V(final obs of an episode from the previous rollout)
    r.last_values[1] = -1e3  # V(reset obs) after env 1's termination
    changed = run_gae(r)
    assert at(changed, VALID_STEPS) == at(base, VALID_STEPS)

    r = make_rollout()
    r.values[1, 1] += 2.0  # V(final obs) of env 1's truncated episode
    changed = run_gae(r)
    # only A[0, 1] depends on it, by gamma * 2
    assert float(changed[0, 1] - base[0, 1]) == g * 2.0
    others = [s for s in VALID_STEPS if s != (0, 1)]
    assert at(changed, others) == at(base, others)


def test_last_values_bootstraps_the_unfinished_episode():
    base = run_gae(make_rollout())
    r = make_rollout()
    r.last_values[0] += 4.0
    changed = run_gae(r)
    # A[4, 0] moves by gamma * 4, A[3, 0] by gamma * lambda * that; the terminated episode
    # before the autoreset step (t <= 1) does not move at all
    assert float(changed[4, 0] - base[4, 0]) == g * 4
    assert float(changed[3, 0] - base[3, 0]) == gl * g * 4
    assert float(changed[1, 0]) == float(base[1, 0]) and float(changed[0, 0]) == float(base[0, 0])


def test_to_batch_drops_exactly_the_autoreset_steps():
    r = make_rollout(obs_dim=2)
    adv = run_gae(r)
    ret = value_targets(adv, r.values)
    batch = to_batch(r, adv, ret)

    assert len(batch) == len(VALID_STEPS) == T * N - 4  # four autoreset steps
    # t-major order, one row per valid (t, n), with every field taken from the same (t, n)
    assert batch.observations.shape == (len(VALID_STEPS), 2)
    assert batch.observations[:, 0].tolist() == [10.0 * t + n for t, n in VALID_STEPS]
    assert batch.actions.tolist() == [(t + n) % 2 for t, n in VALID_STEPS]
    assert batch.actions.dtype == torch.long
    assert batch.log_probs.tolist() == pytest.approx([-(t * N + n) / 100 for t, n in VALID_STEPS])
    assert batch.values.tolist() == [VALUES[t][n] for t, n in VALID_STEPS]
    assert batch.advantages.tolist() == [A[s] for s in VALID_STEPS]
    assert batch.returns.tolist() == [R[s] for s in VALID_STEPS]
    # exactly the four autoreset positions (t, n) = (2, 0), (1, 1), (4, 1), (0, 2), encoded as
    # observations 10*t + n, are missing, and none of their values (100, 7, 9) survives
    everything = {10.0 * t + n for t in range(T) for n in range(N)}
    assert everything - set(batch.observations[:, 0].tolist()) == {20.0, 11.0, 41.0, 2.0}
    assert not {100.0, 7.0, 9.0} & set(batch.values.tolist())


def test_batch_indexing_selects_rows_of_every_field():
    r = make_rollout()
    adv = run_gae(r)
    batch = to_batch(r, adv, value_targets(adv, r.values))
    idx = torch.tensor([3, 0])
    sub = batch[idx]
    assert len(sub) == 2
    assert sub.observations[:, 0].tolist() == [batch.observations[3, 0].item(), batch.observations[0, 0].item()]
    assert sub.advantages.tolist() == [batch.advantages[3].item(), batch.advantages[0].item()]
    assert sub.returns.tolist() == [batch.returns[3].item(), batch.returns[0].item()]


def test_gae_single_env_terminated_vs_truncated_last_step():
    """A one-env, two-step rollout ending at the last step: termination ignores last_values,
    truncation bootstraps with it (it is V(final obs))."""
    rewards = torch.tensor([[1.0], [1.0]])
    values = torch.tensor([[0.5], [0.5]])
    last = torch.tensor([[8.0]])  # as next_values' last row
    next_values = torch.cat([values[1:], last])
    ended = torch.tensor([[False], [True]])
    not_ended = torch.tensor([[False], [False]])
    adv_term = gae(rewards, values, next_values, ended, ended, 0.9, 0.5)
    adv_trunc = gae(rewards, values, next_values, not_ended, ended, 0.9, 0.5)
    # terminated: delta_1 = 1 - 0.5 = 0.5; delta_0 = 1 + 0.9*0.5 - 0.5 = 0.95
    #             A_1 = 0.5; A_0 = 0.95 + 0.45 * 0.5 = 1.175
    assert adv_term[:, 0].tolist() == pytest.approx([0.95 + 0.45 * 0.5, 0.5])
    # truncated: delta_1 = 1 + 0.9*8 - 0.5 = 7.7; A_0 = 0.95 + 0.45 * 7.7 = 4.415
    assert adv_trunc[:, 0].tolist() == pytest.approx([0.95 + 0.45 * 7.7, 7.7])
