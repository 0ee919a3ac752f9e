"""Learning-curve plots: the t-interval band, PNG output, and the experiments.plot CLI."""

from __future__ import annotations

import dataclasses
import math
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import plot as plot_cli
from jaxrl_icl.run import plots
from jaxrl_icl.run.metrics import MetricsWriter
from jaxrl_icl.run.plots import plot_curves, plot_run
from jaxrl_icl.run.rundir import RunDir
from jaxrl_icl.stats import confidence_band, t_quantile

REPO = Path(__file__).resolve().parents[2]

# Two-sided 95% Student-t critical values t_{0.975, dof} from printed statistical tables.
T_TABLE_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 10: 2.228, 20: 2.086, 30: 2.042}


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("dof", sorted(T_TABLE_95))
def test_t_quantile_matches_tables(dof):
    assert t_quantile(0.95, dof) == pytest.approx(T_TABLE_95[dof], abs=6e-4)


def test_t_quantile_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for level in (0.5, 0.9, 0.95, 0.99):
        for dof in (1, 2, 3, 7, 8, 31, 200):
            assert t_quantile(level, dof) == pytest.approx(stats.t.ppf((1 + level) / 2, dof), rel=1e-9)


def test_band_on_known_array():
    nan = np.nan
    y = np.array([
        [1.0, 2.0, nan, 7.0],
        [3.0, 4.0, nan, nan],
        [5.0, nan, nan, np.inf],
        [7.0, 8.0, nan, nan],
    ])
    mean, low, high = confidence_band(y)
    # Column 0: n=4, mean 4, sample std sqrt(20/3); column 1: n=3, mean 14/3; column 3: one value.
    # Half-widths in units of the standard error are the (3-decimal) table t values.
    se0 = math.sqrt(20 / 3) / math.sqrt(4)
    se1 = math.sqrt(((2 - 14 / 3) ** 2 + (4 - 14 / 3) ** 2 + (8 - 14 / 3) ** 2) / 2) / math.sqrt(3)
    np.testing.assert_allclose(mean[[0, 1, 3]], [4.0, 14 / 3, 7.0])
    np.testing.assert_allclose((high[0] - 4.0) / se0, T_TABLE_95[3], atol=6e-4)
    np.testing.assert_allclose((4.0 - low[0]) / se0, T_TABLE_95[3], atol=6e-4)
    np.testing.assert_allclose((high[1] - 14 / 3) / se1, T_TABLE_95[2], atol=6e-4)
    np.testing.assert_allclose((14 / 3 - low[1]) / se1, T_TABLE_95[2], atol=6e-4)
    assert low[3] == high[3] == 7.0
    assert np.isnan(mean[2]) and np.isnan(low[2]) and np.isnan(high[2])


def test_band_matches_nan_numpy_formula():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(6, 50))
    y[rng.random(y.shape) < 0.3] = np.nan
    mean, low, high = confidence_band(y)
    n = np.sum(~np.isnan(y), axis=0)
    ok = n >= 2
    t = np.array([t_quantile(0.95, k - 1) for k in n[ok]])
    half = t * np.nanstd(y[:, ok], axis=0, ddof=1) / np.sqrt(n[ok])
    np.testing.assert_allclose(mean[ok], np.nanmean(y[:, ok], axis=0), rtol=1e-12)
    np.testing.assert_allclose(high[ok] - mean[ok], half, rtol=1e-10)
    np.testing.assert_allclose(mean[ok] - low[ok], half, rtol=1e-10)


def test_plot_curves_writes_png_of_requested_size(tmp_path):
    x = np.arange(20) * 100
    rng = np.random.default_rng(0)
    y = np.cumsum(rng.normal(size=(5, 20)), axis=1)
    y[:, 7] = np.nan  # a point no seed has: skipped
    out = plot_curves(
        {"ppo": (x, y), "dqn": (x, y + 2.0)}, tmp_path / "curves.png", xlabel="env steps", ylabel="return",
        title="toy", hlines={"optimal": 5.0}, figsize=(5.0, 3.0), dpi=80,
    )
    assert out == tmp_path / "curves.png"
    assert out.stat().st_size > 5_000
    assert png_size(out) == (400, 240)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]  # no temporaries left


