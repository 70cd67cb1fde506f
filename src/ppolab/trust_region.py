"""The math of one TRPO policy update (Schulman et al. 2015) as pure functions of tensors.

Notation follows the TRPO paper and Spinning Up. TRPO solves, at theta_k = theta_old,

    maximize_theta  L(theta) = E[ pi_theta(a|s) / pi_old(a|s) * A_hat ]
    subject to      D_KL_bar(theta) = E_s[ KL(pi_old(.|s) || pi_theta(.|s)) ] <= delta

by a linear model of L and a quadratic model of D_KL_bar around theta_old:

    g = grad_theta L(theta_old)                  (``flat_grad``)
    H = grad^2_theta D_KL_bar(theta) at theta_old  (``fisher_vector_product``)

The KL and its gradient vanish at theta_old, so H is the Fisher information matrix
E_s E_{a~pi_old}[ grad log pi grad log pi^T ] there. The solution of the approximate problem is

    theta_new = theta_old + alpha^j * sqrt(2 delta / (x^T H x)) * x,   x ~= H^-1 g,

with x from conjugate gradient on H x = g using only products H v (``conjugate_gradient``; H is
never formed), the step scaled to the trust-region boundary 0.5 s^T H s = delta
(``step_to_trust_region_boundary``), and the backtracking factor alpha^j, j = 0, 1, ..., chosen by
a line search on the exact surrogate and sampled KL (``backtracking_line_search``).

Parameters travel as one flat vector in the order of the ``params`` sequence given to every
function (``algos/trpo.py`` reads the policy's parameters with ``parameters_to_vector`` and
sets them with ``vector_to_parameters``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.nn.utils import parameters_to_vector


@torch.no_grad()
def set_parameters(params: Sequence[torch.Tensor], theta: torch.Tensor) -> None:
    """Write the flat vector ``theta`` into ``params`` in place (their storage stays theirs)."""
    offset = 0
    for p in params:
        p.copy_(theta[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


def flat_grad(output: torch.Tensor, params: Sequence[torch.Tensor], create_graph: bool = False,
              retain_graph: bool | None = None) -> torch.Tensor:
    """d output / d theta of a scalar ``output`` as one 1-D vector in the order of ``params``.

    Parameters the output does not depend on get zeros. ``create_graph=True`` keeps the gradient
    differentiable (for Hessian-vector products); ``retain_graph`` defaults to ``create_graph``, as
    in ``torch.autograd.grad``.
    """
    params = list(params)
    grads = torch.autograd.grad(output, params, retain_graph=retain_graph, create_graph=create_graph,
                                allow_unused=True)
    # .contiguous(): a parameter used transposed gets a transposed gradient, which cannot be view(-1)'d
    return parameters_to_vector(
        torch.zeros_like(p) if g is None else g.contiguous() for g, p in zip(grads, params, strict=True)
    )


def conjugate_gradient(matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int = 10,
                       residual_tol: float = 1e-10) -> torch.Tensor:
    """Approximately solve A x = b for symmetric positive-definite A given only v -> A v.

    Conjugate gradient from x_0 = 0 (TRPO paper, appendix C: x ~= H^-1 g with A = H, b = g); at most
    ``iters`` products A v, stopping early once the squared residual r^T r < ``residual_tol``. In exact
    arithmetic it is exact after dim(b) iterations.
    """
    b = b.detach()
    x = torch.zeros_like(b)
    r = b.clone()  # residual b - A x for x = 0
    p = b.clone()
    r_dot_r = torch.dot(r, r)
    for _ in range(iters):
        if r_dot_r < residual_tol:
            break
        a_p = matvec(p)
        p_a_p = torch.dot(p, a_p)
        # Not "<= 0": NaN must stop too. p^T A p <= 0 means A is not positive definite along p
        # (or the residual is already at rounding level), and the step length would be meaningless.
        if not p_a_p > 0:
            break
        alpha = r_dot_r / p_a_p
        x = x + alpha * p
        r = r - alpha * a_p
        new_r_dot_r = torch.dot(r, r)
        p = r + (new_r_dot_r / r_dot_r) * p
        r_dot_r = new_r_dot_r
    return x


def fisher_vector_product(mean_kl: torch.Tensor, params: Sequence[torch.Tensor],
                          damping: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> (H + damping * I) v, H the Hessian of ``mean_kl`` w.r.t. ``params``, by double backprop.

    ``mean_kl`` is D_KL_bar = mean_s KL(pi_old(.|s) || pi_theta(.|s)) computed with the current
    parameters and the old distribution detached; at theta = theta_old its Hessian is the Fisher
    matrix. H v = grad_theta (grad_theta D_KL_bar . v), so H itself is never built. The damping keeps
    the system well posed: H is only positive semi-definite (softmax shift invariance, more
    parameters than states) and is a batch estimate.

    The first-order gradient is taken once, here; the returned function can be called any number of
    times (its graph is retained). It is valid only while the parameters keep the values they had
    when ``mean_kl`` was computed.
    """
    params = list(params)
    grad_kl = flat_grad(mean_kl, params, create_graph=True)

    def fvp(v: torch.Tensor) -> torch.Tensor:
        v = v.detach()
        return flat_grad(torch.dot(grad_kl, v), params, retain_graph=True) + damping * v

    return fvp


