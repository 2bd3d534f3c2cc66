"""The published tables `launch.py reproduce` checks: read from `paper_tables.yaml` (the one file
holding the LruNet paper's Tables 2-7 and the DACNN release figure's points, each value with its
source), and their counts compared with the platform's analytic ones before anything trains.

A table's rows are trained by the grids of its parts (shipped search spaces); `grid_counts`
enumerates those grids and insists that they hold exactly the table's architectures, so a
reproduce run trains every row once and nothing else. Nothing here imports Ray or MLflow.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from lrunet.counting import Counts

DATA_FILE = Path(__file__).resolve().parent / "paper_tables.yaml"
COUNT_COLUMNS = ("params", "conv_params", "mflops")
ACC = "acc"
SELECTIONS = {
    "test": "the best test accuracy over all epochs (the reference saves the checkpoint with the "
    "best test accuracy: LRUNET_SPEC.md §4)",
    "unknown": "unknown (no recipe or checkpoint published: DACNN_SPEC.md §4)",
}
_UNITS = {"k": 1e3, "M": 1e6, "": 1.0}
_NUMBER = re.compile(r"^([0-9]+(?:\.([0-9]+))?)([kM]?)$")


@dataclass(frozen=True)
class PaperValue:
    """A number as the publication prints it: `text` ("131k", "3.47", "0.157M"), its `value` in
    plain units and `step`, the precision of the print (1000 for "131k", 0.01 for "3.47")."""

    text: str
    value: float
    step: float

    @classmethod
    def parse(cls, text: Any, where: str) -> PaperValue:
        m = _NUMBER.match(str(text).strip())
        if not m:
            raise ValueError(
                f"{DATA_FILE.name}: {where}: {text!r} is not a printed number such as 131k, "
                f"0.157M or 3.47 (quote decimals to keep their trailing zeros)"
            )
        digits, frac, unit = m.groups()
        scale = _UNITS[unit]
        return cls(str(text), float(digits) * scale, 10.0 ** -len(frac or "") * scale)

    def rounded(self, measured: float) -> float:
        """`measured` at the print's precision, halves rounded up (as the tables are)."""
        return math.floor(measured / self.step + 0.5) * self.step

    def matches(self, measured: float) -> bool:
        """True when `measured`, printed like this value, prints the same."""
        return math.floor(measured / self.step + 0.5) == round(self.value / self.step)

    def format(self, v: float) -> str:
        """`v` printed like this value ("131k", "3.47", "0.164M")."""
        unit = self.text.strip()[-1] if self.text.strip()[-1] in "kM" else ""
        decimals = max(0, round(-math.log10(self.step / _UNITS[unit])))
        return f"{v / _UNITS[unit]:.{decimals}f}{unit}"


@dataclass(frozen=True)
class Row:
    arch: str  # the canonical architecture name the trial of this row has
    label: str  # the publication's name of the row
    source: str  # table and row in the publication
    dataset: str
    paper: dict[str, PaperValue]
    exact: dict[str, float]  # the reference code's measured counts (LRUNET_SPEC / DACNN_SPEC)
    reference: str | None = None  # the authors' released checkpoint of this row, if any
    paper_differs: dict[str, str] = field(default_factory=dict)  # column -> why (a misprint)


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    selection: str  # key of SELECTIONS: how the publication picked its reported epoch
    parts: tuple[str, ...]  # search spaces whose grids train the rows
    columns: tuple[str, ...]  # of COUNT_COLUMNS and ACC, as the publication prints them
    rows: tuple[Row, ...]
    figure: bool = False  # values read off a plot: counts compared with `exact` only
    datasets: tuple[str, ...] = field(default=())

    def row(self, dataset: str, arch: str) -> Row | None:
        return next((r for r in self.rows if r.dataset == dataset and r.arch == arch), None)


