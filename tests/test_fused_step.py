"""The fused step's cost on the host: the operators one step dispatches do not grow with the
number of members (dropout apart: one mask per member, each from its own generator), and grow
by one rule's sequence per optimizer rule in the group. Counted as torch dispatches them; no
time is asserted (``benchmarks/fused_step.py`` measures it). The step is ready for a CUDA
graph: compiled whole, it gives the same numbers."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from benchmarks.fused_step import SIX, OperatorCount, group
from dlfoundations.fused.closed_form import closed_form_gradients
from dlfoundations.fused.loss import cross_entropy
from dlfoundations.fused.rules import RULES, Layout, StackedOptimizer, hyperparameters
from dlfoundations.fused.step import autograd_gradients, member_losses, train_step


def operators(net: str, members: int, optimizers: list) -> int:
    network, optimizer, x, y = group(net, members, optimizers, batch=8)
    sums = torch.zeros(members, 2)
    train_step(network, optimizer, x, y, sums)  # the rules' state exists from the first step
    with OperatorCount() as count:
        train_step(network, optimizer, x, y, sums)
    return sum(count.counts.values())


@pytest.mark.parametrize("optimizers", [SIX[-1:], SIX], ids=["adam", "six optimizers"])
def test_a_step_dispatches_as_many_operators_for_6_members_as_for_32(optimizers: list) -> None:
    assert operators("softmax", 6, optimizers) == operators("softmax", 32, optimizers)


def test_each_rule_adds_one_sequence_and_each_dropout_mask_a_few_operators() -> None:
    one_rule, five_rules = operators("softmax", 6, SIX[-1:]), operators("softmax", 6, SIX)
    assert one_rule < five_rules < one_rule + 4 * 20  # SGD and momentum share a rule
    per_member = (operators("mlp", 32, SIX[-1:]) - operators("mlp", 6, SIX[-1:])) / 26
    assert per_member == 3  # a mask drawn from the member's generator: empty, bernoulli, div


@pytest.mark.parametrize(("net", "optimizers"), [("softmax", SIX), ("mlp", SIX[-1:])],
                         ids=["softmax, six optimizers", "mlp with dropout, adam"])
def test_the_step_compiles_as_whole_graphs_with_the_same_numbers(net: str, optimizers: list
                                                                 ) -> None:
    """The gradients (autograd's forward pass, or softmax regression's closed form) and the
    update each compiled with ``fullgraph=True`` (no host sync, no Python branch on a value,
    which would break the graph): float64 numbers equal to the step run eagerly, and no
    recompilation once every rule has its state, as the step count and a rate (a schedule's
    change) move: what a CUDA graph needs. Traced by Dynamo and AOTAutograd (``aot_eager``),
    which need no C++ compiler; Inductor's kernels give the same numbers within 1e-13 where
    one is installed."""
    torch.manual_seed(0)
    eager = group(net, 6, optimizers, batch=8, dtype=torch.float64)
    torch.manual_seed(0)
    network, optimizer, _, _ = group(net, 6, optimizers, batch=8, dtype=torch.float64)
    if network.one_linear_layer:
        gradients = torch.compile(closed_form_gradients, fullgraph=True, backend="aot_eager")
    else:
        gradients = functools.partial(autograd_gradients, losses_of=torch.compile(
            member_losses, fullgraph=True, backend="aot_eager"))
    optimizer.step = torch.compile(optimizer.step, fullgraph=True, backend="aot_eager")
    sums = [torch.zeros(6, 2, dtype=torch.float64) for _ in range(2)]
    try:
        for step in range(5):
            if step == 2:  # every rule has its state: nothing may change the graphs now
                torch.compiler.set_stance("fail_on_recompile")
            if step == 3:
                eager[1].set_lr(0, 0.02)
                optimizer.set_lr(0, 0.02)
            x = torch.rand(1, 8, 1, 28, 28, dtype=torch.float64)
            y = torch.randint(10, (1, 8))
            expected = train_step(eager[0], eager[1], x, y, sums[0])
            compiled = train_step(network, optimizer, x, y, sums[1], gradients)
            torch.testing.assert_close(compiled, expected, rtol=1e-12, atol=1e-12)
    finally:
        torch.compiler.set_stance("default")
    torch.testing.assert_close(network.flat, eager[0].flat, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sums[1], sums[0], rtol=1e-12, atol=1e-12)
    assert optimizer.member_state(0)["step"] == 5


@pytest.mark.parametrize("classes", [4, 5, 10, 15, 16])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_padded_cross_entropy_gives_torchs_losses_and_gradients(classes: int,
                                                                    dtype: torch.dtype) -> None:
    """Padded with -inf where that pays (float32, 5 to 15 classes), the cross-entropy is
    torch's own: the same losses and gradients (float32: within its rounding), and the same
    non-finite losses where a logit is inf or NaN."""
    logits = torch.randn(96, classes, dtype=dtype) * 5
    logits[0, 0], logits[1, -1] = float("inf"), float("nan")
    targets = torch.randint(classes, (96,))
    results = []
    for function in (cross_entropy, lambda o, t: F.cross_entropy(o, t, reduction="none")):
        leaf = logits.clone().requires_grad_()
        losses = function(leaf, targets)
        losses[2:].sum().backward()
        results.append((losses.detach(), leaf.grad))
    (padded, padded_grad), (torchs, torchs_grad) = results
    tolerance = 1e-5 if dtype == torch.float32 else 1e-15
    torch.testing.assert_close(padded, torchs, rtol=tolerance, atol=tolerance, equal_nan=True)
    torch.testing.assert_close(padded_grad, torchs_grad, rtol=tolerance, atol=tolerance,
                               equal_nan=True)
    assert not padded[:2].isfinite().any()


@pytest.mark.parametrize("classes", [10, 16])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batches", [1, 6], ids=["one batch", "a batch per member"])
def test_softmax_regressions_closed_form_gives_autograds_losses_and_gradients(
        classes: int, dtype: torch.dtype, batches: int) -> None:
    """dl/do = (softmax(o) - onehot(y)) / B, then dl/dW and dl/db: the losses, logits and
    gradients autograd gives (float32: within its rounding), whether the members read one
    batch or each its own, and the same non-finite loss for a member whose logit is inf."""
    network = group("softmax", 6, SIX, dtype=dtype, classes=classes)[0]
    assert network.one_linear_layer and not group("mlp", 2, SIX)[0].one_linear_layer
    with torch.no_grad():
        network.flat[5, 784 * classes] = float("inf")  # member 5's bias of class 0
    x = torch.rand(batches, 24, 1, 28, 28, dtype=dtype)
    y = torch.randint(10, (batches, 24))
    results = []
    for gradients in (autograd_gradients, closed_form_gradients):
        logits, losses = gradients(network, x, y)
        results.append((logits.clone(), losses.clone(), network.grad[:5].clone()))
    tolerance = 1e-5 if dtype == torch.float32 else 1e-13
    for autograds, closed_forms in zip(*results, strict=True):
        torch.testing.assert_close(closed_forms, autograds, rtol=tolerance, atol=tolerance,
                                   equal_nan=True)
    assert results[1][1][:5].isfinite().all() and not results[1][1][5].isfinite()


#: torch's optimizers with the options a rule computes (weight decay on every parameter)
TORCH_OPTIMIZERS = {
    "sgd": lambda p, lr: torch.optim.SGD(p, lr=lr, weight_decay=1e-4),
    "momentum": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9, dampening=0.1,
                                              weight_decay=1e-4),
    "adagrad": lambda p, lr: torch.optim.Adagrad(p, lr=lr, lr_decay=0.01, weight_decay=1e-4),
    "rmsprop": lambda p, lr: torch.optim.RMSprop(p, lr=lr, weight_decay=1e-4),
    "adadelta": lambda p, lr: torch.optim.Adadelta(p, lr=lr, weight_decay=1e-4),
    "adam": lambda p, lr: torch.optim.Adam(p, lr=lr, weight_decay=1e-4),
    "adamw": lambda p, lr: torch.optim.AdamW(p, lr=lr, weight_decay=1e-2),
}


@pytest.mark.parametrize("lr", [1e-2, 5e299], ids=["ordinary rate", "overflowing rate"])
@pytest.mark.parametrize("name", list(TORCH_OPTIMIZERS))
def test_each_rule_steps_as_torchs_optimizer_also_where_it_overflows(name: str, lr: float
                                                                    ) -> None:
    """Float64, four steps on the same gradients: a rule's weights are torch's within
    rounding, and at a rate so large that its updates overflow (the weight decay then makes
    the gradients as large as the weights) they become infinite or NaN where torch's do: the
    rules keep torch's order of operations (e.g. addcdiv's (c v) / d; c (v / d) had kept
    Adam's weights finite where torch's became NaN, so a fused member trained on where its
    run alone diverged)."""
    torch.manual_seed(0)
    start = torch.randn(2, 5, dtype=torch.float64)
    gradients = [torch.randn(2, 5, dtype=torch.float64) * 1e-3 for _ in range(4)]
    weight = start.clone().requires_grad_()
    alone = TORCH_OPTIMIZERS[name]([weight], lr)
    flat = start.clone().view(1, -1)
    grad = torch.zeros_like(flat)
    fused = StackedOptimizer(flat, grad, Layout((start.shape,)), torch.ones_like(flat),
                             [RULES[type(alone)]], [hyperparameters(alone)])
    for gradient in gradients:
        weight.grad = gradient.clone()
        alone.step()
        grad.copy_(gradient.view(1, -1))
        fused.step()
        expected = weight.detach().view(1, -1)
        assert torch.equal(flat.isnan(), expected.isnan())
        assert torch.equal(flat.isinf(), expected.isinf())
        finite = expected.isfinite()
        torch.testing.assert_close(flat[finite], expected[finite], rtol=1e-13, atol=0)
    if lr > 1 and name != "adadelta":  # AdaDelta's steps shrink as its sums overflow
        assert not expected.isfinite().all()
