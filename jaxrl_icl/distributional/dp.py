"""Distributional dynamic programming on finite MDPs (policy evaluation, value and policy
iteration) with categorical or quantile return distributions.

The MDP is ``P: float[S, A, S]`` (``P[s, a, s'] = Pr(s' | s, a)``) and a reward that is either
deterministic, ``R: float[S, A]``, or a finite distribution given as atoms ``R: float[S, A, K]``
with ``reward_probs: float[S, A, K]``. Any of these may carry one leading batch axis ``B`` (with
``policy`` batched alike): the batch is run in one compiled call, one MDP after another with
``lax.map`` on CPU (about twice the throughput of ``jax.vmap`` there) and ``jax.vmap``-ed on
accelerators.

A representation says how a return law is stored, one row of ``m`` numbers per ``(s, a)``:

* ``CategoricalRep(support)``: probabilities on the strictly increasing ``support: float[m]``; each
  backup is projected with the Cramér projection (:mod:`.categorical`). With a support covering
  ``[min r / (1 - gamma), max r / (1 - gamma)]`` the means follow ordinary DP exactly.
* ``QuantileRep(num_quantiles)``: locations at the levels ``(2i - 1) / 2m``; each backup takes the
  quantiles of the target mixture (:mod:`.quantile`).

The Bellman backup is ``eta(s, a) <- Proj law(r(s, a) + gamma G(s'))`` with ``s' ~ P(s, a)`` and
``G(s')`` the return law of ``s'`` under the policy (a mixture over ``a'``). Iteration starts
from the point mass at 0 and either runs a fixed ``num_iterations`` (the finite-horizon return
law of that many steps, exact for ``gamma = 1`` on a matching integer support) or stops when the
largest entry change is ``<= tol`` (``lax.while_loop``), after at most ``max_iterations``.
Control is greedy with respect to the mean (first maximiser on ties).

A categorical backup that moves probability from target atoms beyond the support's ends onto
the end points no longer computes the return law (the mean is pulled towards the support): the
result then says ``support_clipped`` (more than ``CLIP_MASS`` of some ``(s, a)``'s law was
moved, in any of the ``num_iterations`` backups, or in the last backup when iterating to
``tol``) and is not ``converged``. This is also how a ``gamma = 1`` problem without a horizon
whose returns grow without bound shows: its table settles on the support's end only by
clipping.

Array checks (shapes, probabilities via :func:`envs.tabular.validate_mdp`, support, ``gamma`` in
``[0, 1]``) run before any compute on concrete inputs; under an outer ``jit``/``vmap`` only the
shape checks can run.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from envs.tabular import TabularParams, validate_mdp
from jaxrl_icl.batching import map_batch
from jaxrl_icl.distributional.categorical import check_support, project_matrix
from jaxrl_icl.distributional.quantile import quantile_levels, quantile_project

__all__ = [
    "CLIP_MASS",
    "CategoricalRep",
    "DPResult",
    "QuantileRep",
    "policy_evaluation",
    "policy_iteration",
    "value_iteration",
]


CLIP_MASS = 1e-6  # probability per (s, a) a backup may move onto the support's ends unflagged


@struct.dataclass
class CategoricalRep:
    """Categorical representation: probabilities on a strictly increasing ``support: float[m]``."""

    support: jax.Array

    @property
    def size(self) -> int:
        return self.support.shape[-1]


@struct.dataclass
class QuantileRep:
    """Quantile representation with ``num_quantiles`` locations at the midpoint levels."""

    num_quantiles: int = struct.field(pytree_node=False)

    @property
    def size(self) -> int:
        return self.num_quantiles


@struct.dataclass
class DPResult:
    """Output of the DP routines (add a leading ``B`` to every field for a batch of MDPs).

    ``dist: float32[S, A, m]``: return law of each ``(s, a)`` (probabilities for
    ``CategoricalRep``, locations for ``QuantileRep``). ``state_dist: float32[S, m]``: return law of
    each state under the evaluated policy (``policy_evaluation``) or the greedy one (control),
    for ``QuantileRep`` the quantiles of that mixture. ``policy: int32[S]``: greedy action with
    respect to the mean of ``dist``. ``num_iterations: int32``: Bellman backups done (policy
    improvement steps for ``policy_iteration``). ``support_clipped: bool``: a backup moved more
    than ``CLIP_MASS`` of some law from beyond the support onto its ends (see the module
    docstring; always False for ``QuantileRep``). ``converged: bool``: the last change was
    ``<= tol`` and the support was not clipped (for ``policy_iteration``: the policy is stable
    and its last evaluation converged).
    """

    dist: jax.Array
    state_dist: jax.Array
    policy: jax.Array
    num_iterations: jax.Array
    converged: jax.Array
    support_clipped: jax.Array


Representation = CategoricalRep | QuantileRep


def _mean(rep: Representation, table: jax.Array) -> jax.Array:
    """``float32[...]``, the mean of each return law in ``table: float32[..., m]``."""
    if isinstance(rep, CategoricalRep):
        return table @ rep.support
    return table.mean(axis=-1)


def _initial(rep: Representation, S: int, A: int) -> jax.Array:
    """``float32[S, A, m]``, the point mass at return 0 (projected onto the support)."""
    if isinstance(rep, CategoricalRep):
        delta0 = project_matrix(jnp.zeros((1,), jnp.float32), rep.support)[0]
        return jnp.broadcast_to(delta0, (S, A, rep.size))
    return jnp.zeros((S, A, rep.size), jnp.float32)


def _state_dist(rep: Representation, table: jax.Array, pi: jax.Array) -> jax.Array:
    """``float32[S, m]``: law of ``G(s)`` when ``a ~ pi(s)`` (``pi: float32[S, A]``)."""
    if isinstance(rep, CategoricalRep):
        return jnp.einsum("sa,sam->sm", pi, table)
    S, A, m = table.shape
    weights = jnp.broadcast_to(pi[:, :, None], (S, A, m)).reshape(S, A * m)
    return quantile_project(table.reshape(S, A * m), weights, m)


def _two_neighbour(atoms: jax.Array, support: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The Cramér projection of each atom in sparse form: ``(lower, w)``, both ``[..., n]``.

    Atom ``x`` (clipped into ``[z_1, z_m]``) puts weight ``w`` on ``support[lower]`` and
    ``1 - w`` on ``support[lower + 1]`` (``lower: int32`` in ``[0, m - 2]``, ``w: float32`` in
    ``[0, 1]``): the nonzero entries of the row of :func:`.categorical.project_matrix`.
    """
    z = support
    x = jnp.clip(atoms, z[0], z[-1])
    lower = jnp.clip(jnp.searchsorted(z, x, side="right") - 1, 0, z.shape[0] - 2)
    w = (z[lower + 1] - x) / (z[lower + 1] - z[lower])
    return lower.astype(jnp.int32), jnp.clip(w, 0.0, 1.0)


