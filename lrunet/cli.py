"""`python launch.py describe ARCH`: the counts of an architecture of any family, the paper's way.

python launch.py describe 14-LruNet-1x                  counts at CIFAR-10 geometry
python launch.py describe 2.2.2.2-DACNN-res128 --dataset svhn --json
python launch.py describe --list                        families, grammars and presets
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
    return 0
