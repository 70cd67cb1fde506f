"""ppolab.distributions against torch.distributions.Categorical as an oracle."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, kl_divergence

from ppolab import distributions as D


def random_logits(*shape: int, seed: int = 0, scale: float = 2.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*shape, generator=gen, dtype=torch.float64)


def test_log_softmax_normalizes():
    logits = random_logits(7, 5)
    lp = D.log_softmax(logits)
    assert torch.allclose(lp.exp().sum(-1), torch.ones(7, dtype=torch.float64), atol=1e-12)
    # shift invariance: adding a constant per row does not change the distribution
    assert torch.allclose(D.log_softmax(logits + 100.0), lp, atol=1e-10)
    assert torch.allclose(lp, Categorical(logits=logits).logits, atol=1e-12)


def test_log_prob_matches_categorical():
    logits = random_logits(4, 6, 3)  # [T, N, A]
    actions = torch.randint(0, 3, (4, 6), generator=torch.Generator().manual_seed(1))
    ours = D.log_prob(D.log_softmax(logits), actions)
    assert ours.shape == (4, 6)
    oracle = Categorical(logits=logits).log_prob(actions)
    assert torch.allclose(ours, oracle, atol=1e-12)
    # by hand for one entry
    t, n = 2, 3
    a = int(actions[t, n])
    by_hand = logits[t, n, a] - math.log(sum(math.exp(x) for x in logits[t, n].tolist()))
    assert ours[t, n].item() == pytest.approx(by_hand.item(), abs=1e-12)


def test_entropy_matches_categorical():
    logits = random_logits(10, 4)
    ours = D.entropy(D.log_softmax(logits))
    assert torch.allclose(ours, Categorical(logits=logits).entropy(), atol=1e-12)
    # uniform over 4 actions: log 4; one-hot-ish: ~0
    assert D.entropy(D.log_softmax(torch.zeros(4))).item() == pytest.approx(math.log(4))
    nearly_det = D.log_softmax(torch.tensor([50.0, 0.0, 0.0], dtype=torch.float64))
    assert D.entropy(nearly_det).item() == pytest.approx(0.0, abs=1e-18)


def test_kl_matches_categorical():
    lp = D.log_softmax(random_logits(8, 5, seed=2))
    lq = D.log_softmax(random_logits(8, 5, seed=3))
    ours = D.kl(lp, lq)
    oracle = kl_divergence(Categorical(logits=lp), Categorical(logits=lq))
    assert torch.allclose(ours, oracle, atol=1e-12)
    assert (ours > 0).all()
    assert torch.allclose(D.kl(lp, lp), torch.zeros(8, dtype=torch.float64))


def test_mode_is_argmax():
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 2.9], [-5.0, -4.0, -4.5]])
    assert D.mode(D.log_softmax(logits)).tolist() == [1, 0, 1]
    assert D.mode(D.log_softmax(logits)).dtype == torch.long


def test_sample_frequencies_match_probabilities():
    probs = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05], dtype=torch.float64)
    n = 100_000
    lp = probs.log().expand(n, 5)
    gen = torch.Generator().manual_seed(42)
    actions = D.sample(lp, gen)
    assert actions.shape == (n,) and actions.dtype == torch.long
    counts = torch.bincount(actions, minlength=5).to(torch.float64)
    assert counts.sum().item() == n
    expected = n * probs
    chi2 = (((counts - expected) ** 2) / expected).sum().item()
    # 4 degrees of freedom: P(chi2 > 23.5) ~ 1e-4; a wrong sampler (e.g. uniform, or
    # proportional to log-probs) gives chi2 in the thousands
    assert chi2 < 23.5, (counts.tolist(), expected.tolist(), chi2)
    # per action, within 5 standard errors of n * p
    for c, p in zip(counts.tolist(), probs.tolist()):
        assert abs(c - n * p) < 5 * math.sqrt(n * p * (1 - p))


def test_sample_per_row_distributions_and_float32():
    """Different rows have different distributions (float32, as in the collector)."""
    probs = torch.tensor([[0.9, 0.1, 0.0 + 1e-8], [0.1, 0.1, 0.8]])
    n = 50_000
    lp = D.log_softmax(probs.log()).repeat(n, 1)  # rows alternate between the two
    actions = D.sample(lp, torch.Generator().manual_seed(7)).reshape(n, 2)
    for row in range(2):
        freq = torch.bincount(actions[:, row], minlength=3).float() / n
        assert torch.allclose(freq, probs[row], atol=5 * math.sqrt(0.25 / n) + 1e-6), (row, freq)


def test_sample_is_reproducible_with_the_same_generator_seed():
    lp = D.log_softmax(random_logits(1000, 6, seed=5))
    a = D.sample(lp, torch.Generator().manual_seed(123))
    b = D.sample(lp, torch.Generator().manual_seed(123))
    c = D.sample(lp, torch.Generator().manual_seed(124))
    assert torch.equal(a, b)  # same machine, same seed, same code path: bit-identical by design
    assert not torch.equal(a, c)
    # the generator's state advances: two draws in a row differ
    gen = torch.Generator().manual_seed(123)
    first, second = D.sample(lp, gen), D.sample(lp, gen)
    assert torch.equal(first, a) and not torch.equal(first, second)


def test_sample_never_picks_an_impossible_action():
    lp = D.log_softmax(torch.tensor([0.0, float("-inf"), 0.0, float("-inf")]).expand(20_000, 4))
    actions = D.sample(lp, torch.Generator().manual_seed(0))
    assert set(actions.unique().tolist()) == {0, 2}


def test_categorical_object_against_torch():
    """``D.Categorical`` (what the policy head returns for Discrete actions): the same numbers as
    torch.distributions.Categorical, per state, and its KL is KL(self || other)."""
    logits, other_logits = random_logits(6, 4, seed=8), random_logits(6, 4, seed=9)
    ours, other = D.Categorical(logits), D.Categorical(other_logits)
    oracle, oracle_other = Categorical(logits=logits), Categorical(logits=other_logits)
    actions = torch.randint(0, 4, (6,), generator=torch.Generator().manual_seed(2))
    assert torch.allclose(ours.log_prob(actions), oracle.log_prob(actions), atol=1e-12)
    assert torch.allclose(ours.entropy(), oracle.entropy(), atol=1e-12)
    assert torch.allclose(ours.kl(other), kl_divergence(oracle, oracle_other), atol=1e-12)
    assert not torch.allclose(ours.kl(other), other.kl(ours))  # the direction matters
    assert torch.equal(ours.mode(), logits.argmax(-1))
    # sample is D.sample on the log-probabilities: the same draws from the same seed
    assert torch.equal(ours.sample(torch.Generator().manual_seed(5)),
                       D.sample(D.log_softmax(logits), torch.Generator().manual_seed(5)))
    # index: the distributions of some rows; detach: the same numbers without a graph
    rows = torch.tensor([4, 0, 4])
    assert torch.equal(ours.index(rows).logits, logits[rows])
    assert torch.equal(ours.index(slice(1, 3)).log_prob(actions[1:3]), ours.log_prob(actions)[1:3])
    tracked = D.Categorical(logits.clone().requires_grad_(True))
    frozen = tracked.detach()
    assert tracked.entropy().requires_grad and not frozen.entropy().requires_grad
    assert torch.equal(frozen.logits, tracked.logits.detach())
