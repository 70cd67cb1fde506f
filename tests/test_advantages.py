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

from ppolab.advantages import (
    ESTIMATORS,
    estimate_advantages,
    gae,
    monte_carlo_advantages,
    n_step_advantages,
    td0_advantages,
    value_targets,
)
from ppolab.batches import to_batch
from ppolab.rollout import Rollout

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


# ======================================================= TD(0), n-step and Monte-Carlo estimators

# A second scripted rollout, [T, N] = [5, 2], gamma = 0.5 (exact dyadic arithmetic):
#
#     env 0: t=0..3 one episode TERMINATED at t=3, t=4 autoreset (values[4, 0] = V(terminal obs)
#            = 100 must never reach a valid step; last_values[0] = V(reset obs) = 8 feeds only
#            the autoreset step).
#     env 1: t=0..1 an episode TRUNCATED at t=1 (bootstraps with values[2, 1] = V(final obs)
#            = 4), t=2 autoreset, t=3..4 a new episode cut by the rollout end (bootstraps with
#            last_values[1] = V(s_T) = 6).
#
# Every entry is checked, the autoreset steps included (their advantages are discarded later by
# to_batch, but they are still well defined: an autoreset step is not an episode end).
E_REWARDS = [
    [1.0, 2.0],
    [2.0, 1.0],
    [1.0, 0.0],  # (2, 1): autoreset, reward 0
    [2.0, 2.0],
    [0.0, 1.0],  # (4, 0): autoreset, reward 0
]
E_VALUES = [
    [1.0, 2.0],
    [2.0, 1.0],
    [3.0, 4.0],  # values[2, 1] = V(final obs of env 1's truncated episode) = 4
    [1.0, 1.0],
    [100.0, 2.0],  # values[4, 0] = V(terminal obs) = 100
]
E_LAST_VALUES = [8.0, 6.0]
E_TERMINATED = [[F, F], [F, F], [F, F], [Tr, F], [F, F]]
E_TRUNCATED = [[F, F], [F, Tr], [F, F], [F, F], [F, F]]
E_T, E_N = 5, 2


def e_args(rewards=E_REWARDS, values=E_VALUES, last_values=E_LAST_VALUES):
    """(rewards, values, next_values, terminated, episode_end) of the scripted rollout."""
    values = torch.tensor(values)
    next_values = torch.cat([values[1:], torch.tensor([last_values])])
    terminated, truncated = torch.tensor(E_TERMINATED), torch.tensor(E_TRUNCATED)
    return torch.tensor(rewards), values, next_values, terminated, terminated | truncated


def columns(x: torch.Tensor) -> list[list[float]]:
    """[T, N] -> one list per env, so the tables below read one episode per line."""
    return x.t().tolist()


# next_values: env 0 [2, 3, 1, 100, 8], env 1 [1, 4, 1, 2, 6]
E_TD0 = [
    [
        1 + g * 2 - 1,  # 1
        2 + g * 3 - 2,  # 1.5
        1 + g * 1 - 3,  # -1.5
        2 - 1,  # terminated: no bootstrap (with one: 2 + 0.5 * 100 - 1 = 51)
        0 + g * 8 - 100,  # autoreset step: -96
    ],
    [
        2 + g * 1 - 2,  # 0.5
        1 + g * 4 - 1,  # truncated: bootstrap with V(final obs) = 4 -> 2
        0 + g * 1 - 4,  # autoreset step: -3.5
        2 + g * 2 - 1,  # 2
        1 + g * 6 - 2,  # rollout end: bootstrap with V(s_T) = 6 -> 2
    ],
]

E_N2 = [
    [
        1 + g * 2 + g**2 * 3 - 1,  # window [0, 1]: 1.75
        2 + g * 1 + g**2 * 1 - 2,  # window [1, 2]: 0.75
        1 + g * 2 + g**2 * 0 - 3,  # window [2, 3], terminated at 3: -1
        2 - 1,  # the end itself: m = 1
        0 + g * 8 - 100,  # the rollout's last step: m = 1
    ],
    [
        2 + g * 1 + g**2 * 4 - 2,  # window [0, 1], truncated at 1 -> V(final obs) = 4: 1.5
        1 + g * 4 - 1,  # the truncation itself: m = 1 -> 2
        0 + g * 2 + g**2 * 2 - 4,  # autoreset step, window [2, 3]: -2.5
        2 + g * 1 + g**2 * 6 - 1,  # window [3, 4] ends at the rollout end -> V(s_T) = 6: 3
        1 + g * 6 - 2,  # window would run past the rollout end: m = 1 -> 2
    ],
]

