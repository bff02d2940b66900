"""Operators and host time per fused training step: ``python benchmarks/fused_step.py``.

One step of ``dlfoundations.fused.step.train_step`` for K members (1, 6, 32) of softmax
regression and of the MLP (dropout 0.2; a mask per member) at batch 64, all with Adam, and
the same with the six optimizers of the README's sweep in one group (SGD, momentum, AdaGrad,
RMSProp, AdaDelta, Adam: five rules). Operators are counted as torch dispatches them
(``TorchDispatchMode``); host time is the median wall time of a step over ``--steps`` steps
after warm-up, on synthetic images (the data a step reads is a tensor either way).
``--device cuda``: also the time per step once the device has finished (``--steps`` steps,
then a synchronisation), run eagerly and replayed from the step captured in a CUDA graph
(the dropout generators registered with the graph).
"""

from __future__ import annotations

from dlfoundations.environment import set_up_process

set_up_process()  # before torch is imported

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from dlfoundations import networks  # noqa: E402
from dlfoundations.fused.rules import RULES, StackedOptimizer, hyperparameters  # noqa: E402
from dlfoundations.fused.stacked import StackedNetwork  # noqa: E402
from dlfoundations.fused.step import train_step  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: the README sweep's optimizers, as their configs build them
SIX = [lambda p: torch.optim.SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
       lambda p: torch.optim.Adagrad(p, lr=0.05), lambda p: torch.optim.RMSprop(p, lr=0.001),
       lambda p: torch.optim.Adadelta(p, lr=1.0), lambda p: torch.optim.Adam(p, lr=0.003)]
NETS = {"softmax": {"name": "linear"}, "mlp": {"name": "mlp", "hidden": [256], "dropout": 0.2}}


class OperatorCount(TorchDispatchMode):
    """Counts the operators torch dispatches while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.counts[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def group(net: str, members: int, optimizers: list, batch: int = 64,
          dtype: torch.dtype = torch.float32, device: str = "cpu", classes: int = 10
          ) -> tuple[StackedNetwork, StackedOptimizer, torch.Tensor, torch.Tensor]:
    """A stacked network of ``members`` networks of ``classes`` outputs, its optimizer (one
    per member, cycling through ``optimizers``, sorted by rule as a group sorts them), one
    shared batch."""
    built = [networks.build(NETS[net], num_inputs=784, num_outputs=classes)
             for _ in range(members)]
    chosen = sorted((optimizers[k % len(optimizers)]([torch.zeros(1, requires_grad=True)])
                     for k in range(members)), key=lambda o: list(RULES).index(type(o)))
    generators = [torch.Generator(device).manual_seed(k) for k in range(members)]
    network = StackedNetwork(built, generators, torch.device(device), dtype)
    optimizer = StackedOptimizer(network.flat, network.grad, network.layout,
                                 network.decay_mask, [RULES[type(o)] for o in chosen],
                                 [hyperparameters(o) for o in chosen])
    network.train()
    return (network, optimizer, torch.rand(1, batch, 1, 28, 28, dtype=dtype, device=device),
            torch.randint(10, (1, batch), device=device))


def captured(step: Callable[[], torch.Tensor], generators: list[torch.Generator]
             ) -> Callable[[], None]:
    """``step`` captured in a CUDA graph, after three steps on a side stream (which give every
    rule its state); the replay runs it again on the same input tensors."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    for generator in generators:
        graph.register_generator_state(generator)
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def timed(step: Callable[[], object], steps: int, device: str) -> dict[str, float]:
    """The median host time of one call of ``step``, and (on a GPU) the time per step of
    ``steps`` calls until the device has finished them."""
    seconds = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - started)
    result = {"ms_per_step": round(statistics.median(seconds) * 1000, 3)}
    if device == "cuda":
        torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        result["device_ms_per_step"] = round((time.perf_counter() - started) * 1000 / steps, 4)
    return result


def measure(net: str, members: int, optimizers: list, steps: int, device: str
            ) -> dict[str, float]:
    network, optimizer, x, y = group(net, members, optimizers, device=device)
    sums = torch.zeros(members, 2, device=device)

    def step() -> torch.Tensor:
        return train_step(network, optimizer, x, y, sums)

    for _ in range(3):  # warm-up; the rules' state exists from the first step
        step()
    with OperatorCount() as count:
        step()
    result = {"operators": sum(count.counts.values()), **timed(step, steps, device)}
    result["ms_per_member_step"] = round(result["ms_per_step"] / members, 4)
    if device == "cuda":
        generators = network.generators if network.mask_widths else []
        graphed = timed(captured(step, generators), steps, device)
        result |= {f"graph_{key}": value for key, value in graphed.items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench_fused_step.json")
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(1)
    results = {}
    for net in NETS:
        for members in (1, 6, 32):
            for name, optimizers in (("adam", SIX[-1:]), ("six optimizers", SIX)):
                if name == "six optimizers" and members == 1:
                    continue
                key = f"{net}, K={members}, {name}"
                results[key] = measure(net, members, optimizers, args.steps, args.device)
                print(key, results[key], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
