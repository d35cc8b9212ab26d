"""What changes over training: the count prior's annealing, the exploration weight in q(z_pres), the
Concrete temperature and the model's learning rate's start, each a pure function of the step; and the learning
rates' decay, a function of the share of the budget spent. A resumed run follows the same schedules."""

from __future__ import annotations

import math

from airscene.config import TrainConfig


def anneal(start: float, end: float, step: int, steps: int, kind: str = "exponential") -> float:
    """From start at step 0 to end at `steps`, then held: linearly, or exponentially (linear in the log)."""
    progress = min(step / max(steps, 1), 1.0)
    if kind == "linear":
        return start + (end - start) * progress
    return math.exp(math.log(start) + (math.log(end) - math.log(start)) * progress)


def count_prior_at(step: int, end: float, config: TrainConfig) -> float:
    """The presence prior rho at a training step: the model's `end` value, or annealed to it as in the
    paper (from near 1, which lets every step be used while the decoder learns, down to a value that
    charges each extra object log(1/rho))."""
    if config.count_prior_schedule == "none":
        return end
    return anneal(config.count_prior_start, end, step, config.count_prior_steps, config.count_prior_schedule)


def exploration_at(step: int, config: TrainConfig) -> float:
    """The weight e of the exploration mixture in q(z_pres) (model/air.py): held at its initial value for
    presence_exploration_hold steps, then linearly to 0 over presence_exploration_steps."""
    remaining = 1 - (step - config.presence_exploration_hold) / config.presence_exploration_steps
    return config.presence_exploration * min(1.0, max(0.0, remaining))


def learning_rate_start(step: int, config: TrainConfig) -> float:
    """The multiple of the model's learning rate at `step`: learning_rate_start at step 0, exponentially down to 1
    over learning_rate_start_steps. (An estimator's own parameters, nvil's baseline, track the signal at their
    rate from the start.)"""
    return anneal(config.learning_rate_start, 1.0, step, config.learning_rate_start_steps)


def learning_rate_factor(spent: float, config: TrainConfig) -> float:
    """The multiple of the learning rates once `spent` (0 to 1) of the budget is used: 1, or held at 1 for
    learning_rate_hold of it and then down a half cosine to learning_rate_final."""
    if config.learning_rate_decay == "none":
        return 1.0
    progress = min(max((spent - config.learning_rate_hold) / (1 - config.learning_rate_hold), 0.0), 1.0)
    final = config.learning_rate_final
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))
