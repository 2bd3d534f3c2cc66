"""LruNet: Layer Reuse Networks (Köpüklü et al. 2019), exact to the paper's released code.

This package imports torch only (never ray, mlflow, optuna or yaml).
"""

from lrunet.config import LruNetConfig, canonical_name, format_name, parse_name
from lrunet.recipe import Recipe, flat_trial_config, split_trial_config

__all__ = [
    "LruNetConfig",
    "Recipe",
    "canonical_name",
    "flat_trial_config",
    "format_name",
    "parse_name",
    "split_trial_config",
]
