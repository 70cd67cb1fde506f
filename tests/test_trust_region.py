"""TRPO math (ppolab.trust_region) against dense linear algebra, explicitly built Fisher matrices
and one full TRPO policy step on tiny categorical and Gaussian policies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch.nn.utils import parameters_to_vector

from ppolab import distributions as D
from ppolab.trust_region import (
    LineSearchResult,
    backtracking_line_search,
    conjugate_gradient,
    fisher_vector_product,
    flat_grad,
    set_parameters,
    step_to_trust_region_boundary,
)

F64 = torch.float64


def random_spd(n: int, gen: torch.Generator, eigenvalues: torch.Tensor | None = None) -> torch.Tensor:
    """Q diag(eigenvalues) Q^T for a random orthogonal Q; by default n eigenvalues log-spaced in
    [1, 10]. (Rounding makes CG lose its exact n-step termination for widely spread spectra, so
    "exact after n iterations" is only asked of moderately conditioned matrices.)"""
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=F64))
    if eigenvalues is None:
        eigenvalues = torch.logspace(0.0, 1.0, n, dtype=F64)
    return q @ torch.diag(eigenvalues) @ q.T


def relative_error(x: torch.Tensor, exact: torch.Tensor) -> float:
    return (torch.linalg.norm(x - exact) / torch.linalg.norm(exact)).item()


# ------------------------------------------------------------------ a tiny policy and its data
@dataclass
class Policy:
    """Linear(3,4)-tanh-Linear(4,k) giving logits (categorical) or the mean (Gaussian, with a
    state-independent log_std), a batch of on-policy data, and the TRPO surrogate and mean KL."""

    net: torch.nn.Module
    log_std: torch.Tensor | None
    states: torch.Tensor
    log_prob_of_taken: Callable[[], torch.Tensor]  # log pi_theta(a_t|s_t) at the current parameters
    mean_kl: Callable[[], torch.Tensor]  # mean_s KL(pi_old(.|s) || pi_theta(.|s)), pi_old detached
    log_prob_old: torch.Tensor
    advantages: torch.Tensor

    @property
    def params(self) -> list[torch.Tensor]:
        return [*self.net.parameters(), *([self.log_std] if self.log_std is not None else [])]

    def surrogate(self) -> torch.Tensor:
        """L(theta) = mean_t pi_theta(a_t|s_t) / pi_old(a_t|s_t) * A_t."""
        return (torch.exp(self.log_prob_of_taken() - self.log_prob_old) * self.advantages).mean()


def make_policy(kind: str, seed: int, n_states: int = 64, k: int = 3, dtype: torch.dtype = F64) -> Policy:
    """A random ``kind`` ("categorical" or "gaussian") policy at theta_old, with actions drawn from it."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, k)).to(dtype)
    states = torch.randn(n_states, 3, generator=gen, dtype=dtype)
    advantages = torch.randn(n_states, generator=gen, dtype=dtype)
    if kind == "categorical":
        log_std = None
        with torch.no_grad():
            log_pi_old = D.log_softmax(net(states))
        actions = D.sample(log_pi_old, gen)

        def log_prob_of_taken() -> torch.Tensor:
            return D.log_prob(D.log_softmax(net(states)), actions)

        def mean_kl() -> torch.Tensor:
            return D.kl(log_pi_old, D.log_softmax(net(states))).mean()
    else:
        log_std = torch.nn.Parameter(0.5 * torch.randn(k, generator=gen, dtype=dtype))
        with torch.no_grad():
            mean_old, log_std_old = net(states), log_std.detach().clone().expand(n_states, k)
        actions = D.gaussian_sample(mean_old, log_std_old, gen)

        def log_prob_of_taken() -> torch.Tensor:
            return D.gaussian_log_prob(net(states), log_std.expand(n_states, k), actions)

        def mean_kl() -> torch.Tensor:
            return D.gaussian_kl(mean_old, log_std_old, net(states), log_std.expand(n_states, k)).mean()

    return Policy(net, log_std, states, log_prob_of_taken, mean_kl, log_prob_of_taken().detach(), advantages)


# ------------------------------------------------------------------ flat_grad
def test_flat_grad_order_unused_parameters_and_transposed_use():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2, 3, generator=gen, dtype=F64).requires_grad_(True)
    unused = torch.zeros(4, dtype=F64, requires_grad=True)
    c = torch.tensor(0.5, dtype=F64, requires_grad=True)
    m = torch.randn(3, 2, generator=gen, dtype=F64)
    output = (a.T * m).sum() + 3.0 * c**2  # d/da = m^T (a transposed gradient), d/dc = 6c
    grad = flat_grad(output, [a, unused, c])
    assert torch.equal(grad, torch.cat([m.T.reshape(-1), torch.zeros(4, dtype=F64), torch.tensor([3.0], dtype=F64)]))
    assert not grad.requires_grad
    assert flat_grad((a**3).sum(), [a], create_graph=True).requires_grad


