"""LruNet NAS's model package: a registry of architecture families (LruNet, DACNN, the LruNet
paper's Table 7 baselines), each exact to its reference's counts.

This package imports torch only (never ray, mlflow, optuna or yaml).
"""

from lrunet.config import LruNetConfig
from lrunet.recipe import Recipe, flat_trial_config, split_trial_config
from lrunet.registry import (
    Family,
    build_model,
    canonical_name,
    config_from_dict,
    config_to_dict,
    count,
    format_name,
    get_family,
    list_families,
    parse_name,
    register_family,
)

__all__ = [
    "Family",
    "LruNetConfig",
    "Recipe",
    "build_model",
    "canonical_name",
    "config_from_dict",
    "config_to_dict",
    "count",
    "flat_trial_config",
    "format_name",
    "get_family",
    "list_families",
    "parse_name",
    "register_family",
    "split_trial_config",
]
