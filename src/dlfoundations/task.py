"""What a model learns and what data holds, one word each: a model and its data must agree."""

from __future__ import annotations

from enum import Enum


class Task(str, Enum):
    """The task of a training module and of a DataModule (their ``task``)."""

    CLASSIFICATION = "classification"                # ten classes
    TWO_CLASS = "two-class classification"          # two of them (data.classes)
    REGRESSION = "regression"                        # a real number per example

    def __str__(self) -> str:
        return self.value
