"""A larger batch's learning rate: which rule, and over how many steps it ramps up."""

from __future__ import annotations

import math

import torch

from hasten.train.candidates import lr_scaling, lr_warmup_steps


def test_sgd_scales_linearly_and_adaptive_optimizers_by_the_square_root():
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert lr_scaling(torch.optim.SGD(params, lr=0.1), 8.0) == (8.0, "linear")
    for optimizer in (torch.optim.AdamW(params), torch.optim.Adam(params),
                      torch.optim.RMSprop(params)):
        assert lr_scaling(optimizer, 8.0) == (math.sqrt(8.0), "square-root"), optimizer


def test_the_ramp_takes_a_fifth_of_the_steps_and_at_least_one():
    assert [lr_warmup_steps(n) for n in (1, 2, 8, 60)] == [1, 1, 2, 12]
