"""`python launch.py describe ARCH`: the counts of an architecture of any family, the paper's way.

python launch.py describe 14-LruNet-1x                  counts at CIFAR-10 geometry
python launch.py describe 2.2.2.2-DACNN-res128 --dataset svhn --json
python launch.py describe --list                        families, grammars and presets
python launch.py describe 14-LruNet-1x --latency --target ort-cpu --batch-size 32 --json
                                                        + measured latency (lrunet.latency)
"""

from __future__ import annotations

import argparse
import json

from lrunet.datasets import DATASETS
from lrunet.registry import family_of, get_family, list_families, parse_name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "arch",
        nargs="?",
        help="architecture name, e.g. 14-LruNet-1x, 2.2.2.2-DACNN-res128 or MobileNetV2-0.25x",
    )
    parser.add_argument(
        "--dataset",
        default="cifar10",
        choices=sorted(DATASETS),
        help="geometry to count at (fashionmnist counts at 28x28, as the paper)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--list", action="store_true", help="list the architecture families and their presets"
    )
    parser.add_argument(
        "--latency",
        action="store_true",
        help="also measure the median inference latency (random weights, eval mode)",
    )
    parser.add_argument(
        "--target",
        default="cpu1",
        help="latency target: cpu1 (one thread, default), cpu (--threads or torch's count), "
        "ort-cpu (ONNX Runtime on the exported graph), cuda",
    )
    # batch 1 by default: the deployment latency, and a measurement of seconds, not a minute
    parser.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="also time one batch of this many images (latency_batch_ms; default 1)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="intra-op threads of the cpu and ort-cpu targets"
    )
    parser.add_argument(
        "--clock",
        default="wall",
        help="what times the calls: wall (default) or cpu (the thread's CPU time: steady on a "
        "shared machine; one-thread targets only)",
    )


def family_table() -> list[dict]:
    """One entry per registered family: name, tag, grammar, summary, knobs, presets."""
    out = []
    for name in list_families():
        f = get_family(name)
        out.append(
            {
                "family": f.name,
                "grammar": f.grammar,
                "summary": f.summary,
                "knobs": {k: kn.domain() for k, kn in f.knobs.items()},
                "presets": list(f.presets),
            }
        )
    return out


def _list(as_json: bool) -> int:
    table = family_table()
    if as_json:
        print(json.dumps(table))
        return 0
    for entry in table:
        print(f"{entry['family']}: {entry['summary']}")
        print(f"  name     {entry['grammar']}")
        print(f"  knobs    {', '.join(entry['knobs'])}")
        print(f"  presets  {', '.join(entry['presets'])}")
        print()
    print("Counts of any name: python launch.py describe NAME [--dataset D] [--json]")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.list:
        return _list(args.json)
    if not args.arch:
        raise ValueError(
            "describe needs an architecture name (e.g. 14-LruNet-1x), or --list to see the "
            "families and their presets"
        )
    if not args.latency and (
        args.target != "cpu1" or args.batch_size != 1 or args.threads or args.clock != "wall"
    ):
        raise ValueError("--target, --batch-size, --threads and --clock need --latency")
    info = DATASETS[args.dataset]
    cfg = parse_name(args.arch, **info.geometry)
    family = family_of(cfg)
    c = family.count(cfg)
    out = {
        "name": cfg.name,
        "params": c.params,
        "conv_params": c.conv_params,
        "macs": c.macs,
        "mflops": round(c.mflops, 6),
    }
    if args.latency:
        out.update(_latency(cfg, args))
    if args.json:
        print(json.dumps(out))
        return 0
    g = info.geometry
    print(
        f"{cfg.name}  ({family.name}; {args.dataset}: {g['in_channels']}x{g['input_size']}x"
        f"{g['input_size']}, {g['num_classes']} classes)"
    )
    for line in family.details(cfg):
        print(f"  {line}")
    print(f"  params       {c.params:,}")
    print(f"  conv params  {c.conv_params:,}")
    print(f"  MACs         {c.macs:,}")
    print(f"  MFLOPs       {c.mflops:.2f}  (paper convention)")
    if args.latency:
        batch = (
            f", {out['latency_batch_ms']:.3g} ms (IQR {out['latency_batch_iqr_ms']:.2g}) per "
            f"batch of {args.batch_size}"
            if args.batch_size != 1
            else ""
        )
        print(
            f"  latency      {out['latency_ms']:.3g} ms (IQR {out['latency_iqr_ms']:.2g}) at "
            f"batch 1{batch}, on {args.target} ({args.clock} clock); measured in "
            f"{out['latency_seconds']:.1f} s"
        )
    return 0


def _latency(cfg, args: argparse.Namespace) -> dict:
    """The latency keys of `cfg` on `args.target`, checked before anything is built."""
    from lrunet import latency as L  # torch: only when asked for

    if args.target not in L.TARGETS:
        raise ValueError(
            f"--target {args.target!r} is not a latency target; choose one of "
            f"{', '.join(L.TARGETS)}"
        )
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    found = L.measure_config(
        cfg, args.target, args.batch_size, threads=args.threads, clock=args.clock
    )
    return {
        **{k: round(found[k], 6) for k in L.LATENCY_KEYS},
        "latency_target": args.target,
        "latency_batch_size": args.batch_size,
        "latency_clock": args.clock,
    }
