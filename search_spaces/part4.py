"""part4: ReLU against the logistic sigmoid, for each of the five architectures.

    python -m orchestrator sweep part4              # 5 archs x {relu, sigmoid} = 10 trials, 15 epochs
    python -m orchestrator sweep part4 repeats=3    # curves become means with spread
    python -m orchestrator sweep part4 --quick      # 1 epoch on subsets
    python -m orchestrator sweep part4 arch=cnn_4   # one architecture's pair

Groups are "<arch>_<activation>" (e.g. cnn_3_sigmoid); the report pairs them
per architecture into part4_<arch>.pkl and part4_<arch>.png.
"""
from search_spaces.part3 import ASSIGNMENT
from search_spaces.study import Report, Stage, Study
from workloads import metrics as M
from workloads.models import ASSIGNMENT_ARCHS as ARCH_NAMES

ACTIVATIONS = ("relu", "sigmoid")

STUDY = Study(
    name="part4",
    description="relu vs sigmoid for each arch: SGD lr 0.01, 15 epochs, loss and first-layer gradient norm",
    stages=(Stage("train", axes=(("arch", ARCH_NAMES), ("activation", ACTIVATIONS))),),
    # part3's settings, but the assignment's plain SGD (constant rate, no momentum) so that
    # gradient magnitudes are not rescaled by the optimizer, and the gradient norm recorded.
    base=ASSIGNMENT + (("optimizer", "sgd"), ("lr", 0.01),
                       ("metrics", ",".join(M.DEFAULT + (M.GRAD_NORM,)))),
    repeats=1,
    quick=(("epochs", 1), ("train_subset", 5000), ("val_subset", 1000), ("test_subset", 2000),
           ("train_eval_size", 1000), ("record_every", 20)),
    report=Report("results.reports:part4_report", stages=("train",)),
    reference="activation=relu",   # each sigmoid group against the ReLU group of its architecture
)
