"""Matplotlib figures, written atomically as PNG.

    plot_comparison(aggs, [M.LOSS, M.TRAIN_ACC, M.VAL_ACC], out / "compare.png")
    plot_first_layer(weights, "cnn_3", out / "weights_cnn_3.png")
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on workers or CI
import matplotlib.pyplot as plt
import numpy as np

from results.aggregate import curve_matrix
from results.io import save_figure
from results.stats import curve_band, summarize
from workloads import metrics as M

TITLES = M.TITLES


BAND = "mean and 95% interval of the mean"  # what every band drawn here is, for titles and captions


def interval(a, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(low, high): the 95% t interval of a group's mean curve at each of its steps
    (results.stats.curve_band): how well the repeats pin the mean down, which is what
    comparing groups needs (+-std is the spread of single runs). It collapses onto the
    curve where a single run has a value."""
    if metric not in a.mean:
        return a.steps * np.nan, a.steps * np.nan
    _, values = curve_matrix([r.curves for r in a.runs], metric, a.steps)  # (T, runs)
    b = curve_band(values.T)
    return b.low, b.high


def band(ax, x, mean, low, high, label, **kw):
    """A mean curve with a band from `low` to `high`, skipping points no run reached (NaN);
    a group with no point at all still gets its legend entry."""
    x, mean, low, high = (np.asarray(v, float) for v in (x, mean, low, high))
    ok = np.isfinite(mean) & np.isfinite(x)
    line, = ax.plot(x[ok], mean[ok], label=label, lw=1.2, **kw)
    ax.fill_between(x[ok], low[ok], high[ok], color=line.get_color(), alpha=0.2, lw=0)
    return line


ACCURACIES = (M.TRAIN_ACC, M.TRAIN_ACC_RUNNING, M.VAL_ACC, M.TEST_ACC)


def keep_in_view(ax, means: list, accuracy: bool) -> None:
    """Limits from the mean curves, at most half their range beyond them, never below 0
    or (accuracies) above 1. With two repeats an interval is 12.7 standard errors wide
    (t with one degree of freedom) and would flatten every curve to a line; a band cut
    at a panel's edge goes on beyond it."""
    values = np.concatenate([np.asarray(m, float).ravel() for m in means]) if means else np.array([])
    values = values[np.isfinite(values)]
    if not len(values):
        return
    lo, hi = values.min(), values.max()
    margin = (hi - lo) / 2 or max(abs(hi), 1e-3) / 10
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, lo - margin, 0.0), min(high, hi + margin, 1.0 if accuracy else np.inf))


def mark_divergence(ax, a, x: str, color) -> None:
    """A dotted vertical line where each run of the group diverged (its last record may be
    long before, or it may have none)."""
    from workloads.config import TrialConfig
    for r in a.runs:
        if not r.finished and r.diverged_at:
            at = r.diverged_at if x == M.STEP else r.diverged_at / TrialConfig.from_flat(r.config).steps_per_epoch
            ax.axvline(at, color=color, ls=":", lw=1.5)


def readable_log_axis(ax) -> None:
    """Plain numbers on a log axis (matplotlib writes 2.3x10^0 over a short range)."""
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)


def label_of(group: str, a) -> str:
    return f"{group} (n={a.n}" + (f", {a.n_diverged} diverged)" if a.n_diverged else ")")


def diverged_everywhere(ax, aggs: dict, x: str, colors: dict) -> None:
    for group, a in aggs.items():
        if a.n_diverged:
            mark_divergence(ax, a, x, colors[group])


