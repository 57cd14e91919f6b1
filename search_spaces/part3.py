"""part3: five architectures on grayscale CIFAR-10, repeated with seeds.

    python -m orchestrator sweep part3            # 5 archs x 10 repeats = 50 trials
    python -m orchestrator sweep part3 --quick    # 5 x 2, 1 epoch, subsets
    python -m orchestrator sweep part3 train_eval_size=5000   # training accuracy on a sample

Curves every 10 steps: the training loss of that step (record_loss=last; =mean averages the
steps since the last record), eval-mode accuracy on the whole training split (train_eval_size=0;
--quick scores a fixed sample of 1,000) and on the validation split (500 images a class).
"""
from search_spaces.study import Report, Stage, Study
from workloads import metrics as M
from workloads.models import ASSIGNMENT_ARCHS as ARCH_NAMES

# The assignment's settings, where they differ from the components' defaults.
ASSIGNMENT = (
    ("grayscale", True),        # its models take 1x32x32 inputs
    ("optimizer", "adam"),      # Adam at its default rate
    ("batch_size", 50),
    ("epochs", 15),
    ("record_unit", "step"),    # curves every 10 optimizer steps, not per epoch
    ("record_every", 10),
    ("record_loss", "last"),    # the loss of the record's own step (its hint: loss.item()), not a mean
    ("checkpoint_every", 20),   # a checkpoint every 200 steps: records are frequent
)

# part3's own (part4 and part5 take ASSIGNMENT without it): training accuracy on the whole
# training split at every record, as the assignment asks, not on a sample. It costs: an eval
# pass over 45,000 images every 10 steps (docs/benchmarks.md). train_eval_size=5000 scores a
# fixed sample instead; --quick scores a sample of 1,000.
WHOLE_SPLIT = (("train_eval_size", 0),)
# The report draws the best run's first-layer filters: each run keeps its first layer's weights.
FIRST_LAYER = (("metrics", ",".join(M.DEFAULT + (M.FIRST_LAYER,))),)

STUDY = Study(
    name="part3",
    description="mlp_1, mlp_2, cnn_3, cnn_4, cnn_5: Adam, 15 epochs, curves averaged over repeats",
    stages=(Stage("train", axes=(("arch", ARCH_NAMES),)),),
    base=ASSIGNMENT + WHOLE_SPLIT + FIRST_LAYER,
    repeats=10,
    quick=(("repeats", 2), ("epochs", 1), ("train_subset", 5000), ("val_subset", 1000),
           ("test_subset", 2000), ("train_eval_size", 1000), ("record_every", 20)),
    report=Report("results.reports:part3_report", stages=("train",)),
    # The simplest model: each comparison says what an architecture gains over one hidden layer.
    reference="mlp_1",
    select=M.TEST_ACC,  # the assignment keeps the run with the best test accuracy
)
