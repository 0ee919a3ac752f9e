"""experiments.t2mir end to end at a tiny budget, its Key-to-Door tasks, and LHF in experiments.darkroom_ad.

Oracles: the summary's difference equals Welch's and the paired interval recomputed from its
per-seed last-episode returns; expert loads are shares summing to 1 per MoE; the Key-to-Door optimum
equals a brute-force dynamic programme over (cell, key held, door open) with a hand-written
move rule; the Key-to-Door split is a disjoint part of the 6480 (key, door) pairs; the
filtered training set keeps its size and per-goal counts and never holds a goal's worst history.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.darkroom import KeyToDoor, key_to_door_optimal_return
from envs.spaces import state_encoder
from experiments import darkroom_ad, t2mir
from jaxrl_icl.config import ConfigError
from jaxrl_icl.icl import lhf
from jaxrl_icl.run.config import parse_cli, with_scale
from jaxrl_icl.stats import paired_difference, welch_difference

TINY = [
    "--num-seeds", "2", "--histories-per-goal", "1", "--optim.num-updates", "6", "--optim.batch-size", "4",
    "--optim.warmup-updates", "1",
    "--chunk-updates", "3", "--q-learning.num-episodes", "4", "--q-learning.epsilon-decay-episodes", "2",
    "--ad.context-episodes", "1", "--ad.backbone.width", "16", "--ad.backbone.num-layers", "2",
    "--ad.backbone.num-heads", "2", "--eval-episodes", "2", "--eval-seeds", "1", "--no-progress",
    "--envs", "darkroom-9x9", "key-to-door-9x9", "--models", "ad", "dpt",
    "--key-door-train-tasks", "3", "--key-door-held-out-tasks", "2",
    "--dpt-optim.num-updates", "6", "--dpt-optim.batch-size", "4", "--dpt-optim.warmup-updates", "1",
    "--dpt.context-len", "8", "--dpt.backbone.width", "16", "--dpt.backbone.num-layers", "2",
    "--dpt.backbone.num-heads", "2", "--dpt.rewarded-mix", "0.5",
]


@pytest.mark.slow
def test_t2mir_experiment_writes_the_difference_and_router_figures(tmp_path):
    t2mir.main(TINY + ["--run-dir", str(tmp_path / "run")])
    run = tmp_path / "run"
    for name in ("returns", "router_losses", "router_load"):
        assert (run / f"{name}.png").stat().st_size > 0
    summary = json.loads((run / "summary.json").read_text())
    both = {"darkroom-9x9", "key-to-door-9x9"}
    assert {m: set(v) for m, v in summary["difference"].items()} == {"ad": both, "dpt": both}
    for model, per_env in summary["difference"].items():
        for env, got in per_env.items():
            last = summary["runs"][model][env]["last_episode_return"]
            diff, lo, hi = welch_difference(last["dense"]["per_seed"], last["t2mir"]["per_seed"])
            assert got["mean"] == pytest.approx(diff) and got["ci95"] == pytest.approx([lo, hi])
            _, lo, hi = paired_difference(last["dense"]["per_seed"], last["t2mir"]["per_seed"])
            assert got["paired_ci95"] == pytest.approx([lo, hi])
            loads = summary["runs"][model][env]["expert_load"]
            assert set(loads) == {"block_1/token/token_load", "block_1/task/task_load"}
            for shares in loads.values():
                assert sum(shares) == pytest.approx(1.0, abs=1e-5)
    assert summary["runs"]["ad"]["key-to-door-9x9"]["optimal_return"] == 2.0
    assert summary["runs"]["ad"]["key-to-door-9x9"]["num_train_histories"] == 3
    assert len(summary["runs"]["dpt"]["darkroom-9x9"]["posterior_return_per_episode"]) == 2
    assert summary["runs"]["dpt"]["key-to-door-9x9"]["posterior_return_per_episode"] is None
    checks = summary["runs"]["dpt"]["darkroom-9x9"]["per_seed_checks"]
    assert set(checks) == {"dense", "t2mir"} and "per_seed_checks" not in summary["runs"]["dpt"]["key-to-door-9x9"]
    for per_seed in checks.values():
        assert set(per_seed) == {"offline_expert_context", "goal_reached_last_episode", "return_after_goal_reached",
                                 "return_after_goal_missed"} and len(per_seed["offline_expert_context"]) == 2
        assert all(0.0 <= r <= 20.0 for r in per_seed["offline_expert_context"])  # H = 20
        assert all(0.0 <= f <= 1.0 for f in per_seed["goal_reached_last_episode"])


def _brute_force_key_to_door(key, door, start, horizon, size=9):
    """Optimal return by backward induction over (x, y, has_key, opened) with moves written out."""
    moves = [(0, 0), (0, 1), (0, -1), (-1, 0), (1, 0)]  # stay, up (y + 1), down, left, right
    value = np.zeros((size, size, 2, 2))
    for _ in range(horizon):
        new = np.zeros_like(value)
        for x, y, held, opened in np.ndindex(size, size, 2, 2):
            best = 0.0
            for dx, dy in moves:
                nx, ny = min(max(x + dx, 0), size - 1), min(max(y + dy, 0), size - 1)
                got = not held and (nx, ny) == key
                opens = held and not opened and (nx, ny) == door
                best = max(best, got + opens + value[nx, ny, int(held or got), int(opened or opens)])
            new[x, y, held, opened] = best
        value = new
    return value[start[0], start[1], 0, 0]


@pytest.mark.parametrize("key, door, horizon", [
    ((4, 4), (0, 0), 50), ((0, 0), (8, 8), 50), ((4, 4), (4, 5), 1), ((4, 4), (4, 5), 2), ((3, 4), (4, 4), 1),
    ((0, 0), (8, 8), 8), ((0, 0), (8, 8), 23), ((0, 0), (8, 8), 24), ((2, 6), (2, 5), 5),
])
def test_key_to_door_optimal_return_matches_brute_force(key, door, horizon):
    got = key_to_door_optimal_return(jnp.array(key), jnp.array(door), jnp.array([4, 4]), horizon)
    assert float(got) == _brute_force_key_to_door(key, door, (4, 4), horizon)


def test_key_to_door_observes_the_key_bit_for_tabular_q_learning():
    env = KeyToDoor(observe_key=True)
    params = env.default_params.replace(key=jnp.array([4, 5], jnp.int32), door=jnp.array([4, 3], jnp.int32))
    obs, state = env.reset(jax.random.key(0), params)
    assert obs.tolist() == [4, 4, 0]
    obs, state, reward, *_ = env.step(jax.random.key(1), state, 1, params)  # up: onto the key
    assert obs.tolist() == [4, 5, 1] and float(reward) == 1.0
    encode, num_states, _ = state_encoder(env.observation_space(params))
    assert num_states == 9 * 9 * 2 and int(encode(obs)) == (4 * 9 + 5) * 2 + 1
    assert KeyToDoor().reset(jax.random.key(0), params)[0].shape == (2,)  # the dark default is unchanged


def test_key_door_split_is_disjoint_and_covers_the_distinct_pairs():
    train, test = t2mir.key_door_split(0, 6000, 480)
    pairs = {tuple(p.ravel()) for p in np.concatenate([train, test])}
    assert len(pairs) == 81 * 80 and all(p[:2] != p[2:] for p in pairs)
    small_train, small_test = t2mir.key_door_split(0, 5, 3)
    np.testing.assert_array_equal(small_train, train[:5])
    np.testing.assert_array_equal(small_test, train[5:8])
    assert not np.array_equal(t2mir.key_door_split(1, 5, 3)[0], small_train)


@pytest.mark.parametrize("flags", [["--envs", "cartpole"], ["--models", "ad", "ad"], ["--models"]])
def test_t2mir_config_rejects_unknown_or_repeated_names(flags):
    name = flags[0][2:]
    with pytest.raises(ConfigError, match=name):
        t2mir.T2MIRConfig(**{name: tuple(flags[1:])})


def test_t2mir_paper_preset_parses_and_later_flags_override_it():
    config, _ = parse_cli(t2mir.T2MIRConfig, with_scale(["--scale", "paper", "--num-seeds", "2"], t2mir.PRESETS))
    assert config.scale == "paper" and config.num_seeds == 2 and config.models == ("ad", "dpt")
    assert config.envs == t2mir.ENVS and t2mir.T2MIRConfig().envs == ("darkroom-9x9",)
    assert config.ad.backbone.num_heads == 8 and config.dpt.backbone.width == 128
    assert config.dpt.backbone.moe.balance_weight == 0.01 and config.dpt.backbone.moe.contrastive_weight == 0.001
    assert config.moe.balance_weight == 0.1 and config.moe.contrastive_weight == 0.01


def test_t2mir_runs_are_model_major():
    config = t2mir.T2MIRConfig(envs=t2mir.ENVS, models=("dpt", "ad"))
    assert config.runs() == [("dpt", "darkroom-9x9"), ("dpt", "key-to-door-9x9"), ("ad", "darkroom-9x9"),
                             ("ad", "key-to-door-9x9")]


def test_darkroom_ad_filtering_keeps_size_and_drops_each_goals_worst():
    goals = np.array([[1, 1], [1, 1], [8, 8], [8, 8]], np.int32)
    reward = np.zeros((4, 40), np.float32)
    reward[0, 20:] = 1.0  # goal (1, 1): history 0 improves in episode 2, history 1 never
    reward[3, 10:20] = reward[3, 30:] = 1.0  # goal (8, 8): history 3 returns 10 twice, history 2 never
    done = np.zeros((4, 40), bool)
    done[:, 19::20] = True
    histories = {"reward": reward, "terminated": np.zeros_like(done), "truncated": done, "row": np.arange(4)}
    config = darkroom_ad.DarkroomADConfig(lhf=lhf.LHFConfig("filter"))
    start = np.array([4, 4], np.int32)
    kept, weights = darkroom_ad.select_training_histories(config, histories, goals, start, 20)
    assert weights is None and sorted(kept["row"]) == [0, 0, 3, 3]
    config = darkroom_ad.DarkroomADConfig(lhf=lhf.LHFConfig("reweight"))
    same, weights = darkroom_ad.select_training_histories(config, histories, goals, start, 20)
    np.testing.assert_array_equal(same["row"], np.arange(4))
    np.testing.assert_allclose(weights, [0.5, 0.0, 0.0, 0.5])