def _row(raw: dict[str, Any], table: str, dataset: str | None) -> Row:
    where = f"{table}, row {raw.get('arch')!r}"
    ds = raw.get("dataset", dataset)
    if not ds:
        raise ValueError(f"{DATA_FILE.name}: {where}: no dataset (give the table's or the row's)")
    paper = {k: PaperValue.parse(v, f"{where}, paper.{k}") for k, v in raw["paper"].items()}
    exact = {k: float(v) for k, v in (raw.get("exact") or {}).items()}
    return Row(
        raw["arch"],
        raw.get("label", raw["arch"]),
        raw["source"],
        ds,
        paper,
        exact,
        raw.get("reference"),
        dict(raw.get("paper_differs") or {}),
    )


@cache
def load_tables(path: str | None = None) -> dict[str, Table]:
    """Every table of the data file, by name (table2 ... table7, dacnn)."""
    raw = yaml.safe_load(Path(path or DATA_FILE).read_text())["tables"]
    out = {}
    for name, t in raw.items():
        rows = tuple(_row(r, name, t.get("dataset")) for r in t["rows"])
        if t["selection"] not in SELECTIONS:
            raise ValueError(f"{DATA_FILE.name}: {name}: selection must be one of {SELECTIONS}")
        out[name] = Table(
            name,
            t["title"],
            t["selection"],
            tuple(t["parts"]),
            tuple(t["columns"]),
            rows,
            bool(t.get("figure", False)),
            tuple(dict.fromkeys(r.dataset for r in rows)),
        )
    return out


def get_table(name: str) -> Table:
    tables = load_tables()
    if name not in tables:
        raise ValueError(f"no table {name!r}; choose one of {', '.join(tables)}")
    return tables[name]


def grid_counts(table: Table) -> dict[tuple[str, str], tuple[str, Counts]]:
    """(dataset, arch) -> (part, analytic counts) for every point of the table's grids.

    Raises ValueError when a grid holds an architecture the table has not, or misses one it has:
    a reproduce run trains exactly the table's rows."""
    from lrunet.recipe import split_trial_config
    from lrunet.registry import count
    from search_spaces.loader import load_space

    out: dict[tuple[str, str], tuple[str, Counts]] = {}
    for part in table.parts:
        spec = load_space(part)
        for flat in spec.grid():
            cfg, _ = split_trial_config(flat, **spec.geometry)
            key = (spec.dataset, cfg.name)
            if table.row(*key) is None:
                raise ValueError(
                    f"{table.name}: space {part} trains {cfg.name} on {spec.dataset}, which is "
                    f"no row of the table; fix search_spaces/{part}.yaml or {DATA_FILE.name}"
                )
            out[key] = (part, count(cfg))
    missing = [f"{r.arch} ({r.dataset})" for r in table.rows if (r.dataset, r.arch) not in out]
    if missing:
        raise ValueError(
            f"{table.name}: no part trains {', '.join(missing)}; add them to a space in "
            f"{', '.join(table.parts)}"
        )
    return out


def measured_count(c: Counts, column: str) -> float:
    return float(getattr(c, column))


def count_check(table: Table, row: Row, c: Counts, col: str) -> bool | None:
    """Does the count `col` of `row` hold? Against the publication at its printed precision
    (tables, not figures, and not where the row records a misprint) and against the reference
    code's measured count exactly (MFLOPs to the 3 decimals the spec prints). None: nothing to
    compare with."""
    got = measured_count(c, col)
    checks = []
    if col in row.paper and not table.figure and col not in row.paper_differs:
        checks.append(row.paper[col].matches(got))
    if col in row.exact:
        want = row.exact[col]
        checks.append(round(got, 3) == round(want, 3) if col == "mflops" else got == want)
    return all(checks) if checks else None


def count_mismatches(table: Table) -> list[str]:
    """Every count that does not hold (`count_check`); empty when the table's counts are exact.
    A recorded misprint that is none (the count prints like the paper) is reported too."""
    counts = grid_counts(table)
    bad = []
    for r in table.rows:
        c = counts[(r.dataset, r.arch)][1]
        for col in COUNT_COLUMNS:
            if count_check(table, r, c, col) is False:
                bad.append(f"{r.label} ({r.dataset}) {col}: ours {measured_count(c, col):g}")
        for col in r.paper_differs:
            if r.paper[col].matches(measured_count(c, col)):
                bad.append(f"{r.label} ({r.dataset}) {col}: recorded as a misprint, yet matches")
    return bad
