"""The values a search-space knob can take, and their one translation each to Ray Tune and Optuna.

A knob is either `Fixed` or one of five distributions, spelled in YAML as a one-key mapping:

    {choice: [a, b, c]}        one of the listed values, equally likely
    {randint: [lo, hi]}        an integer in lo..hi, BOTH ends included
    {uniform: [lo, hi]}        a real number in [lo, hi]
    {loguniform: [lo, hi]}     a real number in [lo, hi], uniform in log space (lo > 0)
    {quniform: [lo, hi, q]}    one of lo, lo + q, ..., hi (lo and hi multiples of q)

Integer ranges are inclusive here and in the YAML files; Ray Tune's `randint` is half-open. The
conversion is done in exactly one place, `ray_randint`. Ray and Optuna are imported only inside the
`to_tune` / `to_optuna` methods, so loading a space never imports them.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

DISTRIBUTIONS = ("choice", "randint", "uniform", "loguniform", "quniform")


def ray_randint(lo: int, hi: int) -> Any:
    """Ray Tune's domain for the INCLUSIVE integer range lo..hi (Ray's `randint` excludes hi)."""
    from ray import tune

    return tune.randint(lo, hi + 1)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


@dataclass(frozen=True)
class Fixed:
    """A constant: the knob is not searched."""

    value: Any

    kind = "fixed"
    is_finite = True

    def sample(self, rng: random.Random) -> Any:
        return self.value

    def values(self) -> tuple[Any, ...]:
        return (self.value,)

    @property
    def size(self) -> int:
        return 1

    @property
    def low(self) -> Any:
        return self.value

    @property
    def high(self) -> Any:
        return self.value

    def to_tune(self) -> Any:
        return self.value

    def to_optuna(self) -> Any:
        import optuna

        return optuna.distributions.CategoricalDistribution([self.value])

    def describe(self) -> str:
        return _fmt(self.value)


@dataclass(frozen=True)
class Choice:
    """One of `options`, equally likely."""

    options: tuple[Any, ...]

    kind = "choice"
    is_finite = True

    def sample(self, rng: random.Random) -> Any:
        return rng.choice(self.options)

    def values(self) -> tuple[Any, ...]:
        return self.options

    @property
    def size(self) -> int:
        return len(self.options)

    @property
    def low(self) -> Any:
        return min(self.options)

    @property
    def high(self) -> Any:
        return max(self.options)

    def to_tune(self) -> Any:
        from ray import tune

        return tune.choice(list(self.options))

    def to_optuna(self) -> Any:
        import optuna

        return optuna.distributions.CategoricalDistribution(list(self.options))

    def describe(self) -> str:
        return "choice [" + ", ".join(_fmt(v) for v in self.options) + "]"


@dataclass(frozen=True)
class _Range:
    """A distribution over an interval [lo, hi] (bounds readable as `low`/`high`)."""

    lo: float
    hi: float

    @property
    def low(self) -> float:
        return self.lo

    @property
    def high(self) -> float:
        return self.hi


@dataclass(frozen=True)
class _Continuous(_Range):
    """A range with infinitely many values: no grid, no size."""

    is_finite = False

    def values(self) -> None:
        return None

    @property
    def size(self) -> None:
        return None


@dataclass(frozen=True)
class RandInt(_Range):
    """An integer in lo..hi, both ends included."""

    lo: int
    hi: int

    kind = "randint"
    is_finite = True

    def sample(self, rng: random.Random) -> int:
        return rng.randint(self.lo, self.hi)  # stdlib randint is inclusive too

    def values(self) -> tuple[int, ...]:
        return tuple(range(self.lo, self.hi + 1))

    @property
    def size(self) -> int:
        return self.hi - self.lo + 1

    def to_tune(self) -> Any:
        return ray_randint(self.lo, self.hi)

    def to_optuna(self) -> Any:
        import optuna

        return optuna.distributions.IntDistribution(self.lo, self.hi)  # inclusive, like ours

    def describe(self) -> str:
        return f"randint [{self.lo}, {self.hi}] (inclusive)"


@dataclass(frozen=True)
class Uniform(_Continuous):
    """A real number in [lo, hi]."""

    kind = "uniform"

    def sample(self, rng: random.Random) -> float:
        return rng.uniform(self.lo, self.hi)

    def to_tune(self) -> Any:
        from ray import tune

        return tune.uniform(self.lo, self.hi)

    def to_optuna(self) -> Any:
        import optuna

        return optuna.distributions.FloatDistribution(self.lo, self.hi)

    def describe(self) -> str:
        return f"uniform [{self.lo:g}, {self.hi:g}]"


@dataclass(frozen=True)
class LogUniform(_Continuous):
    """A real number in [lo, hi] whose logarithm is uniform (0 < lo)."""

    kind = "loguniform"

    def sample(self, rng: random.Random) -> float:
        v = math.exp(rng.uniform(math.log(self.lo), math.log(self.hi)))
        return min(max(v, self.lo), self.hi)  # exp(log(x)) may round just outside

    def to_tune(self) -> Any:
        from ray import tune

        return tune.loguniform(self.lo, self.hi)

    def to_optuna(self) -> Any:
        import optuna

        return optuna.distributions.FloatDistribution(self.lo, self.hi, log=True)

    def describe(self) -> str:
        return f"loguniform [{self.lo:g}, {self.hi:g}]"


@dataclass(frozen=True)
class QUniform(_Range):
    """One of lo, lo + q, ..., hi, equally likely; lo and hi are multiples of q.

    Ray Tune's `quniform` samples the multiples of q between its bounds and includes the upper one,
    and Optuna's stepped `FloatDistribution` the grid lo + k q: with both bounds multiples of q the
    three agree.
    """

    q: float

    kind = "quniform"
    is_finite = True

    def values(self) -> tuple[float, ...]:
        n = round((self.hi - self.lo) / self.q)
        # rounding keeps 0.1 * 3 from appearing as 0.30000000000000004
        return tuple(round(self.lo + k * self.q, 12) for k in range(n + 1))

    def sample(self, rng: random.Random) -> float:
        return rng.choice(self.values())

    @property
    def size(self) -> int:
        return round((self.hi - self.lo) / self.q) + 1

    def to_tune(self) -> Any:
        from ray import tune

        return tune.quniform(self.lo, self.hi, self.q)

    def to_optuna(self) -> Any:
        import optuna

        return optuna.distributions.FloatDistribution(self.lo, self.hi, step=self.q)

    def describe(self) -> str:
        return f"quniform [{self.lo:g}, {self.hi:g}] step {self.q:g}"


Distribution = Fixed | Choice | RandInt | Uniform | LogUniform | QUniform
