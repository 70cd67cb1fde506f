"""FlatAdam / flatten_parameters / clip_grad_norm_ against their torch counterparts."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ppolab.optim import FlatAdam, clip_grad_norm_, flatten_parameters


def make_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))


def data(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(32, 4, generator=gen), torch.randn(32, 3, generator=gen)


def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
    # a different minibatch every step so that the gradients (and Adam's moments) vary
    idx = torch.arange(step % 4, 32, 4)
    return ((model(x[idx]) - y[idx]) ** 2).mean() + 0.1 * model(x[idx]).abs().mean()


def flat_of(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def assert_same_trajectory(ours: torch.Tensor, theirs: torch.Tensor, step: int | None = None) -> None:
    """Our optimizer vs torch.optim on the same float32 problem: the same math in a different op
    order (and FMA use, which varies with the CPU's kernels), so the parameters differ by an ulp
    or so per step, fed back through the gradients (measured <= 6e-8 after 20 steps, |theta| <= 0.5).
    A real error is far larger: Adam's eps inside the sqrt, or added before v's bias correction,
    moves them by 5e-5 from the first step, a missing bias correction of v by 1e-1."""
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=2e-6, msg=lambda m: f"step {step}: {m}")


def test_flatten_parameters_views_and_values():
    model = make_mlp()
    before = [p.detach().clone() for p in model.parameters()]
    params, grads = flatten_parameters(model)
    n = sum(b.numel() for b in before)
    assert params.shape == (n,) and grads.shape == (n,)
    assert torch.equal(params, torch.cat([b.reshape(-1) for b in before]))
    assert torch.count_nonzero(grads) == 0
    # every parameter and gradient is a view into the flat buffers, in order
    offset = 0
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p.detach(), b)
        assert p.data_ptr() == params[offset:].data_ptr()
        assert p.grad is not None and p.grad.data_ptr() == grads[offset:].data_ptr()
        offset += p.numel()
    # writing the flat buffer changes the module
    params.add_(1.0)
    assert torch.equal(next(model.parameters()).detach(), before[0] + 1.0)


def test_backward_accumulates_into_the_flat_grad_buffer():
    model = make_mlp()
    reference = copy.deepcopy(model)
    params, grads = flatten_parameters(model)
    x, y = data()

    loss_fn(model, x, y, 0).backward()
    loss_fn(reference, x, y, 0).backward()
    expected = torch.cat([p.grad.reshape(-1) for p in reference.parameters()])
    assert torch.count_nonzero(grads) > 0
    assert torch.allclose(grads, expected, atol=1e-7)
    # still views after backward (autograd accumulated in place rather than replacing .grad)
    offset = 0
    for p in model.parameters():
        assert p.grad.data_ptr() == grads[offset:].data_ptr()
        offset += p.numel()

    # a second backward accumulates (sums) into the same buffer
    loss_fn(model, x, y, 1).backward()
    loss_fn(reference, x, y, 1).backward()
    expected = torch.cat([p.grad.reshape(-1) for p in reference.parameters()])
    assert torch.allclose(grads, expected, atol=1e-7)


def run_torch_adam(model: nn.Module, steps: int, lr: float, start: int = 0, opt=None):
    x, y = data()
    opt = opt or torch.optim.Adam(model.parameters(), lr=lr, eps=1e-5)
    for step in range(start, start + steps):
        opt.zero_grad()
        loss_fn(model, x, y, step).backward()
        opt.step()
    return opt


def run_flat_adam(model: nn.Module, opt: FlatAdam, steps: int, start: int = 0) -> None:
    x, y = data()
    for step in range(start, start + steps):
        opt.zero_grad()
        loss_fn(model, x, y, step).backward()
        opt.step()


def test_flat_adam_matches_torch_adam_step_for_step():
    lr = 3e-3
    ours, theirs = make_mlp(), make_mlp()
    params, grads = flatten_parameters(ours)
    opt = FlatAdam(params, grads, lr=lr)
    assert opt.eps == 1e-5
    torch_opt = torch.optim.Adam(theirs.parameters(), lr=lr, eps=1e-5)
    initial = params.clone()
    for step in range(20):
        run_flat_adam(ours, opt, 1, start=step)
        run_torch_adam(theirs, 1, lr, start=step, opt=torch_opt)
        assert_same_trajectory(params, flat_of(theirs), step)
        # the module itself (not only the buffer) moved
        assert_same_trajectory(flat_of(ours), flat_of(theirs), step)
    assert opt.step_count == 20
    assert (params - initial).abs().max() > 1e-2  # it really trained
    torch_state = torch_opt.state[next(theirs.parameters())]
    # the first moment (|m| <= 2e-2) inherits the gradients' ulp-level differences (measured <= 7e-9)
    torch.testing.assert_close(opt.exp_avg[: torch_state["exp_avg"].numel()],
                               torch_state["exp_avg"].reshape(-1), rtol=1e-5, atol=1e-7)


def test_flat_adam_lr_change_takes_effect():
    """PPOUpdate anneals the learning rate by assigning opt.lr; torch's equivalent is the
    param_group's lr."""
    ours, theirs = make_mlp(), make_mlp()
    params, grads = flatten_parameters(ours)
    opt = FlatAdam(params, grads, lr=1e-2)
    torch_opt = torch.optim.Adam(theirs.parameters(), lr=1e-2, eps=1e-5)
    for step, lr in enumerate([1e-2, 5e-3, 2e-3, 1e-3, 0.0]):
        opt.lr = lr
        torch_opt.param_groups[0]["lr"] = lr
        run_flat_adam(ours, opt, 1, start=step)
        run_torch_adam(theirs, 1, lr, start=step, opt=torch_opt)
    assert_same_trajectory(params, flat_of(theirs))


def test_state_dict_round_trip_continues_identically():
    lr = 3e-3
    a = make_mlp()
    pa, ga = flatten_parameters(a)
    opt_a = FlatAdam(pa, ga, lr=lr)
    run_flat_adam(a, opt_a, 7)

    state = opt_a.state_dict()
    b = make_mlp(seed=99)  # different initial weights, overwritten below
    pb, gb = flatten_parameters(b)
    pb.copy_(pa)
    opt_b = FlatAdam(pb, gb, lr=1.0)  # wrong lr, restored from the state
    opt_b.load_state_dict(state)
    assert opt_b.step_count == 7 and opt_b.lr == lr

    # the saved state is a copy: continuing to train a does not change it
    saved_avg = state["exp_avg"].clone()
    run_flat_adam(a, opt_a, 5, start=7)
    run_flat_adam(b, opt_b, 5, start=7)
    assert torch.equal(state["exp_avg"], saved_avg)
    assert torch.equal(pa, pb)  # same machine, same ops on the same numbers: bit-identical by design
    assert opt_a.step_count == opt_b.step_count == 12

    # without restoring the state (fresh moments, step 0) the trajectories differ
    c = make_mlp(seed=99)
    pc, gc = flatten_parameters(c)
    pc.copy_(pa)
    fresh = FlatAdam(pc, gc, lr=lr)
    run_flat_adam(c, fresh, 1, start=12)
    run_flat_adam(a, opt_a, 1, start=12)
    assert not torch.allclose(pa, pc, atol=1e-6)


def test_zero_grad_keeps_the_views():
    model = make_mlp()
    params, grads = flatten_parameters(model)
    opt = FlatAdam(params, grads, lr=1e-3)
    x, y = data()
    loss_fn(model, x, y, 0).backward()
    assert torch.count_nonzero(grads) > 0
    opt.zero_grad()
    assert torch.count_nonzero(grads) == 0
    assert all(p.grad is not None and torch.count_nonzero(p.grad) == 0 for p in model.parameters())


@pytest.mark.parametrize("max_norm", [0.05, 0.5, 1e6])
def test_clip_grad_norm_matches_torch(max_norm):
    ours, theirs = make_mlp(), make_mlp()
    params, grads = flatten_parameters(ours)
    x, y = data()
    loss_fn(ours, x, y, 0).backward()
    loss_fn(theirs, x, y, 0).backward()
    unclipped = grads.clone()

    norm = clip_grad_norm_(grads, max_norm)
    torch_norm = torch.nn.utils.clip_grad_norm_(theirs.parameters(), max_norm)
    # float32 norms of 243 numbers summed in different orders (one flat vector vs a norm of
    # per-tensor norms; lane counts vary with the CPU): measured rel. gap 6e-8
    assert norm.item() == pytest.approx(torch_norm.item(), rel=1e-5)
    assert norm.item() == pytest.approx(torch.linalg.vector_norm(unclipped).item(), rel=1e-5)
    torch_grads = torch.cat([p.grad.reshape(-1) for p in theirs.parameters()])
    # scaled by max_norm / (norm + 1e-6): inherits the norms' relative gap
    torch.testing.assert_close(grads, torch_grads, rtol=1e-5, atol=1e-7)
    after = torch.linalg.vector_norm(grads).item()
    if max_norm < norm.item():
        assert after == pytest.approx(max_norm, rel=1e-4)
        # direction preserved
        assert torch.allclose(grads / after, unclipped / norm, atol=1e-6)
    else:
        assert torch.equal(grads, unclipped)  # not clipped: scaled by exactly 1.0, so bit-identical
    # the module's .grad views saw the clipping too
    assert torch.allclose(torch.cat([p.grad.reshape(-1) for p in ours.parameters()]), grads)


def test_clip_grad_norm_by_hand():
    g = torch.tensor([3.0, 4.0])  # norm 5
    norm = clip_grad_norm_(g, 1.0)
    assert norm.item() == pytest.approx(5.0)
    assert g.tolist() == pytest.approx([0.6, 0.8], rel=1e-5)


def test_flat_rmsprop_matches_torch_rmsprop_step_for_step():
    from ppolab.optim import FlatRMSprop

    lr = 1e-3
    ours, theirs = make_mlp(), make_mlp()
    params, grads = flatten_parameters(ours)
    opt = FlatRMSprop(params, grads, lr=lr, alpha=0.99, eps=1e-5)
    torch_opt = torch.optim.RMSprop(theirs.parameters(), lr=lr, alpha=0.99, eps=1e-5)
    initial = params.clone()
    x, y = data()
    for step in range(20):
        opt.zero_grad()
        loss_fn(ours, x, y, step).backward()
        opt.step()
        torch_opt.zero_grad()
        loss_fn(theirs, x, y, step).backward()
        torch_opt.step()
        assert_same_trajectory(params, flat_of(theirs), step)
    assert (params - initial).abs().max() > 1e-2


def test_flatten_a_subset_of_parameters():
    model = make_mlp()
    first = list(model[0].parameters())
    params, grads = flatten_parameters(first)
    assert params.numel() == 4 * 16 + 16
    values = torch.linspace(-0.1, 0.1, params.numel())
    params.copy_(values)  # in place: the layer follows
    assert model[0].bias[0].item() == values[4 * 16].item()
    model(torch.ones(2, 4)).sum().backward()
    assert grads.abs().sum() > 0 and model[2].weight.grad is not None  # the others keep their own
