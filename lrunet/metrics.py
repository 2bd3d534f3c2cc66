"""Metric names, in one place. YAML objectives, the trainable, the schedulers, MLflow and the
Pareto code all read them from here."""

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

# Metrics a search space may name as objectives, with their natural direction.
OBJECTIVES: dict[str, str] = {
    VAL_ACC: "max",
    VAL_LOSS: "min",
    PARAMS: "min",
    CONV_PARAMS: "min",
    MACS: "min",
    MFLOPS: "min",
}
