"""The PPO objective and its diagnostics (ppolab.losses) on hand-made numbers."""

from __future__ import annotations

import math

import pytest
import torch

from ppolab import distributions, losses

EPS = 0.2


def logp_pair(ratios: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """(log_prob_new, log_prob_old) with exp(new - old) = ratios; new requires grad."""
    old = torch.tensor([-1.0, -0.5, -2.0, -0.1, -3.0, -1.5][: len(ratios)], dtype=torch.float64)
    new = (old + torch.log(torch.tensor(ratios, dtype=torch.float64))).detach().requires_grad_(True)
    return new, old


# ------------------------------------------------------------------ clipped surrogate
def test_surrogate_inside_the_clip_range_is_the_plain_surrogate():
    ratios = [0.85, 1.0, 1.15, 0.95, 1.19, 0.81]
    adv = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0, -0.25], dtype=torch.float64)
    new, old = logp_pair(ratios)
    loss = losses.clipped_surrogate(new, old, adv, EPS)
    # -mean(r * A) by hand
    expected = -(0.85 * 1 + 1.0 * -2 + 1.15 * 0.5 + 0.95 * 3 + 1.19 * -1 + 0.81 * -0.25) / 6
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    # and its gradient is the plain one: d/dlogp_i of -mean(r_i A_i) = -r_i A_i / n
    loss.backward()
    assert new.grad.tolist() == pytest.approx([-r * a / 6 for r, a in zip(ratios, adv.tolist())], abs=1e-12)


@pytest.mark.parametrize(
    "ratio, adv, clipped",
    [
        (1.5, 2.0, True),  # r > 1 + eps, A > 0: clipped, no incentive to go further
        (0.5, -2.0, True),  # r < 1 - eps, A < 0: clipped
        (1.5, -2.0, False),  # r > 1 + eps, A < 0: the unclipped (pessimistic) term is used
        (0.5, 2.0, False),  # r < 1 - eps, A > 0: unclipped
        (1.3, 0.7, True),
        (0.6, -0.7, True),
        (1.3, -0.7, False),
        (0.6, 0.7, False),
    ],
)
def test_surrogate_gradient_is_zero_exactly_where_clipping_is_active(ratio, adv, clipped):
    new, old = logp_pair([ratio])
    a = torch.tensor([adv], dtype=torch.float64)
    loss = losses.clipped_surrogate(new, old, a, EPS)
    loss.backward()
    if clipped:
        # the term is the constant clip(r) * A = (1 +- eps) * A
        bound = 1 + EPS if ratio > 1 else 1 - EPS
        assert loss.item() == pytest.approx(-bound * adv, abs=1e-12)
        assert new.grad.item() == 0.0
    else:
        assert loss.item() == pytest.approx(-ratio * adv, abs=1e-12)
        # d(-r A)/d log r = -r A, nonzero
        assert new.grad.item() == pytest.approx(-ratio * adv, abs=1e-12)
        assert new.grad.item() != 0.0


def test_surrogate_mixed_batch_gradients_per_sample():
    ratios = [1.5, 0.5, 1.5, 0.5, 1.1]
    adv = [2.0, -2.0, -2.0, 2.0, 1.0]
    new, old = logp_pair(ratios)
    loss = losses.clipped_surrogate(new, old, torch.tensor(adv, dtype=torch.float64), EPS)
    # terms: clipped 1.2*2, clipped 0.8*-2, unclipped 1.5*-2, unclipped 0.5*2, inside 1.1*1
    assert loss.item() == pytest.approx(-(1.2 * 2 + 0.8 * -2 + 1.5 * -2 + 0.5 * 2 + 1.1 * 1) / 5)
    loss.backward()
    expected = [0.0, 0.0, -(1.5 * -2) / 5, -(0.5 * 2) / 5, -(1.1 * 1) / 5]
    assert new.grad.tolist() == pytest.approx(expected, abs=1e-12)
    assert new.grad[0].item() == 0.0 and new.grad[1].item() == 0.0


