"""Metric names, defined once and imported everywhere (trainable, Tune's
metric, aggregation, plots)."""

STEP = "step"                 # optimizer steps taken so far
EPOCH = "epoch"               # fractional epochs done at a record point
LOSS = "train_loss"           # mean mini-batch loss since the previous record
TRAIN_ACC = "train_acc"       # eval-mode accuracy on the fixed training sample
VAL_ACC = "val_acc"           # eval-mode accuracy on the validation split
GRAD_NORM = "grad_norm"       # L2 norm of d(loss)/d(first layer weight), last step
LR = "lr"                     # learning rate in force at the record point
TEST_ACC = "test_acc"         # reported once, after training
DONE = "done_training"        # 1 on the final report

CURVES = (LOSS, TRAIN_ACC, VAL_ACC, GRAD_NORM)

# What an aggregate is ranked by.
BEST_METRIC = TEST_ACC
