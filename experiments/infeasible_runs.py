"""Infeasible records: a configuration that breaks a budget is recorded as one finished MLflow
run under the search's parent (never trained), whether the driver rejected the proposal (an
analytic budget: `InfeasibleRecords.log_infeasible`) or the trial rejected itself (a measured one:
the tracker tags its own run with `infeasible_tags`). Mixed into the trial tracker
(`experiments.trial_tracker`), whose client, writer and settings it uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from experiments.tracking import (
    INFEASIBLE,
    PARENT_TAG,
    STATUS_TAG,
    _fmt_param,
    _params,
    config_hash,
    trial_params,
    trial_run_tags,
)


def infeasible_tags(key: str, reason: str) -> dict[str, str]:
    """The tags of an infeasible record, whether the driver rejected the proposal (an analytic
    budget) or the trial rejected itself (a measured one): status, reason and config hash."""
    return {"config_hash": key, STATUS_TAG: INFEASIBLE, "infeasible_reason": reason[:4000]}


class InfeasibleRecords:
    """`log_infeasible` for a tracker with `client`, `writer`, `experiment_id`, `parent_run_id`,
    `geometry`, `dataset` and an `infeasible_keys` cache (None: not read yet)."""

    def log_infeasible(self, flat: Mapping[str, Any], reason: str) -> None:
        """A config the searcher proposed that breaks a budget: recorded once, never trained."""
        flat = dict(flat)
        self.writer.submit("record infeasible", lambda: self._log_infeasible(flat, reason))

    def _log_infeasible(self, flat: dict[str, Any], reason: str) -> None:
        key = config_hash(flat)
        if self.infeasible_keys is None:
            runs = self.client.search_runs(
                [self.experiment_id],
                f"tags.`{PARENT_TAG}` = '{self.parent_run_id}' and tags.`{STATUS_TAG}` = "
                f"'{INFEASIBLE}'",
                max_results=50_000,
            )
            self.infeasible_keys = {r.data.tags.get("config_hash", "") for r in runs}
        if key in self.infeasible_keys:  # proposed again (e.g. replayed after --resume)
            return
        try:
            arch, params = trial_params(flat, self.geometry, self.dataset)
        except ValueError:  # not even a valid architecture
            arch, params = "invalid", {k: _fmt_param(v) for k, v in flat.items()}
        run = self.client.create_run(
            self.experiment_id,
            run_name=arch,
            tags=trial_run_tags(
                self.parent_run_id, arch, params, self.dataset, **infeasible_tags(key, reason)
            ),
        )
        self.infeasible_keys.add(key)
        self.client.log_batch(run.info.run_id, params=_params(params))
        self.client.set_terminated(run.info.run_id, "FINISHED")
