"""T2MIR mixture-of-experts blocks against hand computations, numpy and the full-sequence face."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_icl.icl import moe


def test_top_k_gates_are_a_softmax_over_the_top_two():
    logits = jnp.array([[0.5, 2.0, -1.0, 1.0], [3.0, 3.5, 0.0, -2.0]])
    gates = np.asarray(moe.top_k_gates(logits, 2))
    np.testing.assert_allclose(gates.sum(axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(gates > 0, [[False, True, False, True], [True, True, False, False]])
    np.testing.assert_allclose(gates[0, [1, 3]], np.exp([2.0, 1.0]) / np.exp([2.0, 1.0]).sum(), rtol=1e-6)


def test_balance_loss_is_zero_when_balanced_and_cv_squared_by_hand():
    balanced = jnp.array([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]])
    assert float(moe.balance_loss(balanced, jnp.ones(4))) == pytest.approx(0.0, abs=1e-7)
    gates = jnp.array([[0.75, 0.25, 0.0], [0.5, 0.0, 0.5]])  # importance (1.25, 0.25, 0.5)
    load = jnp.array([2.0, 1.0, 1.0])
    cv2 = lambda x: np.var(x) / np.mean(x) ** 2
    want = cv2([1.25, 0.25, 0.5]) + cv2([2.0, 1.0, 1.0])
    assert float(moe.balance_loss(gates, load)) == pytest.approx(want, rel=1e-6)


def test_smooth_load_is_the_probability_of_staying_in_the_top_k():
    phi = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))
    clean = jnp.array([[3.0, 2.0, 1.0]])
    # k=1: expert 0 (in the top) must beat the best other logit 2; the others must beat 3.
    np.testing.assert_allclose(moe.smooth_load(clean, clean, 1, 1.0), [phi(1.0), phi(-1.0), phi(-2.0)], rtol=1e-6)
    noisy = jnp.array([[3.0, 0.5, 1.0]])  # noise moved expert 1 out of the top 2: thresholds 0.5, 1, 0.5
    np.testing.assert_allclose(moe.smooth_load(clean, noisy, 2, 0.5), [phi(5.0), phi(2.0), phi(1.0)], rtol=1e-6)


def _log_softmax(s):
    s = s - s.max(axis=1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


def test_info_nce_matches_numpy():
    rng = np.random.default_rng(0)
    a, k, w = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.normal(size=(3, 3))
    want = -np.mean(np.diag(_log_softmax(a @ w @ k.T)))
    assert float(moe.info_nce(jnp.asarray(a), jnp.asarray(k), jnp.asarray(w))) == pytest.approx(want, rel=1e-5)
    paired = 0.5 * (-np.mean(np.diag(_log_softmax(a[:2] @ w @ k[2:].T)))
                    - np.mean(np.diag(_log_softmax(a[2:] @ w @ k[:2].T))))
    assert float(moe.paired_info_nce(jnp.asarray(a), jnp.asarray(k), jnp.asarray(w))) == pytest.approx(paired, rel=1e-5)


@pytest.mark.parametrize("window,num_queries", [(0, 0), (3, 0), (0, 4), (3, 5)])
def test_prefix_means_match_loops(window, num_queries):
    x = np.random.default_rng(1).normal(size=(2, 6 + num_queries, 3)).astype(np.float32)
    got = np.asarray(moe.prefix_means(jnp.asarray(x), window, num_queries))
    for t in range(6 + num_queries):
        if t < 6:
            seen = x[:, max(0, t - window + 1) if window else 0: t + 1]
        else:
            j = t - 6
            seen = np.concatenate([x[:, max(0, j - window + 1) if window else 0: j], x[:, t:t + 1]], axis=1)
        np.testing.assert_allclose(got[:, t], seen.mean(axis=1), rtol=1e-5, atol=1e-6)


def _modules(window):
    return {
        "token": moe.TokenMoE(d_out=8, hidden=16),
        "task": moe.TaskMoE(width=8, d_out=8, hidden=16, cache_len=window or 12, window=window),
        "t2mir": moe.T2MIR(width=8, hidden=16, cache_len=window or 12, window=window),
    }


# The token MoE and T2MIR also step == full inside the backbone (test_transformer's cached suite,
# in a window); the task MoE alone is checked here in the default suite.
@pytest.mark.parametrize("name,window", [pytest.param("token", 0, marks=pytest.mark.slow), ("task", 4),
                                         pytest.param("t2mir", 0, marks=pytest.mark.slow)])
def test_step_over_a_sequence_equals_the_full_sequence(name, window):
    module = _modules(window)[name]
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 10, 8))
    variables = jax.jit(module.init)(jax.random.PRNGKey(1), x)

    @jax.jit
    def both(variables, x):
        def scan_step(state, token):  # (state, y)
            return module.apply(variables, token, state, method=module.step)[::-1]

        return module.apply(variables, x), jax.lax.scan(scan_step, module.init_state(3), jnp.swapaxes(x, 0, 1))[1]

    (full, aux), stepped = both(variables, x)
    assert all(v.shape == () for v in aux.values())
    np.testing.assert_allclose(np.swapaxes(np.asarray(stepped), 0, 1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_queries_equal_a_step_that_is_not_kept():
    module = _modules(4)["t2mir"]
    context = jax.random.normal(jax.random.PRNGKey(2), (2, 6, 8))
    queries = jax.random.normal(jax.random.PRNGKey(3), (2, 7, 8))
    variables = jax.jit(module.init)(jax.random.PRNGKey(1), context)
    out = jax.jit(lambda v, t: module.apply(v, t, num_queries=7)[0])(variables, jnp.concatenate([context, queries], 1))
    out = out[:, 6:]
    step = jax.jit(lambda token, state: module.apply(variables, token, state, method=module.step))
    state = module.init_state(2)
    for i in range(7):
        np.testing.assert_allclose(step(queries[:, i], state)[0], out[:, i], rtol=1e-5, atol=1e-5)
        if i < 6:
            state = step(context[:, i], state)[1]


def test_target_router_gets_no_gradient_and_ema_update_blends():
    module = _modules(0)["t2mir"]
    x = jax.jit(lambda k: jax.random.normal(k, (4, 5, 8)))(jax.random.PRNGKey(4))
    variables = jax.jit(module.init)(jax.random.PRNGKey(1), x)
    target = variables["target"]["task"]
    np.testing.assert_array_equal(target["router_kernel"], variables["params"]["task"]["router_kernel"])
    grads = jax.jit(jax.grad(lambda v: module.apply(v, x, False, rngs={"dropout": jax.random.PRNGKey(0)})[1]
                     ["contrastive_loss"]))(variables)
    assert not np.any(np.asarray(grads["target"]["task"]["router_kernel"]))
    assert np.any(np.asarray(grads["params"]["task"]["contrastive_w"]))
    assert np.any(np.asarray(grads["params"]["task"]["router_kernel"]))

    @jax.jit  # one compiled program for the step and the update; the checks below are numpy
    def step_and_ema(variables):
        moved = jax.tree.map(lambda p: p + 1.0, variables)  # an "optimiser step" that also touched the target
        return moved, moe.ema_update(variables, moved, 0.005)

    moved, out = jax.tree.map(np.asarray, step_and_ema(variables))
    router = np.asarray(target["router_kernel"])
    np.testing.assert_allclose(out["target"]["task"]["router_kernel"], 0.995 * router + 0.005 * (router + 1.0),
                               rtol=1e-6)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(np.all(a == b)), out["params"], moved["params"]))
    assert moe.ema_update({"params": 1}, {"params": 2}, 0.5) == {"params": 2}


def test_token_moe_noise_only_while_training_and_load_is_recorded():
    module = _modules(0)["token"]
    x = jax.random.normal(jax.random.PRNGKey(5), (2, 5, 8))
    variables = jax.jit(module.init)(jax.random.PRNGKey(1), x)
    (y, aux), inter = jax.jit(lambda v: module.apply(v, x, mutable=["intermediates"]))(variables)
    np.testing.assert_allclose(y, jax.jit(lambda v: module.apply(v, x, True)[0])(variables), rtol=1e-6)
    noisy, _ = jax.jit(lambda v: module.apply(v, x, False, rngs={"dropout": jax.random.PRNGKey(0)}))(variables)
    assert noisy.shape == y.shape and float(aux["balance_loss"]) >= 0
    load = np.asarray(inter["intermediates"]["token_load"][0])
    assert load.shape == (6,) and load.sum() == pytest.approx(1.0)


def test_moe_config_names_the_bad_field():
    from jaxrl_icl.config import ConfigError

    assert moe.MoEConfig().token_experts == 6
    for field, value in (("token_experts", 2), ("last_layers", 0), ("ema_rate", 1.5), ("balance_weight", -1.0)):
        with pytest.raises(ConfigError, match=field):
            moe.MoEConfig(**{field: value})


# ----------------------------------------------------------------------------- in AD (cached == full and
# apply_queries == peek for the token_moe and t2mir backbones: tests/icl/test_transformer.py)


@pytest.mark.slow
def test_ad_trainer_adds_the_aux_losses_pairs_windows_and_moves_the_target():
    from jaxrl_icl.icl import ad
    from jaxrl_icl.icl import transformer as tr
    from jaxrl_icl.icl.train import OptimConfig

    config = ad.ADConfig(context_episodes=1, backbone=tr.BackboneConfig(width=16, num_layers=2, num_heads=2,
                                                                       ffn="t2mir"))
    rng = np.random.default_rng(0)
    hist = {"obs": rng.integers(0, 3, (3, 12, 2)), "action": rng.integers(0, 5, (3, 12)),
            "reward": rng.integers(0, 2, (3, 12)).astype(np.float32)}
    data = ad.ad_data(hist, 5)
    window = ad.sample_windows(data, jax.random.PRNGKey(0), 6, 4, paired=True)
    np.testing.assert_array_equal(window.history[:3], window.history[3:])
    one = ad.sample_windows(ad.ad_data(hist, 5, np.array([0.0, 1.0, 0.0])), jax.random.PRNGKey(0), 6, 4)
    np.testing.assert_array_equal(one.history, 1)

    trainer = ad.make_train(config, OptimConfig(num_updates=2, batch_size=4, warmup_updates=0), 2, 5, 4)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(1), data)
    assert "fc" in state.params["params"]["block_0"] and "task" in state.params["params"]["block_1"]  # last layer
    new, metrics = jax.jit(trainer.update)(state, data)
    aux = float(metrics["layer1/balance_loss"]) + float(metrics["layer1/contrastive_loss"])
    assert float(metrics["loss"]) == pytest.approx(float(metrics["task_loss"]) + aux, rel=1e-5)
    kernel = lambda s, col: np.asarray(s.params[col]["block_1"]["task"]["router_kernel"])
    assert not np.allclose(kernel(new, "params"), kernel(state, "params"))
    np.testing.assert_allclose(kernel(new, "target"), 0.995 * kernel(state, "target") + 0.005 * kernel(new, "params"),
                               rtol=1e-6, atol=1e-7)