def plot_comparison(aggs: dict, metrics, path: Path, test_bars: bool = True, title: str = "",
                    x: str = M.STEP, log: tuple = (), overlay: tuple = ()) -> None:
    """One panel per metric (mean and 95% interval of the mean over repeats, dotted lines where
    a run diverged) against steps or epochs; an `overlay` panel with several metrics per group
    (solid: the last one, dashed and dotted: the others); and test-accuracy bars (mean and its
    95% interval over the finished runs, and the best)."""
    panels = len(metrics) + bool(overlay) + bool(test_bars)
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.6), squeeze=False)
    axes = axes[0]
    colors = {g: f"C{i % 10}" for i, g in enumerate(aggs)}
    for ax, metric in zip(axes, metrics):
        for group, a in aggs.items():
            if metric in a.mean or a.n_diverged:
                xs = a.steps if x == M.STEP else a.mean.get(x, a.steps)
                band(ax, xs, a.mean.get(metric, xs * np.nan), *interval(a, metric), label_of(group, a),
                     color=colors[group])
        diverged_everywhere(ax, aggs, x, colors)
        ax.set_title(TITLES.get(metric, metric) + (" (log scale)" if metric in log else ""))
        ax.set_xlabel(x)
        if metric == M.GRAD_NORM or metric in log:
            ax.set_yscale("log")
            readable_log_axis(ax)
        else:
            keep_in_view(ax, [a.mean[metric] for a in aggs.values() if metric in a.mean], metric in ACCURACIES)
        ax.grid(alpha=0.3)
    if overlay:
        ax = axes[len(metrics)]
        styles = ["--", ":", "-."][:len(overlay) - 1] + ["-"]
        for group, a in aggs.items():
            for metric, style in zip(overlay, styles):
                if metric in a.mean:
                    xs = a.steps if x == M.STEP else a.mean[x]
                    band(ax, xs, a.mean[metric], *interval(a, metric), f"{group}: {TITLES.get(metric, metric)}",
                         color=colors[group], ls=style)
        ax.set_title(" vs ".join(TITLES.get(m, m) for m in overlay))
        keep_in_view(ax, [a.mean[m] for a in aggs.values() for m in overlay if m in a.mean],
                     all(m in ACCURACIES for m in overlay))
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if any(a.n_diverged for a in aggs.values()):
        axes[0].plot([], [], ":", color="black", label="where a run diverged")
    axes[0].legend(fontsize=7)
    if test_bars:
        ax = axes[-1]
        names = list(aggs)
        means = [aggs[g].test_mean if aggs[g].n_test else np.nan for g in names]
        spans = [summarize(aggs[g].test_accs) if aggs[g].n_test > 1 else None for g in names]
        halves = [s.ci_high - s.mean if s else np.nan for s in spans]
        ax.bar(names, np.nan_to_num(means), yerr=halves, capsize=3, color="tab:blue", alpha=0.7,
               label="mean, 95% interval")
        ax.set_ylim(0, min(ax.get_ylim()[1], 1.02))  # an interval past 0 or 1 is cut there
        ax.scatter(names, [aggs[g].test_accs.max() if aggs[g].n_test else np.nan for g in names], color="black",
                   marker="_", s=200, label="best", zorder=3)
        for i, g in enumerate(names):
            if not aggs[g].n_test:  # never a 0 bar without saying why
                ax.annotate("diverged" if not aggs[g].n else "test not scored", (i, 0), ha="center", va="bottom",
                            rotation=90, fontsize=7)
        ax.set_title("test accuracy")
        ax.tick_params(axis="x", rotation=45)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, axis="y")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(path, fig)
    plt.close(fig)


def weight_tiles(weights: np.ndarray) -> list[np.ndarray]:
    """First-layer weights as images: MLP units (U, 1024) -> 32x32; conv filters
    (F, C, k, k) -> k x k (grey) or k x k x 3 (RGB)."""
    w = np.asarray(weights, dtype=float)
    if w.ndim == 2:
        side = int(math.isqrt(w.shape[1]))
        channels = w.shape[1] // (side * side)
        tiles = w.reshape(len(w), channels, side, side)
    else:
        tiles = w
    out = []
    for t in tiles:  # (C, k, k), each scaled to [0, 1] on its own
        t = (t - t.min()) / (np.ptp(t) or 1.0)
        out.append(t[0] if t.shape[0] == 1 else np.moveaxis(t[:3], 0, -1))
    return out


