"""Adam / RMSprop / clip_grad_norm_ against their torch counterparts."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ppolab.optim import Adam, RMSprop, clip_grad_norm_


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


def flat_grads_of(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def assert_same_trajectory(ours: torch.Tensor, theirs: torch.Tensor, step: int | None = None) -> None:
    """Our optimizer vs torch.optim on the same float32 problem: the same math in a different op
    order (and FMA use, which varies with the CPU's kernels), so the parameters differ by an ulp
    or so per step, fed back through the gradients (measured <= 6e-8 after 20 steps, |theta| <= 0.5).
    A real error is far larger: Adam's eps inside the sqrt, or added before v's bias correction,
    moves them by 5e-5 from the first step, a missing bias correction of v by 1e-1."""
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=2e-6, msg=lambda m: f"step {step}: {m}")


def test_the_optimizer_holds_the_parameters_themselves():
    """No copy and no re-homing: the optimizer's list is the module's Parameter objects, their
    storage untouched, and its state buffers match them in shape."""
    model = make_mlp()
    before = [(p, p.data_ptr(), p.detach().clone()) for p in model.parameters()]
    opt = Adam(model, lr=1e-3)
    assert len(opt.params) == len(before)
    for q, (p, ptr, value) in zip(opt.params, before):
        assert q is p and p.data_ptr() == ptr and torch.equal(p.detach(), value)
        assert p.grad is None  # nothing allocated before the first backward
    for name in ("exp_avg", "exp_avg_sq"):
        assert [b.shape for b in opt.state[name]] == [p.shape for p in model.parameters()]
        assert all(torch.count_nonzero(b) == 0 for b in opt.state[name])
    # an iterable of parameters works as the module does
    assert Adam(iter(list(model.parameters())), lr=1e-3).params == list(model.parameters())


def test_grads_are_the_parameters_own_and_backward_accumulates_into_them():
    model = make_mlp()
    reference = copy.deepcopy(model)
    opt = Adam(model, lr=1e-3)
    x, y = data()
    assert opt.grads() == []

    loss_fn(model, x, y, 0).backward()
    loss_fn(reference, x, y, 0).backward()
    grads = opt.grads()
    assert len(grads) == len(list(model.parameters()))
    assert all(g is p.grad for g, p in zip(grads, model.parameters()))
    assert torch.count_nonzero(torch.cat([g.reshape(-1) for g in grads])) > 0
    assert torch.allclose(flat_grads_of(model), flat_grads_of(reference), atol=1e-7)

    # a second backward accumulates (sums) into the same gradients
    loss_fn(model, x, y, 1).backward()
    loss_fn(reference, x, y, 1).backward()
    assert torch.allclose(flat_grads_of(model), flat_grads_of(reference), atol=1e-7)


def run_torch(model: nn.Module, opt: torch.optim.Optimizer, steps: int, start: int = 0) -> None:
    x, y = data()
    for step in range(start, start + steps):
        opt.zero_grad()
        loss_fn(model, x, y, step).backward()
        opt.step()


def run_ours(model: nn.Module, opt: Adam | RMSprop, steps: int, start: int = 0) -> None:
    x, y = data()
    for step in range(start, start + steps):
        opt.zero_grad()
        loss_fn(model, x, y, step).backward()
        opt.step()


def test_adam_matches_torch_adam_step_for_step():
    lr = 3e-3
    ours, theirs = make_mlp(), make_mlp()
    opt = Adam(ours, lr=lr)
    assert opt.eps == 1e-5
    torch_opt = torch.optim.Adam(theirs.parameters(), lr=lr, eps=1e-5)
    initial = flat_of(ours)
    for step in range(20):
        run_ours(ours, opt, 1, start=step)
        run_torch(theirs, torch_opt, 1, start=step)
        assert_same_trajectory(flat_of(ours), flat_of(theirs), step)
    assert opt.step_count == 20 and opt.steps == [20] * len(opt.params)
    assert (flat_of(ours) - initial).abs().max() > 1e-2  # it really trained
    for i, p in enumerate(theirs.parameters()):
        torch_state = torch_opt.state[p]
        # the moments inherit the gradients' ulp-level differences: measured <= 3e-8 on m
        # (|m| <= 0.15) and <= 3e-11, relative 4e-7, on v (|v| <= 4e-3)
        torch.testing.assert_close(opt.state["exp_avg"][i], torch_state["exp_avg"], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(opt.state["exp_avg_sq"][i], torch_state["exp_avg_sq"], rtol=1e-5, atol=1e-10)


def test_adam_lr_change_takes_effect():
    """PPOUpdate anneals the learning rate by assigning opt.lr; torch's equivalent is the
    param_group's lr."""
    ours, theirs = make_mlp(), make_mlp()
    opt = Adam(ours, lr=1e-2)
    torch_opt = torch.optim.Adam(theirs.parameters(), lr=1e-2, eps=1e-5)
    for step, lr in enumerate([1e-2, 5e-3, 2e-3, 1e-3, 0.0]):
        opt.lr = lr
        torch_opt.param_groups[0]["lr"] = lr
        run_ours(ours, opt, 1, start=step)
        run_torch(theirs, torch_opt, 1, start=step)
    assert_same_trajectory(flat_of(ours), flat_of(theirs))


def test_state_dict_round_trip_continues_identically():
    lr = 3e-3
    a = make_mlp()
    opt_a = Adam(a, lr=lr)
    run_ours(a, opt_a, 7)

    state = opt_a.state_dict()
    b = make_mlp(seed=99)  # different initial weights, overwritten below
    b.load_state_dict(a.state_dict())
    opt_b = Adam(b, lr=1.0)  # wrong lr, restored from the state
    opt_b.load_state_dict(state)
    assert opt_b.step_count == 7 and opt_b.lr == lr

    # the saved state is a copy: continuing to train a does not change it
    saved_avg = [t.clone() for t in state["exp_avg"]]
    run_ours(a, opt_a, 5, start=7)
    run_ours(b, opt_b, 5, start=7)
    assert all(torch.equal(t, s) for t, s in zip(state["exp_avg"], saved_avg))
    # same machine, same ops on the same numbers: bit-identical by design
    assert torch.equal(flat_of(a), flat_of(b))
    assert opt_a.step_count == opt_b.step_count == 12

    # without restoring the state (fresh moments, step 0) the trajectories differ
    c = make_mlp(seed=99)
    c.load_state_dict(a.state_dict())
    fresh = Adam(c, lr=lr)
    run_ours(c, fresh, 1, start=12)
    run_ours(a, opt_a, 1, start=12)
    assert not torch.allclose(flat_of(a), flat_of(c), atol=1e-6)


@pytest.mark.parametrize("kind", ["adam", "rmsprop"])
def test_the_old_one_flat_tensor_state_loads(kind):
    """Model files written before the per-parameter state keep each buffer as one flat vector over
    the parameters in order (and no per-parameter counts): loading one continues exactly as the
    state it was flattened from."""
    make_opt = (lambda m, lr: Adam(m, lr=lr)) if kind == "adam" else (lambda m, lr: RMSprop(m, lr=lr))
    a = make_mlp()
    opt_a = make_opt(a, 3e-3)
    run_ours(a, opt_a, 7)
    new = opt_a.state_dict()
    old = {name: torch.cat([t.reshape(-1) for t in new[name]]) for name in type(opt_a).BUFFERS}
    old.update(step=new["step"], lr=new["lr"])

    b = make_mlp(seed=99)
    b.load_state_dict(a.state_dict())
    opt_b = make_opt(b, 1.0)
    opt_b.load_state_dict(old)
    assert opt_b.step_count == 7 and opt_b.steps == [7] * len(opt_b.params) and opt_b.lr == 3e-3
    for name in type(opt_a).BUFFERS:
        assert all(torch.equal(x, y) for x, y in zip(opt_a.state[name], opt_b.state[name])), name
        assert [t.shape for t in opt_b.state[name]] == [p.shape for p in b.parameters()]
    run_ours(a, opt_a, 5, start=7)
    run_ours(b, opt_b, 5, start=7)
    assert torch.equal(flat_of(a), flat_of(b))  # the same numbers through the same ops

    # a flat buffer of the wrong size is refused rather than silently misaligned
    short = dict(old, **{name: old[name][:-1] for name in type(opt_a).BUFFERS})
    with pytest.raises(RuntimeError):
        make_opt(make_mlp(), 1.0).load_state_dict(short)
    # as is a list of the wrong length
    with pytest.raises(KeyError):
        make_opt(make_mlp(), 1.0).load_state_dict(dict(new, **{name: new[name][:-1] for name in type(opt_a).BUFFERS}))


def test_zero_grad_drops_the_gradients():
    model = make_mlp()
    opt = Adam(model, lr=1e-3)
    x, y = data()
    loss_fn(model, x, y, 0).backward()
    assert torch.count_nonzero(torch.cat([g.reshape(-1) for g in opt.grads()])) > 0
    opt.zero_grad()
    assert opt.grads() == []
    assert all(p.grad is None for p in model.parameters())
    # a step without gradients changes nothing
    before = flat_of(model)
    opt.step()
    assert torch.equal(flat_of(model), before)


@pytest.mark.parametrize("max_norm", [0.05, 0.5, 1e6])
def test_clip_grad_norm_matches_torch(max_norm):
    ours, theirs = make_mlp(), make_mlp()
    opt = Adam(ours, lr=1e-3)
    x, y = data()
    loss_fn(ours, x, y, 0).backward()
    loss_fn(theirs, x, y, 0).backward()
    unclipped = flat_grads_of(ours).clone()

    norm = clip_grad_norm_(opt.grads(), max_norm)
    torch_norm = torch.nn.utils.clip_grad_norm_(theirs.parameters(), max_norm)
    # float32 norms of 243 numbers summed in different orders (a norm of per-tensor norms in
    # both, with lane counts that vary with the CPU): measured rel. gap 6e-8
    assert norm.item() == pytest.approx(torch_norm.item(), rel=1e-5)
    assert norm.item() == pytest.approx(torch.linalg.vector_norm(unclipped).item(), rel=1e-5)
    # scaled by max_norm / (norm + 1e-6): inherits the norms' relative gap; the module's own
    # .grad tensors are the ones scaled (in place)
    grads = flat_grads_of(ours)
    torch.testing.assert_close(grads, flat_grads_of(theirs), rtol=1e-5, atol=1e-7)
    after = torch.linalg.vector_norm(grads).item()
    if max_norm < norm.item():
        assert after == pytest.approx(max_norm, rel=1e-4)
        # direction preserved
        assert torch.allclose(grads / after, unclipped / norm, atol=1e-6)
    else:
        assert torch.equal(grads, unclipped)  # not clipped: scaled by exactly 1.0, so bit-identical


def test_clip_grad_norm_by_hand():
    g = torch.tensor([3.0, 4.0])  # norm 5
    norm = clip_grad_norm_(g, 1.0)
    assert norm.item() == pytest.approx(5.0)
    assert g.tolist() == pytest.approx([0.6, 0.8], rel=1e-5)
    # a list of tensors has one global norm: sqrt(3^2 + 4^2 + 12^2) = 13
    parts = [torch.tensor([3.0]), torch.tensor([[4.0, 12.0]])]
    norm = clip_grad_norm_(parts, 6.5)
    assert norm.item() == pytest.approx(13.0)
    assert [t.tolist() for t in parts] == [pytest.approx([1.5], rel=1e-5), [pytest.approx([2.0, 6.0], rel=1e-5)]]


def test_rmsprop_matches_torch_rmsprop_step_for_step():
    lr = 1e-3
    ours, theirs = make_mlp(), make_mlp()
    opt = RMSprop(ours, lr=lr, alpha=0.99, eps=1e-5)
    torch_opt = torch.optim.RMSprop(theirs.parameters(), lr=lr, alpha=0.99, eps=1e-5)
    initial = flat_of(ours)
    for step in range(20):
        run_ours(ours, opt, 1, start=step)
        run_torch(theirs, torch_opt, 1, start=step)
        assert_same_trajectory(flat_of(ours), flat_of(theirs), step)
    assert (flat_of(ours) - initial).abs().max() > 1e-2
    for i, p in enumerate(theirs.parameters()):
        # measured: equal (the same ops on the same gradients); allow the gradients' ulps
        torch.testing.assert_close(opt.state["square_avg"][i], torch_opt.state[p]["square_avg"],
                                   rtol=1e-5, atol=1e-10)


class TwoHeads(nn.Module):
    """A trunk and two heads; ``frozen`` never gets a gradient (requires_grad False), ``unused``
    is never in the loss, and ``head_b`` only every third step."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.trunk = nn.Linear(4, 16)
        self.head_a = nn.Linear(16, 3)
        self.head_b = nn.Linear(16, 3)
        self.unused = nn.Linear(4, 2)
        self.frozen = nn.Parameter(torch.randn(3), requires_grad=False)

    def loss(self, x: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
        idx = torch.arange(step % 4, 32, 4)
        h = torch.tanh(self.trunk(x[idx]))
        loss = ((self.head_a(h) + self.frozen - y[idx]) ** 2).mean()
        if step % 3 == 0:
            loss = loss + 0.5 * self.head_b(h).abs().mean()
        return loss


@pytest.mark.parametrize("kind", ["adam", "rmsprop"])
def test_parameters_without_a_gradient_are_skipped_as_torch_optim_does(kind):
    """A parameter whose .grad is None at a step is left alone then: neither moved nor its moments
    decayed, and Adam's bias correction counts only the steps that updated it (torch.optim's
    per-parameter step)."""
    lr = 3e-3
    ours, theirs = TwoHeads(), TwoHeads()
    if kind == "adam":
        opt = Adam(ours, lr=lr)
        torch_opt = torch.optim.Adam(theirs.parameters(), lr=lr, eps=1e-5)
    else:
        opt = RMSprop(ours, lr=lr, alpha=0.99, eps=1e-5)
        torch_opt = torch.optim.RMSprop(theirs.parameters(), lr=lr, alpha=0.99, eps=1e-5)
    unused_before = [p.detach().clone() for p in (*ours.unused.parameters(), ours.frozen)]
    head_b_before = flat_of(ours.head_b)
    x, y = data()
    for step in range(20):
        for model, optimizer in ((ours, opt), (theirs, torch_opt)):
            optimizer.zero_grad()
            model.loss(x, y, step).backward()
            optimizer.step()
        assert ours.unused.weight.grad is None and ours.frozen.grad is None
        assert (ours.head_b.weight.grad is None) == (step % 3 != 0)
        assert_same_trajectory(flat_of(ours), flat_of(theirs), step)
        if step == 1:  # head_b was updated at step 0 only; stepping since has not moved it
            moved_once = flat_of(ours.head_b)
            assert not torch.equal(moved_once, head_b_before)
        if step == 2:
            assert torch.equal(flat_of(ours.head_b), moved_once)
    # never updated: exactly as they were, and no state accumulated
    assert all(torch.equal(p.detach(), b) for p, b in zip((*ours.unused.parameters(), ours.frozen), unused_before))
    index = {id(p): i for i, p in enumerate(opt.params)}
    for p in (*ours.unused.parameters(), ours.frozen):
        assert all(torch.count_nonzero(opt.state[k][index[id(p)]]) == 0 for k in opt.state)
    if kind == "adam":
        # per-parameter counts as torch keeps them
        for p, q in zip(ours.parameters(), theirs.parameters()):
            expected = int(torch_opt.state[q]["step"]) if q in torch_opt.state else 0
            assert opt.steps[index[id(p)]] == expected
        assert opt.steps[index[id(ours.head_b.weight)]] == 7 and opt.step_count == 20
        # and they survive a state dict
        again = Adam(TwoHeads(), lr=1.0)
        again.load_state_dict(opt.state_dict())
        assert again.steps == opt.steps


@pytest.mark.parametrize("kind", ["adam", "rmsprop"])
def test_the_optimizer_keeps_updating_the_module_after_it_is_moved(kind):
    """``module.to(dtype)`` (as ``.to(device)``) replaces every ``p.data``; the optimizer must
    update the module's live parameters afterwards, not storage the module no longer uses (which
    an optimizer over a flat copy of the parameters, re-homed as views, would do silently). The
    round trip float32 -> float64 -> float32 is exact, so the trajectory continues as if the
    module had never moved."""
    make_opt = (lambda m: Adam(m, lr=3e-3)) if kind == "adam" else (lambda m: RMSprop(m, lr=3e-3, alpha=0.99, eps=1e-5))
    moved, stayed = make_mlp(), make_mlp()
    opt_moved, opt_stayed = make_opt(moved), make_opt(stayed)
    run_ours(moved, opt_moved, 3)
    run_ours(stayed, opt_stayed, 3)
    old_storage = [p.data for p in moved.parameters()]

    moved.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in moved.parameters())
    moved.to(torch.float32)
    assert all(p.data.data_ptr() != old.data_ptr() for p, old in zip(moved.parameters(), old_storage))
    assert all(q is p for q, p in zip(opt_moved.params, moved.parameters()))  # the same Parameter objects

    before = flat_of(moved)
    run_ours(moved, opt_moved, 5, start=3)
    run_ours(stayed, opt_stayed, 5, start=3)
    assert (flat_of(moved) - before).abs().max() > 1e-3  # the live parameters moved
    # the storage abandoned by .to() is untouched: the optimizer wrote to the live tensors
    assert torch.equal(torch.cat([t.reshape(-1) for t in old_storage]), before)
    # exactly as the module that never moved: the same numbers through the same ops
    assert torch.equal(flat_of(moved), flat_of(stayed))


def test_an_optimizer_built_before_the_module_is_moved_steps_it_in_the_new_dtype():
    """Moved to float64 and trained there: the update reaches the float64 parameters and agrees
    with torch.optim.Adam on a float64 module, to float32 accuracy (our moments were allocated
    in float32 before the move)."""
    ours, theirs = make_mlp(), make_mlp()
    opt = Adam(ours, lr=3e-3)
    ours.double()
    theirs.double()
    torch_opt = torch.optim.Adam(theirs.parameters(), lr=3e-3, eps=1e-5)
    x, y = data()
    initial = flat_of(ours)
    for step in range(10):
        for model, optimizer in ((ours, opt), (theirs, torch_opt)):
            optimizer.zero_grad()
            loss_fn(model, x.double(), y.double(), step).backward()
            optimizer.step()
    assert flat_of(ours).dtype == torch.float64
    assert (flat_of(ours) - initial).abs().max() > 1e-2
    torch.testing.assert_close(flat_of(ours), flat_of(theirs), rtol=1e-5, atol=2e-6)


def test_an_optimizer_of_a_subset_of_parameters():
    model = make_mlp()
    first = list(model[0].parameters())
    opt = Adam(first, lr=1e-2)
    assert len(opt.params) == 2 and sum(p.numel() for p in opt.params) == 4 * 16 + 16
    others = [p.detach().clone() for p in list(model.parameters())[2:]]
    first_before = [p.detach().clone() for p in first]
    model(torch.ones(2, 4)).sum().backward()
    opt.step()
    assert all(not torch.equal(p.detach(), b) for p, b in zip(first, first_before))  # the layer follows
    assert all(torch.equal(p.detach(), b) for p, b in zip(list(model.parameters())[2:], others))
    opt.zero_grad()  # only its own parameters' gradients: the others keep theirs
    assert all(p.grad is None for p in first)
    assert model[2].weight.grad is not None and model[2].weight.grad.abs().sum() > 0
