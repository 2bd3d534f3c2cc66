"""Search spaces: YAML files describing what to search, and the loader that validates them before
any compute is spent (no Ray or Optuna import at load time).

    from search_spaces import load_space
    spec = load_space("lru_smoke")
    flat = spec.sample(0)                  # a flat trial config (lrunet.recipe.TRIAL_KEYS)
    spec.check_budget(flat)                # None, or why the config must not train
    spec.to_tune_param_space()             # Ray Tune param_space (imports ray)
    spec.to_optuna_distributions()         # Optuna distributions (imports optuna)

The YAML schema is documented in search_spaces/README.md.
"""

from search_spaces.loader import SPACES_DIR, list_spaces, load_space, resolve_space
from search_spaces.schema import DATASET_GEOMETRY, DATASETS, KNOBS, SpaceError
from search_spaces.spec import Budgets, CostRange, Objective, SearchSpec, Training

__all__ = [
    "DATASETS",
    "DATASET_GEOMETRY",
    "KNOBS",
    "SPACES_DIR",
    "Budgets",
    "CostRange",
    "Objective",
    "SearchSpec",
    "SpaceError",
    "Training",
    "list_spaces",
    "load_space",
    "resolve_space",
]