def _beyond_weight(rep: CategoricalRep, r_atoms, r_probs, gamma) -> jax.Array:
    """``float32[S, A, m]``: the probability that the target atom ``r + gamma z_j`` of
    ``(s, a)`` lies beyond the support's ends (by more than 1e-3 of the end spacing, so that
    rounding does not count), ``r ~ (r_atoms, r_probs)``."""
    z = rep.support
    atoms = r_atoms[..., None] + gamma * z  # [S, A, K, m]
    beyond = (atoms < z[0] - 1e-3 * (z[1] - z[0])) | (atoms > z[-1] + 1e-3 * (z[-1] - z[-2]))
    return jnp.einsum("sak,sakm->sam", r_probs, beyond.astype(jnp.float32))


def _make_backup(rep: Representation, P, r_atoms, r_probs, gamma):
    """``backup(table [S, A, m], pi [S, A]) -> (table, clipped)``, the projected distributional
    Bellman operator of policy ``pi`` (``r_atoms, r_probs: float32[S, A, K]``) and the largest
    probability of an ``(s, a)`` law that the projection moved from beyond the support onto
    its ends (``float32``; 0 for quantiles)."""
    S, A, _ = P.shape
    m = rep.size
    if isinstance(rep, CategoricalRep):
        # The target atom r_k + gamma z_j of (s, a) splits its mass between two neighbouring
        # support points, fixed for the whole iteration: one segment sum per backup instead of
        # a dense [m, m] projection matrix per (s, a). Flat output slots, [S, A, K, m] each.
        lower, w = _two_neighbour(r_atoms[..., None] + gamma * rep.support, rep.support)
        base = (jnp.arange(S * A, dtype=jnp.int32) * m).reshape(S, A, 1, 1)
        slots = jnp.concatenate([(base + lower).ravel(), (base + lower + 1).ravel()])
        w_low = r_probs[..., None] * w
        w_up = r_probs[..., None] * (1.0 - w)
        beyond = _beyond_weight(rep, r_atoms, r_probs, gamma)

        def backup(table, pi):
            law = jnp.einsum("tb,tbm->tm", pi, table)
            next_law = (P.reshape(S * A, S) @ law).reshape(S, A, 1, m)
            mass = jnp.concatenate([(next_law * w_low).ravel(), (next_law * w_up).ravel()])
            clipped = jnp.max(jnp.sum(next_law[:, :, 0] * beyond, axis=-1))
            return jax.ops.segment_sum(mass, slots, S * A * m).reshape(S, A, m), clipped

        return backup

    def backup(table, pi):
        # Target atoms r_k + gamma theta[t, b, j] with weight p_k P[s, a, t] pi[t, b] / m.
        atoms = r_atoms[:, :, :, None] + gamma * table.reshape(1, 1, 1, S * A * m)
        w_next = jnp.broadcast_to(P[:, :, :, None, None] * pi[:, :, None], (S, A, S, A, m))
        weights = r_probs[..., None] * w_next.reshape(S, A, 1, S * A * m) / m
        table = quantile_project(atoms.reshape(S, A, -1), weights.reshape(S, A, -1), m)
        return table, jnp.float32(0.0)

    return backup