def test_plot_curves_legend_below_keeps_the_requested_size(tmp_path):
    x, y = np.arange(5), np.ones((2, 5))
    out = plot_curves({f"curve {i}": (x, y * i) for i in range(6)}, tmp_path / "c.png", "x", "y",
                      hlines={"ref": 1.0}, figsize=(5.0, 4.0), dpi=80, legend_below=True)
    assert png_size(out) == (400, 320)


def test_a_curve_of_one_point_is_drawn(tmp_path):
    # one measured size, e.g. a single context length: a line through one point draws nothing
    import matplotlib.image

    c0 = np.array([0x1F, 0x77, 0xB4]) / 255  # matplotlib's first colour, C0

    def c0_pixels(y):
        out = plot_curves({"one": (np.array([1024]), np.array([[y]]))}, tmp_path / "one.png", "x", "y", dpi=80)
        return np.sum(np.all(np.abs(matplotlib.image.imread(out)[..., :3] - c0) < 0.05, axis=-1))

    drawn = c0_pixels(4500.0)
    assert drawn >= 10  # the marker's pixels (legend line too)
    assert c0_pixels(np.nan) < drawn  # a point no seed has leaves only the legend's line


@pytest.mark.parametrize("words, fitting_columns", [(1, 3), (8, 1)])
def test_legend_under_axes_wraps_long_labels_to_fit_the_figure(words, fitting_columns):
    # three labels side by side on a 6.4-inch figure: short ones in one row, long ones (as
    # long_context's "Q-learning, source (16 histories, same goals)") stacked in one column
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for i in range(3):
        ax.plot([0, 1], [i, i], label=" ".join([f"series{i}"] * words))
    legend = plots.legend_under_axes(fig, *ax.get_legend_handles_labels())
    assert legend._ncols == fitting_columns and fig.legends == [legend]
    assert legend.get_window_extent(fig.canvas.get_renderer()).width <= fig.bbox.width
    if words == 1:  # plot_curves' two-column cap: the short labels fit three, two are drawn
        legend.remove()
        assert plots.legend_under_axes(fig, *ax.get_legend_handles_labels(), max_ncols=2)._ncols == 2


def test_plot_curves_rejects_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match="'a'"):
        plot_curves({"a": (np.arange(3), np.zeros((2, 4)))}, tmp_path / "x.png", "x", "y")
    with pytest.raises(ValueError, match="empty"):
        plot_curves({}, tmp_path / "x.png", "x", "y")
    assert not any(tmp_path.iterdir())


@dataclasses.dataclass(frozen=True)
class FakeConfig:
    lr: float = 0.1


def fake_run(root: Path, experiment: str, name: str, offset: float, metrics=("return", "loss")) -> RunDir:
    run = RunDir.create(experiment, FakeConfig(), path=root / experiment / name)
    rng = np.random.default_rng(len(name))
    updates = np.arange(1, 31)
    values = {m: offset + np.cumsum(rng.normal(0.1, 1.0, size=(4, 30)), axis=1) for m in metrics}
    MetricsWriter(run.metrics_path).write(updates, updates * 64, values)
    return run


def test_plot_run(tmp_path):
    run = fake_run(tmp_path, "ppo_cartpole", "20240101-000000", 0.0)
    out = plot_run(run.path, "return")
    assert out == run.plot_path("return") and png_size(out)[0] > 0
    with pytest.raises(ValueError, match=f"{re.escape(str(run.path))}: no metric 'nope'; available: loss, return"):
        plot_run(run.path, "nope")


def test_cli_overlays_runs(tmp_path):
    a = fake_run(tmp_path, "ppo", "20240101-000000", 0.0)
    b = fake_run(tmp_path, "dqn", "20240102-000000", 3.0)
    out = plot_cli.main([str(a.path), str(b.path), "--out", str(tmp_path / "cmp.png"), "--label", "A", "B"])
    assert out == tmp_path / "cmp.png" and out.stat().st_size > 5_000
    # Default metric: the first common one (alphabetical): "loss".
    single = plot_cli.main([str(a.path)])
    assert single == a.plot_path("loss") and single.is_file()


