"""The networks and the training modules: shapes, the gradients of the notes, weight decay,
initialisers, checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlfoundations.data import FashionMNISTDataModule
from dlfoundations.errors import ArgumentError, UserError
from dlfoundations.init import initialise
from dlfoundations.models import Classifier, Regressor
from dlfoundations.networks import MLP, LeNet, build
from dlfoundations.optim import weight_decay_groups

#: the networks of the classifiers, as model configs name them (``model.net``)
NETS = {
    "softmax": {"name": "linear"},
    "mlp": {"name": "mlp", "hidden": [64, 32], "dropout": [0.2, 0.1]},
    "lenet": {"name": "lenet"},
    "lenet_padded": {"name": "lenet", "padding": 2, "pool": "max"},
    "lenet_modern": {"name": "lenet", "activation": "relu", "batch_norm": True},
}
CLASSIFIERS = {name: lambda net=net: Classifier(net) for name, net in NETS.items()}


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_maps_images_to_ten_logits(name: str) -> None:
    assert CLASSIFIERS[name]()(torch.randn(7, 1, 28, 28)).shape == (7, 10)
    assert build(NETS[name])(torch.randn(7, 1, 28, 28)).shape == (7, 10)  # the plain network


def test_a_network_name_outside_the_table_is_refused_in_one_sentence() -> None:
    with pytest.raises(UserError, match=r"^model\.net\.name='resnet' is not allowed.*one of "
                       r"linear, mlp, lenet"):
        Classifier({"name": "resnet"})
    with pytest.raises(UserError, match=r"^model\.net\.hidden is not an option of the lenet "
                       r"network \(its options: name, activation, pool, padding, batch_norm\)"):
        Classifier({"name": "lenet", "hidden": [3]})


def test_lenet_flattens_16x4x4_or_16x5x5_with_padding() -> None:
    assert LeNet()[7].in_features == 16 * 4 * 4
    assert LeNet(padding=2)[7].in_features == 16 * 5 * 5
    assert sum(isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d)
               for m in LeNet(batch_norm=True).modules()) == 4
    assert sum(isinstance(m, nn.Sigmoid) for m in LeNet().modules()) == 4


def test_linear_regression_predicts_one_value_per_example() -> None:
    assert Regressor({"name": "linear"}, true_w=[1.0, 2.0, 3.0])(torch.randn(5, 3)).shape == (5,)
    with pytest.raises(UserError, match=r"^model\.net\.name='mlp' is not allowed"):
        Regressor({"name": "mlp"})


def test_mlp_dropout_acts_in_training_mode_only() -> None:
    model, x = MLP(dropout=0.5), torch.randn(16, 1, 28, 28)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"dropout": 1.0}, "dropout"), ({"dropout": -0.1}, "dropout"),
    ({"dropout": [0.1, 0.2]}, "dropout"), ({"activation": "gelu"}, "activation"),
    ({"hidden": []}, "hidden"), ({"hidden": 3}, "hidden"),
])
def test_mlp_refuses_bad_options_by_their_names_and_build_by_the_config_key(
        kwargs: dict, key: str) -> None:
    with pytest.raises(ArgumentError, match=rf"^{key}="):
        MLP(**kwargs)
    with pytest.raises(UserError, match=rf"^model\.net\.{key}=.* is not allowed: "
                                        rf"model\.net\.{key} must be"):
        build({"name": "mlp", **kwargs}, num_inputs=784, num_outputs=10)


def test_sigmoid_derivative_is_sigma_times_one_minus_sigma() -> None:
    z = torch.linspace(-6, 6, 101, requires_grad=True)
    sigma = MLP(activation="sigmoid")[2](z)
    (grad,) = torch.autograd.grad(sigma.sum(), z)
    torch.testing.assert_close(grad, (sigma * (1 - sigma)).detach())


def test_softmax_jacobian_is_p_i_delta_ij_minus_p_j() -> None:
    model = Classifier({"name": "linear"})
    logits = model(torch.randn(1, 1, 28, 28))[0].detach()
    p = torch.softmax(logits, dim=0)
    jacobian = torch.autograd.functional.jacobian(lambda o: torch.softmax(o, dim=0), logits)
    torch.testing.assert_close(jacobian, torch.diag(p) - torch.outer(p, p))


def test_cross_entropy_gradient_of_softmax_regression_is_p_minus_y() -> None:
    model = Classifier({"name": "linear"})
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    logits = model(x)
    F.cross_entropy(logits, y, reduction="sum").backward()
    delta = torch.softmax(logits, dim=1).detach() - F.one_hot(y, 10).float()
    linear = model.net.linear
    torch.testing.assert_close(linear.weight.grad, delta.T @ x.flatten(1))
    torch.testing.assert_close(linear.bias.grad, delta.sum(0))


def test_mlp_gradients_follow_the_delta_rule() -> None:
    """o = W2 h + b2, h = sigma(z), z = W1 x + b1: delta2 = p - y, delta1 = W2^T delta2 * sigma'."""
    model = MLP(hidden=[32], activation="sigmoid")
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    F.cross_entropy(model(x), y, reduction="sum").backward()
    first, second = model[1], model[3]
    x = x.flatten(1)
    h = torch.sigmoid(x @ first.weight.T + first.bias).detach()
    delta2 = torch.softmax(h @ second.weight.T + second.bias, dim=1).detach() - F.one_hot(y, 10)
    delta1 = (delta2 @ second.weight.detach()) * h * (1 - h)
    torch.testing.assert_close(second.weight.grad, delta2.T @ h)
    torch.testing.assert_close(first.weight.grad, delta1.T @ x)
    torch.testing.assert_close(first.bias.grad, delta1.sum(0))


