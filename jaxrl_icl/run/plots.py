"""Learning curves: mean over seeds with a 95% Student-t confidence band, saved as PNG.

The band at each x is ``mean +- t_{(1+level)/2, n-1} * std / sqrt(n)`` over the ``n`` seeds
with a finite value there (sample std, ``ddof=1``): the t-interval for the mean, not a
bootstrap, so it is deterministic. With one seed the band collapses onto the mean; x
values where no seed has a value are left out of the line.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator, NullFormatter

from jaxrl_icl.run.metrics import read_metrics
from jaxrl_icl.run.rundir import RunDir, write_atomic
from jaxrl_icl.stats import confidence_band


def plot_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | os.PathLike,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    hlines: Mapping[str, float] | None = None,
    *,
    marks: Mapping[str, Sequence[tuple[float, float, float | None, float | None]]] | None = None,
    marks_label: str = "reference",
    figsize: tuple[float, float] = (6.4, 4.0),
    dpi: int = 150,
    legend_below: bool = False,
) -> Path:
    """Draw one mean line with a 95% band per label and write a PNG atomically.

    Args:
      curves: label -> ``(x [T], y [num_seeds, T])``.
      path: output PNG path.
      xlabel, ylabel, title: axis labels and optional title.
      hlines: label -> y of a dashed reference line (e.g. an optimal return).
      marks: curve label -> points ``(x, y, low, high)`` drawn as diamonds in that curve's colour,
        with a ``low``-``high`` bar where both are given (e.g. another study's mean and range);
        one legend entry, ``marks_label``.
      figsize, dpi: image size is ``figsize * dpi`` pixels.
      legend_below: put the legend under the axes, in two columns (one where two would not
        fit the width), so that many entries hide no curve.

    Returns:
      ``path`` as a Path.
    """
    if not curves:
        raise ValueError("curves is empty: nothing to plot")
    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)  # render with Agg without touching pyplot's global backend
    ax = fig.subplots()
    _draw_bands(ax, curves)
    # the first reference line black, further ones grey with other dash patterns, so each is told apart
    styles = [("black", "--"), ("dimgray", ":"), ("gray", "-."), ("darkgray", (0, (5, 1, 1, 1, 1, 1)))]
    for i, (label, value) in enumerate((hlines or {}).items()):
        color, dash = styles[i % len(styles)]
        ax.axhline(value, color=color, linestyle=dash, linewidth=1.2, label=label)
    colours = {label: f"C{i}" for i, label in enumerate(curves)}
    for label, points in (marks or {}).items():
        for x, y, low, high in points:
            bar = None if low is None or high is None else [[y - low], [high - y]]
            ax.errorbar([x], [y], yerr=bar, fmt="D", color=colours.get(label, "black"), markersize=5, capsize=3,
                        markeredgecolor="black")
    if marks:
        ax.plot([], [], "D", color="lightgray", markeredgecolor="black", markersize=5, label=marks_label)
    if all(np.issubdtype(np.asarray(x).dtype, np.integer) for x, _ in curves.values()):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # episodes, updates: no 2.5 ticks
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if legend_below:
        legend_under_axes(fig, *ax.get_legend_handles_labels(), max_ncols=2)
    else:
        ax.legend(fontsize="small")
    return _save(fig, path, dpi)


FEW_POINTS = 8


def _draw_bands(ax, curves: Mapping[str, tuple[np.ndarray, np.ndarray]], dashes: bool = False) -> None:
    """Draw each ``label -> (x [T], y [num_seeds, T])`` as its mean line and 95% band on ``ax``;
    with ``dashes`` the i-th line is solid, dashed, dotted, ... so coinciding lines stay visible.
    Curves of at most ``FEW_POINTS`` points also mark each point, so that a curve of one
    point (e.g. a single measured size) is visible at all."""
    for i, (label, (x, y)) in enumerate(curves.items()):
        x, y = np.asarray(x), np.asarray(y)
        if y.ndim != 2 or x.shape != (y.shape[1],):
            raise ValueError(f"curve {label!r}: need x [T] and y [num_seeds, T], got {x.shape} and {y.shape}")
        mean, low, high = confidence_band(y)
        keep = np.isfinite(mean)
        marker = "o" if keep.sum() <= FEW_POINTS else None
        (line,) = ax.plot(x[keep], mean[keep], label=label, linestyle=("-", "--", ":", "-.")[i % 4] if dashes else "-",
                          marker=marker, markersize=4)
        ax.fill_between(x[keep], low[keep], high[keep], color=line.get_color(), alpha=0.25, linewidth=0)


def plot_curve_panels(
    panels: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
    path: str | os.PathLike,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    *,
    ncols: int = 3,
    log_x: bool = False,
    panel_size: tuple[float, float] = (3.6, 2.8),
    dpi: int = 130,
) -> Path:
    """A grid of :func:`plot_curves` panels, ``panel title -> curves``, on shared axes, as PNG.

    Each panel draws its ``label -> (x [T], y [num_seeds, T])`` curves as mean lines with 95%
    bands, labels keep their colour and dash pattern (solid, dashed, dotted, ...) across panels,
    and one legend below names them all.
    ``log_x`` puts x on a log axis.
    """
    if not panels:
        raise ValueError("panels is empty: nothing to plot")
    nrows = -(-len(panels) // ncols)
    width = max(panel_size[0] * ncols, 6.4)  # at least room for the title and a one-row legend
    fig = Figure(figsize=(width, panel_size[1] * nrows + 0.6), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    for ax, (panel_title, curves) in zip(axes.ravel(), panels.items()):
        _draw_bands(ax, curves, dashes=True)
        ax.set_title(panel_title, fontsize=9)
        ax.grid(alpha=0.3)
        if log_x:
            ax.set_xscale("log")
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel(xlabel)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    if title:
        fig.suptitle(title)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    legend_under_axes(fig, handles, labels)
    return _save(fig, path, dpi)


def legend_under_axes(fig: Figure, handles: list, labels: list[str], max_ncols: int | None = None) -> Any:
    """One legend under the axes of ``fig``, in as many columns (up to one per entry, or
    ``max_ncols``) as fit the figure's width, so that long labels wrap to more rows instead of
    running off the image."""
    renderer = fig.canvas.get_renderer()
    for ncols in range(min(len(labels), max_ncols or len(labels)), 0, -1):
        legend = fig.legend(handles, labels, loc="outside lower center", ncols=ncols, fontsize="small")
        if ncols == 1 or legend.get_window_extent(renderer).width <= fig.bbox.width:
            return legend
        legend.remove()


def plot_bars(
    values: Mapping[str, float],
    path: str | os.PathLike,
    ylabel: str,
    title: str | None = None,
    reference: tuple[str, float] | None = None,
    *,
    log_scale: bool = False,
    figsize: tuple[float, float] | None = None,
    dpi: int = 150,
) -> Path:
    """Horizontal bar chart of ``label -> value`` (e.g. a benchmark's throughputs) as PNG.

    ``reference = (label, value)`` draws a dashed line there (e.g. the baseline's level);
    ``log_scale`` puts the values on a log axis, where ratios read as equal distances. The
    default ``figsize`` is 6.4 inches wide and grows a quarter inch in height per bar past 12;
    the title is centred over the whole figure, so long bar labels do not push it off the edge.
    """
    if not values:
        raise ValueError("values is empty: nothing to plot")
    labels = list(values)
    data = np.asarray([values[k] for k in labels], dtype=float)
    if not np.all(np.isfinite(data)) or (log_scale and np.any(data <= 0)):
        raise ValueError(f"bar values must be finite{' and > 0 on a log scale' if log_scale else ''}: {values}")
    figsize = figsize or (6.4, max(4.0, 1.0 + 0.25 * len(labels)))
    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.barh(labels[::-1], data[::-1], color="tab:blue", alpha=0.8)
    if reference is not None:
        ax.axvline(reference[1], color="black", linestyle="--", linewidth=1, label=reference[0])
        ax.legend(fontsize="small")
    for label, value in zip(labels[::-1], data[::-1]):  # the value at the end of its bar
        ax.text(value, label, f" {value:,.0f}" if abs(value) >= 1000 else f" {value:.3g}", va="center",
                fontsize="small")
    if log_scale:  # bars start at the decade below the smallest value; no minor tick labels
        ax.set_xscale("log")
        ax.set_xlim(10 ** np.floor(np.log10(data.min())), data.max() * 3)
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.set_xlim(right=data.max() * 1.15 if data.max() > 0 else None)
    ax.set_xlabel(ylabel)
    if title:
        fig.suptitle(title)
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path, dpi)


def plot_paired_bars(pairs: Mapping[str, tuple[float, float]], names: tuple[str, str], path: str | os.PathLike,
                     ylabel: str, title: str) -> Path:
    """Log-scale bars of two implementations side by side: ``case -> (first, second)`` values,
    labelled ``"<names[0]>, <case>"`` and ``"<names[1]>, <case>"`` (e.g. ours vs a reference)."""
    values = {}
    for case, (first, second) in pairs.items():
        values[f"{names[0]}, {case}"] = first
        values[f"{names[1]}, {case}"] = second
    return plot_bars(values, path, ylabel=ylabel, title=title, log_scale=True)


def plot_grouped_bars(
    groups: Mapping[str, Mapping[str, tuple[float, float]]],
    path: str | os.PathLike,
    ylabel: str,
    title: str | None = None,
    marks: tuple[str, Mapping[str, float]] | None = None,
    *,
    dpi: int = 150,
) -> Path:
    """Vertical bars grouped on the x axis: ``group -> series -> (mean, std)``, one colour per
    series (the same series in every group, in the first group's order), std as error bars.

    ``marks = (label, group -> value)`` draws a short black line across each group at its value
    (e.g. the dataset's own score behind an offline RL table). A series missing from a group
    leaves a gap. Non-finite means are an error."""
    if not groups:
        raise ValueError("groups is empty: nothing to plot")
    series = list(dict.fromkeys(name for group in groups.values() for name in group))
    bad = {(g, s): v for g, group in groups.items() for s, v in group.items() if not np.all(np.isfinite(v))}
    if bad:
        raise ValueError(f"bar values must be finite: {bad}")
    width = 0.8 / len(series)
    fig = Figure(figsize=(max(6.4, 1.7 * len(groups) * max(1, len(series) / 4)), 4.2), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    x = np.arange(len(groups))
    for i, name in enumerate(series):
        offsets = x - 0.4 + (i + 0.5) * width
        present = [(o, group[name]) for o, group in zip(offsets, groups.values()) if name in group]
        if present:
            o, values = zip(*present)
            means, stds = np.asarray(values, dtype=float).T
            ax.bar(o, means, width, yerr=stds, capsize=2, color=f"C{i}", alpha=0.85, label=name)
    if marks is not None:
        label, values = marks
        drawn = [(j, values[group]) for j, group in enumerate(groups) if group in values]
        for n, (j, value) in enumerate(drawn):
            ax.hlines(value, j - 0.45, j + 0.45, color="black", linewidth=1.5, label=None if n else label)
    ax.set_xticks(x, list(groups))
    ax.set_ylabel(ylabel)
    if title:  # over the whole figure: the legend sits outside the axes
        fig.suptitle(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path, dpi)


class HistogramPanel(NamedTuple):
    """One panel of :func:`plot_histograms`.

    Attributes:
      title: the panel's title.
      series: label -> values ``[N]`` (e.g. episode returns), overlaid in colours C0, C1, ...
      bins: bin edges shared by the panel's series.
      marks: series label -> (mark label -> x), vertical lines such as a mean or a CVaR;
        the first mark of a series is solid, the second dashed.
    """

    title: str
    series: Mapping[str, np.ndarray]
    bins: np.ndarray
    marks: Mapping[str, Mapping[str, float]] = {}


def plot_histograms(
    panels: Sequence[Sequence[HistogramPanel]],
    path: str | os.PathLike,
    xlabel: str,
    ylabel: str,
    *,
    figsize: tuple[float, float],
    legend_fontsize: float | str | None = None,
    dpi: int = 110,
) -> Path:
    """Histograms on log counts, a grid of panels (rows of :class:`HistogramPanel`), as PNG.

    A panel with one series draws it in C0 with its marks black (first) and red dashed
    (second), and the legend names the marks; a panel with several series draws each in
    its own colour, half transparent, with its marks in that colour, and the legend names
    the series. The first column carries the y label and the legend.
    """
    if not panels or not all(panels) or len({len(row) for row in panels}) != 1:
        raise ValueError("panels: need a non-empty grid of rows of equal length")
    fig = Figure(figsize=figsize)
    axes = fig.subplots(len(panels), len(panels[0]), squeeze=False)
    for row, panel_row in enumerate(panels):
        for col, panel in enumerate(panel_row):
            ax, single = axes[row, col], len(panel.series) == 1
            for i, (label, values) in enumerate(panel.series.items()):
                color = f"C{i}"
                ax.hist(values, bins=panel.bins, color=color, alpha=0.8 if single else 0.55,
                        label=None if single else label)
                for j, (mark, x) in enumerate(panel.marks.get(label, {}).items()):
                    ax.axvline(x, color=("k", "C3")[j] if single else color, lw=1.2, ls=("-", "--")[j],
                               label=mark if single else None)
            ax.set_yscale("log")
            ax.set_title(panel.title, fontsize=9)
            ax.set_xlabel(xlabel)
            if col == 0:
                ax.set_ylabel(ylabel)
                ax.legend(fontsize=legend_fontsize)
    fig.tight_layout()
    return _save(fig, path, dpi)


def plot_log_maps(
    maps: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    *,
    floor: float,
    outline: tuple[int, int, int, int] | None = None,
    cell_text: Mapping[tuple[int, int], tuple[str, str]] | None = None,
    width: float = 7.5,
    panel_height: float = 2.0,
    dpi: int = 110,
) -> Path:
    """Grid-world maps ``label -> float[rows, cols]`` stacked vertically, on a log colour
    scale with a colour bar each, as PNG (e.g. mean visits per episode to each cell).

    Values below ``floor`` are drawn at ``floor``; NaN cells stay blank. ``outline =
    (row, col, height, width)`` draws a red rectangle around those cells (e.g. a cliff);
    ``cell_text`` maps ``(row, col) -> (text, colour)`` (e.g. start and goal).
    """
    if not maps:
        raise ValueError("maps is empty: nothing to plot")
    fig = Figure(figsize=(width, panel_height * len(maps)))
    axes = fig.subplots(len(maps), 1, squeeze=False)
    for ax, (label, values) in zip(axes[:, 0], maps.items(), strict=True):
        values = np.asarray(values, np.float64)
        if values.ndim != 2:
            raise ValueError(f"map {label!r}: need [rows, cols], got shape {values.shape}")
        values = np.where(np.isnan(values), np.nan, np.maximum(values, floor))
        image = ax.imshow(values, cmap="viridis", norm=LogNorm(floor, max(np.nanmax(values), 10 * floor)))
        if outline is not None:
            row, col, height, cols = outline
            ax.add_patch(Rectangle((col - 0.5, row - 0.5), cols, height, fill=False, ec="red", lw=2))
        for (row, col), (text, color) in (cell_text or {}).items():
            ax.text(col, row, text, ha="center", va="center", color=color)
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(image, ax=ax, fraction=0.02)
    fig.tight_layout()
    return _save(fig, path, dpi)


def plot_heatmaps(
    maps: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    *,
    extent: tuple[float, float, float, float],
    xlabel: str,
    ylabel: str,
    colorbar_label: str,
    value_range: tuple[float, float] = (0.0, 1.0),
    decade_ticks: bool = False,
    dpi: int = 120,
) -> Path:
    """Heat maps ``title -> float[rows, cols]`` side by side on one linear colour scale, as PNG.

    Row 0 is drawn at the bottom. ``extent = (x_low, x_high, y_low, y_high)`` places the
    cells on the axes (columns along x, rows along y); ``value_range`` fixes the colour
    scale (one colour bar for all panels). With ``decade_ticks`` the axes are log10
    coordinates: ticks at whole decades, labelled with ``10 ** t`` (e.g. 0.01, 1, 100).
    """
    if not maps:
        raise ValueError("maps is empty: nothing to plot")
    fig = Figure(figsize=(4.2 * len(maps) + 0.8, 3.8), layout="constrained")
    axes = fig.subplots(1, len(maps), squeeze=False)[0]
    x_low, x_high, y_low, y_high = extent
    for ax, (title, values) in zip(axes, maps.items(), strict=True):
        values = np.asarray(values, np.float64)
        if values.ndim != 2:
            raise ValueError(f"map {title!r}: need [rows, cols], got shape {values.shape}")
        image = ax.imshow(values, origin="lower", extent=extent, aspect="auto", vmin=value_range[0],
                          vmax=value_range[1], cmap="viridis")
        ax.set_title(title)
        if decade_ticks:
            for axis, low, high in ((ax.xaxis, x_low, x_high), (ax.yaxis, y_low, y_high)):
                ticks = np.arange(np.ceil(low), np.floor(high) + 1)
                axis.set_ticks(ticks, [f"{10.0**t:g}" for t in ticks])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    fig.colorbar(image, ax=list(axes), label=colorbar_label)
    return _save(fig, path, dpi)


def _save(fig: Figure, path: str | os.PathLike, dpi: int) -> Path:
    """Render ``fig`` to PNG bytes and write them to ``path`` atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    path = Path(path)
    write_atomic(path, buffer.getvalue())
    return path


def moving_average(y: np.ndarray, window: int) -> np.ndarray:
    """Means of ``window`` consecutive values along the last axis: ``[..., T] -> [..., T - window + 1]``."""
    y = np.asarray(y, np.float64)
    if not 1 <= window <= y.shape[-1]:
        raise ValueError(f"window: must be in [1, {y.shape[-1]}] (the series length), got {window}")
    sums = np.cumsum(np.concatenate([np.zeros((*y.shape[:-1], 1)), y], axis=-1), axis=-1)
    return (sums[..., window:] - sums[..., :-window]) / window


def plot_training_loss(updates: np.ndarray, loss: np.ndarray, path: str | os.PathLike, title: str,
                       ylabel: str = "cross-entropy", floor: tuple[str, float] | None = None) -> Path:
    """Loss per update ``loss [num_seeds, T]`` at ``updates [T]``, with its running mean over
    ``T // 30`` updates (at least 1) drawn on top, so the trend shows through minibatch noise.
    ``floor = (label, value)`` draws the lowest reachable loss as a dashed line."""
    loss = np.asarray(loss)
    window = max(1, loss.shape[-1] // 30)
    curves = {"per update": (updates, loss)}
    if window > 1:
        curves[f"mean of {window} updates"] = (np.asarray(updates)[window - 1:], moving_average(loss, window))
    return plot_curves(curves, path, xlabel="update", ylabel=ylabel, title=title,
                       hlines=None if floor is None else {floor[0]: floor[1]})


def plot_run(run_dir: str | os.PathLike, metric: str, path: str | os.PathLike | None = None) -> Path:
    """Plot ``metric`` of one run against env steps (default ``<run>/<metric>.png``)."""
    run, _ = RunDir.open(run_dir)
    log = read_metrics(run.metrics_path)
    if metric not in log.values:
        raise ValueError(f"{run.path}: no metric {metric!r}; available: {', '.join(log.values) or 'none'}")
    out = run.plot_path(metric) if path is None else Path(path)
    return plot_curves(
        {f"{run.experiment} ({run.path.name})": (log.steps, log.values[metric])},
        out, xlabel="env steps", ylabel=metric, title=run.experiment,
    )
