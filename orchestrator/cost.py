"""What a run costs, estimated before it runs: multiply-adds of its model times the
images it trains on and evaluates. The driver starts a stage's trials longest first;
the progress line (orchestrator/progress.py) counts a stage's work done with it.

    params = longest_first(params)   # Tune params, most expensive first
"""
from __future__ import annotations

from workloads.models import multiply_adds


def estimated_cost(cfg, cache: dict | None = None) -> float:
    """Multiply-adds of a whole run: about three forward passes (forward and backward)
    per trained image, one per evaluated image. `cache` keeps one count per model."""
    cache = {} if cache is None else cache
    key = (cfg.model, cfg.data.in_shape)
    if key not in cache:
        cache[key] = multiply_adds(cfg.model.build(cfg.data.in_shape), cfg.data.in_shape)
    steps, _, evaluated = cfg.work()
    return cache[key] * (3 * steps * cfg.train.batch_size + evaluated)


def trial_work(params: list[dict]) -> dict:
    """{trial name: (estimated cost, training steps)} of Tune params; a pack costs what its members do."""
    from orchestrator.packed import PACK
    from orchestrator.trainable import trial_config, trial_name
    cache: dict = {}
    return {trial_name(p): (sum(estimated_cost(trial_config(m), cache) for m in p.get(PACK, [p])),
                            trial_config(p).work()[0]) for p in params}


def longest_first(params: list[dict], work: dict | None = None) -> list[dict]:
    """Tune params in descending estimated cost (ties keep their order), which Tune
    starts in that order: longest first, so that a stage does not end with one long
    trial on one worker while the others idle (the LPT rule)."""
    from orchestrator.trainable import trial_name
    work = work or trial_work(params)
    return sorted(params, reverse=True, key=lambda p: work[trial_name(p)][0])
