"""In-context agents: the causal transformer backbone, token layouts, Algorithm
Distillation (``ad``), the Decision-Pretrained Transformer (``dpt``) and the exact-posterior
policy it approximates on Dark Room (``posterior``), their supervised trainer (``train``)
and jitted in-context evaluation (``evaluate``).

::

    from jaxrl_icl.icl import ad, dpt, OptimConfig, InContextAgent, evaluate

    from jaxrl_icl.icl import TransformerConfig, BackboneConfig, init, apply, apply_queries, init_cache, step, peek

``ad``, ``dpt`` and ``posterior`` load on first use (they import the envs and source RL
algorithms), so ``import jaxrl_icl.icl.transformer`` alone stays light.
"""

import importlib
from typing import Any

from jaxrl_icl.icl.evaluate import (
    ContextTransition,
    EpisodicCarry,
    InContextAgent,
    episode_returns,
    evaluate,
    prefill,
    previous_episode_context,
    rollout,
)
from jaxrl_icl.icl.tokens import (
    STEP_TOKENS_PER_STEP,
    TRIPLET_TOKENS_PER_STEP,
    action_logits,
    step_token,
    step_token_dim,
    step_tokens,
    triplet_action_token,
    triplet_obs_token,
    triplet_reward_token,
    triplet_token_dim,
    triplet_tokens,
)
from jaxrl_icl.icl.train import OptimConfig, make_supervised_trainer
from jaxrl_icl.icl.transformer import (
    FFN_BLOCKS,
    BackboneConfig,
    DenseFFN,
    KVCache,
    Transformer,
    TransformerConfig,
    alibi_slopes,
    apply,
    apply_queries,
    attend,
    aux_loss,
    init,
    init_cache,
    make_ffn,
    peek,
    prefix_mean,
    prefix_mean_step,
    rope,
    step,
)

__all__ = [
    "ContextTransition", "EpisodicCarry", "InContextAgent", "OptimConfig", "ad", "dpt", "episode_returns",
    "evaluate", "make_supervised_trainer", "posterior", "prefill", "previous_episode_context", "rollout",
    "BackboneConfig", "DenseFFN", "FFN_BLOCKS", "KVCache",
    "STEP_TOKENS_PER_STEP", "TRIPLET_TOKENS_PER_STEP", "Transformer", "TransformerConfig",
    "action_logits", "alibi_slopes", "apply", "apply_queries", "attend", "aux_loss", "init", "init_cache",
    "make_ffn", "peek", "prefix_mean", "prefix_mean_step", "rope", "step",
    "step_token",
    "step_token_dim", "step_tokens", "triplet_action_token", "triplet_obs_token", "triplet_reward_token",
    "triplet_token_dim", "triplet_tokens",
]

_LAZY_MODULES = ("ad", "dpt", "posterior")


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
