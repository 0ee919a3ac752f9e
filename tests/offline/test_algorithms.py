"""Offline losses against hand computations; trainers: vmapped seeds, data as an argument,
cloning an expert."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_icl.offline import bc, cql, iql, make_dataset, td3_bc
from jaxrl_icl.offline.networks import MLP, TwinCritic


def test_expectile_loss_is_the_asymmetric_l2_by_hand():
    diff = np.array([-2.0, -0.5, 0.0, 0.3, 1.5], np.float32)
    tau = 0.7
    by_hand = np.mean([(1 - tau) * 4.0, (1 - tau) * 0.25, 0.0, tau * 0.09, tau * 2.25])
    assert float(iql.expectile_loss(jnp.asarray(diff), tau)) == pytest.approx(by_hand, rel=1e-6)
    # expectile 0.5 is half the mean squared error
    assert float(iql.expectile_loss(jnp.asarray(diff), 0.5)) == pytest.approx(0.5 * np.mean(diff**2), rel=1e-6)


def test_awr_weights_are_clipped_exponentials():
    q, v = jnp.array([0.0, 1.0, 10.0]), jnp.array([1.0, 1.0, 0.0])
    np.testing.assert_allclose(iql.awr_weights(q, v, 3.0, 100.0), [math.exp(-3.0), 1.0, 100.0], rtol=1e-6)


def test_td3_bc_actor_loss_normalises_q_by_its_mean_magnitude():
    q = jnp.array([2.0, -4.0, 6.0])  # mean |Q| = 4
    action = jnp.array([[0.5, 0.0], [0.0, 0.0], [1.0, -1.0]])
    data = jnp.array([[0.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    alpha = 2.5
    lam = alpha / 4.0
    bc_mean = np.mean([0.25 / 2, 1.0 / 2, 4.0 / 2])  # TD3+BC: mean over batch and action dims
    loss, aux = td3_bc.actor_loss(q, action, data, alpha, bc_weight=0.5)
    assert float(aux["lambda"]) == pytest.approx(lam)
    assert float(loss) == pytest.approx(bc_mean - lam * np.mean([2.0, -4.0, 6.0]), rel=1e-6)
    # lambda carries no gradient: d loss / d q = -lambda / B exactly
    grad_q = jax.grad(lambda q_: td3_bc.actor_loss(q_, action, data, alpha, 0.5)[0])(q)
    np.testing.assert_allclose(grad_q, -lam / 3 * np.ones(3), rtol=1e-6)


def test_critic_target_with_rebrac_penalty_by_hand():
    reward, terminal = jnp.array([1.0, 2.0]), jnp.array([False, True])
    next_q = jnp.array([[3.0, 5.0], [4.0, 1.0]])  # [2 critics, B]: min = [3, 1]
    next_action, next_data = jnp.array([[0.5], [0.0]]), jnp.array([[0.0], [1.0]])
    target = td3_bc.critic_target(reward, terminal, next_q, next_action, next_data, gamma=0.9, bc_weight=2.0)
    np.testing.assert_allclose(target, [1.0 + 0.9 * (3.0 - 2.0 * 0.25), 2.0], rtol=1e-6)


def test_twin_critic_members_are_independent_mlps():
    """Each ensemble member is the plain MLP on its slice of the parameters, members start
    different, and ``first_only`` is member 0 alone."""
    critic = TwinCritic((8, 8), num_critics=3)

    @jax.jit  # one compiled program: the ensemble, each member as a plain MLP, and first_only
    def outputs():
        obs, act = jax.random.normal(jax.random.PRNGKey(1), (5, 3)), jax.random.uniform(jax.random.PRNGKey(2), (5, 2))
        params = critic.init(jax.random.PRNGKey(0), obs, act)
        x = jnp.concatenate([obs, act], axis=-1)
        members = [MLP((8, 8), 1).apply({"params": jax.tree.map(lambda p, i=i: p[i], params["params"]["ensemble"])},
                                        x)[:, 0] for i in range(3)]
        return critic.apply(params, obs, act), members, critic.apply(params, obs, act, first_only=True)

    q, members, first = jax.tree.map(np.asarray, outputs())
    assert q.shape == (3, 5)
    for i in range(3):
        np.testing.assert_allclose(q[i], members[i], rtol=1e-6)
    assert float(np.min(np.abs(q[0] - q[1]))) > 0.0
    np.testing.assert_allclose(first, q[0], rtol=1e-6)


def test_cql_penalty_is_zero_for_flat_q():
    # uniform proposals only: exactly zero
    from jaxrl_icl.offline.networks import tanh_gaussian_sample

    b, m, d = 4, 8, 3

    @jax.jit  # one compiled program for both penalties
    def penalties():
        q = jnp.full((b, m), 1.7)
        log_u = jnp.full((b, m), -d * math.log(2.0))
        uniform = cql.cql_penalty(q, log_u, jnp.full((b,), 1.7), d)
        mean, log_std = jnp.full((1, 200_000, d), 0.3), jnp.full((1, 200_000, d), -0.5)
        _, logp = tanh_gaussian_sample(jax.random.PRNGKey(0), mean, log_std)
        return uniform, cql.cql_penalty(jnp.full((1, 200_000), 1.7), logp, jnp.full((1,), 1.7), d)

    uniform, pen = penalties()
    np.testing.assert_allclose(uniform, 0.0, atol=1e-6)
    # proposals from a tanh-Gaussian policy: the importance-sampled estimate tends to zero
    assert abs(float(pen[0])) < 0.05


def test_discrete_cql_penalty_by_hand():
    q_all = jnp.array([[1.0, 1.0, 1.0], [0.0, math.log(2.0), math.log(5.0)]])
    action = jnp.array([2, 0])
    expected = [0.0, math.log(1 + 2 + 5) - math.log(3.0) - 0.0]
    np.testing.assert_allclose(cql.discrete_cql_penalty(q_all, action), expected, rtol=1e-6)


def _synthetic_dataset(n=2048, obs_dim=4, act_dim=2, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(obs_dim, act_dim)).astype(np.float32)
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    act = np.tanh(obs @ w).astype(np.float32)
    flags = np.zeros(n, bool)
    flags[49::50] = True
    ds = make_dataset({"observations": obs, "actions": act, "rewards": -np.sum(act**2, -1).astype(np.float32),
                       "terminals": np.zeros(n, bool), "timeouts": flags,
                       "next_observations": np.roll(obs, -1, axis=0)})
    return ds


TRAINERS = {
    "bc": (bc, bc.BCConfig(num_updates=6, batch_size=16, hidden=(32,))),
    "td3_bc": (td3_bc, td3_bc.TD3BCConfig(num_updates=6, batch_size=16, hidden=(32,))),
    "iql": (iql, iql.IQLConfig(num_updates=6, batch_size=16, hidden=(32,))),
    "cql": (cql, cql.CQLConfig(num_updates=6, batch_size=16, hidden=(32,), num_samples=3)),
}


@pytest.mark.parametrize("name", ["bc"] + [pytest.param(n, marks=pytest.mark.slow) for n in ("td3_bc", "iql", "cql")])
def test_vmapped_seeds_equal_seeds_run_one_at_a_time(name):
    module, config = TRAINERS[name]
    ds = _synthetic_dataset(n=200)
    trainer = module.make_train(config, 4, 2)
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    _, batched = jax.jit(jax.vmap(trainer, in_axes=(0, None)))(keys, ds)
    for i in range(3):
        _, single = jax.jit(trainer)(keys[i], ds)
        for k in single:
            np.testing.assert_allclose(batched[k][i], single[k], rtol=2e-5, atol=1e-6, err_msg=k)


def test_dataset_is_an_argument_not_a_compiled_constant():
    module, config = TRAINERS["td3_bc"]
    small = _synthetic_dataset(n=256)
    big = _synthetic_dataset(n=4096)
    trainer = module.make_train(config, 4, 2)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0), small)
    sizes = [len(jax.jit(trainer.update).lower(state, d).as_text()) for d in (small, big)]
    assert abs(sizes[0] - sizes[1]) < 200  # only the shapes in the signature differ


def test_bf16_networks_compute_in_bfloat16_and_return_float32():
    """With ``bf16`` the critic and actor keep float32 parameters and return float32, and on the
    same parameters agree with the float32 networks to bfloat16's precision (8 mantissa bits)."""
    obs, act = jax.random.normal(jax.random.PRNGKey(0), (64, 4)), jax.random.uniform(jax.random.PRNGKey(1), (64, 2))
    critic32, critic16 = TwinCritic((64, 64), layer_norm=True), TwinCritic((64, 64), layer_norm=True,
                                                                           dtype=jnp.bfloat16)
    params = critic16.init(jax.random.PRNGKey(2), obs, act)
    assert {p.dtype for p in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    q16, q32 = critic16.apply(params, obs, act), critic32.apply(params, obs, act)
    assert q16.dtype == jnp.float32
    assert not np.array_equal(q16, q32)  # it did compute in bfloat16
    np.testing.assert_allclose(q16, q32, rtol=0.05, atol=0.05 * float(jnp.std(q32)))
    # the HLO of the bf16 critic multiplies bfloat16 matrices
    assert "bf16" in jax.jit(critic16.apply).lower(params, obs, act).as_text()


@pytest.mark.parametrize("name", ["td3_bc", "iql"])
def test_bf16_switch_puts_every_matmul_of_the_update_in_bfloat16_and_keeps_state_float32(name):
    """The config's ``bf16`` reaches every network: each ``dot_general`` of the lowered update
    multiplies bfloat16 operands with it and none without; parameters and Adam moments stay
    float32 either way (traced and lowered only, nothing compiled)."""
    module, config = TRAINERS[name]
    ds = _synthetic_dataset(n=200)
    for bf16 in (False, True):
        trainer = module.make_train(dataclasses.replace(config, bf16=bf16), 4, 2)
        state = jax.eval_shape(trainer.init, jax.random.PRNGKey(0), ds)
        floats = {x.dtype for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)}
        assert floats == {jnp.dtype("float32")}
        dots = [line for line in jax.jit(trainer.update).lower(state, ds).as_text().splitlines()
                if "stablehlo.dot_general" in line]
        assert len(dots) >= 6 and all(("xbf16>" in line) == bf16 for line in dots), (bf16, dots[:2])


