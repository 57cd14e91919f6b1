"""Figures of grids and of paired curves, written atomically as PNG (results.io).

    plot_heatmaps(table, out / "part2_heatmaps.png", "title", chosen=(4, 0.001, 8))
    plot_pairs([("loss", {"lr 0.001": agg}, (M.LOSS, M.VAL_LOSS))], out / "losses.png", "title")
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on workers or CI
import matplotlib.pyplot as plt
import numpy as np

from results.io import save_figure
from results.plots import ACCURACIES, TITLES, band, interval, keep_in_view
from workloads import metrics as M

STYLES = ("-", "--")  # the pair's first metric solid, its second dashed


def plot_heatmaps(table, path: Path, title: str, chosen: tuple | None = None,
                  rows=("batch_size", "lr", "epochs")) -> None:
    """One heatmap of `table`'s first key (rows) x second key (columns) per value of the
    third, for mean validation accuracy (top) and mean test accuracy (bottom), each cell
    annotated in percent; `chosen` (a value of each key) is boxed."""
    row, col, panel = rows
    rvals, cvals, pvals = (sorted(table[k].unique(), reverse=k == "lr") for k in rows)
    metrics = (("val_acc_mean", "validation"), ("test_acc_mean", "test"))
    fig, axes = plt.subplots(len(metrics), len(pvals), figsize=(2.9 * len(pvals) + 1, 2.3 * len(metrics) + 1.2),
                             squeeze=False, sharex=True, sharey=True, layout="constrained")
    finite = table[[m for m, _ in metrics]].to_numpy(dtype=float)
    lo, hi = (np.nanmin(finite), np.nanmax(finite)) if np.isfinite(finite).any() else (0.0, 1.0)
    for i, (metric, name) in enumerate(metrics):
        for j, p in enumerate(pvals):
            ax, part = axes[i, j], table[table[panel] == p]
            grid = np.full((len(rvals), len(cvals)), np.nan)  # (rows, columns); NaN: not run or diverged
            for r in part.itertuples():
                grid[rvals.index(getattr(r, row)), cvals.index(getattr(r, col))] = getattr(r, metric)
            image = ax.imshow(100 * grid, cmap="viridis", vmin=100 * lo, vmax=100 * hi, aspect="auto")
            for (y, x), v in np.ndenumerate(grid):
                ax.text(x, y, "-" if np.isnan(v) else f"{100 * v:.1f}", ha="center", va="center", fontsize=7,
                        color="white" if np.isnan(v) or v < (lo + hi) / 2 else "black")
            if chosen is not None and chosen[2] == p:
                y, x = rvals.index(chosen[0]), cvals.index(chosen[1])
                ax.add_patch(plt.Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, ec="red", lw=2))
            ax.set_title(f"{name}, {panel} {p}", fontsize=8)
            if j == 0:
                ax.set_yticks(range(len(rvals)), [f"{v:g}" for v in rvals], fontsize=7)
                ax.set_ylabel(row)
            if i == len(metrics) - 1:
                ax.set_xticks(range(len(cvals)), [f"{v:g}" for v in cvals], fontsize=7, rotation=45)
                ax.set_xlabel(col)
    fig.colorbar(image, ax=axes, shrink=0.8, label="mean accuracy, %")
    fig.suptitle(title, fontsize=10)
    save_figure(path, fig)
    plt.close(fig)


def plot_pairs(panels: list, path: Path, title: str, marks: dict | None = None) -> None:
    """Panels of paired curves against epochs (results.plots.BAND over repeats): each panel is
    (its title, {label: GroupAggregate}, (metric, metric)), the first metric solid and the
    second dashed in the label's colour. `marks` {panel index: {label: [(epoch, value)]}}
    adds dots (test accuracy at the end of each length)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    for i, (ax, (name, aggs, pair)) in enumerate(zip(axes[0], panels)):
        for k, (label, a) in enumerate(aggs.items()):
            color = f"C{k % 10}"
            for metric, style in zip(pair, STYLES):
                if metric in a.mean:
                    band(ax, a.mean[M.EPOCH], a.mean[metric], *interval(a, metric),
                         label if style == STYLES[0] else None, color=color, ls=style)
            for epoch, value in (marks or {}).get(i, {}).get(label, []):
                ax.plot([epoch], [value], "o", color=color, ms=5)
        for metric, style in zip(pair, STYLES):  # which line is which metric
            ax.plot([], [], ls=style, color="grey", label=TITLES.get(metric, metric))
        if (marks or {}).get(i):
            ax.plot([], [], "o", color="grey", label=TITLES[M.TEST_ACC])
        keep_in_view(ax, [a.mean[m] for a in aggs.values() for m in pair if m in a.mean],
                     all(m in ACCURACIES for m in pair))
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(path, fig)
    plt.close(fig)
