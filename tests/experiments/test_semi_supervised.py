"""experiments.semi_supervised at a tiny size: the variants, the IDM errors, the per-seed union."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from experiments import offline, semi_supervised
from jaxrl_icl.offline import concat_datasets, make_dataset, save_d4rl
from jaxrl_icl.offline.collect import action_scale, record_rollouts, uniform_policy
from jaxrl_icl.offline.inverse_dynamics import labelled_split


@pytest.fixture(scope="module")
def medium_file(tmp_path_factory):
    env, params = envs.make("gymnax:Pendulum-v1")
    arrays = record_rollouts(jax.random.PRNGKey(0), env, params, uniform_policy(env, params), num_envs=10,
                             num_steps=200, action_scale=action_scale(env, params))
    meta = {"env_name": "gymnax:Pendulum-v1", "ref_min_score": -1200.0, "ref_max_score": -200.0,
            "action_scale": 2.0, "mean_episode_return": float(arrays["rewards"].sum() / 10)}
    folder = tmp_path_factory.mktemp("datasets")
    save_d4rl(folder / "tiny-medium.hdf5", make_dataset(arrays), meta)
    return folder


@pytest.mark.slow
def test_tiny_run_has_every_variant_and_idm_errors(tmp_path, medium_file):
    summary = semi_supervised.main([
        "--env", "tiny", "--datasets-dir", str(medium_file), "--fractions", "0.2", "1", "--settings", "low_return",
        "--algos", "td3_bc", "--num-seeds", "2", "--num-updates", "20", "--eval-every", "10", "--eval-episodes", "1",
        "--final-evals", "1", "--hidden", "8", "--td3-bc.batch-size", "8", "--idm.num-updates", "20",
        "--idm.hidden", "16", "--idm.batch-size", "32", "--no-progress", "--run-dir", str(tmp_path / "run")])
    cells = summary["scores"]["medium"]["low_return"]
    assert set(cells["20%"]) == {"labelled", "proxy", "true"} and set(cells["100%"]) == {"true"}
    assert all(len(cells["20%"][v]["td3_bc"]["per_seed"]) == 2 for v in ("labelled", "proxy", "true"))
    errors = summary["idm_error"]["medium"]["low_return"]["20%"]
    assert np.isfinite(errors["held_out"]) and errors["unlabelled"] > 0
    assert set(summary["proxy_matches_true"]) == {"medium"}
    assert (tmp_path / "run" / "scores_medium_low_return.png").stat().st_size > 10_000
    assert "| medium | low_return | 20% |" in (tmp_path / "run" / "table.md").read_text()


def test_per_seed_union_keeps_true_labels_and_each_seeds_proxies(medium_file):
    from jaxrl_icl.offline import load_d4rl

    dataset, metadata = load_d4rl(medium_file / "tiny-medium.hdf5")
    labelled, unlabelled = labelled_split(dataset, 0.3, "random", seed=0)
    union = concat_datasets(labelled, unlabelled)
    cfg = offline.OfflineConfig(algo="td3_bc", dataset="tiny", num_seeds=3, num_updates=10, eval_every=10)
    prepared = offline.prepare_dataset(cfg, union, metadata)
    n_lab, n_un = labelled.rewards.shape[0], unlabelled.rewards.shape[0]
    proxy = jnp.stack([jnp.full((n_un, 1), v, jnp.float32) for v in (-0.5, 0.0, 0.5)])
    batched = semi_supervised.per_seed_union(prepared, n_lab, proxy)
    assert batched.chunking["params_per_seed"] and batched.data.observations.shape[0] == 3
    for s, v in enumerate((-0.5, 0.0, 0.5)):
        np.testing.assert_array_equal(batched.data.actions[s, :n_lab], union.actions[:n_lab])
        assert np.all(np.asarray(batched.data.actions[s, n_lab:]) == v)
        np.testing.assert_array_equal(batched.data.observations[s], prepared.data.observations)
