"""experiments.bench offline at a tiny size, and the JAX-CORL-design reference as a second
implementation of our TD3+BC losses (same params, same batch, same numbers)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.bench_ref import jaxcorl_offline as ref
from experiments.benchmarks import offline
from jaxrl_icl.offline import td3_bc
from jaxrl_icl.offline.dataset import make_dataset
from jaxrl_icl.offline.networks import DeterministicActor, TwinCritic
from tests.experiments.test_bench import _run


@pytest.mark.slow  # compiles both trainers and the 8-update reference: minutes on a loaded 2-core CPU
def test_offline_suite_rows_and_files(tmp_path):
    rows = _run("offline", ["--algos", "td3_bc", "--num-seeds", "1", "2", "--dataset-size", "3000",
                            "--max-total-updates", "16", "--repeats", "1", "--peak-size", "64", "--roofline",
                            "--bandwidth-mb", "16", "--profile"], tmp_path)
    peak, bandwidth, one, flops, fraction, sequential, vmapped, *roofline = rows  # --profile: no rows on a CPU
    compute1, traffic1, compute2, traffic2, floor_ratio = roofline
    assert bandwidth["unit"] == "B/s" and bandwidth["ours"] > 0
    assert compute1["case"].startswith("td3_bc, 1 seed: seconds per update vs compute floor")
    assert traffic2["case"].startswith("td3_bc, 2 seeds: seconds per update vs XLA's bytes accessed")
    # both rows of a seed count time the same measurement; the floor is exactly the FLOPs over
    # the peak, so two seeds' floor is twice one seed's (XLA counts the vmapped FLOPs)
    assert compute1["ours"] == traffic1["ours"] and compute2["ours"] == traffic2["ours"]
    assert compute1["reference"] == pytest.approx(flops["ours"] / peak["ours"] / one["ours"], rel=0.02)
    assert compute2["reference"] == pytest.approx(2 * compute1["reference"], rel=0.01)
    assert floor_ratio["ours"] == pytest.approx(compute2["reference"] / compute1["ours"])
    assert peak["case"].startswith("peak FLOP/s") and peak["unit"] == "FLOP/s" and peak["reference"] is None
    assert one["case"] == "td3_bc, 1 seed x 16 updates: vs reference" and one["unit"] == "updates/s"
    assert flops["case"].startswith("td3_bc, 1 seed: achieved FLOP/s (") and flops["unit"] == "FLOP/s"
    assert fraction["ours"] == pytest.approx(flops["ours"] / peak["ours"])
    assert sequential["case"] == "td3_bc, 2 seeds x 8 updates: ours vs reference seeds one after another"
    assert sequential["reference"] > 0  # the 1-seed rate, timed again beside the 2 seeds
    assert vmapped["case"] == "td3_bc, 2 seeds x 8 updates: ours vs reference vmapped"
    assert (tmp_path / "offline" / "offline.png").stat().st_size > 0


@pytest.mark.slow  # compiles the 8-update reference
def test_flops_per_update_is_the_td3_bc_matmul_count():
    """XLA's count for one TD3+BC update against the matmul FLOPs written out by hand (batch B,
    per-sample multiply-adds of the 256-256 actor A and of one critic C): elementwise work
    adds only a little on top."""
    obs, act, h, batch = 17, 6, 256, ref.BATCH_SIZE
    actor = obs * h + h * h + h * act
    critic = (obs + act) * h + h * h + h
    # critic step: target actor and twin target critics forward, twin critics forward and
    # weight gradients, input gradients of their upper two layers
    critic_step = actor + 2 * critic + 2 * critic + 2 * critic + 2 * (h * h + h)
    # actor step: actor forward, Q1 forward and its input gradient, actor weight gradients and
    # input gradients of its upper two layers
    actor_step = actor + critic + critic + actor + (h * h + h * act)
    matmul = 2 * batch * (critic_step + actor_step / ref.POLICY_FREQ)
    init, update_n_times = ref.make_td3_bc(obs, act)
    data = ref.dataset_dict(np.zeros((10, obs)), np.zeros((10, act)), np.zeros(10), np.zeros((10, obs)), np.zeros(10))
    counted = offline.cost_per_update(update_n_times, init(jax.random.PRNGKey(0)), data, jax.random.PRNGKey(1))
    assert matmul <= counted["flops"] <= 1.05 * matmul
    # the roofline's vmapped count: three seeds are three times the work, and read at least
    # their parameters (actor, twin critics and their targets, float32) once per update
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    three = offline.cost_per_update(jax.vmap(update_n_times, in_axes=(0, None, 0)), jax.vmap(init)(keys), data, keys)
    assert three["flops"] == pytest.approx(3 * counted["flops"], rel=0.01)
    assert three["bytes"] >= 3 * 4 * 2 * (actor + 2 * critic)


def _to_reference_critic(params):
    """Our TwinCritic's params (one ensemble, members on the leading axis) in the reference
    DoubleCritic's layout ({MLP_0, MLP_1})."""
    member = lambda i: jax.tree.map(lambda p: p[i], params["params"]["ensemble"])  # noqa: E731
    return {"params": {"MLP_0": member(0), "MLP_1": member(1)}}


