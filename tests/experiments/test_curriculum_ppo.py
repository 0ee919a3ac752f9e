"""experiments.curriculum_ppo at a tiny budget: run directory, summary, plots (the task-pool env
is tested in tests/envs/test_task_pool_cartpole.py, the loop in tests/curriculum/test_student_loop.py)."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from experiments import curriculum_ppo
from jaxrl_icl.stats import difference_intervals_text, paired_difference, welch_difference


def test_grid_is_even_in_log_scale_and_covers_the_box():
    config = curriculum_ppo.CurriculumPPOConfig(length_range=(0.01, 1.0), force_range=(0.1, 1000.0), grid_size=2)
    grid = config.grid_tasks()
    # cell centres of [-2, 0] x [-1, 3] cut in halves, length-major
    np.testing.assert_allclose(grid, [[-1.5, 0.0], [-1.5, 2.0], [-0.5, 0.0], [-0.5, 2.0]], atol=1e-6)
    np.testing.assert_allclose(curriculum_ppo.to_physical(jnp.asarray(grid))[0], [10**-1.5, 1.0], rtol=1e-5)


def test_welch_difference_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.3, 0.05, 16), rng.normal(0.35, 0.02, 12)
    diff, low, high = welch_difference(a, b)
    va, vb = a.var(ddof=1) / 16, b.var(ddof=1) / 12
    dof = (va + vb) ** 2 / (va**2 / 15 + vb**2 / 11)
    half = stats.t.ppf(0.975, int(dof)) * np.sqrt(va + vb)
    assert diff == pytest.approx(b.mean() - a.mean())
    assert (low, high) == pytest.approx((diff - half, diff + half), rel=1e-6)
    assert welch_difference(np.ones(3), np.ones(3) * 2) == (1.0, 1.0, 1.0)


def test_one_seed_gives_no_interval_rather_than_a_point():
    """One value per side carries no estimate of spread, so both intervals are NaN (written as
    null by write_json), never a zero-width interval that claims certainty."""
    for (diff, low, high), expected in ((welch_difference([1.0], [3.0, 4.0]), 2.5),
                                        (paired_difference([1.0], [3.0]), 2.0)):
        assert diff == expected
        assert np.isnan(low) and np.isnan(high)
    # ...and the experiments print so instead of "[nan, nan]"
    assert difference_intervals_text([np.nan] * 2, [np.nan] * 2, 1) == "no interval from 1 training seed"
    assert difference_intervals_text([-0.5, 1.25], [0.1, 0.9], 5) == (
        "95% CI [-0.50, +1.25]; paired by seed [+0.10, +0.90]; 5 seeds")


@pytest.mark.slow
def test_experiment_writes_summary_and_plots(tmp_path, capsys):
    run_dir = tmp_path / "run"
    # one teacher keeps the compile short; the random teacher shares every code path but the teacher
    curriculum_ppo.main(["--teachers", "alp-gmm", "--num-seeds", "2", "--num-rounds", "2", "--eval-every", "1",
                         "--grid-size", "2",
                         "--tasks-per-round", "4", "--fit-rate", "4", "--max-k", "2", "--max-steps", "30",
                         "--ppo.num-envs", "4", "--ppo.num-steps", "16", "--run-dir", str(run_dir),
                         "--no-progress"])
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = summary["final_grid_competence"]
    assert set(rows) == {"alp-gmm"}
    for row in rows.values():
        assert len(row["per_seed"]) == 2 and all(0 <= x <= 1 for x in row["per_seed"])
        assert row["mean"] == pytest.approx(np.mean(row["per_seed"]))
        assert row["rejected_reports"] == 0
    assert summary["env_steps_per_seed"] == 2 * 2 * 4 * 16
    assert summary["alp_gmm_minus_random"] is None  # needs both teachers
    assert (run_dir / "competence.png").stat().st_size > 0 and (run_dir / "grid.png").stat().st_size > 0
    assert str(run_dir) in capsys.readouterr().out


def test_bad_config_fails_before_compute(tmp_path, capsys):
    for flags in (["--teachers", "riac"], ["--length-range", "1.0", "0.5"], ["--eval-every", "7"]):
        with pytest.raises(SystemExit):
            curriculum_ppo.main([*flags, "--run-dir", str(tmp_path / "bad")])
        assert not (tmp_path / "bad").exists()


def test_paired_difference_matches_scipy_and_is_tighter_when_seeds_dominate():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    seed_effect = rng.normal(0.0, 5.0, 6)
    a, b = seed_effect + rng.normal(0.0, 0.1, 6), seed_effect + 0.3 + rng.normal(0.0, 0.1, 6)
    diff, low, high = paired_difference(a, b)
    ci = stats.ttest_rel(b, a).confidence_interval(0.95)
    assert diff == pytest.approx(np.mean(b - a))
    assert (low, high) == pytest.approx((ci.low, ci.high), rel=1e-6)
    welch = welch_difference(a, b)
    assert high - low < (welch[2] - welch[1]) / 10 and low > 0 > welch[1]
    with pytest.raises(ValueError, match="one length"):
        paired_difference(a, b[:5])
