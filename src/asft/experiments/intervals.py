"""Confidence intervals over seeds: the mean of n per-seed values and the half-width of its
two-sided Student t-interval, ``t(1 - (1 - level)/2, n - 1) * s / sqrt(n)`` with ``s`` the
sample standard deviation (n - 1 in the denominator).

The interval measures how much a metric moves with the training seed on a fixed set of test
pairs; it says nothing about how the test pairs were sampled. The t quantile is computed
here (scipy is not a dependency) from the closed form of Student's t distribution for an
integer number of degrees of freedom (Abramowitz and Stegun 26.7.3 and 26.7.4), inverted by
bisection.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def t_central_probability(t: float, dof: int) -> float:
    """P(|T| <= t) for Student's t with ``dof`` (>= 1) degrees of freedom and ``t`` >= 0.

    With theta = atan(t / sqrt(dof)): for odd dof, (2/pi) (theta + sin(theta) (cos(theta) +
    2/3 cos^3(theta) + ... + (2*4*...*(dof-3)) / (1*3*...*(dof-2)) cos^(dof-2)(theta)));
    for even dof, sin(theta) (1 + 1/2 cos^2(theta) + ... + (1*3*...*(dof-3)) /
    (2*4*...*(dof-2)) cos^(dof-2)(theta)).
    """
    if dof < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {dof}")
    theta = math.atan(t / math.sqrt(dof))
    sin, cos = math.sin(theta), math.cos(theta)
    if dof % 2:
        if dof == 1:
            return 2 * theta / math.pi
        term = total = cos
        for k in range(3, dof - 1, 2):  # the ratio (k-1)/k takes cos^(k-2) to cos^k
            term *= (k - 1) / k * cos * cos
            total += term
        return 2 / math.pi * (theta + sin * total)
    term = total = 1.0
    for k in range(2, dof - 1, 2):
        term *= (k - 1) / k * cos * cos
        total += term
    return sin * total


def t_quantile(dof: int, level: float = 0.95) -> float:
    """The t with P(|T| <= t) = ``level``: the multiplier of a two-sided ``level`` interval
    (12.706 for 1 degree of freedom, 2.776 for 4, 2.045 for 29, 1.960 as dof grows)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    low, high = 0.0, 1.0
    while t_central_probability(high, dof) < level:
        high *= 2
    # The probability rises monotonically with t: bisection to well below any printed digit.
    for _ in range(200):
        mid = (low + high) / 2
        if t_central_probability(mid, dof) < level:
            low = mid
        else:
            high = mid
        if high - low < 1e-12 * high:
            break
    return (low + high) / 2


def mean_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float | None]:
    """(mean, half-width of the two-sided t-interval); the half-width is None for one value,
    where there is no spread to measure."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = math.fsum(values) / n
    if n == 1:
        return mean, None
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, t_quantile(n - 1, level) * sd / math.sqrt(n)


def disjoint(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when the intervals ``[low, high]`` a and b do not overlap (touching overlaps)."""
    return a[1] < b[0] or b[1] < a[0]