def _greedy(rep: Representation, table: jax.Array) -> jax.Array:
    """``int32[S]``, the first action maximising the mean of ``table[s, a]``."""
    return jnp.argmax(_mean(rep, table), axis=-1).astype(jnp.int32)


def _iterate(step, x0, tol, num_iterations, max_iterations):
    """Apply ``step: x -> (x, clipped)`` ``num_iterations`` times, or until the change is
    ``<= tol`` (at most ``max_iterations``). Returns ``(x, iterations, converged, clipped)``:
    ``clipped`` (bool) whether more than ``CLIP_MASS`` was clipped in any backup (fixed count)
    or in the last one (to ``tol``: the fixed point's own); ``converged`` the last change was
    ``<= tol`` and nothing was clipped."""

    def body(carry, keep_max):
        x, _, i, clip = carry
        y, c = step(x)
        return y, jnp.max(jnp.abs(y - x)), i + 1, jnp.maximum(clip, c) if keep_max else c

    carry = (x0, jnp.float32(jnp.inf), jnp.int32(0), jnp.float32(0.0))
    if num_iterations is not None:
        x, delta, i, clip = jax.lax.fori_loop(
            0, num_iterations, lambda _, c: body(c, True), carry
        )
    else:
        x, delta, i, clip = jax.lax.while_loop(
            lambda c: (c[1] > tol) & (c[2] < max_iterations), lambda c: body(c, False), carry
        )
    clipped = clip > CLIP_MASS
    return x, i, (delta <= tol) & ~clipped, clipped


@partial(jax.jit, static_argnames=("num_iterations", "max_iterations"))
def _evaluate(P, r_atoms, r_probs, pi, gamma, rep, tol, num_iterations, max_iterations):
    S, A, _ = P.shape
    backup = _make_backup(rep, P, r_atoms, r_probs, gamma)
    table, n, converged, clipped = _iterate(
        lambda t: backup(t, pi), _initial(rep, S, A), tol, num_iterations, max_iterations
    )
    return DPResult(table, _state_dist(rep, table, pi), _greedy(rep, table), n, converged, clipped)