@pytest.mark.parametrize("name", ["mlp", "lenet_modern"])
def test_weight_decay_shrinks_weights_and_leaves_biases(name: str) -> None:
    model = CLASSIFIERS[name]()
    lr, decay = 0.1, 0.5
    optimizer = torch.optim.SGD(weight_decay_groups(model), lr=lr, weight_decay=decay)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for param_name, p in model.named_parameters():
        factor = (1 - lr * decay) if p.ndim > 1 else 1.0
        torch.testing.assert_close(p.detach(), before[param_name] * factor)


def test_initialisers_draw_the_distributions_they_claim() -> None:
    layer = nn.Linear(1000, 500)
    initialise(layer, "normal", std=0.01)
    assert abs(layer.weight.mean().item()) < 1e-3 and layer.weight.std().item() == pytest.approx(
        0.01, rel=0.02)
    assert not layer.bias.any()
    initialise(layer, "xavier")
    bound = math.sqrt(6 / (1000 + 500))
    assert layer.weight.abs().max().item() <= bound
    assert layer.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    initialise(layer, "kaiming")
    assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / 1000), rel=0.02)
    initialise(layer, "zeros")
    assert not layer.weight.any() and not layer.bias.any()
    conv = nn.Conv2d(16, 64, 5)
    initialise(conv, "normal", std=0.05)
    assert conv.weight.std().item() == pytest.approx(0.05, rel=0.05)
    with pytest.raises(UserError, match=r"^init\.name='orthogonal'"):
        initialise(layer, "orthogonal")


def test_zero_initialisation_keeps_hidden_units_identical(
    fashion_mnist: FashionMNISTDataModule,
) -> None:
    """With every weight 0, every hidden unit gets the same gradient: they never differ."""
    model = Classifier({"name": "mlp", "hidden": [32], "activation": "sigmoid"},
                       init={"name": "zeros"})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for step, (x, y) in enumerate(fashion_mnist.train_dataloader()):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        if step == 20:
            break
    hidden = model.net[1].weight
    assert hidden.abs().max() > 0  # the units moved ...
    torch.testing.assert_close(hidden, hidden[:1].expand_as(hidden))  # ... all alike
    out = model.net[3].weight
    torch.testing.assert_close(out, out[:, :1].expand_as(out))


def test_hidden_unit_spread_is_reported_for_hidden_linear_layers_only() -> None:
    assert Classifier({"name": "linear"}).report() == {}
    zeros = Classifier({"name": "mlp", "hidden": [8, 4]}, init={"name": "zeros"})
    assert zeros.report() == {"hidden_unit_spread": 0.0}
    lenet = Classifier({"name": "lenet"})
    units = [m.weight for m in lenet.net if isinstance(m, nn.Linear)][:2]  # 120 and 84 units
    expected = max((w - w[:1]).abs().max().item() for w in units)
    assert lenet.report()["hidden_unit_spread"] == expected > 0


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_checkpoint_reloads_into_the_same_outputs(name: str, tmp_path: Path) -> None:
    model = CLASSIFIERS[name]()
    model.optimizer = lambda groups: torch.optim.Adam(groups, lr=0.01)
    x = torch.randn(64, 1, 28, 28)
    data = torch.utils.data.TensorDataset(x, torch.randint(0, 10, (64,)))
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    trainer.fit(model, torch.utils.data.DataLoader(data, batch_size=16))
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    reloaded = type(model).load_from_checkpoint(tmp_path / "model.ckpt", weights_only=True)
    model.eval()
    reloaded.eval()
    torch.testing.assert_close(reloaded(x), model(x), rtol=0, atol=0)