# ------------------------------------------------------------------ value loss
def test_value_loss_unclipped_by_hand():
    v_new = torch.tensor([1.0, 2.0, -1.0])
    v_old = torch.tensor([0.0, 0.0, 0.0])
    ret = torch.tensor([0.0, 3.0, 1.0])
    # 0.5 * mean((1-0)^2, (2-3)^2, (-1-1)^2) = 0.5 * (1 + 1 + 4) / 3 = 1
    assert losses.value_loss(v_new, v_old, ret, None).item() == pytest.approx(1.0)


def test_value_loss_clipped_by_hand():
    eps = 0.5
    v_old = torch.tensor([0.0, 0.0, 0.0, 1.0])
    v_new = torch.tensor([2.0, 2.0, 0.25, 0.0])
    ret = torch.tensor([3.0, 0.0, 1.0, 0.0])
    # sample 0: unclipped (2-3)^2 = 1; clipped V = 0 + 0.5 = 0.5 -> (0.5-3)^2 = 6.25; max 6.25
    # sample 1: unclipped (2-0)^2 = 4;  clipped 0.5 -> 0.25; max 4
    # sample 2: |0.25 - 0| <= eps, both (0.25-1)^2 = 0.5625
    # sample 3: unclipped (0-0)^2 = 0;  clipped 1 - 0.5 = 0.5 -> 0.25; max 0.25
    expected = 0.5 * (6.25 + 4 + 0.5625 + 0.25) / 4
    assert losses.value_loss(v_new, v_old, ret, eps).item() == pytest.approx(expected)
    unclipped = 0.5 * (1 + 4 + 0.5625 + 0) / 4
    assert losses.value_loss(v_new, v_old, ret, None).item() == pytest.approx(unclipped)


def test_value_loss_clipped_gradient_is_zero_when_the_clipped_branch_wins():
    v_new = torch.tensor([2.0, 2.0], requires_grad=True)
    v_old = torch.tensor([0.0, 0.0])
    ret = torch.tensor([3.0, 0.0])
    losses.value_loss(v_new, v_old, ret, 0.5).backward()
    # sample 0: the clipped branch (constant in v_new) is the max -> gradient 0
    # sample 1: unclipped branch: d/dv 0.5 * (v - 0)^2 / 2 = v / 2 = 1
    assert v_new.grad.tolist() == pytest.approx([0.0, 1.0])


# ------------------------------------------------------------------ approximate KL
def test_approx_kl_by_hand():
    new = torch.tensor([math.log(2.0), math.log(0.5)])
    old = torch.zeros(2)
    k1, k3 = losses.approx_kl(new, old)
    # k1 = mean(-log r) = (-log 2 + log 2) / 2 = 0
    assert k1.item() == pytest.approx(0.0, abs=1e-7)
    # k3 = mean((r - 1) - log r) = ((1 - log 2) + (-0.5 + log 2)) / 2 = 0.25
    assert k3.item() == pytest.approx(0.25, abs=1e-6)


def test_approx_kl_estimators_against_exact_categorical_kl():
    gen = torch.Generator().manual_seed(1234)
    p_old = torch.tensor([0.5, 0.25, 0.15, 0.1], dtype=torch.float64)
    p_new = torch.tensor([0.35, 0.3, 0.2, 0.15], dtype=torch.float64)
    log_old, log_new = p_old.log(), p_new.log()

    exact = distributions.kl(log_old, log_new).item()
    oracle = torch.distributions.kl_divergence(
        torch.distributions.Categorical(probs=p_old), torch.distributions.Categorical(probs=p_new)
    ).item()
    by_hand = sum(p * math.log(p / q) for p, q in zip(p_old.tolist(), p_new.tolist()))
    assert exact == pytest.approx(oracle, abs=1e-12)
    assert exact == pytest.approx(by_hand, abs=1e-12)

    n = 200_000
    actions = torch.multinomial(p_old, n, replacement=True, generator=gen)
    k1, k3 = losses.approx_kl(log_new[actions], log_old[actions])

    # Both are unbiased; tolerance = 5 standard errors of the sample mean, computed from the exact
    # per-sample variances under p_old. With KL = 0.049 and n = 200k: 5 SE = 3.5e-3 for k1 and
    # 2.5e-4 for k3 (k3's much lower variance is why PPO reports it).
    log_r = log_new - log_old
    for est, per_sample in ((k1, -log_r), (k3, torch.expm1(log_r) - log_r)):
        mean = (p_old * per_sample).sum()
        assert mean.item() == pytest.approx(exact, abs=1e-12)  # unbiased, exactly
        var = (p_old * (per_sample - mean) ** 2).sum().item()
        tol = 5 * math.sqrt(var / n)
        assert tol < 0.1 * exact  # the test can tell a right estimate from a wrong one
        assert abs(est.item() - exact) < tol, (est.item(), exact, tol)