@partial(jax.jit, static_argnames=("num_iterations", "max_iterations"))
def _value_iteration(P, r_atoms, r_probs, gamma, rep, tol, num_iterations, max_iterations):
    S, A, _ = P.shape
    backup = _make_backup(rep, P, r_atoms, r_probs, gamma)

    def step(table):
        return backup(table, jax.nn.one_hot(_greedy(rep, table), A, dtype=jnp.float32))

    table, n, converged, clipped = _iterate(
        step, _initial(rep, S, A), tol, num_iterations, max_iterations
    )
    policy = _greedy(rep, table)
    state = _state_dist(rep, table, jax.nn.one_hot(policy, A, dtype=jnp.float32))
    return DPResult(table, state, policy, n, converged, clipped)


@partial(jax.jit, static_argnames=("max_iterations", "max_policy_iterations"))
def _policy_iteration(
    P, r_atoms, r_probs, gamma, rep, tol, max_iterations, max_policy_iterations
):
    S, A, _ = P.shape
    backup = _make_backup(rep, P, r_atoms, r_probs, gamma)

    def improve(carry):
        policy, table, _, k, _, _ = carry
        pi = jax.nn.one_hot(policy, A, dtype=jnp.float32)
        table, _, evaluated, clipped = _iterate(
            lambda t: backup(t, pi), table, tol, None, max_iterations
        )
        q = _mean(rep, table)
        # Keep the current action unless another is strictly better (no cycling on ties).
        keep = jnp.take_along_axis(q, policy[:, None], axis=1)[:, 0] >= q.max(axis=1)
        new = jnp.where(keep, policy, jnp.argmax(q, axis=1).astype(jnp.int32))
        return new, table, jnp.all(new == policy), k + 1, evaluated, clipped

    false = jnp.bool_(False)
    carry = (jnp.zeros((S,), jnp.int32), _initial(rep, S, A), false, jnp.int32(0), false, false)
    policy, table, stable, k, evaluated, clipped = jax.lax.while_loop(
        lambda c: ~c[2] & (c[3] < max_policy_iterations), improve, carry
    )
    state = _state_dist(rep, table, jax.nn.one_hot(policy, A, dtype=jnp.float32))
    return DPResult(table, state, policy, k, stable & evaluated, clipped)


@partial(jax.jit, static_argnums=(0, 1, 2))
def _over_batch(fn, static: tuple, num_batched: int, *args):
    """``fn(*args, **dict(static))`` over the leading batch axis of the first ``num_batched``
    args (the rest shared), in one compiled call. On CPU the MDPs run one after another
    (``lax.map``): each one's tables then stay in cache, about twice the throughput of the
    ``vmap``-ed version there; on accelerators the batch is ``vmap``-ed."""
    batched, shared = args[:num_batched], args[num_batched:]
    return map_batch(lambda *xs: fn(*xs, *shared, **dict(static)), *batched)


# ----------------------------------------------------------------------------- validation


def _is_concrete(*arrays) -> bool:
    return not any(isinstance(a, jax.core.Tracer) for a in arrays)


def _check_gamma(gamma) -> None:
    if np.ndim(gamma) != 0:
        raise ValueError(f"gamma must be a scalar, got shape {np.shape(gamma)}")
    if _is_concrete(gamma) and not 0.0 <= float(gamma) <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {float(gamma)}")


def _check_rep(rep):
    """``rep`` validated, with a CategoricalRep support as a float32 array."""
    if isinstance(rep, CategoricalRep):
        check_support(rep.support, "support")
        return rep.replace(support=jnp.asarray(rep.support, jnp.float32))
    if isinstance(rep, QuantileRep):
        quantile_levels(rep.num_quantiles)  # raises on a bad num_quantiles
        return rep
    raise ValueError(f"rep must be CategoricalRep or QuantileRep, got {type(rep).__name__}")


