"""Metric names, in one place. YAML objectives, the trainable, the schedulers, MLflow and the
Pareto code all read them from here; what each objective is (direction, unit, budget) is declared
in `lrunet.objectives`."""

from __future__ import annotations

VAL_ACC = (
    "val_acc"  # validation accuracy in percent, on the seeded split carved from training data
)
VAL_LOSS = "val_loss"
TEST_ACC = "test_acc"  # only final evaluation (retrain/export) touches the test set
TEST_LOSS = "test_loss"
TRAIN_LOSS = "train_loss"
TRAIN_ACC = "train_acc"
PARAMS = "params"  # trainable parameters, shared weights once
CONV_PARAMS = "conv_params"
MACS = "macs"
MFLOPS = "mflops"  # the paper's convention (lrunet.counting)
EPOCH = "epoch"  # 1-based count of finished epochs; Ray's training_iteration equals it
EPOCH_SECONDS = "epoch_seconds"
IMAGES_PER_SEC = "images_per_sec"
LR = "lr"
# A result flag, not a metric: the epoch was trained before a crash and is reported again from
# its checkpoint (MLflow keeps the first values; schedulers and searchers catch up).
REPLAYED = "replayed"

# Measured before training on the trial's hardware (`lrunet.latency`): median milliseconds per
# forward pass at batch 1 and of one batch of the space's batch size, their interquartile ranges,
# and the seconds the measurement cost.
LATENCY_MS = "latency_ms"
LATENCY_IQR_MS = "latency_iqr_ms"
LATENCY_BATCH_MS = "latency_batch_ms"
LATENCY_BATCH_IQR_MS = "latency_batch_iqr_ms"
LATENCY_SECONDS = "latency_seconds"
# A result flag: the trial was rejected by a budget on a measured objective before training.
INFEASIBLE = "infeasible"
INFEASIBLE_REASON = "infeasible_reason"

# `launch.py reproduce`'s test-set scores after a search (experiments.reproduce_eval): the
# checkpoint picked by validation accuracy and the last one, each scored once on the test split.
TEST_ACC_BEST_VAL = "test_acc_best_val"
TEST_ACC_LAST = "test_acc_last"
BEST_VAL_EPOCH = "best_val_epoch"
BEST_VAL_ACC = "best_val_acc"
LAST_CHECKPOINT_EPOCH = "last_checkpoint_epoch"

# The objectives a search may name, their directions, units and budgets: `lrunet.objectives`.