def test_td3_bc_losses_match_the_reference_implementation():
    """One update of our trainer (policy_freq 1) from its init: its critic and actor losses equal
    the reference's losses on the same batch (the same indices and smoothing noise) and params."""
    obs_dim, act_dim, n = 17, 6, 500
    rng = np.random.default_rng(0)
    arrays = {"observations": rng.standard_normal((n, obs_dim), np.float32),
              "actions": rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
              "rewards": rng.standard_normal(n, np.float32), "terminals": rng.random(n) < 0.1,
              "next_observations": rng.standard_normal((n, obs_dim), np.float32)}
    config = td3_bc.TD3BCConfig(policy_freq=1)
    trainer = td3_bc.make_train(config, obs_dim, act_dim)
    dataset = make_dataset(arrays)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(3), dataset)
    new_state, metrics = jax.jit(trainer.update)(state, dataset)
    data = ref.dataset_dict(arrays["observations"], arrays["actions"], arrays["rewards"],
                            arrays["next_observations"], arrays["terminals"])
    actor, critic = ref.Actor(act_dim), ref.DoubleCritic()
    obs = jnp.asarray(arrays["observations"][:4])

    @jax.jit  # one compiled program for the reference's side
    def reference(state, new_state, data, obs):
        # the trainer's draws: critic batch and noise; the actor learns on the same batch
        _, k_batch, k_noise = jax.random.split(state.key, 3)
        idx = jax.random.randint(k_batch, (config.batch_size,), 0, n)
        noise = jnp.clip(config.policy_noise * jax.random.normal(k_noise, (config.batch_size, act_dim)),
                         -config.noise_clip, config.noise_clip)
        batch = jax.tree.map(lambda x: x[idx], data)
        target = ref.td3_bc_target(state.target_actor, _to_reference_critic(state.target_critic), actor, critic,
                                   batch, noise)
        critic_loss = ref.td3_bc_critic_loss(_to_reference_critic(state.critic), critic, target, batch)
        actor_loss = ref.td3_bc_actor_loss(state.actor, _to_reference_critic(new_state.critic), actor, critic,
                                           batch)
        # both layouts' networks on a few observations
        zeros = jnp.zeros((4, act_dim))
        nets = (DeterministicActor(act_dim).apply(state.actor, obs), actor.apply(state.actor, obs),
                TwinCritic().apply(state.critic, obs, zeros),
                jnp.stack(critic.apply(_to_reference_critic(state.critic), obs, zeros)))
        return critic_loss, actor_loss, nets

    critic_loss, actor_loss, (ours_pi, ref_pi, ours_q, ref_q) = reference(state, new_state, data, obs)
    np.testing.assert_allclose(metrics["critic_loss"], critic_loss, rtol=1e-5)
    np.testing.assert_allclose(metrics["actor_loss"], actor_loss, rtol=1e-5, atol=1e-6)
    # the layouts really are the same networks (not two equal-by-accident numbers)
    np.testing.assert_allclose(ours_pi, ref_pi, rtol=1e-6)
    np.testing.assert_allclose(ours_q, ref_q, rtol=1e-6)
