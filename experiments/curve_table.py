"""A recorded learning-curve table: every configuration of a finished full-budget grid search,
epoch by epoch, as `launch.py record` writes it and `launch.py --replay` (and benchmarks) read it.

Two files side by side (no Ray, no MLflow needed to read them)::

    TABLE.csv    one row per (configuration, epoch): config_id, arch (canonical name), family,
                 epoch, node (the Ray node that trained the trial), config (the flat trial config
                 as JSON, exactly as the search's searcher proposed it), then one column per
                 numeric metric the trial runs logged (val_acc, val_loss, ..., epoch_seconds)
    TABLE.json   provenance: the space file's text and name, dataset, subset, epochs, geometry,
                 the commit and command the search ran with, when it ran and was recorded, the
                 machine, the MLflow experiment and parent run

Use (the public API)::

    from experiments.curve_table import load_table
    t = load_table("benchmarks/tables/fmnist_lru_dacnn.csv")
    t.configs[0], t.arch(0), t.family(0), t.epochs       # flat config, name, family, 10
    t.curve(0)[-1]["val_acc"], t.curve(0)[-1]["epoch_seconds"]
    t.lookup(flat_config)                                 # -> config id; KeyError when absent
    t.space()                                             # the recorded SearchSpec

Configurations are matched by meaning, not spelling: `lookup` compares the canonical architecture
name and the recipe (`reuse: 2` and `reuse_1..4: 2` are the same configuration).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrunet import metrics as M
from lrunet.io import atomic_write_bytes
from trainables.replay import curve_key as config_key

FORMAT = 1
ID_COLUMNS = ("config_id", "arch", "family", "epoch", "node", "config")
# the trial runs' metrics in the order a reader expects them; any other numeric metric follows
METRIC_ORDER = (
    M.VAL_ACC,
    M.VAL_LOSS,
    M.TRAIN_LOSS,
    M.TRAIN_ACC,
    M.PARAMS,
    M.CONV_PARAMS,
    M.MACS,
    M.MFLOPS,
    M.EPOCH_SECONDS,
    M.IMAGES_PER_SEC,
    M.LR,
)


def sidecar_path(table: str | os.PathLike) -> Path:
    """The provenance file of a table: TABLE.json beside TABLE.csv."""
    return Path(table).with_suffix(".json")


def metric_columns(names: Sequence[str]) -> list[str]:
    known = [m for m in METRIC_ORDER if m in names]
    return known + sorted(set(names) - set(known))


@dataclass
class CurveTable:
    """A loaded table (see the module docstring). Config ids are 0..len(configs)-1."""

    path: Path
    configs: list[dict[str, Any]]
    archs: list[str]
    families: list[str]
    nodes: list[str]
    curves: list[list[dict[str, float]]]  # per config: per epoch, {metric: value, "epoch": e}
    provenance: dict[str, Any]
    metrics: list[str]
    _keys: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        geometry = self.geometry
        for cid, flat in enumerate(self.configs):
            key = config_key(flat, geometry)
            if key in self._keys:
                raise ValueError(
                    f"{self.path}: configs {self._keys[key]} and {cid} are the same "
                    f"configuration ({self.archs[cid]}); record the table again"
                )
            self._keys[key] = cid

    @property
    def epochs(self) -> int:
        """The epoch count every configuration was trained for (the table's full budget)."""
        return int(self.provenance["epochs"])

    @property
    def geometry(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.provenance["geometry"].items()}

    @property
    def dataset(self) -> str:
        return str(self.provenance["dataset"])

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Every (config, epoch) row: config_id, arch, family, node and the epoch's metrics."""
        return [
            {
                "config_id": cid,
                "arch": self.archs[cid],
                "family": self.families[cid],
                "node": self.nodes[cid],
                **r,
            }
            for cid, curve in enumerate(self.curves)
            for r in curve
        ]

    def curve(self, config_id: int) -> list[dict[str, float]]:
        """Epoch 1..epochs of one configuration: {metric: value} with `epoch` and
        `epoch_seconds`."""
        return self.curves[config_id]

    def arch(self, config_id: int) -> str:
        return self.archs[config_id]

    def family(self, config_id: int) -> str:
        return self.families[config_id]

    def lookup(self, flat: Mapping[str, Any]) -> int:
        """The id of a flat trial config; KeyError when the table does not hold it (ValueError
        when no family can build it)."""
        key = config_key(flat, self.geometry)
        if key not in self._keys:
            raise KeyError(f"{json.loads(key)['arch']} ({key}) is not in {self.path}")
        return self._keys[key]

    def rank_correlation(self, metric: str = M.VAL_ACC) -> list[float]:
        """Spearman correlation, over configurations, of `metric` at each epoch with its value at
        the last epoch (index 0 = epoch 1): how well an early rung ranks (ties share ranks)."""
        final = _ranks([c[-1][metric] for c in self.curves])
        return [
            _pearson(_ranks([c[e][metric] for c in self.curves]), final)
            for e in range(self.epochs)
        ]

    def space_file(self) -> Path:
        """The recorded space file, written once (by content) under the temp folder, named as
        it was so the search that reads it is named the same."""
        text = self.provenance["space_yaml"]
        digest = hashlib.sha1(text.encode()).hexdigest()[:12]
        path = (
            Path(tempfile.gettempdir()) / "lrunet-tables" / digest / self.provenance["space_file"]
        )
        if not path.is_file() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, text.encode())
        return path

    def space(self):
        """The recorded `SearchSpec` (`search_spaces.loader.load_space`, with the search's
        command-line overrides)."""
        from search_spaces.loader import load_space

        return load_space(str(self.space_file()), self.provenance.get("overrides") or None)


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _pearson(x: Sequence[float], y: Sequence[float]) -> float:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx and syy else math.nan