def _check_count(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _prepare(P, R, reward_probs, policy, gamma):
    """Validate and convert the MDP inputs; returns ``(batched, P, r_atoms, r_probs, pi)``,
    float32 with ``r_atoms, r_probs: [..., S, A, K]`` and ``pi: [..., S, A]`` (or None)."""
    _check_gamma(gamma)
    P_shape = np.shape(P)
    if len(P_shape) not in (3, 4):
        raise ValueError(f"P must have shape [S, A, S] or [B, S, A, S], got {P_shape}")
    batched = len(P_shape) == 4
    lead, (S, A) = P_shape[:-3], P_shape[-3:-1]
    if P_shape[-1] != S:
        raise ValueError(f"P must have shape [..., S, A, S], got {P_shape}")
    R_shape = np.shape(R)
    if reward_probs is None:
        if R_shape != (*lead, S, A):
            raise ValueError(f"R must have shape {(*lead, S, A)} to match P, got {R_shape}")
        r_atoms = jnp.asarray(R, jnp.float32)[..., None]
        r_probs = jnp.ones_like(r_atoms)
    else:
        if len(R_shape) != len(lead) + 3 or R_shape[:-1] != (*lead, S, A):
            raise ValueError(
                f"R (reward atoms) must have shape {(*lead, S, A)} + (K,) to match P, "
                f"got {R_shape}"
            )
        if np.shape(reward_probs) != R_shape:
            raise ValueError(
                f"reward_probs must have the shape of R {R_shape}, got {np.shape(reward_probs)}"
            )
        r_atoms = jnp.asarray(R, jnp.float32)
        r_probs = jnp.asarray(reward_probs, jnp.float32)
    pi = None
    if policy is not None:
        pi = _policy_probs(policy, lead, S, A)
    if _is_concrete(P, R, reward_probs, policy):
        _check_values(P, r_atoms, r_probs, pi, lead, S)
    return batched, jnp.asarray(P, jnp.float32), r_atoms, r_probs, pi


def _policy_probs(policy, lead, S: int, A: int) -> jax.Array:
    """``float32[..., S, A]`` from an ``int[..., S]`` action table or ``float[..., S, A]``."""
    shape = np.shape(policy)
    if shape == (*lead, S) and jnp.issubdtype(jnp.asarray(policy).dtype, jnp.integer):
        actions = np.asarray(policy) if _is_concrete(policy) else None
        if actions is not None and (np.any(actions < 0) or np.any(actions >= A)):
            raise ValueError(f"policy actions must lie in [0, {A}), got {np.asarray(policy)}")
        return jax.nn.one_hot(policy, A, dtype=jnp.float32)
    if shape == (*lead, S, A):
        return jnp.asarray(policy, jnp.float32)
    raise ValueError(
        f"policy must be int actions of shape {(*lead, S)} or probabilities of shape "
        f"{(*lead, S, A)}, got {shape} ({jnp.asarray(policy).dtype})"
    )


def _check_values(P, r_atoms, r_probs, pi, lead, S: int) -> None:
    """Value checks on concrete arrays: each MDP through ``validate_mdp``, then the reward
    distribution and the policy rows."""
    P_np = np.asarray(P).reshape(-1, *np.shape(P)[-3:])
    r_mean = np.asarray(jnp.sum(r_atoms * r_probs, axis=-1)).reshape(-1, *P_np.shape[1:3])
    uniform = np.full((S,), 1.0 / S, np.float32)
    for b in range(P_np.shape[0]):
        where = f" (batch element {b})" if lead else ""
        try:
            validate_mdp(TabularParams(P_np[b], r_mean[b], uniform, 1))
        except ValueError as err:
            raise ValueError(f"{err}{where}") from None
    for name, arr in (("R", r_atoms), ("reward_probs", r_probs), ("policy", pi)):
        if arr is not None and not np.all(np.isfinite(np.asarray(arr))):
            raise ValueError(f"{name} has non-finite entries")
    for name, arr in (("reward_probs", r_probs), ("policy", pi)):
        if arr is None:
            continue
        arr = np.asarray(arr)
        if np.any(arr < 0):
            raise ValueError(f"{name} has negative probabilities")
        if np.any(np.abs(arr.sum(axis=-1) - 1.0) > 1e-5):
            raise ValueError(f"{name} rows must sum to 1")


# ----------------------------------------------------------------------------- public API


def policy_evaluation(
    P,
    R,
    policy,
    gamma,
    rep: Representation,
    *,
    reward_probs=None,
    num_iterations: int | None = None,
    tol: float = 1e-6,
    max_iterations: int = 10_000,
) -> DPResult:
    """Return law of ``policy`` on the MDP ``(P, R)``; see the module docstring.

    ``policy``: ``int[S]`` actions or ``float[S, A]`` action probabilities (with the batch axis
    of ``P`` if any). ``num_iterations``: a fixed number of backups (finite horizon) instead of
    iterating to ``tol``. Returns a :class:`DPResult`; ``state_dist`` is the law under ``policy``.
    """
    rep = _check_rep(rep)
    _check_count("num_iterations", num_iterations, allow_none=True)
    _check_count("max_iterations", max_iterations)
    batched, P, r_atoms, r_probs, pi = _prepare(P, R, reward_probs, policy, gamma)
    static = (("num_iterations", num_iterations), ("max_iterations", max_iterations))
    args = (P, r_atoms, r_probs, pi, jnp.float32(gamma), rep, jnp.float32(tol))
    if batched:
        return _over_batch(_evaluate, static, 4, *args)
    return _evaluate(*args, **dict(static))


def value_iteration(
    P,
    R,
    gamma,
    rep: Representation,
    *,
    reward_probs=None,
    num_iterations: int | None = None,
    tol: float = 1e-6,
    max_iterations: int = 10_000,
) -> DPResult:
    """Distributional value iteration, greedy in the mean, on the MDP ``(P, R)``.

    Each backup uses the policy greedy for the current table. With ``num_iterations`` it is
    finite-horizon backward induction of that many steps. Returns a :class:`DPResult` whose
    ``state_dist`` is under the final greedy ``policy``.
    """
    rep = _check_rep(rep)
    _check_count("num_iterations", num_iterations, allow_none=True)
    _check_count("max_iterations", max_iterations)
    batched, P, r_atoms, r_probs, _ = _prepare(P, R, reward_probs, None, gamma)
    static = (("num_iterations", num_iterations), ("max_iterations", max_iterations))
    args = (P, r_atoms, r_probs, jnp.float32(gamma), rep, jnp.float32(tol))
    if batched:
        return _over_batch(_value_iteration, static, 3, *args)
    return _value_iteration(*args, **dict(static))


def policy_iteration(
    P,
    R,
    gamma,
    rep: Representation,
    *,
    reward_probs=None,
    tol: float = 1e-6,
    max_iterations: int = 10_000,
    max_policy_iterations: int = 100,
) -> DPResult:
    """Distributional policy iteration, greedy in the mean, from the all-zeros policy.

    Each round evaluates the current deterministic policy to ``tol`` (warm-started from the
    previous table) and switches an action only where another is strictly better in the mean.
    Stops when the policy is stable or after ``max_policy_iterations`` rounds; ``converged``
    says the policy is stable and its last evaluation converged (it does not when some
    policy's returns diverge, e.g. ``gamma = 1`` without absorption).
    """
    rep = _check_rep(rep)
    _check_count("max_iterations", max_iterations)
    _check_count("max_policy_iterations", max_policy_iterations)
    batched, P, r_atoms, r_probs, _ = _prepare(P, R, reward_probs, None, gamma)
    static = (("max_iterations", max_iterations), ("max_policy_iterations", max_policy_iterations))
    args = (P, r_atoms, r_probs, jnp.float32(gamma), rep, jnp.float32(tol))
    if batched:
        return _over_batch(_policy_iteration, static, 3, *args)
    return _policy_iteration(*args, **dict(static))

