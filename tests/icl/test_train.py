"""Supervised trainer of in-context models: schedule in closed form, learning a known target."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_icl.config import ConfigError
from jaxrl_icl.icl.train import OptimConfig, cross_entropy, learning_rate, make_supervised_trainer


def test_schedule_is_linear_warmup_then_cosine():
    cfg = OptimConfig(num_updates=100, lr=1e-3, warmup_updates=10, final_lr_fraction=0.1)
    lr = learning_rate(cfg)
    np.testing.assert_allclose([lr(0), lr(5), lr(10)], [0.0, 5e-4, 1e-3], rtol=1e-6)
    # cosine from lr to 0.1 lr over steps 10..100: halfway (step 55) is the midpoint 0.55 lr
    np.testing.assert_allclose(lr(55), 0.55e-3, rtol=1e-5)
    np.testing.assert_allclose(lr(100), 1e-4, rtol=1e-5)


def _softmax_regression(bf16: bool):
    """Labels from a fixed linear teacher; the student is the same linear model."""
    teacher = jax.random.normal(jax.random.key(0), (4, 3)) * 3.0
    cfg = OptimConfig(num_updates=300, batch_size=128, lr=5e-2, warmup_updates=10, weight_decay=0.0, bf16=bf16)

    def loss(params, key, dtype, _data):
        x = jax.random.normal(key, (cfg.batch_size, 4))
        labels = jnp.argmax(x @ teacher, axis=-1)
        logits = x.astype(dtype) @ params["w"]
        return cross_entropy(logits, labels), {"accuracy": jnp.mean(jnp.argmax(logits, -1) == labels)}

    trainer = make_supervised_trainer(cfg, lambda k: {"w": jnp.zeros((4, 3))}, loss)
    state, metrics = jax.jit(trainer)(jax.random.key(1), None)
    return state, metrics


@pytest.mark.parametrize("bf16", [False, True])
def test_learns_a_realisable_classifier(bf16):
    state, metrics = _softmax_regression(bf16)
    assert state.params["w"].dtype == jnp.float32  # master weights stay float32
    np.testing.assert_allclose(metrics["loss"][0], np.log(3), rtol=1e-2)  # zero weights: uniform
    assert float(metrics["accuracy"][-20:].mean()) > 0.9
    assert int(state.step) == 300 and np.all(np.isfinite(metrics["grad_norm"]))


def test_bad_optim_config_names_the_field():
    with pytest.raises(ConfigError, match="^lr"):
        OptimConfig(lr=0.0)
    with pytest.raises(ConfigError, match="^final_lr_fraction"):
        OptimConfig(final_lr_fraction=1.5)
