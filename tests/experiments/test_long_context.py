"""experiments.long_context end to end at a tiny size: files, table rows, per-episode returns,
and the config checks."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import envs
from envs.darkroom import optimal_return
from experiments import long_context
from experiments.darkroom_ad import goal_split
from jaxrl_icl.config import ConfigError
from jaxrl_icl.run.config import parse_cli, with_scale

TINY = ["--context-steps", "25", "--tokens-per-update", "40", "--optim.num-updates", "2",
        "--chunk-updates", "2", "--q-learning.num-episodes", "3", "--q-learning.epsilon-decay-episodes", "1",
        "--eval-seeds", "1", "--timing-repeats", "1", "--ad.backbone.width", "8", "--ad.backbone.num-layers", "1",
        "--ad.backbone.num-heads", "1", "--no-progress"]


@pytest.mark.slow
def test_long_context_runs_at_tiny_size(tmp_path):
    run = long_context.main([*TINY, "--sinks", "none", "kv", "--run-dir", str(tmp_path / "run")])
    summary = json.loads((run.path / "summary.json").read_text())
    _, held_out = goal_split(0, 65)
    env, _ = envs.make("darkroom-9x9")
    optimum = np.mean([optimal_return(g, np.asarray(env.start, np.int32), env.horizon) for g in held_out])
    assert summary["optimal_return"] == pytest.approx(optimum) and summary["small_scale"]
    for sink in ("none", "kv"):
        by_len = summary["results"][sink]
        assert list(by_len) == ["40"]  # 25 steps round up to 2 episodes of 20
        for steps, r in by_len.items():
            assert r["context_episodes"] == int(steps) // 20 and len(r["return_per_episode"]) == r["context_episodes"]
            assert r["batch_size"] == max(1, 40 // int(steps))
            assert 0 <= r["first_episode_return"] <= 20 and r["train_tokens_per_s"] > 0
            assert r["rollout_tokens_per_s"] > 0 and r["train_temp_mb"] > 0
            assert r["kv_cache_mb_per_task"] == pytest.approx(2 * int(steps) * 8 * 4 / 2**20)
    kv, none = (summary["results"][sink]["40"]["last_10_per_seed"] for sink in ("kv", "none"))
    assert len(kv) == 1 and summary["difference"]["kv"]["40"]["mean"] == pytest.approx(kv[0] - none[0])
    assert summary["difference"]["kv"]["40"]["ci95"] == [None, None]  # no interval from one seed
    source = summary["source_return_per_episode"]  # the held-out goals' Q-learning, episodes 1 and 2
    assert len(source) == 2 and all(0 <= x <= 20 for x in source)
    assert len((run.path / "table.md").read_text().splitlines()) == 2 + 2
    for name in ("returns.png", "speed.png", "memory.png"):
        assert (run.path / name).stat().st_size > 0


def test_sink_differences_against_hand_computed_intervals():
    # three seeds whose KV0 model beats the no-sink one by 1, 2 and 3: paired mean 2, standard
    # error 1 / sqrt(3), t_{0.975, 2} = 4.303 (printed tables); Welch's interval on the two
    # samples [0, 0, 0] and [1, 2, 3] is the same here, since the first has no spread
    results = {"none": {4100: {"last_10_per_seed": [0.0, 0.0, 0.0]}},
               "k": {4100: {"last_10_per_seed": [1.0, 2.0, 3.0]}}}
    d = long_context.sink_differences(results)["k"]["4100"]
    half = 4.303 / np.sqrt(3)
    assert d["mean"] == pytest.approx(2.0)
    assert d["paired_ci95"] == pytest.approx([2 - half, 2 + half], abs=1e-3)
    assert d["ci95"] == pytest.approx([2 - half, 2 + half], abs=1e-3)
    assert long_context.sink_differences({"k": results["k"]}) == {}  # nothing to compare against


@pytest.mark.slow
def test_an_update_too_large_for_the_device_is_refused_before_training():
    """XLA's memory analysis of the vmapped update: 3 seeds need more than twice one seed's
    memory, and a device limit between the two refuses the vmapped update, naming the flag,
    and passes one seed (``--sequential-seeds``)."""
    env, _ = envs.make("darkroom-9x9")
    config = long_context.ad.ADConfig(context_episodes=2, backbone=long_context.tr.BackboneConfig(
        width=8, num_layers=1, num_heads=1))
    optim = long_context.OptimConfig(num_updates=1, batch_size=4, warmup_updates=1)
    trainer = long_context.ad.make_train(config, optim, 2, env.num_actions, env.horizon)
    rng = np.random.default_rng(0)
    data = long_context.ad.ad_data({"obs": rng.integers(0, 9, (3, 60, 2)), "action": rng.integers(0, 5, (3, 60)),
                                    "reward": np.zeros((3, 60), np.float32)}, env.num_actions)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    one, three = (long_context.update_memory(trainer, keys, data, n) for n in (1, 3))
    assert three > 2 * one > 0
    limit = (one + three) // 2
    long_context.check_update_fits(one, 1, 40, limit)
    with pytest.raises(long_context.ConfigError, match="^tokens_per_update: one update of 3 seed.*--sequential-seeds"):
        long_context.check_update_fits(three, 3, 40, limit)


def test_config_checks_name_the_field():
    with pytest.raises(ConfigError, match="^q_learning.num_episodes"):
        long_context.LongContextConfig(context_steps=(4096,), q_learning=long_context.QLearningConfig(
            num_episodes=100, record_history=True))
    with pytest.raises(ConfigError, match="^sinks"):
        long_context.LongContextConfig(sinks=("none", "none"))
    with pytest.raises(ConfigError, match="^ad.layout"):
        long_context.LongContextConfig(ad=long_context.ad.ADConfig(layout="triplet"))


def test_paper_preset_chunks_attention_and_vmaps_its_seeds():
    config, _ = parse_cli(long_context.LongContextConfig, with_scale(["--scale", "paper"], long_context.PRESETS))
    assert config.context_steps[-1] == 16384 and config.tokens_per_update == 65536
    assert config.ad.backbone.attention_chunk == 512 and config.num_seeds == 3 and not config.sequential_seeds
