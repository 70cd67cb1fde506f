"""Diagonal Gaussian, tanh-squashed Gaussian and MultiDiscrete distributions against closed forms
and torch.distributions as an oracle."""

from __future__ import annotations

import math

import torch
from torch.distributions import Categorical, Independent, Normal, TransformedDistribution, kl_divergence
from torch.distributions.transforms import TanhTransform

from ppolab import distributions as D

G = torch.Generator().manual_seed(0)


def randn(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=G, dtype=torch.float64)


def oracle(mean: torch.Tensor, log_std: torch.Tensor) -> Independent:
    return Independent(Normal(mean, log_std.exp()), 1)


def assert_matches_oracle(ours: torch.Tensor, oracle_value: torch.Tensor) -> None:
    """float64, our formula vs torch.distributions' (a different op order, and exp / log whose
    last bit depends on the CPU's kernels): measured gap <= 4e-15 on values of size <= 20; a
    wrong term (a missing log sigma, a factor of 2) is off by 1e-2 or more."""
    torch.testing.assert_close(ours, oracle_value, rtol=1e-10, atol=1e-12)


def test_gaussian_log_prob_closed_form_one_dimension():
    # N(1; 0, 2^2): -1/8 - log 2 - log sqrt(2 pi)
    value = D.gaussian_log_prob(torch.tensor([[0.0]]), torch.tensor([[math.log(2.0)]]), torch.tensor([[1.0]]))
    assert math.isclose(value.item(), -0.125 - math.log(2.0) - 0.5 * math.log(2 * math.pi), rel_tol=1e-6)


def test_gaussian_log_prob_entropy_kl_match_torch():
    mean, log_std, actions = randn(5, 3, 4), 0.5 * randn(5, 3, 4), randn(5, 3, 4)
    assert_matches_oracle(D.gaussian_log_prob(mean, log_std, actions), oracle(mean, log_std).log_prob(actions))
    assert_matches_oracle(D.gaussian_entropy(log_std), oracle(mean, log_std).entropy())
    mean_q, log_std_q = randn(5, 3, 4), 0.5 * randn(5, 3, 4)
    exact = kl_divergence(oracle(mean, log_std), oracle(mean_q, log_std_q))
    assert_matches_oracle(D.gaussian_kl(mean, log_std, mean_q, log_std_q), exact)
    assert torch.allclose(D.gaussian_kl(mean, log_std, mean, log_std), torch.zeros(5, 3, dtype=torch.float64))


def test_gaussian_entropy_closed_form():
    # one dimension with sigma = 1: 0.5 log(2 pi e)
    assert math.isclose(D.gaussian_entropy(torch.zeros(1, 1)).item(), 0.5 * math.log(2 * math.pi * math.e), rel_tol=1e-6)


def test_gaussian_sample_moments_and_seeding():
    mean = torch.tensor([1.0, -2.0], dtype=torch.float64).expand(200_000, 2)
    log_std = torch.tensor([0.0, math.log(0.5)], dtype=torch.float64).expand(200_000, 2)
    draws = D.gaussian_sample(mean, log_std, torch.Generator().manual_seed(3))
    assert torch.allclose(draws.mean(0), torch.tensor([1.0, -2.0], dtype=torch.float64), atol=0.01)
    assert torch.allclose(draws.std(0), torch.tensor([1.0, 0.5], dtype=torch.float64), atol=0.01)
    again = D.gaussian_sample(mean, log_std, torch.Generator().manual_seed(3))
    assert torch.equal(again, draws)  # same machine, seed and code path: bit-identical by design
    other = D.gaussian_sample(mean, log_std, torch.Generator().manual_seed(4))
    assert not torch.equal(other, draws)