def test_k3_is_never_negative_while_k1_can_be():
    gen = torch.Generator().manual_seed(0)
    old = torch.randn(10_000, generator=gen)
    new = old + 0.5 * torch.randn(10_000, generator=gen)
    per_sample = [losses.approx_kl(new[i : i + 1], old[i : i + 1]) for i in range(0, 10_000, 97)]
    assert all(k3.item() >= 0.0 for _, k3 in per_sample)
    assert any(k1.item() < 0.0 for k1, _ in per_sample)
    # whole-batch k3 too, and it is zero when nothing changed
    assert losses.approx_kl(new, old)[1].item() >= 0.0
    assert losses.approx_kl(old, old)[1].item() == 0.0
    assert losses.approx_kl(old, old)[0].item() == 0.0


# ------------------------------------------------------------------ diagnostics
def test_clip_fraction_by_hand():
    ratios = torch.tensor([1.0, 1.1, 1.25, 0.75, 0.85, 2.0, 0.5, 1.19])
    new, old = torch.log(ratios), torch.zeros(8)
    # outside [0.8, 1.2]: 1.25, 0.75, 2.0, 0.5 -> 4 of 8
    assert losses.clip_fraction(new, old, 0.2).item() == pytest.approx(0.5)
    # outside [0.9, 1.1] (1.1 itself is on the boundary, up to float rounding): 1.25, 0.75,
    # 0.85, 2.0, 0.5, 1.19 -> at least 6 of 8
    assert losses.clip_fraction(new, old, 0.1).item() >= 6 / 8
    assert losses.clip_fraction(old, old, 0.2).item() == 0.0


def test_explained_variance_by_hand():
    target = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert losses.explained_variance(target.clone(), target).item() == pytest.approx(1.0)
    mean = torch.full_like(target, target.mean().item())
    assert losses.explained_variance(mean, target).item() == pytest.approx(0.0, abs=1e-7)
    # var(target) = 1.25; residual [1, 0, 0, -1] has variance 0.5 -> 1 - 0.5/1.25 = 0.6
    pred = torch.tensor([0.0, 2.0, 3.0, 5.0])
    assert losses.explained_variance(pred, target).item() == pytest.approx(0.6)
    # worse than a constant: negative
    assert losses.explained_variance(-target, target).item() < 0.0
    # a constant offset is fully explained (variance of the residual is zero)
    assert losses.explained_variance(target + 3.0, target).item() == pytest.approx(1.0)


def test_explained_variance_is_nan_for_constant_targets():
    target = torch.full((5,), 2.0)
    assert math.isnan(losses.explained_variance(torch.zeros(5), target).item())


def test_surrogate_and_kl_penalized_surrogate_by_hand():
    new = torch.log(torch.tensor([0.5, 0.2]))
    old = torch.log(torch.tensor([0.25, 0.4]))  # ratios 2.0 and 0.5
    adv = torch.tensor([1.0, -2.0])
    # -E[r A] = -(2 * 1 + 0.5 * -2) / 2 = -0.5
    assert losses.surrogate(new, old, adv).item() == pytest.approx(-0.5)
    kl = torch.tensor([0.1, 0.3])
    assert losses.kl_penalized_surrogate(new, old, adv, kl, beta=2.0).item() == pytest.approx(-0.5 + 2.0 * 0.2)


@pytest.mark.parametrize("kl, expected", [(0.001, 0.5), (0.0066, 0.5), (0.0067, 1.0), (0.01, 1.0),
                                          (0.015, 1.0), (0.0151, 2.0), (0.5, 2.0)])
def test_adapt_kl_beta(kl, expected):
    assert losses.adapt_kl_beta(1.0, kl, kl_target=0.01) == expected
