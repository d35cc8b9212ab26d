"""Gradient estimators: each turns a trace of one forward pass into a loss (the negative ELBO or a
surrogate with the same gradient in expectation). The model never knows which one trains it."""

from __future__ import annotations

from airscene.config import Config
from airscene.estimators.base import Batch, Estimator
from airscene.estimators.enumerate import Enumerate
from airscene.estimators.local import LocalExpectation
from airscene.estimators.nvil import NVIL, BaselineNetwork
from airscene.estimators.relaxed import Relaxed
from airscene.estimators.vimco import VIMCO


def make_estimator(config: Config) -> Estimator:
    """AIR's estimator of a config."""
    t = config.train
    if t.estimator == "nvil":
        return NVIL(BaselineNetwork(config.model), normalise_signal=t.normalise_signal)
    if t.estimator == "vimco":
        return VIMCO(t.vimco_samples)
    if t.estimator == "local":
        return LocalExpectation()
    if t.estimator == "relaxed":
        return Relaxed(t.temperature_start, t.temperature_end, t.temperature_steps, t.straight_through)
    return Enumerate()


__all__ = ["BaselineNetwork", "Batch", "Enumerate", "Estimator", "LocalExpectation", "NVIL", "Relaxed", "VIMCO", "make_estimator"]
