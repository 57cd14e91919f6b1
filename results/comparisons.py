"""Which groups a report compares, and the comparisons: differences of test-accuracy
means with Welch's interval and test, Holm's correction over a study, Hedges' g.
Pure: GroupAggregates in, rows out (results/stats.py does the statistics).

    pairs, how = reference_pairs(aggs, study.reference)  # {variant: its reference group}, in words
    rows = against_reference(aggs, pairs)                # [Versus], p-values Holm-adjusted together
    rows = between_runs(aggs_a, aggs_b)                  # each group in both runs: B minus A

A study's `reference` is a group's name (every other group against it), or
"key=value" (each group against the group with that setting and otherwise the
same configuration: part4's "activation=relu" pairs each sigmoid group with the
ReLU group of its architecture). Without one, or when the named group is not in
the run (an override left it out), every group is compared with the first.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from results.stats import Comparison, compare, holm

SEED = "seed"   # differs between repeats, never between a group and its reference


@dataclass(frozen=True)
class Versus:
    """A group (b) against another (a): `comparison` of their test accuracies, or None
    with `why` when there is nothing to test (a group without a finished run, or the
    very same runs under two names)."""
    variant: str
    reference: str
    comparison: Optional[Comparison]
    why: Optional[str] = None
    p_holm: Optional[float] = None


def _setting(a, key: str) -> str:
    return str(a.runs[0].config.get(key))


def _rest(a, key: str) -> dict:
    return {k: v for k, v in a.runs[0].config.items() if k not in (key, SEED)}


def reference_pairs(aggs: dict, reference: str = "") -> tuple[dict, str]:
    """({variant group: reference group}, how they were chosen, in words)."""
    names = list(aggs)
    if not names:
        return {}, "no groups"
    key, sep, value = reference.partition("=")
    if sep:
        refs = [g for g in names if _setting(aggs[g], key) == value]
        pairs = {}
        for g in names:
            if g in refs:
                continue
            match = [r for r in refs if _rest(aggs[r], key) == _rest(aggs[g], key)]
            if match:
                pairs[g] = match[0]
        how = f"each group against the group with {key}={value} and otherwise the same settings"
        return pairs, how + ("" if pairs else " (no such pair in this run)")
    if reference in aggs:
        first, how = reference, f"every group against {reference}, the study's reference"
    elif reference:
        first = names[0]
        how = f"the study's reference, {reference}, is not in this run: every group against the first, {first}"
    else:
        first = names[0]
        how = f"the study names no reference: every group against the first, {first}"
    return {g: first for g in names if g != first}, how


def same_runs(a, b) -> bool:
    """Two group names for the very same runs (hw2's base serves five groups)."""
    return len(a.runs) == len(b.runs) and all(x.config == y.config for x, y in zip(a.runs, b.runs))


def _versus(a, b, variant: str, reference: str, allow_same: bool = False) -> Versus:
    """b against a: b's test accuracies minus a's."""
    if not allow_same and same_runs(a, b):
        return Versus(variant, reference, None, f"the same runs as {reference}: nothing to test")
    for name, g in ((reference, a), (variant, b)):
        if not g.n_test:  # every run diverged, or none scored the test set (score_test=false)
            return Versus(variant, reference, None, f"no finished run in {name}" if not g.n
                          else f"{name} did not score the test set")
    return Versus(variant, reference, compare(a.test_accs, b.test_accs))


def _holm(rows: list[Versus]) -> list[Versus]:
    adjusted = holm([r.comparison.p if r.comparison else None for r in rows])
    return [replace(r, p_holm=p) for r, p in zip(rows, adjusted)]


def against_reference(aggs: dict, pairs: dict) -> list[Versus]:
    """Each variant against its reference, in the order of `pairs`; Holm over all of them."""
    return _holm([_versus(aggs[ref], aggs[g], g, ref) for g, ref in pairs.items()])


def between_runs(aggs_a: dict, aggs_b: dict) -> tuple[list[Versus], list[str], list[str]]:
    """(each group of both runs: run B's test accuracies minus run A's, Holm over them;
    groups only in A; groups only in B)."""
    both = [g for g in aggs_a if g in aggs_b]
    rows = _holm([_versus(aggs_a[g], aggs_b[g], g, g, allow_same=True) for g in both])
    return rows, [g for g in aggs_a if g not in aggs_b], [g for g in aggs_b if g not in aggs_a]


def significant(rows: list[Versus], level: float = 0.05) -> list[Versus]:
    return [r for r in rows if r.p_holm is not None and r.p_holm < level]
