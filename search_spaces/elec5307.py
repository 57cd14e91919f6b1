"""elec5307: the course project "Parameters in Neural Networks" (../shared/seeds/000),
its three parts as the stages of one study.

    python -m orchestrator sweep elec5307                  # all three parts, every part3 family
    python -m orchestrator sweep elec5307 sid=470123364    # part3: the three families that SID is given
    python -m orchestrator sweep elec5307 parts=2          # part2's grid alone (18 runs, 90 results)
    python -m orchestrator sweep elec5307 --quick          # every stage on subsets, minutes
    python -m orchestrator plan elec5307                   # part2: 18 trials, 90 results
    python -m orchestrator evaluate runs/elec5307/<run>/baseline.pt

part1  the PyTorch tutorial's net, trained the tutorial's way (RGB, Normalize 0.5, SGD
       lr 0.001 momentum 0.9, batch 4), with a validation split carved from the training
       set (500 images per class, chosen by split_seed, never from the test set); curves
       every epoch. Its result is the course notebook's length, 2 epochs (PART1_EPOCHS);
       it is scored at part2's lengths too, so that its one run is part2's (batch 4, lr
       0.001) run, trained once for both stages, and the longer prefixes are its curve.
part2  batch {2, 4, 8} x lr {0.005 ... 0.00001} x epochs {1, 2, 4, 8, 16}, everything
       else as part1. One 16-epoch run per (batch, lr) scores validation and test at the
       end of epochs 1, 2, 4, 8 and 16 (shared prefixes: exact because the rate is
       constant; a length-dependent schedule is refused with one line).
part3  a new baseline (search_spaces/elec5307_part3.py: 3 x conv-ReLU-pool, 3 hidden FC
       layers, the output layer) and the appendix's 15 ablation families as variants of it.

Overrides: a config key applies to every part (`train_subset=5000`); part1 and part2
share the grid axes `batch_size`, `lr` and `epochs` (`lr=0.001,0.0001` restricts them, and
leaves part3 as it is); `part3.KEY=VALUE` changes part3 alone (`part3.epochs=12`). Options of this study:
`sid=NNNNNNNNN` (the appendix's assignment by the last three digits), `families=kernel,flip`
(or `none`: part3's baseline alone) and `parts=1,2,3`.
"""
from __future__ import annotations

from dataclasses import replace

from search_spaces import elec5307_part3 as part3, recipes
from search_spaces.study import Report, Stage, Study
from workloads import metrics as M
from workloads.config import ConfigError

BATCHES = (2, 4, 8)
RATES = (0.005, 0.001, 0.0005, 0.0001, 0.00005, 0.00001)
EPOCHS = (1, 2, 4, 8, 16)
# part1's result: the PyTorch tutorial's `for epoch in range(2)`, which the course notebook runs
# (seed 000 names the notebook, not its length; part2 then asks which length is best).
PART1_EPOCHS = recipes.TUTORIAL_EPOCHS

# The tutorial's recipe (search_spaces/recipes.py) for part1 and part2, and the project's
# curves: training and validation loss and accuracy every epoch, on a validation split the
# tutorial does not have (the project asks to choose on it).
TUTORIAL = recipes.TUTORIAL + (
    ("metrics", ",".join((M.LOSS, M.TRAIN_ACC, M.VAL_ACC, M.VAL_LOSS))),
)

PARTS = {"1": "part1", "2": "part2", "3": "part3"}


def _grid_name(point: dict) -> str:
    return f"batch{point['batch_size']}_lr{point['lr']:g}_{point['epochs']}ep"


STAGES = (
    Stage("part1", axes=(("epochs", EPOCHS),), prefix="epochs",
          group_name=lambda p: f"tutorial_{p['epochs']}ep"),
    Stage("part2", axes=(("batch_size", BATCHES), ("lr", RATES), ("epochs", EPOCHS)), prefix="epochs",
          group_name=_grid_name),
    part3.STAGE,
)


def keep_parts(study: Study, raw) -> Study:
    """parts=1,3: only those parts' stages run (and are reported)."""
    wanted = [p.strip() for p in str(raw).split(",") if p.strip()]
    unknown = [p for p in wanted if p not in PARTS]
    if unknown or not wanted:
        raise ConfigError(f"parts={raw}: choose from 1, 2, 3 (comma-separated)")
    names = {PARTS[p] for p in wanted}
    return replace(study, stages=tuple(s for s in study.stages if s.name in names))


def keep_families(families):
    def keep(study: Study, raw) -> Study:
        chosen = families(str(raw))
        return replace(study, stages=tuple(part3.with_families(s, chosen) if s.name == part3.STAGE.name else s
                                           for s in study.stages))
    return keep


def check(study: Study) -> None:
    """Every part3 network keeps the project's structure and limits, however it was set."""
    for stage in study.stages:
        if stage.name == part3.STAGE.name:
            for trial in study.plan[stage.name].trials:
                part3.check_network(trial.config.model)


STUDY = Study(
    name="elec5307",
    description="ELEC5307 project 1: the tutorial baseline, batch x lr x epochs from shared prefixes, "
                "a 3-conv 3-FC baseline and its ablation families",
    stages=STAGES,
    base=TUTORIAL,  # part1 and part2 take `epochs` from their axis, part3 fixes its own
    repeats=1,  # as the project runs it; repeats=3 gives every number its spread
    # Every stage on subsets in a few minutes on two cores: lengths 1 and 2 still share a run.
    quick=(("epochs", "1,2"), ("train_subset", 1000), ("val_subset", 500), ("test_subset", 1000),
           ("train_eval_size", 500), ("part3.epochs", 2), ("part3.train_subset", 500)),
    report=Report("results.elec5307:report", args=(("families", part3.FAMILIES), ("part1_epochs", PART1_EPOCHS))),
    check=check,
    # sid=470123364: part3 runs the baseline and the three families the appendix gives that ID;
    # families=kernel,flip (or none): those families; parts=1,2: those parts alone.
    options=(("sid", keep_families(part3.assigned)), ("families", keep_families(part3.named)),
             ("parts", keep_parts)),
)