def mosaic(tiles: list[np.ndarray], cols: int, gap: int = 1) -> np.ndarray:
    """Tiles (each h x w, or h x w x 3) in rows of `cols`, `gap` pixels apart; gaps
    are NaN (grey tiles, drawn as background) or 1.0 (white, RGB tiles)."""
    h, w = tiles[0].shape[:2]
    rows = math.ceil(len(tiles) / cols)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap) + tiles[0].shape[2:],
                  np.nan if tiles[0].ndim == 2 else 1.0)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = t
    return out


def plot_first_layer(weights: np.ndarray, title: str, path: Path) -> None:
    """Every unit's or filter's weights as one image, scaled on its own, in rows of 8:
    one mosaic in one axes (an axes per tile is far slower: docs/benchmarks.md)."""
    tiles = weight_tiles(weights)
    cols = min(8, len(tiles))
    image = mosaic(tiles, cols)
    rows = math.ceil(len(tiles) / cols)
    fig, ax = plt.subplots(figsize=(1.3 * cols, 1.3 * rows + 0.5))
    ax.axis("off")
    cmap = plt.get_cmap("gray").with_extremes(bad="white")
    ax.imshow(np.ma.masked_invalid(image) if image.ndim == 2 else image, cmap=cmap, vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_title(f"{title}: first-layer weights {tuple(np.shape(weights))}", fontsize=9)
    fig.tight_layout()
    save_figure(path, fig)
    plt.close(fig)


def plot_schedules(runs: dict, detections: list, switches: list, path: Path, title: str = "") -> None:
    """Runs against epochs: validation accuracy (with where the plateau rule
    found each curve's last improvement), training loss and learning rate.

    runs: {label: GroupAggregate whose means include M.EPOCH, M.VAL_ACC, M.LOSS, M.LR}
    detections: [(label of the run it was found on, Plateau)]: smoothed curve dashed,
        a dot at the last improvement
    switches: [(epoch, text)]: vertical lines at the chosen switch epochs
    """
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colors = {}
    for label, a in runs.items():
        epochs = a.mean[M.EPOCH]
        colors[label] = band(axes[0], epochs, a.mean[M.VAL_ACC], *interval(a, M.VAL_ACC),
                             f"{label} (n={a.n})", alpha=0.8).get_color()
        band(axes[1], epochs, a.mean[M.LOSS], *interval(a, M.LOSS), label, color=colors[label], alpha=0.8)
        axes[2].plot(epochs, a.mean[M.LR], color=colors[label], label=label, lw=1.5)
    for label, p in detections:
        color = colors.get(label, "black")
        axes[0].plot(p.epochs, p.smoothed, ls="--", lw=1.5, color=color)
        axes[0].plot([p.last_improvement], [p.best], "o", ms=7, mfc="white", mec=color, mew=2,
                     label=f"{label}: last rise at {p.last_improvement:.2f} -> switch {p.switch_epoch}"
                           + (" (clamped)" if p.clamped else "" if p.stalled else " (no stall)"))
    for ax in axes:
        for i, (epoch, text) in enumerate(switches):  # staggered: switches may be an epoch apart
            ax.axvline(epoch, color="grey", ls=":", lw=1)
            ax.annotate(text, (epoch, 1), xycoords=("data", "axes fraction"), xytext=(2, -10 - 9 * i),
                        textcoords="offset points", fontsize=7, color="grey")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    keep_in_view(axes[0], [a.mean[M.VAL_ACC] for a in runs.values()], accuracy=True)
    keep_in_view(axes[1], [a.mean[M.LOSS] for a in runs.values()], accuracy=False)
    axes[0].set_title("validation accuracy (dashed: smoothed, as the plateau rule sees it)")
    axes[0].legend(fontsize=6.5, loc="lower right")
    axes[1].set_title(TITLES[M.LOSS])
    axes[2].set_title("learning rate")
    axes[2].set_yscale("log")
    axes[2].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(path, fig)
    plt.close(fig)