def test_cli_errors_name_the_run_dir(tmp_path):
    a = fake_run(tmp_path, "ppo", "r1", 0.0)
    b = fake_run(tmp_path, "dqn", "r2", 0.0, metrics=("episode_length",))
    with pytest.raises(ValueError, match=f"{re.escape(str(b.path))}: no metric 'return'; available: episode_length"):
        plot_cli.main([str(a.path), str(b.path), "--metric", "return"])
    with pytest.raises(ValueError, match=f"no metric common.*{re.escape(str(b.path))}: episode_length"):
        plot_cli.main([str(a.path), str(b.path)])
    empty = tmp_path / "not_a_run"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=f"{re.escape(str(empty))}: no metrics.jsonl"):
        plot_cli.main([str(a.path), str(empty)])
    with pytest.raises(ValueError, match="--label: got 1 labels for 2 runs"):
        plot_cli.main([str(a.path), str(b.path), "--label", "only-one"])


def test_cli_as_module(tmp_path):
    a = fake_run(tmp_path, "ppo", "r1", 0.0)
    out = tmp_path / "out.png"
    done = subprocess.run(
        [sys.executable, "-m", "experiments.plot", str(a.path), "--metric", "return", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out) and out.is_file()
    failed = subprocess.run(
        [sys.executable, "-m", "experiments.plot", str(a.path), "--metric", "nope"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    assert failed.returncode == 1 and str(a.path) in failed.stderr and "available: loss, return" in failed.stderr


def test_moving_average_matches_convolution_and_rejects_bad_windows(tmp_path):
    y = np.random.default_rng(0).normal(size=(3, 40))
    for window in (1, 5, 40):
        expected = np.stack([np.convolve(row, np.ones(window) / window, mode="valid") for row in y])
        np.testing.assert_allclose(plots.moving_average(y, window), expected, atol=1e-12)
    for window in (0, 41):
        with pytest.raises(ValueError, match="window"):
            plots.moving_average(y, window)
    path = plots.plot_training_loss(np.arange(1, 41), y, tmp_path / "loss.png", "loss")
    assert path.stat().st_size > 0


def test_plot_histograms_writes_a_grid_of_panels_of_the_requested_size(tmp_path):
    rng = np.random.default_rng(0)
    bins = np.arange(-10.5, 1.5)
    one = plots.HistogramPanel("one series", {"a": rng.integers(-10, 1, 200)}, bins, {"a": {"mean": -5.0, "cvar": -9}})
    two = plots.HistogramPanel("two series", {"a": rng.integers(-10, 1, 200), "b": rng.integers(-5, 1, 200)}, bins,
                               {"a": {"mean": -5.0}, "b": {"mean": -2.5, "cvar": -4.5}})
    out = plots.plot_histograms([[one, two], [two, one]], tmp_path / "h.png", "return", "episodes",
                                figsize=(6.0, 4.0), dpi=50, legend_fontsize=7)
    assert png_size(out) == (300, 200) and out.stat().st_size > 5_000
    with pytest.raises(ValueError, match="panels"):
        plots.plot_histograms([[one, two], [one]], tmp_path / "ragged.png", "x", "y", figsize=(4.0, 4.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.png"]


def test_plot_log_maps_writes_one_panel_per_map(tmp_path):
    visits = np.linspace(0.0, 2.0, 12).reshape(3, 4)
    visits[0, 3] = np.nan  # blank cell
    out = plots.plot_log_maps({"a": visits, "b": visits / 10}, tmp_path / "m.png", floor=1e-3, outline=(2, 1, 1, 2),
                              cell_text={(2, 0): ("S", "w")}, width=4.0, panel_height=1.5, dpi=50)
    assert png_size(out) == (200, 150)
    with pytest.raises(ValueError, match="map 'flat'"):
        plots.plot_log_maps({"flat": np.ones(4)}, tmp_path / "x.png", floor=1e-3)
    with pytest.raises(ValueError, match="empty"):
        plots.plot_log_maps({}, tmp_path / "x.png", floor=1e-3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png"]
