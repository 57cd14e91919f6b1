"""Figures of the resnet and coordinate studies, written atomically as PNG: the band a
model's training loss spans over learning rates (the loss landscape), and the path of
a one-setting-at-a-time search.

    plot_loss_band({"VGG-A": band, "VGG-A + BN": band_bn}, out / "landscape.png", title)
    plot_search_path(records.history, (val_mean, val_std, test_mean, test_std, n), out / "path.png", title)
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on workers or CI
import matplotlib.pyplot as plt
import numpy as np

from results.io import save_figure


def plot_loss_band(bands: dict, path: Path, title: str = "", smooth: int = 1) -> None:
    """bands: {label: (steps, low, high)}, each a model's minimum and maximum training loss
    over its learning rates at every step, drawn as a filled band (Santurkar et al. 2018,
    fig. 4). `smooth` > 1 averages low and high over that many steps first, as said in the
    title: mini-batch losses are noisy step to step."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for i, (label, (steps, low, high)) in enumerate(bands.items()):
        steps, low, high = (np.asarray(v, float) for v in (steps, low, high))
        if smooth > 1 and len(steps) >= smooth:
            kernel = np.ones(smooth) / smooth
            low, high = (np.convolve(v, kernel, mode="valid") for v in (low, high))
            steps = steps[smooth - 1:]
        ax.fill_between(steps, low, high, color=f"C{i}", alpha=0.35, lw=0, label=label)
        ax.plot(steps, low, color=f"C{i}", lw=0.6)
        ax.plot(steps, high, color=f"C{i}", lw=0.6)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (mini-batch)")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    save_figure(path, fig)
    plt.close(fig)


def plot_search_path(history: list[dict], final: tuple, path: Path, title: str = "") -> None:
    """Per setting (x, in order): every value's validation mean +- std (grey; the best of them
    labelled when it lost to the value kept), the value
    kept (colour, labelled, red when it replaced the one before) and the path through the
    kept values; `final` = (validation mean, std, test mean, std, n) of the final runs: a
    circle and a star at the end."""
    fig, ax = plt.subplots(figsize=(max(8.0, 0.75 * len(history) + 3) + 3.5, 5))
    path_x, path_y = [], []
    for x, step in enumerate(history):
        for row in step["rows"]:
            mean, std = row["mean"], row["std"]
            if mean is None or not np.isfinite(mean):
                continue
            err = std if std is not None and np.isfinite(std) else 0.0
            if row["chosen"]:
                changed = step["chosen"] != step["incumbent"]
                color = "tab:red" if changed else "tab:blue"
                ax.errorbar(x, mean, yerr=err, fmt="o", color=color, ms=7, capsize=3, zorder=3)
                ax.annotate(row["candidate"], (x, mean), xytext=(4, 6), textcoords="offset points",
                            fontsize=7, rotation=30, color=color)
                path_x.append(x)
                path_y.append(mean)
            else:
                ax.errorbar(x + 0.12, mean, yerr=err, fmt=".", color="grey", alpha=0.6, capsize=2)
                if row["reason"].startswith("not taken"):  # the best challenger, which lost
                    ax.annotate(row["candidate"], (x + 0.12, mean), xytext=(3, -3), textcoords="offset points",
                                fontsize=6, color="grey")
    ax.plot(path_x, path_y, "-", color="tab:blue", lw=1, alpha=0.7, label="value kept (validation)")
    ax.plot([], [], "o", color="tab:red", label="kept, replacing the one before")
    ax.plot([], [], ".", color="grey", label="other values (validation)")
    val, val_std, mean, std, n = final
    if val is not None:
        ax.errorbar(len(history) - 0.12, val, yerr=val_std or 0.0, fmt="o", mfc="white", color="black", ms=7,
                    capsize=3, label=f"final configuration: validation accuracy (n={n}, new seeds)")
    if mean is not None:
        ax.errorbar(len(history) + 0.12, mean, yerr=std or 0.0, fmt="*", color="black", ms=12, capsize=3,
                    label=f"final configuration: test accuracy (n={n}, new seeds)")
    ax.set_xticks(range(len(history) + 1), [s["step"] for s in history] + ["final"], rotation=40, ha="right")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: the points fill the axes
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    save_figure(path, fig)
    plt.close(fig)
