"""DACNN (Huang, Dwivedi and Roig, "Deep Anchored Convolutional Neural Networks", CVPRW 2019) on
the family registry: config, name grammar, `describe` details and the registration. The analytic
counts are in `lrunet.families._dacnn_counts` and the search knobs in `._dacnn_knobs`, both
imported here (no torch in any of them); the network is `._dacnn_net.DacnnNet`, built lazily.
DACNN_SPEC.md §1 describes the release's networks, §2 their counts and §5.2 this grammar, which
generalises them.

Names (case-insensitive, options in any order; the canonical spelling has them in this order,
omits -twidth and -u0 and writes -reg1 as -reg; geometry is never spelled)::

    <layout>-DACNN-<body><width>[d][-t<scope>][-u<n>][-rot][-relubn][-b][-reg[<g>]][-release]

    layout    per-stage counts, dot-separated, any number of stages >= 1. vgg: 3x3 convs per
              stage, the stem being the first conv of stage 1 (depth sum + 1 with the FC);
              res: 2-conv residual blocks per stage after a separate stem (depth 2 sum + 2)
    body      vgg or res
    width     stage-1 channels; `d` doubles them per stage, capped at 8x the start (64d: 64, 128,
              256, 512, 512, ...); without `d` every stage has that width
    -t        which 3x3 F->F layers share one kernel: width (default, omitted: one kernel per
              distinct width across stages, the paper's anchoring), stage (one per stage), g<k>
              (groups of k consecutive F->F layers within a stage), none (untied)
    -u<n>     the first n stages untied whatever the scope (Mix_Net's -u2)
    -reg[<g>] a regulator (1x1 F->F conv, g groups, no bias, identity-initialised): res, one per
              block after bn2, before the final rot and the add; vgg, after each F->F layer's BN
    -rot      res only: cyclic channel rotation by one in every block (spec §1.4 block forward)
    -relubn   conv -> ReLU -> BN (vgg_Fix_BN's order); in res the second conv stays conv -> BN
    -b        a bias on every 3x3 conv except a res stem (shared kernels share it)
    -release  the release's dead parameters and Mix_Net's BN gap, for exact count parity (below)

What is shared: only 3x3 F->F convs ("positions"). The stem, the transitions (the unshared 3x3
in->F that opens a stage whose width changed; in res with a 1x1+BN projection shortcut, every
other shortcut being the identity), the regulators, every BN and the head are never shared. Every
application of a kernel has its own BN. Each stage ends in a max-pool; a global average and a
Linear (with bias) follow. A shared kernel is one Conv2d in `net.kernels`, called at every use.

`-release` adds, in res without `d` (resnet_Fix_BN), one unused BN per block (the release's bn2);
in res with `d` (resnet_mix), one unused dense regulator per block (unless -reg applies them), the
unused 3x3 `conv_fix` (always 128->128, no bias, as released) and an unused BN in each transition
block (the release's bn1); in vgg with `d` (Mix_Net), each stage past the width cap opens with a
bare conv (no BN, no ReLU); elsewhere it changes nothing. Dead parameters are counted in
`params`, never run, and are `dead_params(cfg)`; the spec's counts without -release are its
"effective" ones. With -reg the regulators run, so -release adds no dead ones (spec §2's
"regulator applied" rows).

Departures from the release (DACNN_SPEC.md §6), all of them:
* Max-pools are `MaxPool2d(2, ceil_mode=True)`: odd sizes work (Fashion-MNIST at 28: 28, 14, 7,
  4, 2, 1); at 32x32 every count is the release's. vgg_Fix_BN needs exactly 32x32 there.
* Every net ends in `AdaptiveAvgPool2d(1)` + `Linear(F_last, num_classes)`: vgg_Fix_BN flattens
  its 1x1 map (the same values; the average counts its input in FLOPs, as in spec §2), and the
  VGG heads' hard-coded 100 classes follow `num_classes`.
* Any layout, width, stage count and input channels; the `d` cap is 8x the start width (the
  release has 64d only, capping at 512). The release's hard-coded [3,4,6,3] is a layout here.
* Scopes stage, g<k> and none, -u<n> on any net, -rot and -relubn on any res net, -reg on vgg
  and grouped regulators are generalisations ([P] in the spec); regulators are applied (the
  figure's counts show the paper's runs did) and start as the identity.
* -relubn on res reorders the stem, each block's first conv and the transitions; the second
  conv of a block keeps conv -> BN before the add (the release has -relubn on vgg only).
* A shared kernel is held once, in `net.kernels` (`state_dict` has one key per tensor; the
  release repeats it under every path). Dead modules exist only with -release, named `unused_*`;
  parameter names are not the release's (it has no checkpoints to load).
* The canonical order puts -reg after -b, as the spec's §5.2 table spells its names
  (`...-rot-b-reg`), not before -rot as its grammar line does; both parse.
* Small_Nets (one BN shared with the kernel) is not covered.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lrunet.registry import Family, register_family

BODIES = ("vgg", "res")
SCOPES = ("width", "stage", "none")  # plus "g<k>"
WIDTH_CAP = 8  # `d` widths stop at 8x the start
MAX_BLOCKS = 64
CONV_FIX_WIDTH = 128  # the release's dead conv_fix is 128->128 whatever the widths
GEOMETRY = ("num_classes", "in_channels", "input_size")
GRAMMAR = (
    "<layout>-DACNN-<vgg|res><width>[d][-t<width|stage|none|g<k>>][-u<n>][-rot][-relubn][-b]"
    "[-reg[<g>]][-release]"
)
OPTIONS = (
    "-t<scope> (scope: width, stage, none, g<k>), -u<n>, -rot, -relubn, -b, -reg, -reg<g>, "
    "-release"
)


def _check_int(field: str, value: Any, lo: int, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi and value > hi):
        rng = f"an integer >= {lo}" if hi is None else f"an integer in {lo}..{hi}"
        raise ValueError(f"{field}: expected {rng}, got {value!r}")


@dataclass(frozen=True)
class DacnnConfig:
    """Everything that determines a DACNN (see the module docstring). Validated on construction.

    Attributes:
        layout: convs (vgg) or residual blocks (res) per stage.
        body: "vgg" or "res".
        width: stage-1 channels.
        doubling: widths double per stage, capped at WIDTH_CAP x `width`.
        scope: "width", "stage", "none" or "g<k>": which F->F positions share a kernel.
        untied_stages: the first n stages get a kernel per position whatever the scope.
        regulator: regulator groups, 0 for none.
        rot, relubn, bias, release: the -rot, -relubn, -b and -release options.
        num_classes, in_channels, input_size: dataset geometry (input is square).
    """

    layout: tuple[int, ...] = (2, 2, 2, 2)
    body: str = "res"
    width: int = 128
    doubling: bool = False
    scope: str = "width"
    untied_stages: int = 0
    regulator: int = 0
    rot: bool = False
    relubn: bool = False
    bias: bool = False
    release: bool = False
    num_classes: int = 10
    in_channels: int = 3
    input_size: int = 32

    def __post_init__(self) -> None:
        layout = self.layout
        if isinstance(layout, list):
            layout = tuple(layout)
        if not isinstance(layout, tuple) or not layout:
            raise ValueError(f"layout: expected one or more per-stage counts, got {layout!r}")
        for n in layout:
            _check_int("layout", n, 1, MAX_BLOCKS)
        object.__setattr__(self, "layout", layout)
        if self.body not in BODIES:
            raise ValueError(f"body: {self.body!r} is not one of {', '.join(BODIES)}")
        _check_int("width", self.width, 1)
        for key in ("doubling", "rot", "relubn", "bias", "release"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"{key}: expected True or False, got {getattr(self, key)!r}")
        if self.share_group is None and self.scope not in SCOPES:
            raise ValueError(
                f"scope: {self.scope!r} is not one of {', '.join(SCOPES)} or g<k> with k >= 1"
            )
        _check_int("untied_stages", self.untied_stages, 0)
        if self.untied_stages > len(layout):
            raise ValueError(
                f"untied_stages: -u{self.untied_stages} exceeds the {len(layout)} stage(s) of "
                f"layout {'.'.join(map(str, layout))}; use 0..{len(layout)}"
            )
        _check_int("regulator", self.regulator, 0)
        widths = self.stage_widths
        g = self.regulator
        if g and any(f % g for f in widths):
            common = math.gcd(*widths)
            raise ValueError(
                f"regulator: {g} groups do not divide the stage widths {list(widths)}; allowed "
                f"group counts: {[d for d in range(1, common + 1) if common % d == 0]}"
            )
        if self.rot and self.body != "res":
            raise ValueError("rot: the channel rotation exists only in res blocks; use body res")
        for key in GEOMETRY:
            _check_int(key, getattr(self, key), 1)

    # --- derived geometry ---------------------------------------------------------------------

    @property
    def share_group(self) -> int | None:
        """k of scope "g<k>", else None."""
        m = re.fullmatch(r"g([1-9]\d*)", self.scope) if isinstance(self.scope, str) else None
        return int(m[1]) if m else None

    @property
    def stage_widths(self) -> tuple[int, ...]:
        w, n = self.width, len(self.layout)
        return tuple(min(w << s, WIDTH_CAP * w) if self.doubling else w for s in range(n))

    @property
    def stage_sizes(self) -> tuple[int, ...]:
        """Side of each stage's maps, then of the head's input (ceil_mode pools)."""
        sizes = [self.input_size]
        for _ in self.layout:
            sizes.append(-(-sizes[-1] // 2))
        return tuple(sizes)

    def transition(self, s: int) -> bool:
        """Whether stage s opens with an unshared transition (its width changed)."""
        return s > 0 and self.stage_widths[s] != self.stage_widths[s - 1]

    def positions(self, s: int) -> int:
        """3x3 F->F layers (shareable) in stage s."""
        n = self.layout[s]
        if self.body == "res":
            return 2 * n - self.transition(s)
        return n - (s == 0 or self.transition(s))

    def bare_first(self, s: int) -> bool:
        """-release vgg `d`: a stage past the width cap opens with a conv without BN and ReLU."""
        vgg_d = self.release and self.body == "vgg" and self.doubling
        return vgg_d and s > 0 and not self.transition(s)

    @property
    def depth(self) -> int:
        """Weighted layers on the path: 3x3 convs + the FC (1x1 shortcuts/regulators aside)."""
        total = sum(self.layout)
        return total + 1 if self.body == "vgg" else 2 * total + 2

    def kernel_plan(self) -> tuple[tuple[tuple[int, ...], ...], tuple[int, ...]]:
        """(kernel index of each F->F position, stage by stage; each kernel's width), kernels
        numbered in order of first use."""
        keys: dict[tuple, int] = {}
        plan = []
        k = self.share_group
        for s, f in enumerate(self.stage_widths):
            ids = []
            for i in range(self.positions(s)):
                if s < self.untied_stages or self.scope == "none":
                    key: tuple = ("own", s, i)
                elif self.scope == "width":
                    key = ("width", f)
                elif self.scope == "stage":
                    key = ("stage", s)
                else:
                    key = ("group", s, i // k)
                ids.append(keys.setdefault(key, len(keys)))
            plan.append(tuple(ids))
        widths = [0] * len(keys)
        for s, ids in enumerate(plan):
            for i in ids:
                widths[i] = self.stage_widths[s]
        return tuple(plan), tuple(widths)

    # --- names and plain values ---------------------------------------------------------------

    @property
    def name(self) -> str:
        parts = [f"{'.'.join(map(str, self.layout))}-DACNN-{self.body}{self.width}"]
        parts[0] += "d" if self.doubling else ""
        if self.scope != "width":
            parts.append(f"t{self.scope}")
        if self.untied_stages:
            parts.append(f"u{self.untied_stages}")
        parts += [
            o for o, on in (("rot", self.rot), ("relubn", self.relubn), ("b", self.bias)) if on
        ]
        if self.regulator:
            parts.append("reg" if self.regulator == 1 else f"reg{self.regulator}")
        parts += ["release"] if self.release else []
        return "-".join(parts)

    def replace(self, **changes: Any) -> DacnnConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["layout"] = list(self.layout)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DacnnConfig:
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ValueError(f"unknown DacnnConfig field(s) {unknown}; allowed: {fields}")
        return cls(**d)


def parse_name(name: str, **geometry: Any) -> DacnnConfig:
    """Decode a DACNN name (grammar in the module docstring); `geometry` sets num_classes,
    in_channels and input_size.

    >>> parse_name("2.2.2.2-DACNN-res64d-rot-b").stage_widths
    (64, 128, 256, 512)
    """
    if not isinstance(name, str):
        raise ValueError(f"architecture name must be a string, got {name!r}")
    bad = sorted(set(geometry) - set(GEOMETRY))
    if bad:
        raise ValueError(f"{bad}: a DACNN name spells every model field; pass only {GEOMETRY}")
    tokens = name.strip().lower().split("-")
    if len(tokens) < 3 or tokens[1] != "dacnn":
        raise ValueError(
            f"cannot parse architecture name {name!r}; expected '{GRAMMAR}', "
            "e.g. '2.2.2.2-DACNN-res128' or '2.2.3.3.3-DACNN-vgg64d-u2-b'"
        )
    if not re.fullmatch(r"\d+(\.\d+)*", tokens[0]):
        raise ValueError(
            f"layout: {tokens[0]!r} in {name!r} is not dot-separated per-stage counts "
            "such as 2.2.2.2"
        )
    body = re.match(r"[a-z]*", tokens[2])[0]
    if body not in BODIES:
        raise ValueError(f"body: {body!r} in {name!r} is not one of {', '.join(BODIES)}")
    m = re.fullmatch(r"(\d+)(d?)", tokens[2][len(body) :])
    if not m:
        raise ValueError(
            f"width: {tokens[2][len(body) :]!r} in {name!r} is not a width; write e.g. "
            f"{body}128 (constant) or {body}64d (doubling per stage, capped at 8x)"
        )
    kw: dict[str, Any] = {
        "layout": tuple(int(n) for n in tokens[0].split(".")),
        "body": body,
        "width": int(m[1]),
        "doubling": m[2] == "d",
    }
    flags = {"rot": "rot", "relubn": "relubn", "b": "bias", "release": "release"}
    for opt in tokens[3:]:
        if opt in flags:
            field, value = flags[opt], True
        elif opt.startswith("t"):
            field, value = "scope", opt[1:]
            if value not in SCOPES and not re.fullmatch(r"g[1-9]\d*", value):
                raise ValueError(
                    f"scope: -{opt} in {name!r}: {value!r} is not one of {', '.join(SCOPES)} "
                    "or g<k> with k >= 1"
                )
        elif re.fullmatch(r"u\d+", opt):
            field, value = "untied_stages", int(opt[1:])
        elif re.fullmatch(r"reg([1-9]\d*)?", opt):
            field, value = "regulator", int(opt[3:] or 1)
        else:
            raise ValueError(
                f"cannot parse option -{opt} in architecture name {name!r}; allowed options: "
                f"{OPTIONS}"
            )
        if field in kw:
            raise ValueError(f"option for {field!r} given twice in architecture name {name!r}")
        kw[field] = value
    return DacnnConfig(**kw, **geometry)


def details(cfg: DacnnConfig) -> list[str]:
    """A few lines for `launch.py describe`: depth, widths, which layers share which kernel."""
    plan, kernels = cfg.kernel_plan()
    g = cfg.regulator
    unit = "convs" if cfg.body == "vgg" else "blocks"
    lines = [
        f"depth        {cfg.depth} layers ({cfg.depth - 1} 3x3 convs + FC), {unit} per stage "
        f"{list(cfg.layout)}",
        f"widths       {list(cfg.stage_widths)} at {list(cfg.stage_sizes[:-1])} px, "
        f"then {cfg.stage_sizes[-1]} px into the average pool",
        f"sharing      scope {cfg.scope}"
        + (f", stages 1-{cfg.untied_stages} untied" if cfg.untied_stages else "")
        + f": {len(kernels)} 3x3 F->F kernel(s), {sum(map(len, plan))} uses (a BN each)",
    ]
    uses: dict[int, list[str]] = {}
    for s, ids in enumerate(plan):
        for i in sorted(set(ids)):
            uses.setdefault(i, []).append(f"stage {s + 1} x{ids.count(i)}")
    shared = [i for i in uses if sum(ids.count(i) for ids in plan) > 1]
    for i in shared[:8]:
        lines.append(f"  kernel {i:<4} {kernels[i]}->{kernels[i]}: {', '.join(uses[i])}")
    if len(shared) > 8:
        lines.append(f"  ... {len(shared) - 8} more shared kernels")
    stems = [s + 1 for s in range(len(cfg.layout)) if cfg.transition(s)]
    once = len(kernels) - len(shared)
    lines.append(
        "  unshared   the stem"
        + (f", the transitions opening stages {stems}" if stems else "")
        + (f"; {once} kernel(s) used once" if once else "")
    )
    lines.append(
        f"options      regulator {'none' if not cfg.regulator else f'{cfg.regulator} group(s)'}; "
        f"rotation {'on' if cfg.rot else 'off'}; order "
        f"{'conv-ReLU-BN' if cfg.relubn else 'conv-BN-ReLU'}; bias {'on' if cfg.bias else 'off'}"
    )
    if cfg.release:
        dead = [
            ("an unused BN per block", cfg.body == "res" and not cfg.doubling),
            ("an unused regulator per block", cfg.body == "res" and cfg.doubling and not g),
            ("conv_fix and a transition-block bn1", cfg.body == "res" and cfg.doubling),
        ]
        bare = [s + 1 for s in range(len(cfg.layout)) if cfg.bare_first(s)]
        dead.append((f"a bare first conv (no BN/ReLU) in stages {bare}", bool(bare)))
        lines.append(f"release      {'; '.join(d for d, on in dead if on) or 'no effect'}")
    return lines


def _build(cfg: DacnnConfig):
    from lrunet.families._dacnn_net import DacnnNet

    return DacnnNet(cfg)


def dead_params(cfg: DacnnConfig) -> set[str]:
    """Names (as in `named_parameters()`) of the -release parameters that never get a gradient."""
    from lrunet.families._dacnn_net import dead_params as names

    return names(cfg)


PRESETS = (
    "2.2.2.2-DACNN-res128",  # DACNN18 (resnet_Fix_BN [2,2,2,2])
    "3.4.6.3-DACNN-res128",  # DACNN34 (resnet_Fix_BN as released, effective params)
    "3.4.6.3-DACNN-res128-release",  # ... with its dead bn2s
    "2.2.2.2-DACNN-res64d-rot-b",  # DACNN18-mix
    "3.4.6.3-DACNN-res64d-rot-b",  # DACNN34-mix (resnet_mix, effective params)
    "3.4.6.3-DACNN-res64d-rot-b-release",  # resnet_mix as released, dead modules included
    "2.2.2.2-DACNN-res64d-rot-b-reg",  # DACNN18-mix-reg (regulators applied)
    "3.4.6.3-DACNN-res64d-rot-b-reg",  # DACNN34-mix-reg
    "2.2.3.3.3-DACNN-vgg128-relubn-b",  # DACNN14 (vgg_Fix_BN)
    "2.2.3.3.3-DACNN-vgg64d-u2-b",  # DACNN14-mix, stage-5 BN fixed
    "2.2.3.3.3-DACNN-vgg64d-u2-b-release",  # Mix_Net('VGG16_fix')
    "2.2.2.2-DACNN-res64d-tnone",  # untied control
    "1.1.1-DACNN-vgg16",  # a tiny one
)

# The counts and the knobs read the config above, so they are imported once it is defined.
from lrunet.families._dacnn_counts import count  # noqa: E402
from lrunet.families._dacnn_knobs import (  # noqa: E402
    BLOCK_KEYS,
    KNOBS,
    STAGES_KEY,
    from_knobs,
    to_knobs,
)

FAMILY = register_family(
    Family(
        name="dacnn",
        tag="DACNN",
        config=DacnnConfig,
        grammar=GRAMMAR,
        summary="Deep Anchored CNN: one 3x3 kernel reused at every layer of equal width (or "
        "per stage / group), a new BN per use; VGG or ResNet bodies, max-pool downsampling",
        parse=parse_name,
        build=_build,
        count=count,
        knobs=KNOBS,
        from_knobs=from_knobs,
        to_knobs=to_knobs,
        monotone=(STAGES_KEY, *BLOCK_KEYS, "width", "untied_stages"),
        presets=PRESETS,
        dead_params=dead_params,
        details=details,
    )
)