def _number(text: str) -> float | None:
    if text == "":
        return None
    v = float(text)
    return v if math.isfinite(v) else None


def load_table(path: str | os.PathLike) -> CurveTable:
    """Read TABLE.csv and its TABLE.json (module docstring). FileNotFoundError / ValueError
    with the fix when either is missing or malformed."""
    path = Path(path).expanduser()
    side = sidecar_path(path)
    for p in (path, side):
        if not p.is_file():
            raise FileNotFoundError(
                f"no learning-curve table {p}; write one with 'python launch.py record "
                "--experiment NAME --out TABLE.csv'"
            )
    try:
        provenance = json.loads(side.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{side}: not JSON ({e}); record the table again") from None
    missing = [
        k for k in ("format", "epochs", "geometry", "dataset", "space_yaml") if k not in provenance
    ]
    if missing or provenance.get("format") != FORMAT:
        raise ValueError(
            f"{side}: not a format-{FORMAT} table provenance (missing {missing or 'format'}); "
            "record the table again"
        )
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        absent = [c for c in ID_COLUMNS if c not in header]
        if absent:
            raise ValueError(f"{path}: missing column(s) {absent}; record the table again")
        metrics = [c for c in header if c not in ID_COLUMNS]
        configs: list[dict[str, Any]] = []
        archs, families, nodes = [], [], []
        curves: list[list[dict[str, float]]] = []
        for line, row in enumerate(reader, start=2):
            cid = int(row["config_id"])
            if cid == len(configs):
                try:
                    configs.append(json.loads(row["config"]))
                except json.JSONDecodeError:
                    raise ValueError(
                        f"{path}:{line}: the config column is not JSON; record the table again"
                    ) from None
                archs.append(row["arch"])
                families.append(row["family"])
                nodes.append(row["node"])
                curves.append([])
            elif cid != len(configs) - 1:
                raise ValueError(f"{path}:{line}: config_id {cid} out of order; record again")
            epoch = int(row["epoch"])
            if epoch != len(curves[cid]) + 1:
                raise ValueError(f"{path}:{line}: epoch {epoch} of config {cid} out of order")
            values = {m: v for m in metrics if (v := _number(row[m])) is not None}
            curves[cid].append({**values, M.EPOCH: float(epoch)})
    epochs = int(provenance["epochs"])
    short = [cid for cid, c in enumerate(curves) if len(c) != epochs]
    if short:
        raise ValueError(
            f"{path}: config {short[0]} ({archs[short[0]]}) has {len(curves[short[0]])} epochs, "
            f"not the table's {epochs}; record it from a finished full-budget search"
        )
    return CurveTable(path, configs, archs, families, nodes, curves, provenance, metrics)


def write_table(
    path: str | os.PathLike,
    entries: Sequence[Mapping[str, Any]],
    provenance: Mapping[str, Any],
) -> CurveTable:
    """Write TABLE.csv + TABLE.json atomically and read them back.

    `entries`: one per configuration, {"config", "arch", "family", "node", "curve"} where
    `curve` is a list of per-epoch {metric: value} (epoch 1 first). `provenance` must hold
    `epochs`, `geometry`, `dataset`, `space_yaml` and `space_file`."""
    path = Path(path)
    names = sorted({k for e in entries for r in e["curve"] for k in r if k != M.EPOCH})
    columns = metric_columns(names)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*ID_COLUMNS, *columns])
    for cid, e in enumerate(entries):
        config = json.dumps(dict(e["config"]), sort_keys=True)
        for epoch, r in enumerate(e["curve"], start=1):
            w.writerow(
                [cid, e["arch"], e["family"], epoch, e.get("node", ""), config]
                + [repr(float(r[m])) if m in r else "" for m in columns]
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    side = {"format": FORMAT, **provenance, "metrics": columns, "configs": len(entries)}
    atomic_write_bytes(
        sidecar_path(path), (json.dumps(side, indent=2, default=str) + "\n").encode()
    )
    atomic_write_bytes(path, buf.getvalue().encode())
    return load_table(path)