def test_squashed_log_prob_matches_numerical_change_of_variables():
    mean, log_std, u = randn(50, 3), 0.3 * randn(50, 3), 2.0 * randn(50, 3)
    h = 1e-6
    dtanh = (torch.tanh(u + h) - torch.tanh(u - h)) / (2 * h)  # numerical d tanh / du
    expected = D.gaussian_log_prob(mean, log_std, u) - torch.log(dtanh).sum(-1)
    # the central difference loses ~eps / (h tanh'(u)) relative to tanh'(u): up to 3e-6 in log tanh'
    # at |u| = 6.4 (where log tanh' = -11), and a few times more if tanh's last bit differs on
    # another CPU; the rest is float64 rounding. A wrong Jacobian term is off by 1e-1 or more.
    torch.testing.assert_close(D.squashed_gaussian_log_prob(mean, log_std, u), expected, rtol=1e-5, atol=1e-5)


def test_squashed_log_prob_matches_torch_and_is_stable_far_out():
    mean, log_std, u = randn(20, 2), 0.3 * randn(20, 2), randn(20, 2)
    squashed = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform()])
    expected = squashed.log_prob(torch.tanh(u)).sum(-1)
    # torch inverts tanh (atanh of a value near +-1 loses digits for |u| ~ 3): measured gap 4e-15
    torch.testing.assert_close(D.squashed_gaussian_log_prob(mean, log_std, u), expected, rtol=1e-9, atol=1e-9)
    # at u = 30, tanh(u) == 1 in floating point; the stable form stays finite (about -2 * 30 * 2)
    far = D.tanh_log_det_jacobian(torch.tensor([[30.0, -30.0]], dtype=torch.float64))
    assert torch.isfinite(far).all()
    assert math.isclose(far.item(), 2 * 2 * (math.log(2.0) - 30.0), rel_tol=1e-9)


def test_multidiscrete_matches_product_of_categoricals():
    nvec = (3, 2, 4)
    logits = randn(6, 5, sum(nvec))
    actions = torch.stack([torch.randint(0, n, (6, 5), generator=G) for n in nvec], dim=-1)
    lps = D.multi_log_softmax(logits, nvec)
    parts = [Categorical(logits=p) for p in logits.split(list(nvec), dim=-1)]
    expected_lp = sum(c.log_prob(actions[..., k]) for k, c in enumerate(parts))
    expected_h = sum(c.entropy() for c in parts)
    assert_matches_oracle(D.multi_log_prob(lps, actions), expected_lp)
    assert_matches_oracle(D.multi_entropy(lps), expected_h)
    draws = D.multi_sample(lps, torch.Generator().manual_seed(0))
    assert draws.shape == (6, 5, 3)
    for k, n in enumerate(nvec):
        assert int(draws[..., k].min()) >= 0 and int(draws[..., k].max()) < n


def test_a_runaway_log_std_is_clamped_so_the_math_stays_finite():
    """One update with a huge step can push the learned log-std to +-1000; sigma^2 = exp(2 log_std)
    would then be 0 or inf in float32. The distribution clamps it to [-20, 20]."""
    from ppolab.distributions import DiagGaussian

    head = torch.zeros(3, 2)
    actions = torch.full((3, 2), 0.5)
    for runaway in (-1000.0, 1000.0):
        log_std = torch.full((2,), runaway, requires_grad=True)
        dist = DiagGaussian(head, log_std)
        log_prob, entropy = dist.log_prob(actions), dist.entropy()
        clamped = DiagGaussian(head, torch.full((2,), 20.0 if runaway > 0 else -20.0))
        expected_logp, expected_entropy = clamped.log_prob(actions), clamped.entropy()
        assert torch.isfinite(log_prob).all() and torch.isfinite(entropy).all()
        torch.testing.assert_close(log_prob, expected_logp)  # same path, same inputs: exact
        torch.testing.assert_close(entropy, expected_entropy)
        assert torch.isfinite(DiagGaussian(head, torch.zeros(2)).kl(DiagGaussian(head + 1, log_std))).all()
        sample = dist.sample(torch.Generator().manual_seed(0))
        sample_logp = dist.log_prob(sample)
        assert torch.isfinite(sample).all() and torch.isfinite(sample_logp).all()
        # squashed too: the same clamp, and the tanh correction stays finite
        squashed = DiagGaussian(head, log_std, squash=True)
        assert torch.isfinite(squashed.log_prob(squashed.sample(torch.Generator().manual_seed(0)))).all()
    inside = torch.tensor([-19.5, 19.5])  # within the bounds nothing changes: H = sum(log sigma) + const
    expected = torch.full((3,), 2 * (0.5 * math.log(2 * math.pi) + 0.5))
    torch.testing.assert_close(DiagGaussian(head, inside).entropy(), expected)