# ------------------------------------------------------------------ set_parameters
def test_set_parameters_writes_in_place_in_order_without_aliasing():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    extra = torch.nn.Parameter(torch.zeros(()))  # a 0-d parameter: one number of the vector
    params = [*net.parameters(), extra]
    storage = [p.data_ptr() for p in params]
    n = sum(p.numel() for p in params)
    theta = torch.arange(n, dtype=torch.float32) / n
    set_parameters(params, theta)
    assert torch.equal(parameters_to_vector(params), theta)  # the inverse of parameters_to_vector
    assert torch.equal(net[0].weight[1], theta[3:6]) and extra.item() == theta[-1].item()
    # the parameters keep their own storage (so a network's views of them, its optimizer's list,
    # and whatever else holds them see the new values) and stay leaves that require grad
    assert [p.data_ptr() for p in params] == storage
    assert all(p.is_leaf and p.requires_grad and p.grad is None for p in params)
    theta.add_(1.0)  # the caller's vector is not aliased
    assert not torch.equal(parameters_to_vector(params), theta)
    # a float64 vector is cast into float32 parameters (the line search's copy of theta)
    set_parameters(params, torch.full((n,), 0.25, dtype=F64))
    assert all(p.dtype == torch.float32 and torch.all(p == 0.25) for p in params)
    # called with grad mode on, on leaves that require grad: no "in-place operation on a leaf"
    # error, and nothing recorded in a graph
    assert torch.is_grad_enabled()
    set_parameters(params, torch.zeros(n))
    assert torch.count_nonzero(parameters_to_vector(params)) == 0 and all(p.grad_fn is None for p in params)


# ------------------------------------------------------------------ conjugate gradient
@pytest.mark.parametrize("seed,dim", [(0, 5), (1, 12), (2, 30), (3, 50)])
def test_conjugate_gradient_solves_random_spd_systems(seed, dim):
    gen = torch.Generator().manual_seed(seed)
    a, b = random_spd(dim, gen), torch.randn(dim, generator=gen, dtype=F64)
    exact = torch.linalg.solve(a, b)
    assert relative_error(conjugate_gradient(lambda v: a @ v, b, iters=dim, residual_tol=0.0), exact) < 1e-8
    # a few iterations give an approximation that has improved on x = 0, not the solution
    rough = conjugate_gradient(lambda v: a @ v, b, iters=3, residual_tol=0.0)
    assert 1e-3 < relative_error(rough, exact) < 0.5


@pytest.mark.parametrize("seed,dim", [(0, 5), (1, 12), (2, 30), (3, 50)])
def test_conjugate_gradient_is_exact_after_as_many_iterations_as_distinct_eigenvalues(seed, dim):
    # condition number 1000, but only 4 distinct eigenvalues: conjugate directions finish in 4 steps
    # (steepest descent, or a CG with a wrong beta, would not)
    gen = torch.Generator().manual_seed(seed)
    levels = torch.tensor([1.0, 10.0, 100.0, 1000.0], dtype=F64)
    eigenvalues = torch.cat([levels, levels[torch.randint(0, 4, (dim - 4,), generator=gen)]])
    a, b = random_spd(dim, gen, eigenvalues), torch.randn(dim, generator=gen, dtype=F64)
    exact = torch.linalg.solve(a, b)
    assert relative_error(conjugate_gradient(lambda v: a @ v, b, iters=4, residual_tol=0.0), exact) < 1e-8
    assert relative_error(conjugate_gradient(lambda v: a @ v, b, iters=3, residual_tol=0.0), exact) > 1e-2
    # running on past convergence (residual at rounding level) stays put
    assert relative_error(conjugate_gradient(lambda v: a @ v, b, iters=dim + 10, residual_tol=0.0), exact) < 1e-8


def test_conjugate_gradient_stops_once_the_residual_is_small():
    calls = []

    def matvec(v: torch.Tensor) -> torch.Tensor:
        calls.append(v)
        return 2.0 * v

    b = torch.tensor([1.0, -2.0, 3.0], dtype=F64)
    x = conjugate_gradient(matvec, b, iters=10)
    assert torch.allclose(x, b / 2.0, rtol=0, atol=1e-15)
    assert len(calls) == 1  # A = 2I: exact after one step, r^T r = 0 < tol
    calls.clear()
    assert torch.equal(conjugate_gradient(matvec, torch.zeros(3, dtype=F64)), torch.zeros(3, dtype=F64))
    assert conjugate_gradient(matvec, b, residual_tol=100.0).abs().sum() == 0  # |b|^2 = 14 < 100
    assert calls == []


