"""Distributional RL components: categorical and quantile representations, projections and
losses, distributional dynamic programming on finite MDPs, stock-augmented risk objectives.

    from jaxrl_icl.distributional import CategoricalRep, value_iteration
    result = value_iteration(P, R, 0.9, CategoricalRep(jnp.linspace(0.0, 10.0, 51)))
    result.dist      # float32[S, A, 51] return-law probabilities; result.policy int32[S]
    result.converged, result.support_clipped  # bool: trust the table only if converged

DηN (deep RL on stock-augmented observations) is exported as ``make_dqn_eta_train``::

    from jaxrl_icl.distributional import DQNEtaConfig, make_dqn_eta_train
    train = make_dqn_eta_train(DQNEtaConfig(objective="cvar", alpha=0.1), env, params)
"""

from jaxrl_icl.distributional.categorical import (
    categorical_mean,
    categorical_project,
    check_support,
    project_matrix,
)
from jaxrl_icl.distributional.dp import (
    CLIP_MASS,
    CategoricalRep,
    DPResult,
    QuantileRep,
    policy_evaluation,
    policy_iteration,
    value_iteration,
)
from jaxrl_icl.distributional.dqn import (
    DQNEtaAgent,
    DQNEtaConfig,
    DQNEtaState,
    categorical_targets,
    utility_scores,
)
from jaxrl_icl.distributional.dqn import make_agent as make_dqn_eta_agent
from jaxrl_icl.distributional.dqn import make_train as make_dqn_eta_train
from jaxrl_icl.distributional.monte_carlo import (
    cvar,
    mc_returns,
    mc_stock_returns,
    nearest_index,
    threshold_probability,
)
from jaxrl_icl.distributional.quantile import (
    quantile_levels,
    quantile_project,
    quantile_regression_loss,
)
from jaxrl_icl.distributional.stock import (
    StockResult,
    cvar_utility,
    expectation_utility,
    homeostatic_utility,
    optimal_cvar,
    stock_backward_induction,
    stock_value,
    threshold_utility,
)

__all__ = [
    "CLIP_MASS", "CategoricalRep", "DPResult", "DQNEtaAgent", "DQNEtaConfig", "DQNEtaState", "QuantileRep",
    "StockResult", "categorical_mean", "categorical_targets", "make_dqn_eta_agent", "make_dqn_eta_train",
    "utility_scores",
    "categorical_project", "check_support", "cvar", "cvar_utility", "expectation_utility",
    "homeostatic_utility", "mc_returns", "mc_stock_returns", "nearest_index", "optimal_cvar",
    "policy_evaluation", "policy_iteration", "threshold_probability",
    "project_matrix", "quantile_levels", "quantile_project", "quantile_regression_loss",
    "stock_backward_induction", "stock_value", "threshold_utility", "value_iteration",
]