def test_distribution_objects_against_torch():
    """``D.MultiCategorical`` and ``D.DiagGaussian`` (what the policy head returns for
    MultiDiscrete and Box actions) against torch.distributions, per state."""
    nvec = (3, 2, 4)
    logits, other_logits = randn(7, sum(nvec)), randn(7, sum(nvec))
    multi, other = D.MultiCategorical(logits, nvec), D.MultiCategorical(other_logits, nvec)
    parts = [Categorical(logits=p) for p in logits.split(list(nvec), dim=-1)]
    other_parts = [Categorical(logits=p) for p in other_logits.split(list(nvec), dim=-1)]
    actions = torch.stack([torch.randint(0, n, (7,), generator=G) for n in nvec], dim=-1)
    assert_matches_oracle(multi.log_prob(actions), sum(c.log_prob(actions[:, k]) for k, c in enumerate(parts)))
    assert_matches_oracle(multi.entropy(), sum(c.entropy() for c in parts))
    assert_matches_oracle(multi.kl(other), sum(kl_divergence(p, q) for p, q in zip(parts, other_parts)))
    assert torch.equal(multi.mode(), torch.stack([p.logits.argmax(-1) for p in parts], -1))
    assert multi.sample(torch.Generator().manual_seed(0)).shape == (7, 3)
    assert torch.equal(multi.index(slice(2, 5)).log_prob(actions[2:5]), multi.log_prob(actions)[2:5])
    assert torch.equal(multi.detach().logits, logits)

    mean, log_std = randn(7, 2), 0.3 * randn(2)  # a state-independent log-std, broadcast per state
    mean_q, log_std_q = randn(7, 2), 0.3 * randn(2)
    gauss, gauss_q = D.DiagGaussian(mean, log_std), D.DiagGaussian(mean_q, log_std_q)
    assert gauss.log_std.shape == (7, 2)
    oracle_p, oracle_q = oracle(mean, log_std.expand(7, 2)), oracle(mean_q, log_std_q.expand(7, 2))
    u = randn(7, 2)
    assert_matches_oracle(gauss.log_prob(u), oracle_p.log_prob(u))
    assert_matches_oracle(gauss.entropy(), oracle_p.entropy())
    assert_matches_oracle(gauss.kl(gauss_q), kl_divergence(oracle_p, oracle_q))
    assert torch.equal(gauss.mode(), mean)
    assert torch.equal(gauss.sample(torch.Generator().manual_seed(3)),
                       D.gaussian_sample(mean, log_std.expand(7, 2), torch.Generator().manual_seed(3)))
    rows = torch.tensor([6, 1])
    assert torch.equal(gauss.index(rows).log_prob(u[rows]), gauss.log_prob(u)[rows])
    # squashed: the log-probability of the pre-squash sample gains the tanh correction; the
    # entropy and the KL are the Gaussians' (a bijection leaves the KL unchanged)
    squashed, squashed_q = D.DiagGaussian(mean, log_std, squash=True), D.DiagGaussian(mean_q, log_std_q, squash=True)
    assert_matches_oracle(squashed.log_prob(u), D.squashed_gaussian_log_prob(mean, log_std.expand(7, 2), u))
    assert torch.equal(squashed.entropy(), gauss.entropy()) and torch.equal(squashed.kl(squashed_q), gauss.kl(gauss_q))
    assert squashed.detach().squash and squashed.index(rows).squash
    # detach freezes pi_old: later changes to the log-std parameter do not reach it
    param = torch.nn.Parameter(log_std.clone())
    frozen = D.DiagGaussian(mean, param).detach()
    with torch.no_grad():
        param.add_(1.0)
    assert_matches_oracle(frozen.log_prob(u), oracle_p.log_prob(u))