@pytest.mark.parametrize("bf16", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_td3_bc_recovers_the_expert_from_noisy_one_step_data(bf16):
    """A one-step task (every transition terminal) with reward -|a - expert(s)|^2 and data
    actions the expert's plus N(0, 0.3) noise: the argmax of Q is the expert, so TD3+BC's
    actor must land far closer to the expert than the data are (also in bfloat16 compute)."""
    rng = np.random.default_rng(0)
    n = 4096
    w = rng.normal(size=(4, 2)).astype(np.float32)
    obs = rng.normal(size=(n, 4)).astype(np.float32)
    expert = np.tanh(obs @ w)
    act = np.clip(expert + rng.normal(scale=0.3, size=expert.shape), -1, 1).astype(np.float32)
    ds = make_dataset({"observations": obs, "actions": act, "rewards": -np.sum((act - expert) ** 2, -1),
                       "terminals": np.ones(n, bool), "next_observations": obs})
    config = td3_bc.TD3BCConfig(num_updates=1500, batch_size=128, hidden=(64, 64), bf16=bf16)
    state, _ = jax.jit(td3_bc.make_train(config, 4, 2))(jax.random.PRNGKey(0), ds)
    test_obs = rng.normal(size=(500, 4)).astype(np.float32)
    actions = np.asarray(td3_bc.policy(config, 2)(state.actor, jnp.asarray(test_obs)))
    error = np.mean((actions - np.tanh(test_obs @ w)) ** 2)
    data_error = np.mean((act - expert) ** 2)  # about 0.07
    assert error < data_error / 5, (error, data_error)
