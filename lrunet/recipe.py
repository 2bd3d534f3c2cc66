"""The training recipe as a frozen dataclass, and the one entry point that turns a flat trial
config (a Ray Tune `config` dict, an MLflow params dict, a YAML `fixed:` block) into a model
config (of any registered family) and a recipe.

Defaults are the paper's (§3, LRUNET_SPEC.md §4): SGD with momentum 0.9, weight decay 5e-4 on all
parameters, lr 0.1, batch 256. The released code has no schedule (the LR was changed by hand at
epochs 200 and 250 of 300); `schedule="step"` reproduces that, scaled to the epoch budget: x0.1 at
2/3 and again at 5/6 of `epochs`. `schedule="cosine"` is the alternative.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lrunet.families import lrunet as _lrunet
from lrunet.registry import DEFAULT_FAMILY, FAMILY_KEY, config_to_knobs, get_family

SCHEDULES = ("step", "cosine", "constant")
STEP_MILESTONES = (2 / 3, 5 / 6)  # 200/300 and 250/300 of the paper's budget


@dataclass(frozen=True)
class Recipe:
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    epochs: int = 300
    schedule: str = "step"
    label_smoothing: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("lr", "momentum", "weight_decay", "label_smoothing"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"{name}: expected a number >= 0, got {v!r}")
            object.__setattr__(self, name, float(v))
        if self.lr <= 0:
            raise ValueError(f"lr: expected a number > 0, got {self.lr!r}")
        for name, lo in (("batch_size", 1), ("epochs", 1), ("seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name}: expected an integer >= {lo}, got {v!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule: {self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        if self.label_smoothing >= 1:
            raise ValueError(
                f"label_smoothing: expected a number in [0, 1), got {self.label_smoothing}"
            )

    def milestones(self) -> list[int]:
        """Epochs at which the step schedule divides the LR by 10 (the trainer counts the same
        fractions in optimizer steps, so a budget of a few epochs still gets its drops)."""
        return sorted({max(1, round(f * self.epochs)) for f in STEP_MILESTONES})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# LruNet's knobs (the default family); other families' knobs: `trial_keys(family)`.
MODEL_KEYS = _lrunet.MODEL_KEYS
STAGE_REUSE_KEYS = _lrunet.STAGE_REUSE_KEYS
RECIPE_KEYS = tuple(f.name for f in dataclasses.fields(Recipe))
TRIAL_KEYS = (FAMILY_KEY, *MODEL_KEYS, *STAGE_REUSE_KEYS, *RECIPE_KEYS)


def trial_keys(family: str = DEFAULT_FAMILY) -> tuple[str, ...]:
    """Every key a flat trial config of `family` may hold: family, its model knobs, the recipe."""
    return (FAMILY_KEY, *get_family(family).knobs, *RECIPE_KEYS)


def split_trial_config(flat: Mapping[str, Any], **geometry: int) -> tuple[Any, Recipe]:
    """Turn a flat trial config into (model config, Recipe). Unknown keys raise ValueError.

    `family` names the architecture family (default lrunet); the other model keys are that
    family's knobs (LruNet: per-stage reuse is `reuse_1` .. `reuse_4`, and `reuse` sets all
    four; a per-stage key wins). `geometry` (num_classes, in_channels, input_size) comes from the
    dataset.
    """
    family = get_family(flat.get(FAMILY_KEY, DEFAULT_FAMILY))
    allowed = trial_keys(family.name)
    unknown = sorted(set(flat) - set(allowed))
    if unknown:
        import difflib

        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, allowed, n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(
            f"unknown trial config key(s) {', '.join(hints)} for family {family.name}; "
            f"allowed: {', '.join(allowed)}"
        )
    model = family.from_knobs({k: flat[k] for k in family.knobs if k in flat}, **geometry)
    recipe = Recipe(**{k: flat[k] for k in RECIPE_KEYS if k in flat})
    return model, recipe


def flat_trial_config(cfg: Any, recipe: Recipe) -> dict[str, Any]:
    """The inverse of `split_trial_config`: family, every model knob, the recipe (geometry left
    out)."""
    flat = config_to_knobs(cfg)
    flat.update(recipe.to_dict())
    return flat
