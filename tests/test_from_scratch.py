"""From scratch: the hand-written optimizers and hand-derived gradients against torch's own."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dlfoundations import scratch_optimizers as scratch
from dlfoundations.data import FashionMNISTDataModule
from dlfoundations.data.synthetic_linear import SyntheticLinearDataModule
from dlfoundations.models import BinaryClassifier, Classifier, Regressor
from dlfoundations.networks import MLP
from dlfoundations.optim import weight_decay_groups
from tests.conftest import ROOT, run_script

#: each hand-written optimizer with its torch counterpart and the options they share
PAIRS = {
    "sgd": (scratch.SGD, torch.optim.SGD, {"lr": 0.1}),
    "momentum": (scratch.Momentum, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}),
    "adagrad": (scratch.AdaGrad, torch.optim.Adagrad, {"lr": 0.05, "lr_decay": 0.01}),
    "rmsprop": (scratch.RMSProp, torch.optim.RMSprop, {"lr": 0.001, "alpha": 0.9}),
    "adadelta": (scratch.AdaDelta, torch.optim.Adadelta, {"lr": 1.0, "rho": 0.9}),
    "adam": (scratch.Adam, torch.optim.Adam, {"lr": 0.003, "betas": (0.9, 0.999)}),
}
#: the largest parameter difference allowed after 200 steps in float64, where the two
#: implementations of one rule must agree whatever torch's version
FLOAT64_TOLERANCE = 1e-6
STEPS = 200
#: the network whose gradients the notes derive (linear, softmax and logistic regression)
LINEAR = {"name": "linear"}


@pytest.fixture(scope="module")
def batches(fashion_mnist: FashionMNISTDataModule) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first 200 real training batches (batch size 256)."""
    return list(itertools.islice(fashion_mnist.train_dataloader(), STEPS))


def train_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                batches: list, dtype: torch.dtype,
                scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> float:
    """``STEPS`` steps of cross-entropy on ``batches``; the mean loss of the last ten."""
    losses = []
    for x, y in batches:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x.to(dtype)), y)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.item())
    return sum(losses[-10:]) / len(losses[-10:])


#: twin runs already made in this process, by (optimizer, decay, dtype, steps, schedule)
TWINS: dict[tuple, tuple[torch.Tensor, torch.Tensor, list[float]]] = {}


def twin_runs(name: str, weight_decay: float, dtype: torch.dtype, batches: list,
              schedule: bool = False) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """The MLP trained from the same weights by the hand-written and by torch's optimizer:
    both one's and the other's parameters, flattened, and their final losses (made once per
    process: the float32 test reuses the float64 test's runs)."""
    key = (name, weight_decay, dtype, len(batches), schedule)
    if key not in TWINS:
        TWINS[key] = made_twin_runs(name, weight_decay, dtype, batches, schedule)
    return TWINS[key]


def made_twin_runs(name: str, weight_decay: float, dtype: torch.dtype, batches: list,
                   schedule: bool) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    by_hand, by_torch, options = PAIRS[name]
    torch.manual_seed(0)
    first = MLP(hidden=[64], dropout=0.0).to(dtype)
    second = copy.deepcopy(first)
    results, losses = [], []
    for model, cls in ((first, by_hand), (second, by_torch)):
        optimizer = cls(weight_decay_groups(model), weight_decay=weight_decay, **options)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 20, 0.5) if schedule else None
        losses.append(train_steps(model, optimizer, batches, dtype, scheduler))
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    return results[0], results[1], losses


@pytest.mark.parametrize("weight_decay", [0.0, 1e-3], ids=["no_decay", "decay"])
@pytest.mark.parametrize("name", PAIRS)
def test_hand_written_optimizer_equals_torch_after_200_steps_in_float64(
        name: str, weight_decay: float, batches: list) -> None:
    """In float64 the two implementations of one rule agree whatever torch's version."""
    by_hand, by_torch, _ = twin_runs(name, weight_decay, torch.float64, batches)
    assert (by_hand - by_torch).abs().max().item() <= FLOAT64_TOLERANCE
    assert not torch.equal(by_hand, twin_runs(name, weight_decay, torch.float64, batches[:1])[0])


