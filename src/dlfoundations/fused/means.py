"""Each member's evaluation metrics as a single run's torchmetrics objects compute them, their
states in float32 whatever the run's precision: ``MeanMetric``'s loss, the sum of each
batch's mean loss times the batch's size over the sizes; ``MulticlassAccuracy`` (micro), the
correct predictions over those seen. So a member's ``val/loss``, ``val/acc``, ``test/loss``
and ``test/acc`` are its solo run's to the last bit where its batches' losses are: in float64
runs (in float32 the evaluation pads the logits as the step does, ``fused.loss``, and a loss
can move by an ulp)."""

from __future__ import annotations

import torch


class MemberMeans:
    """Running sums over the batches of an evaluation, one per member (K)."""

    def __init__(self, members: int, device: torch.device) -> None:
        self.loss = torch.zeros(members, dtype=torch.float32, device=device)
        self.weight = torch.zeros((), dtype=torch.float32, device=device)
        self.correct = torch.zeros(members, dtype=torch.int64, device=device)
        self.seen = torch.zeros((), dtype=torch.int64, device=device)

    def update(self, batch_losses: torch.Tensor, correct: torch.Tensor, size: int) -> None:
        """One batch of ``size`` examples: each member's mean loss (K,) and correct count."""
        self.update_batches(batch_losses.unsqueeze(1), correct, size)

    def update_batches(self, batch_losses: torch.Tensor, correct: torch.Tensor,
                       size: int) -> None:
        """Batches of ``size`` examples each, in order: each one's mean loss per member
        (K, batches), added one batch after another as the single run's metric adds them (a
        float32 sum depends on its order), and the members' correct counts over them all (K,)."""
        size32 = torch.tensor(float(size), dtype=torch.float32, device=self.loss.device)
        for losses in (batch_losses.to(torch.float32) * size32).unbind(dim=1):
            self.loss += losses
            self.weight += size32
        self.correct += correct
        self.seen += size * batch_losses.shape[1]

    def losses(self) -> torch.Tensor:
        """Each member's mean loss (K,), float32."""
        return self.loss / self.weight

    def accuracies(self) -> torch.Tensor:
        """Each member's accuracy (K,), float32."""
        return self.correct.float() / self.seen.float()
