"""Parameter and FLOP counts of an LruNet, analytic from its config (microseconds, no torch model).

`count` is LruNet's; every family has its own (`lrunet.registry.count` picks it), all returning
`Counts` under these conventions (LRUNET_SPEC.md §2), which reproduce every figure in the
paper's Tables 2, 5 and 6:

* params: trainable parameters, a shared (reused) tensor counted once; BN running stats excluded;
* conv_params: Conv2d weights and biases (the reference's "convolution parameters", Table 7);
* macs: multiply-accumulates of every conv call, a reused conv counted once per call;
* mflops: the paper's convention, (macs + 1 per conv output element + 2 per BN output element
  + 9 per 3x3 max-pool output element + the average pool's input elements) / 1e6.

ReLU, residual add, concatenation, shuffle and dropout count nothing. `count_by_hooks` measures the
same quantities on a real module with forward hooks; the tests check that the two agree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from lrunet.config import NUM_STAGES, LruNetConfig


@dataclass(frozen=True)
class Counts:
    params: int
    conv_params: int
    macs: int
    flops: int  # the paper's convention, in ops

    @property
    def mflops(self) -> float:
        return self.flops / 1e6

    def to_dict(self) -> dict[str, float]:
        d = asdict(self)
        d["mflops"] = self.mflops
        return d


def _down(size: int) -> int:
    """Output size of a 3x3, stride-2, padding-1 conv or max-pool."""
    return (size - 1) // 2 + 1


def stage_sizes(cfg: LruNetConfig) -> tuple[list[int], int]:
    """Spatial size of each stage and of the head input, for `cfg.input_size`."""
    s1 = _down(cfg.input_size)
    s2 = _down(s1)
    s3 = _down(s2)
    return [s1, s2, s3, s3], _down(s3)


def count(cfg: LruNetConfig) -> Counts:
    """Analytic counts for `cfg` at its own input size."""
    widths = cfg.stage_widths
    sizes, head = stage_sizes(cfg)
    g, stem, hid, k = cfg.groups, cfg.stem_width, cfg.head_width, cfg.num_classes

    conv_params = stem * cfg.in_channels * 9
    bn_params = 2 * stem
    s1 = sizes[0] ** 2
    macs = stem * s1 * cfg.in_channels * 9
    extra = 3 * stem * s1  # conv output +1, BN output +2

    for s in range(NUM_STAGES):
        f, n, hw = widths[s], cfg.reuse[s], sizes[s] ** 2
        pair_params = 2 * f * 9 + f * (2 * f // g)  # dw (F->2F, groups F) + pw (2F->F, groups g)
        conv_params += pair_params * cfg.stage_pairs[s]  # 1 tied, N untied, ceil(N / k) with -k
        bn_params += n * 6 * f  # BN over 2F and BN over F per pass
        macs += n * hw * pair_params
        extra += n * 9 * f * hw  # 3 * (2F + F) output elements per pass
        if cfg.regulator:  # one unshared 1x1 F->F (g groups, no bias, no BN) per pass
            reg_params = f * (f // cfg.regulator)
            conv_params += n * reg_params
            macs += n * hw * reg_params
            extra += n * f * hw  # conv output +1

    # max-pools after stage 1, 2 and 4
    extra += 9 * (widths[0] * sizes[1] ** 2 + widths[1] * sizes[2] ** 2 + widths[3] * head**2)

    hw = head**2
    conv_params += hid * (widths[3] // g) + k * hid + k
    bn_params += 2 * hid
    macs += hid * hw * (widths[3] // g) + k * hw * hid
    extra += (
        3 * hid * hw + k * hw + k * hw
    )  # head conv+BN, classifier conv outputs, avg-pool input

    return Counts(conv_params + bn_params, conv_params, macs, macs + extra)


def count_by_hooks(model, input_size: int | None = None) -> Counts:
    """Measure `Counts` on a real network of any family (built of these layer types).

    Runs one eval-mode forward pass at batch 1 with hooks on Conv2d, Linear, BatchNorm2d,
    MaxPool2d and the average pools; a module reused at several places is counted at every call.
    A Linear head counts its MACs and nothing more; a k x k max-pool k*k per output element.
    """
    import torch
    from torch import nn

    cfg = getattr(model, "cfg", None)
    size = input_size or (cfg.input_size if cfg else 32)
    in_ch = cfg.in_channels if cfg else 3
    tally = {"macs": 0, "extra": 0}

    def hook(m, inputs, out):
        if isinstance(m, nn.Linear):  # a head: its MACs, no extra ops (DACNN_SPEC.md §2)
            tally["macs"] += out.numel() * m.in_features
        elif isinstance(m, nn.Conv2d):
            per_out = (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
            tally["macs"] += out.numel() * per_out
            tally["extra"] += out.numel()
        elif isinstance(m, nn.BatchNorm2d):
            tally["extra"] += 2 * out.numel()
        elif isinstance(m, nn.MaxPool2d):
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            tally["extra"] += k * k * out.numel()
        elif isinstance(m, (nn.AdaptiveAvgPool2d, nn.AvgPool2d)):
            tally["extra"] += inputs[0].numel()

    kinds = (
        nn.Conv2d,
        nn.Linear,
        nn.BatchNorm2d,
        nn.MaxPool2d,
        nn.AdaptiveAvgPool2d,
        nn.AvgPool2d,
    )
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    # the CPU fast path (lrunet.fast) calls no submodules: measure the plain pass instead
    plain = [m for m in model.modules() if hasattr(m, "forward_plain")]
    for m in plain:
        m.forward = m.forward_plain
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_ch, size, size))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
        for m in plain:
            del m.forward
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    conv_params = sum(
        p.numel()
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
        for p in m.parameters(recurse=False)
    )
    return Counts(params, conv_params, tally["macs"], tally["macs"] + tally["extra"])