E_N3 = [
    [
        1 + g * 2 + g**2 * 1 + g**3 * 1 - 1,  # window [0, 1, 2]: 1.375
        2 + g * 1 + g**2 * 2 + g**3 * 0 - 2,  # window [1, 2, 3], terminated at 3: 1
        1 + g * 2 - 3,  # terminated inside the window: m = 2 -> -1
        2 - 1,  # m = 1
        0 + g * 8 - 100,  # m = 1 (rollout end)
    ],
    [
        2 + g * 1 + g**2 * 4 - 2,  # truncated inside the window: m = 2 -> 1.5
        1 + g * 4 - 1,  # m = 1 -> 2
        0 + g * 2 + g**2 * 1 + g**3 * 6 - 4,  # window [2, 3, 4] ends at the rollout end: -2
        2 + g * 1 + g**2 * 6 - 1,  # window runs past the rollout end: m = 2 -> 3
        1 + g * 6 - 2,  # m = 1 -> 2
    ],
]

E_MC = [
    [
        1 + g * 2 + g**2 * 1 + g**3 * 2 - 1,  # to the termination at t=3: 1.5 (n=3 stops earlier)
        2 + g * 1 + g**2 * 2 - 2,  # 1
        1 + g * 2 - 3,  # -1
        2 - 1,  # 1
        0 + g * 8 - 100,  # autoreset step, then the rollout end: -96
    ],
    [
        2 + g * 1 + g**2 * 4 - 2,  # to the truncation at t=1, bootstrap V(final obs) = 4: 1.5
        1 + g * 4 - 1,  # 2
        0 + g * 2 + g**2 * 1 + g**3 * 6 - 4,  # autoreset step, to the rollout end: -2
        2 + g * 1 + g**2 * 6 - 1,  # to the rollout end, bootstrap V(s_T) = 6: 3
        1 + g * 6 - 2,  # 2
    ],
]


def test_scripted_estimator_tables_are_distinct():
    """The hand tables differ where the estimators should (so each test below can fail)."""
    assert E_N2[0][0] != E_N3[0][0] != E_MC[0][0] != E_N2[0][0]  # 1.75, 1.375, 1.5
    assert E_N2[0][1] != E_N3[0][1] and E_N2[1][2] != E_N3[1][2]
    assert E_TD0[0][0] != E_N2[0][0] and E_TD0[1][3] != E_N2[1][3]


def test_td0_matches_hand_computation():
    adv = td0_advantages(*e_args(), GAMMA)
    assert adv.shape == (E_T, E_N)
    assert columns(adv) == E_TD0  # exact: dyadic arithmetic


def test_td0_on_the_first_rollout_is_the_td_error_table():
    r = make_rollout()
    adv = td0_advantages(r.rewards, r.values, r.next_values, r.terminated, r.episode_end, GAMMA)
    assert at(adv, VALID_STEPS) == [D[s] for s in VALID_STEPS]


@pytest.mark.parametrize("n, expected", [(2, E_N2), (3, E_N3)])
def test_n_step_matches_hand_computation(n, expected):
    adv = n_step_advantages(*e_args(), GAMMA, n)
    assert adv.shape == (E_T, E_N)
    assert columns(adv) == expected


def test_monte_carlo_matches_hand_computation():
    adv = monte_carlo_advantages(*e_args(), GAMMA)
    assert adv.shape == (E_T, E_N)
    assert columns(adv) == E_MC


def test_monte_carlo_on_the_first_rollout_is_the_return_table():
    r = make_rollout()
    adv = monte_carlo_advantages(r.rewards, r.values, r.next_values, r.terminated, r.episode_end, GAMMA)
    expected = [G[(t, n)] - VALUES[t][n] for t, n in VALID_STEPS]
    assert at(adv, VALID_STEPS) == pytest.approx(expected, abs=1e-6)