def step_to_trust_region_boundary(direction: torch.Tensor, hvp_direction: torch.Tensor,
                                  max_kl: float) -> torch.Tensor:
    """The full step s = sqrt(2 delta / (x^T H x)) * x, so that 0.5 s^T H s = delta = ``max_kl``.

    ``direction`` is x ~= H^-1 g and ``hvp_direction`` is H x. With x = H^-1 g exactly, x^T H x =
    g^T H^-1 g, the paper's form; using H x keeps the step on the boundary of the quadratic model
    even when conjugate gradient stopped early. Returns zeros if x^T H x is not positive (no
    ascent direction the model can size).
    """
    x_h_x = torch.dot(direction, hvp_direction)
    if not x_h_x > 0:  # also catches NaN
        return torch.zeros_like(direction)
    return torch.sqrt(2.0 * max_kl / x_h_x) * direction


@dataclass
class LineSearchResult:
    """Outcome of ``backtracking_line_search``."""

    accepted: bool  # False: the old parameters were kept
    steps: int  # backtracking steps tried (1 = the full step was tried first)
    step_fraction: float  # fraction of the full step that was applied (0.0 if rejected)
    expected_improvement: float  # g . full_step * fraction (applied, or last tried if rejected)
    actual_improvement: float  # surrogate(new) - surrogate(old) for the applied (or last tried) step
    kl: float  # mean KL at the applied (or last tried) step


def backtracking_line_search(
    evaluate: Callable[[torch.Tensor], tuple[float, float]],
    old_params: torch.Tensor,
    full_step: torch.Tensor,
    expected_improvement: float,
    surrogate_before: float,
    max_kl: float,
    backtrack_coef: float = 0.5,
    max_backtracks: int = 10,
) -> LineSearchResult:
    """theta = theta_old + alpha^j * full_step for the first j = 0, 1, ... whose exact surrogate
    improved (L(theta) - L(theta_old) > 0) and whose measured D_KL_bar <= delta = ``max_kl``.

    The quadratic KL model and the linear surrogate model only hold near theta_old; this enforces
    the real constraint and the improvement. ``evaluate(flat_params)`` sets the policy to
    ``flat_params`` and returns (surrogate, mean_kl). ``expected_improvement`` is g . full_step, the
    first-order prediction for the full step. If no fraction passes, the old parameters are
    restored with ``evaluate(old_params)`` and the result has ``accepted=False``.
    """
    if max_backtracks < 1:
        raise ValueError(f"max_backtracks must be at least 1, got {max_backtracks}")
    if not 0.0 < backtrack_coef < 1.0:
        raise ValueError(f"backtrack_coef must be in (0, 1), got {backtrack_coef}")
    old_params = old_params.detach()
    for j in range(max_backtracks):
        fraction = backtrack_coef**j
        surrogate, kl = evaluate(old_params + fraction * full_step)
        actual, kl = float(surrogate) - surrogate_before, float(kl)
        if kl <= max_kl and actual > 0:  # written so that NaN fails both
            return LineSearchResult(True, j + 1, fraction, expected_improvement * fraction, actual, kl)
    # An ``evaluate`` built on vector_to_parameters makes the parameters views of the vector it
    # is given: pass a copy so the caller's old_params never aliases the live parameters.
    evaluate(old_params.clone())
    return LineSearchResult(False, max_backtracks, 0.0, expected_improvement * fraction, actual, kl)
