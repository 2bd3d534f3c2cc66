"""`python launch.py describe ARCH`: the counts of an architecture, the paper's way."""

from __future__ import annotations

import argparse
import json

from lrunet.config import parse_name
from lrunet.counting import count
from lrunet.reference import REFERENCE_GEOMETRY


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "arch", help="architecture name, e.g. 14-LruNet-1x or 2.4.8.14-LruNet-1x-g4"
    )
    parser.add_argument(
        "--dataset",
        default="cifar10",
        choices=sorted(REFERENCE_GEOMETRY),
        help="geometry to count at (fashionmnist counts at 28x28, as the paper)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    cfg = parse_name(args.arch, **REFERENCE_GEOMETRY[args.dataset])
    c = count(cfg)
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
    g = REFERENCE_GEOMETRY[args.dataset]
    print(
        f"{cfg.name}  ({args.dataset}: {g['in_channels']}x{g['input_size']}x{g['input_size']}, "
        f"{g['num_classes']} classes)"
    )
    print(f"  depth        {cfg.depth} conv layers, reuse per stage {list(cfg.reuse)}")
    print(
        f"  widths       stem {cfg.stem_width}, stages {list(cfg.stage_widths)}, "
        f"head {cfg.head_width}"
    )
    print(f"  params       {c.params:,}")
    print(f"  conv params  {c.conv_params:,}")
    print(f"  MACs         {c.macs:,}")
    print(f"  MFLOPs       {c.mflops:.2f}  (paper convention)")
    return 0