def test_monte_carlo_sums_the_whole_rollout_of_an_unfinished_episode():
    """One env, T = 3, no episode end: MC sums all T rewards and bootstraps with V(s_T) once;
    n = T - 1 = 2 would stop a step early."""
    rewards = torch.tensor([[1.0], [2.0], [4.0]])
    values = torch.tensor([[1.0], [2.0], [3.0]])
    next_values = torch.tensor([[2.0], [3.0], [8.0]])  # last row: V(s_T) = 8
    no_end = torch.zeros(3, 1, dtype=torch.bool)
    adv = monte_carlo_advantages(rewards, values, next_values, no_end, no_end, GAMMA)
    assert adv[:, 0].tolist() == [
        1 + g * 2 + g**2 * 4 + g**3 * 8 - 1,  # 3
        2 + g * 4 + g**2 * 8 - 2,  # 4
        4 + g * 8 - 3,  # 5
    ]
    two = n_step_advantages(rewards, values, next_values, no_end, no_end, GAMMA, 2)
    assert two[:, 0].tolist() == [1 + g * 2 + g**2 * 3 - 1, 4.0, 5.0]  # 2.75


def test_n_step_rejects_n_below_one():
    with pytest.raises(ValueError, match="n >= 1"):
        n_step_advantages(*e_args(), GAMMA, 0)


def random_rollout(seed: int, T: int = 7, N: int = 4, dtype=torch.float64):
    """(rewards, values, next_values, terminated, episode_end) with random episode ends."""
    gen = torch.Generator().manual_seed(seed)
    rewards = torch.randn(T, N, generator=gen, dtype=dtype)
    values = torch.randn(T, N, generator=gen, dtype=dtype)
    last_values = torch.randn(1, N, generator=gen, dtype=dtype)
    u = torch.rand(T, N, generator=gen)
    terminated = u < 0.2
    truncated = (u >= 0.2) & (u < 0.35)
    next_values = torch.cat([values[1:], last_values])
    return rewards, values, next_values, terminated, terminated | truncated


SEEDS = range(6)


