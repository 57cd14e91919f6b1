"""hw2: the homework built on the PyTorch CIFAR-10 tutorial (../shared/seeds/001):
the tutorial's net trained the tutorial's way, then one question at a time, each a
variant of it, 50 epochs each, curves recorded every epoch.

    python -m orchestrator sweep hw2                      # 15 groups from 11 runs, 50 epochs
    python -m orchestrator sweep hw2 --quick              # every variant on subsets, minutes
    python -m orchestrator sweep hw2 epochs=10 repeats=3  # shorter, with spread

Groups (the questions of the homework):
  cnn                  the tutorial's CNN (Q1, Q4): the base every other group changes
  fc                   Q2: one linear layer from the 3,072 inputs to 10 (30,730 parameters)
  mlp, mlp_linear      Q3: 3072-110-74-10 with ReLU, and without any activation
  batch_1/4/1000       Q5: batch sizes
  lr_10/0.1/0.01/0.001 Q6: learning rates (10 diverges: it stops there and says so)
  augment, no_augment  Q7: RandomResizedCrop(32) + RandomHorizontalFlip on training batches
  mse, cross_entropy   Q8: mean squared error on one-hot targets against cross-entropy
batch_4, lr_0.001, no_augment and cross_entropy are the base itself: the same
configuration trains once and serves every group that names it.

The tutorial and the homework train on all 50,000 training images and plot test
accuracy every epoch, with nothing to choose between runs: hw2 has no validation
split (val_per_class=0), scores the test set at every record point, and a group's
best run (summary.csv's best_repeat, with repeats=N) is the one with the highest
test accuracy, the number the homework reports; nothing is chosen with it.
`val_per_class=500 metrics=train_loss,train_acc,val_acc,test_acc` carves out the
project's usual validation split (45,000 training images) and records it.
"""
from search_spaces.study import Figure, Report, Stage, Study, Variant
from workloads import metrics as M

# The tutorial's settings, where they differ from the components' defaults.
TUTORIAL = (
    ("arch", "tutorial"),
    ("normalize", "half"),            # Normalize((0.5,) * 3, (0.5,) * 3)
    ("lr", 0.001),                    # SGD with momentum 0.9 at 0.001
    ("batch_size", 4),
    ("epochs", 50),                   # the homework's "for all the following sections"
    ("val_per_class", 0),             # the whole training set, as the tutorial trains: no validation split
    ("metrics", ",".join((M.LOSS, M.TRAIN_ACC, M.TEST_ACC))),  # test accuracy every epoch
)

def same(name: str, note: str) -> Variant:
    """A group that is the base run itself, under the name its question gives it."""
    return Variant(name, (), note)


VARIANTS = (
    same("cnn", "the tutorial's CNN, trained the tutorial's way"),
    Variant("fc", (("arch", "fc"),), "one linear layer, 3,072 inputs to 10"),
    Variant("mlp", (("arch", "mlp_110_74"),), "3072-110-74-10 with ReLU"),
    Variant("mlp_linear", (("arch", "mlp_110_74"), ("activation", "identity")), "3072-110-74-10, no ReLU"),
    Variant("batch_1", (("batch_size", 1),)),
    same("batch_4", "batch_size=4 (the base)"),
    Variant("batch_1000", (("batch_size", 1000),)),
    Variant("lr_10", (("lr", 10.0),)),
    Variant("lr_0.1", (("lr", 0.1),)),
    Variant("lr_0.01", (("lr", 0.01),)),
    same("lr_0.001", "lr=0.001 (the base)"),
    Variant("augment", (("augment", "resized_crop,flip"),),
            "RandomResizedCrop(32) + RandomHorizontalFlip, training batches only"),
    same("no_augment", "no augmentation (the base)"),
    Variant("mse", (("loss", "mse"),), "mean squared error on one-hot targets"),
    same("cross_entropy", "cross-entropy (the base)"),
)

FIGURES = (
    Figure("q2_fc", "Q2: a single fully connected layer", ("fc",)),
    Figure("q3_mlp", "Q3: MLP with and without ReLU", ("mlp", "mlp_linear")),
    Figure("q4_cnn", "Q4: the tutorial's CNN", ("cnn",)),
    Figure("q5_batch", "Q5: batch sizes", ("batch_1", "batch_4", "batch_1000")),
    Figure("q6_lr", "Q6: learning rates (loss on a log scale; dotted: where a run diverged)",
           ("lr_10", "lr_0.1", "lr_0.01", "lr_0.001"), log=(M.LOSS,)),
    Figure("q7_augment", "Q7: augmentation against none (training vs test accuracy: the gap is overfitting)",
           ("augment", "no_augment"), metrics=(M.LOSS,), overlay=(M.TRAIN_ACC, M.TEST_ACC)),
    Figure("q8_loss", "Q8: MSE against cross-entropy", ("mse", "cross_entropy")),
)

STUDY = Study(
    name="hw2",
    description="the PyTorch CIFAR-10 tutorial's homework: single FC layer, MLP with/without ReLU, CNN, "
                "batch sizes, learning rates, augmentation, MSE vs cross-entropy; 50 epochs each",
    stages=(Stage("questions", variants=VARIANTS),),
    base=TUTORIAL,
    repeats=1,  # as in the homework; repeats=N gives every curve its spread
    # Every variant on subsets, in about two minutes on two cores.
    quick=(("epochs", 2), ("train_subset", 2000), ("val_subset", 500), ("test_subset", 1000),
           ("train_eval_size", 500)),
    report=Report("results.reports:variants_report"),
    reference="cnn",
    figures=FIGURES,
    # No validation split to choose on, and nothing to choose: the best run is the one the
    # homework would report, by test accuracy.
    select=M.TEST_ACC,
    select_why="hw2 has no validation split and chooses nothing; its best run is the one with the highest "
               "test accuracy, what the homework reports",
)
