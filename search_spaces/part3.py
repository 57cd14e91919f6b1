"""part3: five architectures on grayscale CIFAR-10, repeated with seeds.

    python -m orchestrator sweep part3            # 5 archs x 10 repeats = 50 trials
    python -m orchestrator sweep part3 --quick    # 5 x 2, 1 epoch, subsets
"""
from results.reports import part3_report
from search_spaces.study import Stage, Study
from workloads.models import ASSIGNMENT_ARCHS as ARCH_NAMES

STUDY = Study(
    name="part3",
    description="mlp_1, mlp_2, cnn_3, cnn_4, cnn_5: Adam, 15 epochs, curves averaged over repeats",
    # Component defaults already are the assignment's: Adam, batch 50, 15 epochs,
    # records every 10 steps, 5,000-image training sample, grayscale.
    stages=(Stage("train", axes=(("arch", ARCH_NAMES),)),),
    repeats=10,
    quick=(("repeats", 2), ("epochs", 1), ("train_subset", 5000), ("val_subset", 1000),
           ("test_subset", 2000), ("train_eval_size", 1000), ("record_every", 20)),
    report=part3_report,
)