# ------------------------------------------------------------------ Fisher-vector product
def explicit_categorical_fisher(policy: Policy) -> torch.Tensor:
    """F = mean_s sum_a pi(a|s) g_sa g_sa^T, g_sa = grad_theta log pi(a|s)."""
    log_pi = D.log_softmax(policy.net(policy.states))
    n_states, n_actions = log_pi.shape
    n_params = sum(p.numel() for p in policy.params)
    fisher = torch.zeros(n_params, n_params, dtype=F64)
    for s in range(n_states):
        for a in range(n_actions):
            g = flat_grad(log_pi[s, a], policy.params, retain_graph=True)
            fisher += log_pi[s, a].exp().detach() * torch.outer(g, g)
    return fisher / n_states


def explicit_gaussian_fisher(policy: Policy) -> torch.Tensor:
    """F = mean_s J_s^T M J_s: the Fisher of N(mu, diag(sigma^2)) in (mu, log sigma) coordinates,
    M = diag(1/sigma^2, ..., 2, ...), pulled back through the Jacobian J_s = d(mu(s), log sigma)/d theta."""
    mean, log_std = policy.net(policy.states), policy.log_std
    n_states, k = mean.shape
    m = torch.diag(torch.cat([torch.exp(-2.0 * log_std.detach()), torch.full((k,), 2.0, dtype=F64)]))
    fisher = 0.0
    for s in range(n_states):
        outputs = [*mean[s], *log_std]
        jacobian = torch.stack([flat_grad(o, policy.params, retain_graph=True) for o in outputs])
        fisher = fisher + jacobian.T @ m @ jacobian
    return fisher / n_states


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("damping", [0.0, 0.1])
def test_fisher_vector_product_matches_the_explicit_fisher_matrix(kind, seed, damping):
    policy = make_policy(kind, seed, n_states=5, k=3 if kind == "categorical" else 2)
    explicit = {"categorical": explicit_categorical_fisher, "gaussian": explicit_gaussian_fisher}[kind]
    fisher = explicit(policy)
    assert torch.linalg.matrix_norm(fisher) > 1e-2  # a real matrix to compare against
    # evaluated at theta = theta_old: the mean KL is zero there, its Hessian is the Fisher matrix
    mean_kl = policy.mean_kl()
    assert abs(mean_kl.item()) < 1e-12
    fvp = fisher_vector_product(mean_kl, policy.params, damping)
    gen = torch.Generator().manual_seed(100 + seed)
    for _ in range(3):  # callable repeatedly: the graph is retained
        v = torch.randn(fisher.shape[0], generator=gen, dtype=F64)
        assert torch.allclose(fvp(v), fisher @ v + damping * v, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ step to the boundary
def test_step_to_trust_region_boundary_lands_on_the_quadratic_kl_boundary():
    gen = torch.Generator().manual_seed(0)
    h = random_spd(6, gen, torch.tensor([0.5, 1.0, 2.0, 5.0, 20.0, 50.0], dtype=F64))
    x = torch.randn(6, generator=gen, dtype=F64)
    for max_kl in (1e-3, 0.01, 0.5):
        step = step_to_trust_region_boundary(x, h @ x, max_kl)
        assert (0.5 * step @ h @ step).item() == pytest.approx(max_kl, rel=1e-12)
        assert torch.allclose(step, (step @ x / (x @ x)) * x) and step @ x > 0  # a positive multiple of x
    assert torch.equal(step_to_trust_region_boundary(x, -h @ x, 0.01), torch.zeros(6, dtype=F64))
    assert torch.equal(step_to_trust_region_boundary(torch.zeros(6, dtype=F64), torch.zeros(6, dtype=F64), 0.01),
                       torch.zeros(6, dtype=F64))


# ------------------------------------------------------------------ line search
def test_line_search_bookkeeping_with_scripted_evaluations():
    outcomes = iter([(3.0, 0.5), (0.5, 0.001), (float("nan"), 0.0), (1.5, 0.005)])  # (surrogate, kl)
    tried = []

    def evaluate(flat: torch.Tensor) -> tuple[float, float]:
        tried.append(flat)
        return next(outcomes)

    old, step = torch.zeros(2, dtype=F64), torch.tensor([8.0, -8.0], dtype=F64)
    result = backtracking_line_search(evaluate, old, step, expected_improvement=4.0, surrogate_before=1.0,
                                      max_kl=0.01)
    # too far (kl), worse surrogate, NaN, then accepted at 1/8 of the step
    assert result == LineSearchResult(True, 4, 0.125, 0.5, 0.5, 0.005)
    assert [t.tolist() for t in tried] == [[8.0, -8.0], [4.0, -4.0], [2.0, -2.0], [1.0, -1.0]]

    tried.clear()
    rejected = backtracking_line_search(lambda f: (tried.append(f), (0.0, 0.0))[1], old, step, 4.0, 1.0, 0.01,
                                        backtrack_coef=0.75, max_backtracks=3)
    assert rejected == LineSearchResult(False, 3, 0.0, 4.0 * 0.5625, -1.0, 0.0)
    assert len(tried) == 4 and torch.equal(tried[-1], old)  # the last call restores the old parameters


def policy_evaluator(policy: Policy) -> Callable[[torch.Tensor], tuple[float, float]]:
    def evaluate(flat: torch.Tensor) -> tuple[float, float]:
        set_parameters(policy.params, flat)  # as algos/trpo.py sets the actor
        with torch.no_grad():
            return policy.surrogate().item(), policy.mean_kl().item()

    return evaluate


def test_line_search_shrinks_a_too_large_step_and_rejects_a_wrong_direction():
    policy, max_kl = make_policy("categorical", seed=3), 0.01
    evaluate = policy_evaluator(policy)
    before = policy.surrogate()
    g = flat_grad(before, policy.params)
    old = parameters_to_vector(policy.params).detach().clone()
    full_step = 20.0 * g / torch.linalg.norm(g)  # the plain gradient direction, far too long
    assert evaluate(old + full_step)[1] > 10 * max_kl
    evaluate(old)

    result = backtracking_line_search(evaluate, old, full_step, (g @ full_step).item(), before.item(), max_kl)
    assert result.accepted and result.step_fraction < 1.0 and result.steps > 1
    assert result.kl <= max_kl and result.actual_improvement > 0
    assert result.expected_improvement == pytest.approx((g @ full_step).item() * result.step_fraction)
    now = parameters_to_vector(policy.params).detach()
    assert torch.allclose(now, old + result.step_fraction * full_step, rtol=0, atol=1e-15)
    with torch.no_grad():  # the reported numbers are those of the parameters now in place
        assert policy.mean_kl().item() == pytest.approx(result.kl, rel=1e-12)
        assert policy.surrogate().item() - before.item() == pytest.approx(result.actual_improvement, rel=1e-9)

    evaluate(old.clone())
    saved = old.clone()
    rejected = backtracking_line_search(evaluate, old, -full_step, -(g @ full_step).item(), before.item(), max_kl)
    assert not rejected.accepted and rejected.step_fraction == 0.0 and rejected.steps == 10
    assert rejected.actual_improvement < 0
    assert torch.equal(parameters_to_vector(policy.params), saved)
    policy.params[0].data.add_(1.0)
    assert torch.equal(old, saved)  # the restored parameters do not alias the caller's old vector


# ------------------------------------------------------------------ one full TRPO policy step
def trpo_step(policy: Policy, max_kl: float, damping: float = 0.1, cg_iters: int = 10) -> LineSearchResult:
    """The policy half of a TRPO update: g, x ~= H^-1 g, step to the boundary, line search."""
    surrogate = policy.surrogate()
    g = flat_grad(surrogate, policy.params)
    fvp = fisher_vector_product(policy.mean_kl(), policy.params, damping)
    x = conjugate_gradient(fvp, g, cg_iters)
    step = step_to_trust_region_boundary(x, fvp(x), max_kl)
    old = parameters_to_vector(policy.params).detach()
    return backtracking_line_search(policy_evaluator(policy), old, step, (g @ step).item(), surrogate.item(), max_kl)


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_one_trpo_step_improves_the_surrogate_within_the_kl_limit(kind, seed):
    policy, max_kl = make_policy(kind, seed, dtype=torch.float32), 0.01
    with torch.no_grad():
        before = policy.surrogate().item()
    result = trpo_step(policy, max_kl)
    with torch.no_grad():
        after, kl = policy.surrogate().item(), policy.mean_kl().item()
    assert result.accepted
    assert kl <= max_kl and after > before
    # sized to the boundary of the (damped) quadratic model: not a negligible move, and small
    # enough that the first-order prediction of the improvement holds
    assert kl > 0.25 * max_kl
    assert result.actual_improvement == pytest.approx(result.expected_improvement, rel=0.3)
