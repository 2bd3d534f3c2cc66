"""The training recipe as a frozen dataclass, and the one entry point that turns a flat trial
config (a Ray Tune `config` dict, an MLflow params dict, a YAML `fixed:` block) into a model
config and a recipe.

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

from lrunet.config import NUM_STAGES, LruNetConfig

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


MODEL_KEYS = ("reuse", "width", "groups", "shuffle", "dropout", "sharing")
STAGE_REUSE_KEYS = tuple(f"reuse_{s + 1}" for s in range(NUM_STAGES))
RECIPE_KEYS = tuple(f.name for f in dataclasses.fields(Recipe))
TRIAL_KEYS = MODEL_KEYS + STAGE_REUSE_KEYS + RECIPE_KEYS


def split_trial_config(flat: Mapping[str, Any], **geometry: int) -> tuple[LruNetConfig, Recipe]:
    """Turn a flat trial config into (LruNetConfig, Recipe). Unknown keys raise ValueError.

    Per-stage reuse is `reuse_1` .. `reuse_4`; `reuse` sets all four (a per-stage key wins).
    `geometry` (num_classes, in_channels, input_size) comes from the dataset.
    """
    unknown = sorted(set(flat) - set(TRIAL_KEYS))
    if unknown:
        import difflib

        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, TRIAL_KEYS, n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(
            f"unknown trial config key(s) {', '.join(hints)}; allowed: {', '.join(TRIAL_KEYS)}"
        )
    model: dict[str, Any] = {k: flat[k] for k in MODEL_KEYS if k in flat}
    base = model.pop("reuse", LruNetConfig.reuse)
    if isinstance(base, int) and not isinstance(base, bool):
        base = (base,) * NUM_STAGES
    elif isinstance(base, (list, tuple)) and len(base) == 1:
        base = tuple(base) * NUM_STAGES
    if any(k in flat for k in STAGE_REUSE_KEYS):
        if not isinstance(base, (list, tuple)) or len(base) != NUM_STAGES:
            raise ValueError(f"reuse: expected an integer or {NUM_STAGES} integers, got {base!r}")
        base = tuple(flat.get(k, base[s]) for s, k in enumerate(STAGE_REUSE_KEYS))
    model["reuse"] = tuple(base) if isinstance(base, list) else base
    recipe = Recipe(**{k: flat[k] for k in RECIPE_KEYS if k in flat})
    return LruNetConfig(**model, **geometry), recipe


def flat_trial_config(cfg: LruNetConfig, recipe: Recipe) -> dict[str, Any]:
    """The inverse of `split_trial_config` (per-stage reuse spelled out, geometry left out)."""
    flat: dict[str, Any] = {k: getattr(cfg, k) for k in MODEL_KEYS if k != "reuse"}
    flat.update({k: n for k, n in zip(STAGE_REUSE_KEYS, cfg.reuse)})
    flat.update(recipe.to_dict())
    return flat
