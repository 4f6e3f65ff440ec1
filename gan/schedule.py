"""Learning-rate schedules, shared by the GAN and the evaluation classifier: a function of the
step alone, so a resumed run sets exactly the rate it would have had."""

from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine")


def lr_at(peak: float, schedule: str, step: int, steps: int) -> float:
    """The learning rate of 0-based ``step`` of ``steps``: ``peak`` throughout ("constant"), or
    a half cosine from ``peak`` down to 0 at the end ("cosine")."""
    if schedule == "constant":
        return peak
    if schedule == "cosine":
        return peak * 0.5 * (1.0 + math.cos(math.pi * step / steps))
    raise ValueError(f"unknown lr schedule {schedule!r}; choose from {list(SCHEDULES)}")