@pytest.mark.slow  # 36 runs of 200 steps: the float64 test above checks the rules
@pytest.mark.parametrize("weight_decay", [0.0, 1e-3], ids=["no_decay", "decay"])
@pytest.mark.parametrize("name", PAIRS)
def test_in_float32_the_hand_written_optimizer_trains_as_torchs_does(
        name: str, weight_decay: float, batches: list) -> None:
    """In float32 the two implementations round differently and the adaptive rules amplify it
    (the largest parameter difference after 200 AdaGrad steps with decay: 7e-3 on one torch
    version, 1.8e-2 on another), so parameters are compared in float64 only. In float32 each
    trains the network alike: the mean loss of the last ten steps differs by less than the
    float32 run of torch's rule differs from its float64 run, plus 0.1%."""
    _, _, (hand, torch32) = twin_runs(name, weight_decay, torch.float32, batches)
    torch64 = twin_runs(name, weight_decay, torch.float64, batches)[2][1]
    assert abs(hand - torch32) <= abs(torch32 - torch64) + 1e-3 * torch64


def test_notes_momentum_differs_from_torch_when_the_rate_changes(batches: list) -> None:
    """v <- gamma v + eta g keeps the rates v was built with; torch's b <- gamma b + g is
    rescaled by today's rate. Equal under a constant rate, different under a schedule."""
    constant = twin_runs("momentum", 0.0, torch.float64, batches)[:2]
    assert (constant[0] - constant[1]).abs().max().item() <= 1e-6
    by_hand, by_torch, _ = twin_runs("momentum", 0.0, torch.float64, batches, schedule=True)
    assert (by_hand - by_torch).abs().max().item() > 1e-3


def test_the_counterpart_table_names_every_hand_written_optimizer() -> None:
    assert {pair[0] for pair in PAIRS.values()} == set(scratch.TORCH_COUNTERPARTS)
    assert all(scratch.TORCH_COUNTERPARTS[by_hand] is by_torch
               for by_hand, by_torch, _ in PAIRS.values())


