"""Aggregation on hand-made curves."""
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from results.aggregate import RunRecord, aggregate_groups, curves_table, summary_table
from workloads import metrics as M


def run(group, repeat, losses, test_acc, wall=1.0):
    steps = [10 * (i + 1) for i in range(len(losses))]
    curves = pd.DataFrame({M.STEP: steps, M.LOSS: losses, M.VAL_ACC: [1 - x for x in losses]})
    return RunRecord("train", group, repeat, {"arch": group}, curves, test_acc, wall,
                     first_layer=np.full((2, 2), repeat))


def test_mean_std_and_best():
    records = [run("a", 0, [3.0, 2.0, 1.0], 0.5), run("a", 1, [1.0, 2.0, 5.0], 0.7, wall=3.0),
               run("a", 2, [2.0, 2.0, 3.0], 0.7), run("b", 0, [4.0, 4.0, 4.0], 0.1)]
    aggs = aggregate_groups(records, select=M.TEST_ACC)
    a = aggs["a"]
    np.testing.assert_array_equal(a.steps, [10, 20, 30])
    np.testing.assert_allclose(a.mean[M.LOSS], [2.0, 2.0, 3.0])
    np.testing.assert_allclose(a.std[M.LOSS], [1.0, 0.0, 2.0])  # sample std, ddof=1
    np.testing.assert_allclose(a.mean[M.VAL_ACC], [-1.0, -1.0, -2.0])
    assert a.n == 3 and a.best.repeat == 1  # ties go to the lower repeat
    assert a.best.first_layer[0, 0] == 1
    assert aggs["b"].n == 1 and np.all(aggs["b"].std[M.LOSS] == 0) and aggs["b"].test_std is None
    assert M.GRAD_NORM not in a.mean  # not recorded, not invented

    table = summary_table(aggs, {"a": {"parameters": 7}})  # extra columns win
    row = table.set_index("group").loc["a"]
    assert row["test_acc_mean"] == pytest.approx(0.6333333)
    assert row["test_acc_std"] == pytest.approx(np.std([0.5, 0.7, 0.7], ddof=1))
    assert row["test_acc_best"] == 0.7 and row["best_repeat"] == 1 and row["parameters"] == 7
    assert row["wall_s_total"] == 5.0
    assert list(table["group"]) == ["a", "b"]


def test_resumed_duplicates_and_ragged_runs():
    # A restored trial may report a step twice; a run that stopped early (diverged) counts
    # where it got to, and each point says how many runs it averages.
    dup = run("a", 0, [3.0, 2.0, 1.0], 0.5)
    dup = dup.__class__(**{**dup.__dict__, "curves": pd.concat([dup.curves, dup.curves.iloc[[1]]])})
    short = replace(run("a", 1, [1.0, 4.0], float("nan")), status=M.DIVERGED, diverged_at=25)
    a = aggregate_groups([dup, short], select=M.TEST_ACC)["a"]
    np.testing.assert_array_equal(a.steps, [10, 20, 30])
    np.testing.assert_allclose(a.mean[M.LOSS], [2.0, 3.0, 1.0])
    np.testing.assert_array_equal(a.count[M.LOSS], [2, 2, 1])
    np.testing.assert_allclose(a.std[M.LOSS], [np.sqrt(2), np.sqrt(2), 0.0])
    assert a.n == 1 and a.n_diverged == 1 and a.test_mean == 0.5 and a.test_std is None
    assert a.best.repeat == 0  # a diverged run is never the best
    row = summary_table({"a": a}).iloc[0]
    assert row["status"] == "diverged 1/2 (step 25)" and row["n"] == 1


def test_a_group_whose_runs_all_diverged_has_no_mean_not_nan():
    gone = [replace(run("a", r, [2.0, float("nan")], float("nan")), status=M.DIVERGED, diverged_at=15)
            for r in range(2)]
    a = aggregate_groups(gone, select=M.TEST_ACC)["a"]
    assert a.n == 0 and a.test_mean is None and a.best is None
    row = summary_table({"a": a}).iloc[0]
    assert row["test_acc_mean"] is None or pd.isna(row["test_acc_mean"])
    assert row["status"] == "diverged 2/2 (step 15, 15)"


def test_curves_table_long_format():
    aggs = aggregate_groups([run("a", 0, [3.0, 2.0], 0.5), run("a", 1, [1.0, 2.0], 0.6)], select=M.TEST_ACC)
    table = curves_table(aggs)
    loss = table[table.metric == M.LOSS]
    assert loss[M.STEP].tolist() == [10, 20] and loss["mean"].tolist() == [2.0, 2.0]
    assert set(table.columns) == {"group", "metric", M.STEP, "mean", "std", "n"}


def test_first_layer_mosaic_places_each_tile_scaled_on_its_own():
    from results.plots import mosaic, weight_tiles
    w = np.arange(5 * 9, dtype=float).reshape(5, 1, 3, 3)  # five 3x3 grey filters
    tiles = weight_tiles(w)
    image = mosaic(tiles, cols=2)
    assert image.shape == (3 * 3 + 2, 2 * 3 + 1)  # 3 rows, 2 columns, 1-pixel gaps
    np.testing.assert_array_equal(image[4:7, 4:7], np.arange(9).reshape(3, 3) / 8)  # tile 3, own scale
    assert np.isnan(image[3]).all() and np.isnan(image[:, 3]).all()  # the gaps
    assert np.isnan(image[8:, 4:]).all()  # the sixth place is empty
    rgb = mosaic(weight_tiles(np.ones((2, 3, 3, 3))), cols=2)
    assert rgb.shape == (3, 7, 3) and (rgb[:, 3] == 1.0).all()


def test_runs_that_did_not_score_the_test_set_are_not_scored_not_zero():
    """score_test=False leaves test_acc NaN on a finished run: no mean, no 0, and the
    status says so; a group with some scored runs averages those (n_test)."""
    nan = float("nan")
    aggs = aggregate_groups([run("blind", 0, [2.0, 1.0], nan), run("blind", 1, [2.0, 1.5], nan),
                             run("mixed", 0, [2.0, 1.0], 0.6), run("mixed", 1, [2.0, 1.0], nan)],
                            select=M.VAL_ACC)
    blind, mixed = aggs["blind"], aggs["mixed"]
    assert (blind.n, blind.n_test, blind.test_mean, blind.test_std) == (2, 0, None, None)
    assert blind.best.repeat == 0  # still chosen on validation accuracy
    assert (mixed.n, mixed.n_test, mixed.test_mean) == (2, 1, 0.6)
    table = summary_table(aggs).set_index("group")
    assert table.loc["blind", "status"] == "finished, test not scored"
    assert table.loc["mixed", "status"] == "finished, test not scored (1/2)"
    assert pd.isna(table.loc["blind", "test_acc_mean"]) and pd.isna(table.loc["blind", "test_acc_best"])
    assert table.loc["mixed", "test_acc_mean"] == 0.6
