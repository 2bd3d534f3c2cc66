"""A searchable setting (a "knob"): its type and the interval or names it accepts.

Families declare their model knobs with it (`lrunet.registry.Family.knobs`), `lrunet.recipe`
its training knobs; the search-space loader (`search_spaces.schema`) reads both to type-check and
range-check a YAML file. Plain Python: no torch, no yaml.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Knob:
    """A searchable setting: its type and the closed/open interval or names it accepts."""

    name: str
    section: str  # "model" or "recipe"
    type: type  # int, float or str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    names: tuple[str, ...] = ()

    def domain(self) -> str:
        if self.type is str:
            return "one of " + ", ".join(self.names)
        kind = "an integer" if self.type is int else "a number"
        if self.hi is None:
            return f"{kind} {'>' if self.lo_open else '>='} {self.lo:g}"
        left = "(" if self.lo_open else "["
        right = ")" if self.hi_open else "]"
        return f"{kind} in {left}{self.lo:g}, {self.hi:g}{right}"

    def admits(self, v: float) -> bool:
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            return False
        return self.hi is None or not (v > self.hi or (self.hi_open and v == self.hi))