def real_batch(model_name: str, fashion_mnist: FashionMNISTDataModule
               ) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A model in float64 with one real batch of its data."""
    torch.manual_seed(0)
    if model_name == "linreg":
        data = SyntheticLinearDataModule(batch_size=64)
        data.setup()
        x, y = next(iter(data.train_dataloader()))
        return Regressor(LINEAR).double(), x.double(), y.double()
    x, y = next(iter(fashion_mnist.train_dataloader()))
    if model_name == "logreg":
        keep = (y == 0) | (y == 6)
        return BinaryClassifier(LINEAR).double(), x[keep].double(), (y[keep] == 6).long()
    return Classifier(LINEAR).double(), x.double(), y


def autograd_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    output = model(x)
    if isinstance(model, Regressor):
        return F.mse_loss(output, y)
    if isinstance(model, BinaryClassifier):
        return F.binary_cross_entropy_with_logits(output, y.double())
    return F.cross_entropy(output, y)


@pytest.mark.parametrize("model_name", ["linreg", "softmax", "logreg"])
def test_derived_gradients_equal_autograd_on_a_real_batch(
        model_name: str, fashion_mnist: FashionMNISTDataModule) -> None:
    model, x, y = real_batch(model_name, fashion_mnist)
    output, loss, by_hand = model.loss_and_gradients(x, y)
    reference = autograd_loss(model, x, y)
    reference.backward()
    assert loss.item() == pytest.approx(reference.item(), abs=1e-12)
    assert set(by_hand) == set(model.parameters())
    for param, gradient in by_hand.items():
        assert gradient.shape == param.shape
        assert (gradient - param.grad).abs().max().item() <= 1e-6
    assert torch.allclose(output, model(x))


@pytest.mark.parametrize("model_name", ["linreg", "softmax", "logreg"])
def test_derived_gradients_pass_a_central_difference_check(model_name: str) -> None:
    """(L(p + h) - L(p - h)) / 2h for every entry of every parameter of a small model."""
    torch.manual_seed(1)
    small = {**LINEAR, "num_inputs": 5}
    model = {"linreg": lambda: Regressor(LINEAR, true_w=[1.0, -2.0, 0.5]),
             "softmax": lambda: Classifier(small, num_classes=3),
             "logreg": lambda: BinaryClassifier(small)}[model_name]().double()
    x = torch.randn(8, 3 if model_name == "linreg" else 5, dtype=torch.float64)
    y = {"linreg": torch.randn(8, dtype=torch.float64), "softmax": torch.randint(0, 3, (8,)),
         "logreg": torch.randint(0, 2, (8,))}[model_name]
    _, _, by_hand = model.loss_and_gradients(x, y)
    h = 1e-6
    for param, gradient in by_hand.items():
        numerical = torch.zeros_like(param)
        for index in itertools.product(*map(range, param.shape)):
            original = param.data[index].item()
            param.data[index] = original + h
            above = model.loss_and_gradients(x, y)[1].item()
            param.data[index] = original - h
            below = model.loss_and_gradients(x, y)[1].item()
            param.data[index] = original
            numerical[index] = (above - below) / (2 * h)
        assert (gradient - numerical).abs().max().item() <= 1e-7


RUN_COMPARED = ("val/loss", "test/loss", "val/acc", "test/acc", "val/mse", "test/mse",
                "val/auroc", "test/auroc", "w_error", "b_error")


@pytest.mark.slow
@pytest.mark.parametrize(("model_name", "overrides"), [
    ("linreg", ("model=linreg",)),
    ("softmax", ("model=softmax", "trainer.limit_train_batches=60")),
    ("logreg", ("model=logreg", "scheduler=step", "scheduler.step_size=1")),
])
def test_a_run_with_manual_gradients_matches_the_autograd_run(
        model_name: str, overrides: tuple[str, ...], tmp_path: Path, raw_paths: dict) -> None:
    metrics = {}
    for gradients in ("autograd", "manual"):
        run_dir = tmp_path / gradients
        result = run_script("train.py", *overrides, "trainer.max_epochs=2",
                            f"gradients={gradients}", f"hydra.run.dir={run_dir}")
        assert result.returncode == 0, result.stderr[-3000:]
        metrics[gradients] = json.loads((run_dir / "metrics.json").read_text())
    compared = [key for key in RUN_COMPARED if key in metrics["autograd"]]
    assert len(compared) >= 3
    for key in compared:
        assert metrics["manual"][key] == pytest.approx(metrics["autograd"][key], abs=1e-4)
    assert metrics["manual"]["global_step"] == metrics["autograd"]["global_step"]


@pytest.mark.slow
def test_hand_written_adam_trains_the_mlp_as_torch_adam_does(tmp_path: Path, raw_paths: dict
                                                             ) -> None:
    metrics = {}
    for optim in ("adam", "scratch/adam"):
        run_dir = tmp_path / optim.replace("/", "_")
        result = run_script("train.py", "model=mlp", f"optim={optim}", "trainer.max_epochs=2",
                            "trainer.limit_train_batches=80", f"hydra.run.dir={run_dir}")
        assert result.returncode == 0, result.stderr[-3000:]
        metrics[optim] = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["scratch/adam"]["test/acc"] == pytest.approx(metrics["adam"]["test/acc"],
                                                                abs=0.005)
    assert metrics["scratch/adam"]["lr"] == metrics["adam"]["lr"]


@pytest.mark.slow
def test_a_hand_written_optimizer_resumes_exactly(tmp_path: Path, raw_paths: dict) -> None:
    """Its state (the velocity) goes into last.ckpt and comes back: interrupted at step 25 and
    resumed, the run ends with the weights of the uninterrupted one."""
    short = ("model=mlp", "optim=scratch/momentum", "trainer.max_epochs=2",
             "trainer.limit_train_batches=40", "trainer.limit_val_batches=5",
             "trainer.limit_test_batches=5")
    assert run_script("train.py", *short, f"hydra.run.dir={tmp_path / 'whole'}").returncode == 0
    stopped = run_script("train.py", *short, f"hydra.run.dir={tmp_path / 'cut'}",
                         "+callbacks.probe._target_=tests.signal_probe.SignalAtStep",
                         "+callbacks.probe.step=25")
    assert stopped.returncode == 3
    state = torch.load(tmp_path / "cut/checkpoints/last.ckpt", weights_only=True)
    assert all("v" in entry for entry in state["optimizer_states"][0]["state"].values())
    resumed = run_script("train.py", *short, f"hydra.run.dir={tmp_path / 'resumed'}",
                         f"ckpt_path={tmp_path / 'cut/checkpoints/last.ckpt'}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = torch.load(tmp_path / "resumed/checkpoints/last.ckpt", weights_only=True)
    reference = torch.load(tmp_path / "whole/checkpoints/last.ckpt", weights_only=True)
    assert all(torch.equal(final["state_dict"][k], reference["state_dict"][k])
               for k in reference["state_dict"])


def test_scratch_configs_exist_for_every_rule() -> None:
    assert sorted(p.stem for p in (ROOT / "conf/optim/scratch").glob("*.yaml")) == sorted(PAIRS)
