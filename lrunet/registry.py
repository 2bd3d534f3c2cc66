"""The architecture-family registry: every network this platform builds, by name.

A family (LruNet, DACNN, the LruNet paper's Table 7 baselines, ...) is one module in
`lrunet/families/` that calls `register_family(Family(...))` at import. The registry finds those
modules by itself (like timm's `register_model` / torchvision's `_api.py`, but without a list of
imports to edit), so adding a family is that one module plus its tests; everything else (names,
counts, building, search spaces, training, checkpoints, export, the CLI) goes through here:

    parse_name("14-LruNet-1x", num_classes=10)        any registered family's names
    format_name(cfg), count(cfg), build_model(cfg)    whatever family cfg belongs to
    config_to_dict(cfg) / config_from_dict(d)          checkpoints and model files
    list_families(), get_family("dacnn")               the table itself

A family's config is a frozen dataclass with the dataset geometry fields `num_classes`,
`in_channels` and `input_size` (geometry is never spelled in a name), a `name` property (the
canonical spelling) and `to_dict()`. This module imports no torch; `build_model` does, lazily.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lrunet.knobs import Knob

FAMILY_KEY = "family"  # the flat-trial-config key (and MLflow param / tag) naming the family
DEFAULT_FAMILY = "lrunet"  # a config dict or trial config without a family key is an LruNet


@dataclass(frozen=True)
class Family:
    """Everything the platform needs to know about one architecture family.

    Attributes:
        name: registry key, lower case ("lrunet", "dacnn", "mobilenetv2").
        tag: the token that marks the family's names ("LruNet" in "14-LruNet-1x"), matched
            case-insensitively against the '-'-separated tokens of a name.
        config: the frozen config dataclass.
        grammar: the name grammar in one line, for `describe --list` and error messages.
        summary: one line saying what the family is and what it shares.
        parse: `parse(name, **geometry) -> config`, raising ValueError naming the allowed values.
        build: `build(config) -> torch.nn.Module` (the module keeps the config as `.cfg`).
        count: `count(config) -> lrunet.counting.Counts`, analytic, shared tensors once.
        knobs: the model knobs a search space may set (flat keys of a trial config).
        from_knobs: `from_knobs(values, **geometry) -> config` for a dict of knob values (any
            subset of `knobs`; the rest take the family's defaults).
        to_knobs: `to_knobs(config) -> dict`, the inverse (every knob spelled out).
        monotone: the knobs along which every count is non-decreasing, all others held fixed.
            Budget checks evaluate the corners of these and enumerate the other knobs.
        presets: names worth knowing (the papers' networks), listed by `describe --list`.
        dead_params: `dead_params(config) -> set of parameter names` that get no gradient by
            design (DACNN's `-release` parity modules); every other parameter must get one.
        details: `details(config) -> list of lines` for `describe` (depth, widths, sharing).
        grid: `grid(knob, lo, hi) -> values` standing for a continuous knob's range in the
            search-space loader's validity and budget checks (default: 9 evenly spaced points;
            LruNet's width gives one value per distinct channel count, which is exact).
        diagnose: `diagnose(knob, value, axes) -> str | None`, a clearer message for a listed
            knob value that gives no valid architecture with the space's other values (`axes`:
            knob -> the values the space lists), or None for the config's own error.
    """

    name: str
    tag: str
    config: type
    grammar: str
    summary: str
    parse: Callable[..., Any]
    build: Callable[[Any], Any]
    count: Callable[[Any], Any]
    knobs: Mapping[str, Knob]
    from_knobs: Callable[..., Any]
    to_knobs: Callable[[Any], dict[str, Any]]
    monotone: tuple[str, ...] = ()
    presets: tuple[str, ...] = ()
    dead_params: Callable[[Any], set[str]] = field(default=lambda cfg: set())
    details: Callable[[Any], list[str]] = field(default=lambda cfg: [])
    grid: Callable[[str, float, float], list[Any]] | None = None
    diagnose: Callable[[str, Any, Mapping[str, list[Any]]], str | None] | None = None

    def grid_values(self, knob: str, lo: float, hi: float) -> list[Any]:
        """Values standing for the continuous range [lo, hi] of `knob` (see `grid`)."""
        if self.grid is not None:
            return list(self.grid(knob, lo, hi))
        values = [lo + (hi - lo) * i / 8 for i in range(9)]
        return [int(round(v)) for v in values] if self.knobs[knob].type is int else values

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.lower() or not self.name.isidentifier():
            raise ValueError(f"family name {self.name!r}: use a lower-case identifier")
        if not dataclasses.is_dataclass(self.config):
            raise TypeError(f"family {self.name}: config must be a dataclass")
        missing = {"num_classes", "in_channels", "input_size"} - {
            f.name for f in dataclasses.fields(self.config)
        }
        if missing:
            raise TypeError(f"family {self.name}: config lacks geometry field(s) {missing}")
        for key, knob in self.knobs.items():
            if key != knob.name or knob.section != "model":
                raise ValueError(f"family {self.name}: knob {key!r} is not a model knob")
        unknown = set(self.monotone) - set(self.knobs)
        if unknown:
            raise ValueError(f"family {self.name}: monotone knobs {unknown} are not knobs")


_FAMILIES: dict[str, Family] = {}
_BY_CONFIG: dict[type, Family] = {}
_discovered = False


def register_family(family: Family) -> Family:
    """Add `family` to the registry. A name, tag or config class registered twice raises."""
    if family.name in _FAMILIES:
        raise ValueError(f"architecture family {family.name!r} is already registered")
    for other in _FAMILIES.values():
        if other.tag.lower() == family.tag.lower():
            raise ValueError(
                f"family {family.name!r}: name tag {family.tag!r} is already used by "
                f"{other.name!r}"
            )
    if family.config in _BY_CONFIG:
        raise ValueError(f"config class {family.config.__name__} is already registered")
    _FAMILIES[family.name] = family
    _BY_CONFIG[family.config] = family
    return family


def _discover() -> None:
    """Import every module of `lrunet.families` once (each registers its families)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    import lrunet.families as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")


def list_families() -> list[str]:
    """Names of the registered families, in registration order (LruNet first)."""
    _discover()
    order = [DEFAULT_FAMILY] if DEFAULT_FAMILY in _FAMILIES else []
    return order + sorted(n for n in _FAMILIES if n != DEFAULT_FAMILY)


def get_family(name: str) -> Family:
    """The family registered as `name` (case-insensitive); ValueError naming the allowed ones."""
    _discover()
    key = str(name).lower() if isinstance(name, str) else name
    if key not in _FAMILIES:
        raise ValueError(
            f"unknown architecture family {name!r}; registered families: "
            f"{', '.join(list_families())}"
        )
    return _FAMILIES[key]


def family_of(cfg: Any) -> Family:
    """The family whose config class `cfg` is."""
    _discover()
    try:
        return _BY_CONFIG[type(cfg)]
    except KeyError:
        raise TypeError(f"{type(cfg).__name__} is not a registered family's config") from None


def family_for_name(name: str) -> Family:
    """The family whose tag appears in architecture name `name`."""
    if not isinstance(name, str):
        raise ValueError(f"architecture name must be a string, got {name!r}")
    tokens = {t.lower() for t in name.strip().split("-")}
    families = [get_family(n) for n in list_families()]
    hits = [f for f in families if f.tag.lower() in tokens]
    if len(hits) != 1:
        examples = ", ".join(repr(f.presets[0]) for f in families if f.presets)
        raise ValueError(
            f"cannot parse architecture name {name!r}: a name carries exactly one family tag "
            f"({', '.join(f.tag for f in families)}), e.g. {examples}; "
            "`python launch.py describe --list` shows every family's grammar"
        )
    return hits[0]


def parse_name(name: str, **geometry: Any) -> Any:
    """Decode any registered family's architecture name into its config; `geometry` sets
    num_classes, in_channels and input_size (or any field the name does not spell)."""
    family = family_for_name(name)
    try:
        return family.parse(name.strip(), **geometry)
    except ValueError as e:
        if repr(name.strip()) in str(e) or name.strip() in str(e):
            raise
        raise ValueError(f"{name.strip()!r}: {e}") from None


def format_name(cfg: Any) -> str:
    """The canonical name of `cfg`'s architecture."""
    family_of(cfg)  # a TypeError for an object that is no family's config
    return cfg.name


def canonical_name(name: str) -> str:
    """Re-spell any accepted name canonically (`14-lrunet-1.0X` -> `14-LruNet-1x`)."""
    return parse_name(name).name


def count(cfg: Any):
    """Analytic `lrunet.counting.Counts` of `cfg` at its own geometry."""
    return family_of(cfg).count(cfg)


def build_model(cfg: Any, **geometry: Any):
    """The network of a config, or of an architecture name plus dataset geometry."""
    if isinstance(cfg, str):
        cfg = parse_name(cfg, **geometry)
    return family_of(cfg).build(cfg)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """`cfg` as plain values with its family named (checkpoints, model files, config.yaml)."""
    return {FAMILY_KEY: family_of(cfg).name, **cfg.to_dict()}


def config_from_dict(d: Mapping[str, Any]) -> Any:
    """The inverse of `config_to_dict`; a dict without a family key is an LruNet (files written
    before the registry existed)."""
    if not isinstance(d, Mapping):
        raise ValueError(f"architecture config: expected a mapping, got {type(d).__name__}")
    d = dict(d)
    family = get_family(d.pop(FAMILY_KEY, DEFAULT_FAMILY))
    return family.config.from_dict(d)


def config_from_knobs(values: Mapping[str, Any], **geometry: Any) -> Any:
    """A config from a flat dict of model-knob values with an optional `family` key."""
    values = dict(values)
    family = get_family(values.pop(FAMILY_KEY, DEFAULT_FAMILY))
    unknown = sorted(set(values) - set(family.knobs))
    if unknown:
        raise ValueError(
            f"{family.name} has no knob(s) {', '.join(map(repr, unknown))}; its knobs: "
            f"{', '.join(family.knobs)}"
        )
    return family.from_knobs(values, **geometry)


def config_to_knobs(cfg: Any) -> dict[str, Any]:
    """The flat knob values of `cfg`, family first (the inverse of `config_from_knobs`)."""
    family = family_of(cfg)
    return {FAMILY_KEY: family.name, **family.to_knobs(cfg)}


def presets() -> list[tuple[str, str]]:
    """(family, preset name) for every registered preset."""
    return [(f, p) for f in list_families() for p in get_family(f).presets]
