"""The members' test, all at once through the stacked network, with the numbers each
member's single run computes in its Lightning test: the mean cross-entropy and the fraction
classified right over the test split (``limit_test_batches`` of it, in order), the confusion
matrix (rows: true class), and the first misclassified images in test order, for the two
figures that ``TestImages`` draws."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from dlfoundations.fused.loss import cross_entropy
from dlfoundations.fused.means import MemberMeans
from dlfoundations.fused.split import StackedSplit, batches
from dlfoundations.fused.stacked import StackedNetwork


@dataclass
class MemberTest:
    """One member's test: its metrics, confusion matrix and misclassified (image, true,
    predicted) images."""

    metrics: dict[str, float]
    confusion: torch.Tensor
    wrong: list[tuple[torch.Tensor, int, int]] = field(default_factory=list)


#: an evaluation reads whole batches, as many at a time as make about this many (row, member)
#: pairs: a batch-64 validation of six softmax members took 79 products and losses of 64 rows
#: (22 ms on the 2-core CPU), where a few of 1,024 do the same arithmetic
ROWS_AT_ONCE = 6144


def evaluated_batches(network: StackedNetwork, split: StackedSplit, batch_size: int,
                      limit: int | float | None, dtype: torch.dtype, means: MemberMeans
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The batches of an evaluation over ``split`` (``limit`` of it, in order) through the
    network in evaluation mode, each batch's mean loss and correct counts added to ``means``
    batch by batch, as a single run adds them; several batches at a time (``ROWS_AT_ONCE``),
    each row's output being the same whichever rows come with it: x (K or 1, R, ...), labels
    (K, R) and predicted classes (K, R) of the R rows of each such read."""
    network.eval()
    members = network.flat.shape[0]
    total = batches(limit, len(split), batch_size)
    last_row = min(len(split), total * batch_size)
    step = batch_size * max(1, ROWS_AT_ONCE // (batch_size * members))
    for start in range(0, last_row, step):
        stop = min(last_row, start + step)
        x, y = split.rows(start, stop, dtype)
        logits = network(x)
        y = y.expand(members, -1)
        losses = cross_entropy(logits.flatten(0, 1), y.flatten()).view(members, -1)
        predicted = logits.argmax(dim=2)
        hits = predicted == y
        whole = (stop - start) // batch_size * batch_size  # rows in whole batches
        if whole:
            means.update_batches(losses[:, :whole].view(members, -1, batch_size).mean(dim=2),
                                 hits[:, :whole].sum(dim=1), batch_size)
        if whole < stop - start:  # the split's partial last batch
            means.update(losses[:, whole:].mean(dim=1), hits[:, whole:].sum(dim=1),
                         stop - start - whole)
        yield x, y, predicted


@torch.no_grad()
def test_together(network: StackedNetwork, split: StackedSplit, batch_size: int,
                  limit: int | float | None, dtype: torch.dtype, num_images: int,
                  classes: int) -> list[MemberTest]:
    """Every member's test (the network holding each member's weights to test)."""
    members = network.flat.shape[0]
    means = MemberMeans(members, network.flat.device)
    confusion = torch.zeros(members, classes * classes, dtype=torch.int64,
                            device=network.flat.device)
    wrong: list[list[tuple[torch.Tensor, int, int]]] = [[] for _ in range(members)]
    for x, y, predicted in evaluated_batches(network, split, batch_size, limit, dtype, means):
        confusion.scatter_add_(1, y * classes + predicted, torch.ones_like(y))
        for k in range(members):
            if len(wrong[k]) < num_images:
                misses = torch.nonzero(predicted[k] != y[k]).flatten()
                for i in misses[:num_images - len(wrong[k])].tolist():
                    image = x[0 if x.shape[0] == 1 else k, i, 0].float().cpu()
                    wrong[k].append((image, int(y[k, i]), int(predicted[k, i])))
    matrices = confusion.view(members, classes, classes).cpu()
    losses, accuracies = means.losses().tolist(), means.accuracies().tolist()
    return [MemberTest({"test/loss": losses[k], "test/acc": accuracies[k]}, matrices[k],
                       wrong[k]) for k in range(members)]
