"""The small objective the tracker examples tune: a noisy bowl in two parameters."""
from __future__ import annotations

import math


def bowl_loss(lr: float, momentum: float, step: int) -> float:
    """The loss after ``step`` steps: lowest near lr=0.01, momentum=0.9, shrinking with steps."""
    distance = (math.log10(lr) + 2) ** 2 + (momentum - 0.9) ** 2 * 4
    return distance + 1.0 / step
