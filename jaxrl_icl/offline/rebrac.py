"""ReBRAC (Tarasov et al. 2023): TD3+BC with LayerNorm networks, a behaviour-cloning penalty
in the critic's target as well as in the actor, and larger batches.

It shares TD3+BC's trainer (:mod:`jaxrl_icl.offline.td3_bc`); this module names its
defaults so that ``rebrac.make_train(rebrac.config(), obs_dim, act_dim)`` reads like the
other algorithms.
"""

from jaxrl_icl.offline.td3_bc import TD3BCConfig, make_train, policy
from jaxrl_icl.offline.td3_bc import rebrac_config as config

__all__ = ["TD3BCConfig", "config", "make_train", "policy"]
