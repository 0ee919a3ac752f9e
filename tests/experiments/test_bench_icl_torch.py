"""The PyTorch AD reference (experiments.bench_ref.torch_ad) against our JAX code, and the icl-torch suite.

Skipped where PyTorch is not installed (it is the optional ``bench-ref`` extra).
"""

from __future__ import annotations

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import envs  # noqa: E402
from experiments import bench  # noqa: E402
from experiments.bench_ref import torch_ad  # noqa: E402
from jaxrl_icl.icl import tokens as tk  # noqa: E402
from jaxrl_icl.icl import transformer as tr  # noqa: E402

# 6 heads: ALiBi slopes of a non-power-of-two head count; window 7 < the 19 tokens used below
MODEL = tr.TransformerConfig(d_in=8, d_out=5, max_len=7, window=7,
                             backbone=tr.BackboneConfig(width=24, num_layers=2, num_heads=6))
ARCH = MODEL.backbone


def _noisy_params(seed=0):
    """Flax params with every leaf (LN scales/biases, biases, head) moved off its init."""
    params = tr.init(MODEL, jax.random.PRNGKey(seed))
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    return jax.tree.unflatten(treedef, [x + 0.2 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def _torch_model(params):
    net = torch_ad.ADTransformer(MODEL.d_in, MODEL.d_out, ARCH.width, ARCH.num_layers, ARCH.num_heads,
                                 MODEL.window)
    torch_ad.load_flax_params(net, params)
    return net.eval()


def test_forward_and_cached_step_match_ours():
    params = _noisy_params()
    net = _torch_model(params)
    tokens = np.random.default_rng(0).normal(size=(3, 19, MODEL.d_in)).astype(np.float32)
    ours = np.asarray(tr.apply(MODEL, params, jnp.asarray(tokens)))
    with torch.inference_mode():
        full = net(torch.as_tensor(tokens)).numpy()
        cache = net.init_cache(3)
        stepped = np.stack([net.step(torch.as_tensor(tokens[:, t]), cache).numpy() for t in range(19)], axis=1)
    # the window matters: the same model without it gives different late outputs
    unwindowed = tr.apply(dataclasses.replace(MODEL, window=0, max_len=19), params, jnp.asarray(tokens))
    assert np.abs(np.asarray(unwindowed)[:, MODEL.window:] - ours[:, MODEL.window:]).max() > 1e-2
    np.testing.assert_allclose(full, ours, atol=1e-4)
    np.testing.assert_allclose(stepped, full, atol=1e-4)
    np.testing.assert_allclose(stepped, ours, atol=1e-4)


def test_load_flax_params_rejects_wrong_shapes():
    params = _noisy_params()
    wrong = torch_ad.ADTransformer(MODEL.d_in, MODEL.d_out, 2 * ARCH.width, ARCH.num_layers, ARCH.num_heads,
                                   MODEL.window)
    with pytest.raises(ValueError, match="embed.kernel"):
        torch_ad.load_flax_params(wrong, params)
    deeper = torch_ad.ADTransformer(MODEL.d_in, MODEL.d_out, ARCH.width, 3, ARCH.num_heads, MODEL.window)
    with pytest.raises(ValueError, match="block_2"):
        torch_ad.load_flax_params(deeper, params)


def test_darkroom_matches_envs_darkroom():
    env, base = envs.make("darkroom-9x9")
    goals = np.array([[4, 4], [4, 5], [3, 4], [0, 8], [8, 8]], np.int32)  # reachable by random walks
    actions = np.random.default_rng(1).integers(0, 5, (len(goals), 50))  # 50 steps: two auto-resets
    params = jax.vmap(lambda g: base.replace(goal=g))(jnp.asarray(goals))
    step = jax.jit(jax.vmap(env.step))
    keys = jax.random.split(jax.random.PRNGKey(0), len(goals))
    obs, state = jax.vmap(env.reset)(keys, params)
    ref = torch_ad.DarkRoom(torch.as_tensor(goals))
    np.testing.assert_array_equal(ref.reset().numpy(), np.asarray(obs))
    rewards = []
    for t in range(actions.shape[1]):
        obs, state, reward, terminated, truncated, _ = step(keys, state, jnp.asarray(actions[:, t]), params)
        t_obs, t_reward, t_done = ref.step(torch.as_tensor(actions[:, t]))
        np.testing.assert_array_equal(t_obs.numpy(), np.asarray(obs))
        np.testing.assert_array_equal(t_reward.numpy(), np.asarray(reward))
        np.testing.assert_array_equal(t_done.numpy(), np.asarray(terminated | truncated))
        rewards.append(t_reward.numpy())
    assert np.sum(rewards) > 0  # the comparison covered rewarded steps


@pytest.mark.parametrize("layout", ["step", "triplet"])
def test_tokens_and_window_sampling_match_ours(layout):
    """Windows cut by sample_tokens equal our tokens of the same history slice; obs encode
    (history, step), so the sampled history and start are read back from the tokens."""
    rng = np.random.default_rng(2)
    num, steps, length = 3, 12, 5
    obs = np.stack(np.meshgrid(np.arange(num), np.arange(steps), indexing="ij"), axis=-1).astype(np.float32)
    action, reward = rng.integers(0, 5, (num, steps)), rng.random((num, steps)).astype(np.float32)
    data = torch_ad.Histories.from_numpy(obs, action, reward, "cpu")
    gen = torch.Generator().manual_seed(0)
    make = tk.step_tokens if layout == "step" else tk.triplet_tokens
    ours_all = np.asarray(make(jnp.asarray(obs), jnp.asarray(action, jnp.int32), jnp.asarray(reward), 5)[0])
    per_step = 1 if layout == "step" else 3
    starts = set()
    for _ in range(4):
        tokens, positions, actions = torch_ad.sample_tokens(data, 8, length, gen, layout=layout, obs_scale=1.0,
                                                            num_actions=5)
        obs_slot = slice(6, 8) if layout == "step" else slice(3, 5)
        for b in range(8):
            h, s = (int(v) for v in tokens[b, 0, obs_slot])
            starts.add(s)
            np.testing.assert_array_equal(tokens[b].numpy(), ours_all[h, per_step * s: per_step * (s + length)])
            np.testing.assert_array_equal(actions[b].numpy(), action[h, s: s + length])
        np.testing.assert_array_equal(positions.numpy(), per_step * np.arange(length))
    assert 0 in starts and len(starts) > 2  # windows at a history's start (no previous action) and inside


@pytest.mark.parametrize("layout", ["step", "triplet"])
def test_evaluate_feeds_every_transition(layout):
    """Rollout logits equal the full-sequence model on the tokens of the rollout's own history."""
    d_in = (tk.step_token_dim if layout == "step" else tk.triplet_token_dim)(2, 5)
    net = torch_ad.ADTransformer(d_in, 5, 16, 2, 2, window=9 if layout == "triplet" else 4).eval()
    goals = torch.tensor([[4, 5], [3, 4], [4, 4]])
    out = torch_ad.evaluate(net, goals, 25, torch.Generator().manual_seed(0), layout=layout, obs_scale=0.125)
    assert out["done"][:, 19].all() and out["done"].sum() == 3
    obs = out["obs"].float() * 0.125
    if layout == "step":
        prev_a = torch.cat([torch.full((3, 1), -1), out["action"][:, :-1]], 1)
        prev_r = torch.cat([torch.zeros(3, 1), out["reward"][:, :-1]], 1)
        tokens, positions = torch_ad.step_tokens(obs, prev_a, prev_r, 5), torch.arange(25)
    else:
        tokens, positions = torch_ad.triplet_tokens(obs, out["action"], out["reward"], 5), torch.arange(0, 75, 3)
    with torch.no_grad():
        full = net(tokens)[:, positions]
    np.testing.assert_allclose(out["logits"].numpy(), full.numpy(), atol=1e-5)
    assert out["logits"].std() > 0


def test_suite_smoke(tmp_path, capsys):
    run = tmp_path / "icl-torch"
    bench.main(["icl-torch", "--num-tasks", "2", "--eval-episodes", "1", "--train-updates", "2",
                "--repeats", "1", "--run-dir", str(run)])
    rows = json.loads((run / "bench.json").read_text())
    speeds = [r for r in rows if r["reference"] is not None]
    assert [r["unit"] for r in speeds] == ["tokens/s", "steps/s"]
    assert "2 tasks x 20 steps" in speeds[1]["case"] and "threads" in speeds[0]["case"]
    for r in speeds:
        for key in ("ours", "reference", "ratio"):
            assert math.isfinite(r[key]) and r[key] > 0, key
        assert r["ratio"] == pytest.approx(r["ours"] / r["reference"])
    assert (run / "icl-torch.png").stat().st_size > 0
    assert "| icl-torch | AD training" in capsys.readouterr().out
