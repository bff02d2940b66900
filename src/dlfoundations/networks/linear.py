"""One linear layer: the network of linear, softmax and logistic regression."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn


class LinearNet(nn.Sequential):
    """o = W x + b on the flattened input x, W of shape (num_outputs, num_inputs).

    Softmax regression is this network with cross-entropy over 10 outputs, logistic regression
    with the log loss over one, linear regression with the squared loss over one.
    """

    def __init__(self, num_inputs: int = 784, num_outputs: int = 10):
        super().__init__(OrderedDict(flatten=nn.Flatten(),
                                     linear=nn.Linear(num_inputs, num_outputs)))