def assert_same_advantages(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Two estimators that agree in exact arithmetic (GAE's backward recursion vs n-step's forward
    window sums) on a float64 rollout: equal up to summation order (measured <= 1e-15 on values
    <= 5); a real difference, such as one reward more or less, is 1e-2 or more."""
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("seed", SEEDS)
def test_one_step_estimators_agree(seed):
    args = random_rollout(seed)
    assert args[4].any() and not args[4].all()  # some steps end an episode, not every one
    td0 = td0_advantages(*args, 0.9)
    assert_same_advantages(n_step_advantages(*args, 0.9, 1), td0)
    assert_same_advantages(gae(*args, 0.9, 0.0), td0)


@pytest.mark.parametrize("seed", SEEDS)
def test_full_length_estimators_agree(seed):
    args = random_rollout(seed)
    T = args[0].shape[0]
    mc = monte_carlo_advantages(*args, 0.9)
    assert_same_advantages(gae(*args, 0.9, 1.0), mc)
    for n in (T, T + 1, 100):
        assert_same_advantages(n_step_advantages(*args, 0.9, n), mc)
    # and n = T - 1 is not MC wherever a window from t = 0 would need all T steps
    if not args[4][:-1, :].any(0).all():
        assert not torch.allclose(n_step_advantages(*args, 0.9, T - 1), mc)


def test_estimate_advantages_dispatches_to_each_estimator():
    assert ESTIMATORS == ("gae", "td0", "nstep", "mc")
    args = e_args()
    # td0 and mc ignore gae_lambda and n_step
    assert columns(estimate_advantages("td0", *args, GAMMA, 0.3, 2)) == E_TD0
    assert columns(estimate_advantages("mc", *args, GAMMA, 0.3, 2)) == E_MC
    # nstep uses n_step, gae uses gae_lambda
    assert columns(estimate_advantages("nstep", *args, GAMMA, 0.3, 2)) == E_N2
    assert columns(estimate_advantages("nstep", *args, GAMMA, 0.3, 3)) == E_N3
    r = make_rollout()
    r_args = (r.rewards, r.values, r.next_values, r.terminated, r.episode_end)
    adv = estimate_advantages("gae", *r_args, GAMMA, LAM, 2)
    assert at(adv, VALID_STEPS) == [A[s] for s in VALID_STEPS]
    adv = estimate_advantages("gae", *r_args, GAMMA, 0.0, 2)
    assert at(adv, VALID_STEPS) == [D[s] for s in VALID_STEPS]


def test_estimate_advantages_rejects_an_unknown_name():
    with pytest.raises(ValueError) as err:
        estimate_advantages("td1", *e_args(), GAMMA, 0.95, 3)
    message = str(err.value)
    assert "'td1'" in message
    for name in ("gae", "td0", "nstep", "mc"):
        assert name in message


ALL_ESTIMATORS = [
    ("gae", lambda *a: gae(*a, 0.9, 0.95)),
    ("td0", lambda *a: td0_advantages(*a, 0.9)),
    ("nstep1", lambda *a: n_step_advantages(*a, 0.9, 1)),
    ("nstep2", lambda *a: n_step_advantages(*a, 0.9, 2)),
    ("nstep3", lambda *a: n_step_advantages(*a, 0.9, 3)),
    ("nstep100", lambda *a: n_step_advantages(*a, 0.9, 100)),
    ("mc", lambda *a: monte_carlo_advantages(*a, 0.9)),
]


@pytest.mark.parametrize("name, estimate", ALL_ESTIMATORS, ids=[n for n, _ in ALL_ESTIMATORS])
def test_nothing_after_an_episode_end_leaks_back(name, estimate):
    """The step after an episode end (t) is the autoreset step: rewards and values from t + 1
    on (V(s_T) included) must not move A_0..A_t, except V(final obs) = values[t + 1] after a
    truncation, which A_t bootstraps with."""
    checked = 0
    for seed in SEEDS:
        rewards, values, next_values, terminated, episode_end = random_rollout(seed)
        T = rewards.shape[0]
        base = estimate(rewards, values, next_values, terminated, episode_end)
        for t, n in episode_end[:-1].nonzero().tolist():
            gen = torch.Generator().manual_seed(1000 * seed + 10 * t + n)
            r, v, last = rewards.clone(), values.clone(), next_values[-1].clone()
            r[t + 1:, n] += 1 + torch.rand(T - t - 1, generator=gen, dtype=r.dtype)
            first_free = t + 1 if terminated[t, n] else t + 2  # values[t + 1]: V(final obs)
            v[first_free:, n] -= 1 + torch.rand(T - first_free, generator=gen, dtype=v.dtype)
            last[n] += 5.0
            nv = torch.cat([v[1:], last.unsqueeze(0)])
            changed = estimate(r, v, nv, terminated, episode_end)
            # same code on the same machine, and what changed reaches A_0..A_t only through an
            # exact 0 (GAE's carry at the episode end, n-step's stopped windows): bit-identical by design
            assert torch.equal(changed[: t + 1, n], base[: t + 1, n]), (seed, t, n)
            assert not torch.equal(changed[t + 1:, n], base[t + 1:, n])  # the change was seen
            if not terminated[t, n]:  # a truncation does bootstrap with V(final obs)
                v[t + 1, n] += 1.0
                nv = torch.cat([v[1:], last.unsqueeze(0)])
                moved = estimate(r, v, nv, terminated, episode_end)
                assert moved[t, n] - changed[t, n] == pytest.approx(0.9)
            checked += 1
    assert checked >= 10


def test_terminal_final_observation_value_is_never_used_by_any_estimator():
    """In the scripted rollout, V(terminal obs) = values[4, 0] only feeds env 0's autoreset step,
    and V(final obs) = values[2, 1] of the truncation moves the steps that bootstrap with it."""
    for name in ESTIMATORS:
        base = estimate_advantages(name, *e_args(), GAMMA, 0.5, 3)
        values = [row[:] for row in E_VALUES]
        values[4][0] = -1e3
        changed = estimate_advantages(name, *e_args(values=values), GAMMA, 0.5, 3)
        assert changed[:4, 0].tolist() == base[:4, 0].tolist(), name
        values = [row[:] for row in E_VALUES]
        values[2][1] += 10.0  # V(final obs) of env 1's truncated episode
        moved = estimate_advantages(name, *e_args(values=values), GAMMA, 0.5, 3)
        assert moved[1, 1] != base[1, 1], name  # the truncation step bootstraps with it
        assert moved[0, 1] != base[0, 1] or name == "td0", name  # so does every longer window
