"""Named bases: settings several studies share, stated once. A Python study adds them to
its base (`base=recipes.TUTORIAL + (...)`), a study file names one (`recipe: tutorial`) and
states what it changes under `base:`.

    from search_spaces.recipes import RECIPES
    dict(RECIPES["tutorial"])   # {'arch': 'tutorial', 'normalize': 'half', 'lr': 0.001, 'batch_size': 4}

Each is what differs from the components' defaults (workloads/config.py), nothing more:
a study says what it changes on top of it, and why.
"""
from __future__ import annotations

# The PyTorch CIFAR-10 tutorial (../shared/seeds/001): its net, its normalisation, SGD with
# momentum 0.9 (the default optimizer) at 0.001, batch 4, cross-entropy (the default loss).
# hw2, elec5307 (part1, part2) and coordinate start from it. Not in it, on purpose, since
# each study sets them its own way: the length (the tutorial's own is TUTORIAL_EPOCHS; hw2
# trains 50, the homework's; coordinate 5, its report's first runs; elec5307 takes it from
# its axis), the validation split (the tutorial has none, as hw2; elec5307 and coordinate
# carve one out to choose on) and the recorded metrics.
TUTORIAL = (
    ("arch", "tutorial"),
    ("normalize", "half"),            # Normalize((0.5,) * 3, (0.5,) * 3)
    ("lr", 0.001),                    # SGD with momentum 0.9 (the default optimizer) at 0.001
    ("batch_size", 4),
)
TUTORIAL_EPOCHS = 2                   # the tutorial's `for epoch in range(2)`

# The assignment of parts 3-5 (part3, part4, part5), where it differs from the defaults.
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

RECIPES = {"tutorial": TUTORIAL, "assignment": ASSIGNMENT}
