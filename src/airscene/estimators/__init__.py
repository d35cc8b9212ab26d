"""Gradient estimators: each turns a trace of one forward pass into a loss (the negative ELBO or a
surrogate with the same gradient in expectation). The model never knows which one trains it."""

from __future__ import annotations

import torch.nn as nn

from airscene.config import Config
from airscene.estimators.enumerate import Enumerate
from airscene.estimators.nvil import NVIL


def make_estimator(config: Config) -> nn.Module:
    if config.train.estimator == "nvil":
        return NVIL(config.model, normalise_signal=config.train.normalise_signal)
    return Enumerate()


__all__ = ["Enumerate", "NVIL", "make_estimator"]
