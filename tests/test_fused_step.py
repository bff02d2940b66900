"""The fused step's cost on the host: the operators one step dispatches do not grow with the
number of members (dropout apart: one mask per member, each from its own generator), and grow
by one rule's sequence per optimizer rule in the group. Counted as torch dispatches them; no
time is asserted (``benchmarks/fused_step.py`` measures it)."""

from __future__ import annotations

import pytest
import torch

from benchmarks.fused_step import SIX, OperatorCount, group
from dlfoundations.fused.step import train_step


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
