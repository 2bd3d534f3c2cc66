"""DACNN's analytic counts (DACNN_SPEC.md §2, the release's counts; LRUNET_SPEC §2 and
`lrunet.counting` for the conventions): `count(cfg)` gives the parameters, conv+linear
parameters, MACs and FLOPs of a `DacnnConfig` at its own geometry, a shared kernel's tensors once
and every call of it counted, the -release dead modules in `params`. It equals `count_by_hooks`
on the built network (tests/test_dacnn.py). No torch here.

`lrunet.families.dacnn` imports `count` from here and registers it; import it from there. This
module reads that one's config, and dacnn.py imports it back once the config is defined, so
importing this module before dacnn.py is a circular-import error.
"""

from __future__ import annotations

from lrunet.counting import Counts
from lrunet.families.dacnn import CONV_FIX_WIDTH, DacnnConfig


class _Tally:
    def __init__(self) -> None:
        self.params = self.conv_params = self.macs = self.extra = 0

    def weights(self, cin: int, cout: int, k: int, bias: bool = False, groups: int = 1) -> None:
        n = cout * (cin // groups) * k * k + (cout if bias else 0)
        self.params += n
        self.conv_params += n

    def call(self, cin: int, cout: int, k: int, hw: int, groups: int = 1) -> None:
        self.macs += hw * cout * (cin // groups) * k * k
        self.extra += hw * cout  # +1 per conv output

    def conv(self, cin: int, cout: int, k: int, hw: int, bias: bool = False, groups: int = 1):
        self.weights(cin, cout, k, bias, groups)
        self.call(cin, cout, k, hw, groups)

    def bn(self, c: int, hw: int = 0, n: int = 1) -> None:  # hw 0: unused BNs
        self.params += 2 * c * n
        self.extra += 2 * c * hw * n


def count(cfg: DacnnConfig) -> Counts:
    """Analytic `Counts` of `cfg` at its own geometry (equal to `count_by_hooks` on the net)."""
    t = _Tally()
    widths, sizes, g = cfg.stage_widths, cfg.stage_sizes, cfg.regulator
    plan, kernels = cfg.kernel_plan()
    for f in kernels:
        t.weights(f, f, 3, cfg.bias)
    res = cfg.body == "res"
    if res:
        t.conv(cfg.in_channels, widths[0], 3, sizes[0] ** 2)
        t.bn(widths[0], sizes[0] ** 2)
        if cfg.release and cfg.doubling:
            t.weights(CONV_FIX_WIDTH, CONV_FIX_WIDTH, 3)
    for s, f in enumerate(widths):
        hw, cin = sizes[s] ** 2, cfg.in_channels if s == 0 else widths[s - 1]
        convs = 2 * cfg.layout[s] if res else cfg.layout[s]
        own = convs - cfg.positions(s)  # the vgg stem or a transition
        if own:
            t.weights(cin, f, 3, cfg.bias)
        t.call(cin if own else f, f, 3, hw)
        t.call(f, f, 3, hw * (convs - 1))
        t.bn(f, hw, n=convs - cfg.bare_first(s))
        if res and cfg.transition(s):  # projection shortcut
            t.conv(cin, f, 1, hw)
            t.bn(f, hw)
        for _ in range(cfg.layout[s] if res else cfg.positions(s)):
            if g:
                t.conv(f, f, 1, hw, groups=g)
        if res and cfg.release:  # dead, never run
            for _ in range(cfg.layout[s]):
                if not cfg.doubling:
                    t.bn(f)  # resnet_Fix_BN's bn2
                elif not g:
                    t.weights(f, f, 1)  # resnet_mix's regulator
            if cfg.doubling and cfg.transition(s):
                t.bn(f)  # resnet_mix's transition-block bn1
        t.extra += 4 * f * sizes[s + 1] ** 2  # 2x2 max-pool: 4 per output
    last = widths[-1]
    t.extra += last * sizes[-1] ** 2  # global average: its input elements
    t.params += last * cfg.num_classes + cfg.num_classes
    t.conv_params += last * cfg.num_classes + cfg.num_classes
    t.macs += last * cfg.num_classes
    return Counts(t.params, t.conv_params, t.macs, t.macs + t.extra)
