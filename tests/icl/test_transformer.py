"""Causal transformer: cached and full-sequence faces agree, causality, windows, ALiBi, RoPE."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_icl.config import ConfigError
from jaxrl_icl.icl import transformer as tr

D_IN, D_OUT, B = 5, 3, 2


class _PrefixMeanFFN(nn.Module):
    """A stateful test block: ``mix(concat(x, prefix_mean(x)))``, the causal statistic a task
    router needs, with one auxiliary loss and one logged-only scalar."""

    config: tr.TransformerConfig
    layer: int

    def setup(self):
        self.mix = nn.Dense(self.config.backbone.width, name="mix")

    def __call__(self, x, deterministic, num_queries=0):
        y = self.mix(jnp.concatenate([x, tr.prefix_mean(x, num_queries)], axis=-1))
        return y, {"size_loss": jnp.mean(y**2), "first": y[0, 0, 0]}

    def step(self, x, state):
        mean, total, count = tr.prefix_mean_step(x, state["total"], state["count"])
        return self.mix(jnp.concatenate([x, mean], axis=-1)), {"total": total, "count": count}

    def init_state(self, batch_size):
        return {"total": jnp.zeros((batch_size, self.config.backbone.width)), "count": jnp.int32(0)}


tr.FFN_BLOCKS["test_prefix_mean"] = _PrefixMeanFFN

# Backbone options every equality test runs over (the sink ones with random, non-zero sink parameters).
BACKBONES = {
    "dense": {},
    "sink_kv": {"sink": "kv"},
    "sink_k": {"sink": "k"},
    "prefix_mean_ffn": {"ffn": "test_prefix_mean"},
    "token_moe": {"ffn": "token_moe"},  # the MoE in the last layer
    "t2mir": {"ffn": "t2mir"},
    "chunked": {"attention_chunk": 5, "sink": "kv"},  # rows 5 at a time, the last chunk padded
}


def _config(positions, window=0, max_len=16, num_layers=2, **kw):
    backbone = tr.BackboneConfig(width=16, num_layers=num_layers, num_heads=4, positions=positions, **kw)
    return tr.TransformerConfig(d_in=D_IN, d_out=D_OUT, max_len=max_len, window=window, backbone=backbone)


def _params(cfg, seed=0):
    """``init`` with the (zero-initialised) sink keys and values moved to random values.

    The window, ALiBi vs RoPE and attention chunking change no parameter (flax draws each one
    from its own path), so one canonical config's init serves them all: one compile (seconds
    on 2 CPU cores, mostly the random draws) instead of one per case."""
    backbone = cfg.backbone
    canonical = dataclasses.replace(cfg, window=0, backbone=dataclasses.replace(
        backbone, attention_chunk=0, positions="alibi" if backbone.positions == "rope" else backbone.positions))
    params = tr.init(canonical, jax.random.PRNGKey(seed))
    shapes = jax.eval_shape(lambda k: tr.init(cfg, k), jax.random.PRNGKey(seed))
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(lambda x: x.shape, shapes)
    key = jax.random.PRNGKey(seed + 100)

    def move(path, leaf):
        if jax.tree_util.keystr(path).endswith(("['sink_key']", "['sink_value']")):
            return leaf + jax.random.normal(jax.random.fold_in(key, hash(jax.tree_util.keystr(path)) % 2**31),
                                            leaf.shape)
        return leaf

    return jax.tree_util.tree_map_with_path(move, params)


def _tokens(t, seed=1):
    return jax.random.normal(jax.random.PRNGKey(seed), (B, t, D_IN))


_apply = jax.jit(tr.apply, static_argnums=0)


def _scan_steps(cfg, params, tokens, cache=None):
    """``(outputs [B, T, d_out], cache)`` from a ``lax.scan`` of ``step`` over ``tokens [B, T, d_in]``."""

    def body(cache, token):
        out, cache = tr.step(cfg, params, cache, token)
        return cache, out

    cache = tr.init_cache(cfg, tokens.shape[0]) if cache is None else cache
    cache, outs = jax.lax.scan(body, cache, jnp.swapaxes(tokens, 0, 1))
    return jnp.swapaxes(outs, 0, 1), cache


_rollout = jax.jit(_scan_steps, static_argnums=0)


# (backbone, positions, window) cases: dense in every position scheme, with and without a window
# (the linear and the ring-buffer cache); each other option with RoPE in a window of 5 (the ring
# buffer wrapping), and with learned positions and no window.
CASES = [("dense", p, w) for p in ("learned", "alibi", "rope") for w in (0, 5)] + [
    (name, p, w) for name in BACKBONES if name != "dense" for p, w in (("learned", 0), ("rope", 5))]


def _params_of(cases, default):
    """``cases`` as pytest parameters, those not in ``default`` marked slow."""
    return [case if case in default else pytest.param(*case, marks=pytest.mark.slow) for case in cases]


# An option changes the attention helper or the feed-forward block, not which cache the positions
# and window pick, so the default suite runs every option once (RoPE in a window; ``token_moe``
# inside ``t2mir``) and dense once per cache (learned positions in the linear one, RoPE in the
# ring buffer); the slow suite runs them all, ALiBi included.
CACHED_DEFAULT = {("dense", "learned", 0)} | {(name, "rope", 5) for name in BACKBONES if name != "token_moe"}


@pytest.mark.parametrize("backbone,positions,window", _params_of(CASES, CACHED_DEFAULT))
def test_cached_steps_match_full_sequence(backbone, positions, window):
    cfg = _config(positions, window, **BACKBONES[backbone])
    params = _params(cfg)
    # With a window and relative positions the ring buffer wraps several times past max_len.
    length = 16 if cfg.context_limit else 37
    tokens = _tokens(length)
    full = _apply(cfg, params, tokens)
    cached, cache = _rollout(cfg, params, tokens)
    assert full.shape == cached.shape == (B, length, D_OUT)
    np.testing.assert_allclose(cached, full, atol=1e-5, rtol=0)
    assert int(cache.pos) == length
    assert cache.keys.shape == (B, 2, 4, window or 16, 4)


@pytest.mark.slow
@pytest.mark.parametrize("positions", ["alibi", "rope"])
def test_window_equals_truncated_context(positions):
    # Independent check of the window mask: with relative positions and one layer (so the
    # receptive field is the window itself), the output at t under window w equals the last
    # output of the model run on tokens t-w+1..t alone.
    w = 4
    windowed = _config(positions, window=w, num_layers=1)
    plain = _config(positions, num_layers=1)
    params = tr.init(plain, jax.random.PRNGKey(0))
    tokens = _tokens(12)
    full = _apply(windowed, params, tokens)
    for t in (2, 11):
        alone = _apply(plain, params, tokens[:, max(0, t - w + 1): t + 1])[:, -1]
        np.testing.assert_allclose(full[:, t], alone, atol=1e-5, rtol=0)
    # ...and the window matters: without it the late outputs differ.
    assert np.abs(_apply(plain, params, tokens)[:, -1] - full[:, -1]).max() > 1e-3


@pytest.mark.parametrize("positions", ["learned", "alibi", "rope"])
def test_future_tokens_do_not_change_past_outputs(positions):
    cfg = _config(positions)
    params = tr.init(cfg, jax.random.PRNGKey(0))
    tokens = _tokens(10)
    base = _apply(cfg, params, tokens)
    for t in (0, 4, 9):
        changed = tokens.at[:, t].add(3.0)
        out = _apply(cfg, params, changed)
        np.testing.assert_array_equal(out[:, :t], base[:, :t])
        assert np.abs(out[:, t:] - base[:, t:]).max(axis=(0, 2)).min() > 1e-4


def test_vmapped_step_matches_batched_step():
    cfg = _config("alibi", window=5)
    params = tr.init(cfg, jax.random.PRNGKey(0))
    tokens = _tokens(7)
    batched, _ = _rollout(cfg, params, tokens)
    per_task = jax.jit(jax.vmap(lambda x: _scan_steps(cfg, params, x[None])[0][0]))(tokens)
    np.testing.assert_allclose(per_task, batched, atol=1e-6, rtol=0)


@pytest.mark.parametrize("num_heads", [1, 2, 4, 8, 16])
def test_alibi_slopes_power_of_two_closed_form(num_heads):
    # Geometric sequence starting at 2^(-8/n) with ratio 2^(-8/n): slope_h = 2^(-8h/n).
    expected = np.array([2.0 ** (-8.0 * h / num_heads) for h in range(1, num_heads + 1)])
    np.testing.assert_allclose(tr.alibi_slopes(num_heads), expected, rtol=1e-7)
    if num_heads == 8:
        np.testing.assert_allclose(tr.alibi_slopes(8), [1 / 2 ** h for h in range(1, 9)], rtol=1e-7)


def test_alibi_slopes_non_power_of_two_interleave():
    # 6 heads: the 4 slopes of n=4, then slopes 1 and 3 (1-based) of n=8.
    np.testing.assert_allclose(
        tr.alibi_slopes(6), [2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3], rtol=1e-7
    )


def test_alibi_bias_is_minus_slope_times_distance():
    # One layer, one head, zero query/key weights: logits are the bias alone, so the attention
    # weights must be softmax(-slope * (t - j)) over j <= t, here slope 2^-8 for one head.
    cfg = tr.TransformerConfig(d_in=2, d_out=2, max_len=8,
                               backbone=tr.BackboneConfig(width=4, num_layers=1, num_heads=1, positions="alibi"))
    attn = tr._Attention(cfg)
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 6, 4))
    params = attn.init(jax.random.PRNGKey(1), x, True, jnp.arange(6))
    kernel = params["params"]["qkv"]["kernel"]
    params["params"]["qkv"]["kernel"] = kernel.at[:, :8].set(0.0)  # q and k columns
    params["params"]["qkv"]["bias"] = jnp.zeros(12)
    q, k, _ = attn.apply(params, x, jnp.arange(6), method=tr._Attention._qkv)
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k)
    np.testing.assert_array_equal(scores, 0.0)
    weights = jax.nn.softmax(tr._attention_logits(cfg, scores, jnp.arange(6), jnp.arange(6)), axis=-1)[0, 0]
    slope = 2.0**-8
    for t in range(6):
        logits = -slope * (t - np.arange(t + 1))
        expected = np.exp(logits) / np.exp(logits).sum()
        np.testing.assert_allclose(weights[t, : t + 1], expected, rtol=1e-5)
        np.testing.assert_array_equal(weights[t, t + 1:], 0.0)


def test_rope_preserves_norms_and_matches_complex_rotation():
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 7, 2, 8))
    pos = jnp.arange(7) * 5
    rotated = tr.rope(x, pos, base=100.0)
    np.testing.assert_allclose(jnp.linalg.norm(rotated, axis=-1), jnp.linalg.norm(x, axis=-1), rtol=1e-5)
    # Independent form: pair (x_i, x_{i+4}) as a complex number times exp(i * pos * 100^(-i/4)).
    xn = np.asarray(x, np.float64)
    z = xn[..., :4] + 1j * xn[..., 4:]
    angle = np.asarray(pos, np.float64)[:, None, None] * 100.0 ** (-np.arange(4) / 4.0)
    zr = z * np.exp(1j * angle)
    np.testing.assert_allclose(rotated, np.concatenate([zr.real, zr.imag], axis=-1), atol=1e-4)


def test_rope_dot_product_depends_only_on_offset():
    q = jax.random.normal(jax.random.PRNGKey(0), (1, 1, 16))
    k = jax.random.normal(jax.random.PRNGKey(1), (1, 1, 16))

    def score(m, n):
        return float(jnp.sum(tr.rope(q, jnp.array([m]), 10000.0) * tr.rope(k, jnp.array([n]), 10000.0)))

    for m, n in [(3, 1), (10, 2), (0, 0), (7, 9)]:
        for shift in (1, 17, 250):
            assert score(m + shift, n + shift) == pytest.approx(score(m, n), abs=1e-4)
    # ...while a different offset gives a different score.
    assert abs(score(5, 0) - score(6, 0)) > 1e-3


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="^num_heads"):
        tr.BackboneConfig(width=10, num_heads=4)
    with pytest.raises(ConfigError, match="^num_heads.*even head_dim"):
        tr.BackboneConfig(width=12, num_heads=4, positions="rope")
    with pytest.raises(ConfigError, match="^window"):
        tr.TransformerConfig(d_in=2, d_out=2, max_len=8, window=9)
    with pytest.raises(ConfigError, match="^positions"):
        tr.BackboneConfig(positions="sinusoid")
    with pytest.raises(ConfigError, match="^dropout"):
        tr.BackboneConfig(dropout=1.0)
    with pytest.raises(ConfigError, match="^ffn: expected one of \\['dense'"):
        tr.BackboneConfig(ffn="sparse")
    with pytest.raises(ConfigError, match="^sink"):
        tr.BackboneConfig(sink="v")
    with pytest.raises(ConfigError, match="^attention_chunk"):
        tr.BackboneConfig(attention_chunk=-1)
    with pytest.raises(ConfigError, match="^backbone"):
        tr.TransformerConfig(d_in=2, d_out=2, backbone={"width": 8})


@pytest.mark.parametrize("backbone,positions,window", _params_of(
    # the options' forward passes are all in the test above: by default dense RoPE in a ring
    # buffer here
    [case for case in CASES if case[0] == "dense" or case[1] == "rope"], {("dense", "rope", 5)}))
def test_queries_match_peek_and_prefix_sequences(backbone, positions, window):
    """Two oracles for query i: ``peek`` after i cached context tokens, and the last output of
    the plain causal ``apply`` on ``context[:i] + [query i]``."""
    cfg = _config(positions, window, **BACKBONES[backbone])
    params = _params(cfg)
    context, queries = _tokens(7, seed=2), _tokens(8, seed=3)
    ctx_out, q_out = jax.jit(tr.apply_queries, static_argnums=0)(cfg, params, context, queries)
    assert ctx_out.shape == (B, 7, D_OUT) and q_out.shape == (B, 8, D_OUT)
    np.testing.assert_allclose(ctx_out, _apply(cfg, params, context), atol=1e-5, rtol=0)
    peek, step = jax.jit(tr.peek, static_argnums=0), jax.jit(tr.step, static_argnums=0)
    cache = tr.init_cache(cfg, B)
    for i in range(8):
        np.testing.assert_allclose(peek(cfg, params, cache, queries[:, i]), q_out[:, i], atol=1e-5, rtol=0)
        if i < 7:
            _, cache = step(cfg, params, cache, context[:, i])
    # Every prefix ``context[:i] + [query i]`` in one causal call, zero-padded to 8 tokens: the
    # output at position i sees only the prefix, whatever follows it.
    prefixes = jnp.stack([jnp.concatenate([context[:, :i], queries[:, i : i + 1], jnp.zeros((B, 7 - i, D_IN))], axis=1)
                          for i in range(8)])
    last = jax.vmap(lambda x: _apply(cfg, params, x))(prefixes)[jnp.arange(8), :, jnp.arange(8)]  # [8, B, d_out]
    np.testing.assert_allclose(jnp.swapaxes(last, 0, 1), q_out, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="at most T \\+ 1"):
        tr.apply_queries(cfg, params, context, _tokens(9))


def test_context_longer_than_max_len_is_an_error():
    cfg = _config("alibi", max_len=8)
    params = tr.init(cfg, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="max_len=8"):
        _apply(cfg, params, _tokens(9))
    with pytest.raises(ValueError, match="d_in"):
        _apply(cfg, params, jnp.zeros((1, 4, D_IN + 1)))
    # Learned positions bound the context even with a window.
    learned = _config("learned", window=4, max_len=8)
    with pytest.raises(ValueError, match="max_len=8"):
        _apply(learned, tr.init(learned, jax.random.PRNGKey(0)), _tokens(9))
    # The cached face raises at run time on the first token past max_len, not silently:
    # two tokens from position 6 fit, from position 7 the second one overflows.
    def from_pos(pos):
        return tr.init_cache(cfg, B).replace(pos=jnp.int32(pos))

    jax.block_until_ready(_rollout(cfg, params, _tokens(2), from_pos(6)))
    with pytest.raises(Exception, match="max_len=8"):
        jax.block_until_ready(_rollout(cfg, params, _tokens(2), from_pos(7)))
    # Under vmap over tasks too, where only one task overflows.
    per_task = jax.jit(jax.vmap(lambda x, c: _scan_steps(cfg, params, x[None], c)[0]))
    caches = jax.vmap(lambda p: tr.init_cache(cfg, 1).replace(pos=p))(jnp.array([6, 7], jnp.int32))
    with pytest.raises(Exception, match="max_len=8"):
        jax.block_until_ready(per_task(_tokens(2), caches))
    caches = caches.replace(pos=jnp.array([6, 6], jnp.int32))
    jax.block_until_ready(per_task(_tokens(2), caches))


@pytest.mark.slow
def test_chunked_attention_is_the_same_function_and_gradient():
    """``attention_chunk`` rows at a time (padded last chunk, rematerialised) gives the outputs
    and parameter gradients of all rows at once, for ``apply`` and for ``apply_queries`` (one
    case, rope with a window and a sink: the forward equalities of the other options are in the
    parametrised suites above, with the ``chunked`` backbone)."""
    whole = _config("rope", 6, max_len=32, sink="kv")
    chunked = _config("rope", 6, max_len=32, sink="kv", attention_chunk=6)
    params = _params(whole)
    context, queries = _tokens(23, seed=2), _tokens(9, seed=3)

    def loss(p, cfg):
        ctx_out, q_out = tr.apply_queries(cfg, p, context, queries)
        return jnp.sum(jnp.sin(tr.apply(cfg, p, context))) + jnp.sum(jnp.cos(ctx_out)) + jnp.sum(q_out**2)

    grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)
    (lw, gw), (lc, gc) = grad(params, whole), grad(params, chunked)
    np.testing.assert_allclose(lc, lw, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(gc), jax.tree.leaves(gw)):
        np.testing.assert_allclose(a, b, atol=1e-4 * (1 + float(jnp.max(jnp.abs(b)))), rtol=0)


@pytest.mark.slow
def test_chunked_attention_bounds_the_score_memory():
    """XLA's memory analysis of a gradient at 256 tokens: 32-row chunks need less than a third of
    the temporary memory of all rows at once (each [B, H, T, T] score tensor is 2 MiB here)."""
    def temp_bytes(chunk):
        cfg = _config("alibi", max_len=256, attention_chunk=chunk)
        params = tr.init(cfg, jax.random.PRNGKey(0))
        grad = jax.jit(jax.grad(lambda p, x: jnp.sum(tr.apply(cfg, p, x) ** 2)))
        return grad.lower(params, _tokens(256)).compile().memory_analysis().temp_size_in_bytes

    assert temp_bytes(32) < temp_bytes(0) / 3


@pytest.mark.slow
def test_chunked_attention_dropout_draws_per_chunk():
    cfg = _config("rope", max_len=32, dropout=0.3, attention_chunk=4)
    params = tr.init(cfg, jax.random.PRNGKey(0))
    tokens = _tokens(13)
    plain = _apply(cfg, params, tokens)
    np.testing.assert_allclose(plain, _apply(dataclasses.replace(cfg, backbone=dataclasses.replace(
        cfg.backbone, attention_chunk=0)), params, tokens), atol=1e-5, rtol=0)
    a = _apply(cfg, params, tokens, dropout_key=jax.random.PRNGKey(1))
    b = _apply(cfg, params, tokens, dropout_key=jax.random.PRNGKey(2))
    assert np.all(np.isfinite(a)) and np.abs(a - plain).max() > 1e-3 and np.abs(a - b).max() > 1e-3


def test_dropout_only_with_a_key():
    cfg = _config("rope", dropout=0.3)
    params = tr.init(cfg, jax.random.PRNGKey(0))
    tokens = _tokens(6)
    plain = _apply(cfg, params, tokens)
    np.testing.assert_array_equal(plain, _apply(cfg, params, tokens))
    a = _apply(cfg, params, tokens, dropout_key=jax.random.PRNGKey(1))
    b = _apply(cfg, params, tokens, dropout_key=jax.random.PRNGKey(2))
    assert np.abs(a - plain).max() > 1e-3 and np.abs(a - b).max() > 1e-3


@pytest.mark.slow
def test_benchmark_rollouts_compute_the_same_autoregressive_outputs():
    # The two rollouts timed by `python -m experiments.bench icl` feed each output back into
    # the next token; from an empty context both must end at the same output.
    from experiments.benchmarks import icl

    cfg = _config("rope", max_len=12)
    params = tr.init(cfg, jax.random.PRNGKey(0))
    stream = jax.random.normal(jax.random.PRNGKey(1), (B, 12, D_IN))
    cached = jax.jit(lambda p, s: icl.cached_rollout(cfg, p, s))(params, stream)
    recomputed = jax.jit(lambda p, s: icl.recompute_rollout(cfg, p, s, 0))(params, stream)
    np.testing.assert_allclose(cached, recomputed, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- attention sink and aux losses


def _softmax_attention_oracle(logits, values, extra):
    """NumPy float64: one softmax over the keys and the extra columns, then the weighted values."""
    logits, values = np.asarray(logits, np.float64), np.asarray(values, np.float64)
    b, h, q, _ = logits.shape
    cols = [logits] + [np.asarray(lg, np.float64)[..., None] for lg, _ in extra]
    all_logits = np.concatenate(cols, axis=-1)
    w = np.exp(all_logits - all_logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    out = np.einsum("bhqk,bkhd->bqhd", w[..., : logits.shape[-1]], values)
    for j, (_, v) in enumerate(extra):
        out += np.swapaxes(w[..., logits.shape[-1] + j], 1, 2)[..., None] * np.broadcast_to(v, out.shape)
    return out


def test_attend_is_one_softmax_over_keys_and_extra_columns():
    attend = jax.jit(tr.attend)
    k = jax.random.split(jax.random.PRNGKey(0), 5)
    logits = jax.random.normal(k[0], (2, 3, 4, 6))
    logits = jnp.where(jnp.tril(jnp.ones((4, 6), bool), 2), logits, -jnp.inf)  # hidden keys
    values = jax.random.normal(k[1], (2, 6, 3, 5))
    own = (jax.random.normal(k[2], (2, 3, 4)), jax.random.normal(k[3], (2, 4, 3, 5)))
    sink = (jax.random.normal(k[4], (2, 3, 4)), jnp.arange(15.0).reshape(3, 5))
    for extra in [(), (sink,), (own, sink)]:
        np.testing.assert_allclose(attend(logits, values, extra), _softmax_attention_oracle(logits, values, extra),
                                   atol=1e-5)
    # A sink far below the keys changes nothing; a dominating one returns its value for every query.
    plain = attend(logits, values)
    np.testing.assert_allclose(attend(logits, values, ((sink[0] - 1e4, sink[1]),)), plain, atol=1e-6)
    np.testing.assert_allclose(attend(logits, values, ((sink[0] + 1e4, sink[1]),)),
                               np.broadcast_to(sink[1], plain.shape), atol=1e-6)


def _with_query_bias_and_sink_key(params, scale):
    """Every layer: query bias ``+ 30 * ones`` and sink key ``scale * 30 * ones``, so a sink logit
    is about ``scale * 30^2 * head_dim / sqrt(head_dim)`` = ``scale * 1800`` against key logits of tens."""
    inner = dict(params["params"])
    for name, block in inner.items():
        if not name.startswith("block_"):
            continue
        attn = dict(block["attn"])
        width = attn["qkv"]["bias"].shape[0] // 3
        attn["qkv"] = {**attn["qkv"], "bias": attn["qkv"]["bias"].at[:width].add(30.0)}
        if "sink_key" in attn:
            attn["sink_key"] = jnp.full_like(attn["sink_key"], 30.0 * scale)
        inner[name] = {**block, "attn": attn}
    return {**params, "params": inner}


@pytest.mark.parametrize("sink", ["kv", pytest.param("k", marks=pytest.mark.slow)])
def test_sink_far_below_is_plain_attention_and_dominating_sink_ignores_the_context(sink):
    cfg = _config("alibi", **BACKBONES[f"sink_{sink}"])
    plain_cfg = _config("alibi")
    tokens = _tokens(9)
    params = _params(cfg)
    below = _with_query_bias_and_sink_key(params, -1.0)
    plain_params = _with_query_bias_and_sink_key(tr.init(plain_cfg, jax.random.PRNGKey(0)), -1.0)
    np.testing.assert_allclose(_apply(cfg, below, tokens), _apply(plain_cfg, plain_params, tokens), atol=1e-5)
    # Dominating: every attention output is the sink value, so each output depends on its own token only.
    above = _with_query_bias_and_sink_key(params, 1.0)
    full = _apply(cfg, above, tokens)
    for t in (0, 4, 8):
        np.testing.assert_allclose(full[:, t], _apply(cfg, above, tokens[:, t : t + 1])[:, 0], atol=1e-5)
    assert np.abs(_apply(cfg, below, tokens)[:, 8] - _apply(cfg, below, tokens[:, 8:])[:, 0]).max() > 1e-3


def test_sink_parameters_are_per_layer_and_head_and_zero_initialised():
    kv = tr.init(_config("rope", sink="kv"), jax.random.PRNGKey(0))["params"]
    k_only = tr.init(_config("rope", sink="k"), jax.random.PRNGKey(0))["params"]
    assert kv["block_1"]["attn"]["sink_key"].shape == kv["block_1"]["attn"]["sink_value"].shape == (4, 4)
    assert not np.any(kv["block_0"]["attn"]["sink_key"]) and not np.any(kv["block_0"]["attn"]["sink_value"])
    assert "sink_value" not in k_only["block_0"]["attn"] and "sink_key" in k_only["block_0"]["attn"]
    dense = tr.init(_config("rope"), jax.random.PRNGKey(0))["params"]
    assert set(dense["block_0"]) == {"ln1", "attn", "ln2", "fc", "out"} and set(dense["block_0"]["attn"]) == {
        "qkv", "proj"}


def test_prefix_mean_matches_its_step_form_and_brute_force():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 3))
    np.testing.assert_allclose(tr.prefix_mean(x), np.cumsum(x, 1) / np.arange(1, 8)[:, None], rtol=1e-6)
    context, queries = x[:, :4], x[:, 4:]
    means = tr.prefix_mean(jnp.concatenate([context, queries], 1), num_queries=3)
    total, count = jnp.zeros((2, 3)), jnp.int32(0)
    for i in range(3):  # query i: the mean of context[:i] and itself, as a step after i context tokens
        np.testing.assert_allclose(means[:, 4 + i], np.concatenate([context[:, :i], queries[:, i:i + 1]], 1).mean(1),
                                   rtol=1e-6)
        np.testing.assert_allclose(tr.prefix_mean_step(queries[:, i], total, count)[0], means[:, 4 + i], rtol=1e-6)
        _, total, count = tr.prefix_mean_step(context[:, i], total, count)


# slow: test_moe's AD trainer test covers the aux losses in the default suite
@pytest.mark.slow
def test_aux_scalars_come_back_from_every_block_and_the_trainers_add_the_losses():
    from jaxrl_icl.icl import ad, dpt
    from jaxrl_icl.icl.train import OptimConfig

    cfg = _config("rope", **BACKBONES["prefix_mean_ffn"])
    params = _params(cfg)
    out, aux = tr.apply(cfg, params, _tokens(6), return_aux=True)
    np.testing.assert_allclose(out, _apply(cfg, params, _tokens(6)), atol=1e-6, rtol=0)
    assert sorted(aux) == ["layer0/first", "layer0/size_loss", "layer1/first", "layer1/size_loss"]
    assert float(tr.aux_loss(aux)) == pytest.approx(float(aux["layer0/size_loss"] + aux["layer1/size_loss"]))
    assert tr.apply(_config("rope"), tr.init(_config("rope"), jax.random.PRNGKey(0)), _tokens(6),
                    return_aux=True)[1] == {}
    assert len(tr.apply_queries(cfg, params, _tokens(6), _tokens(3), return_aux=True)) == 3

    backbone = cfg.backbone
    optim = OptimConfig(num_updates=1, batch_size=2)
    rng = np.random.default_rng(0)
    hist = {"obs": rng.integers(0, 9, (2, 12, 2)), "action": rng.integers(0, 5, (2, 12)),
            "reward": rng.integers(0, 2, (2, 12)).astype(np.float32)}
    data = ad.ad_data(hist, 5)
    ad_trainer = ad.make_train(ad.ADConfig(context_episodes=2, backbone=backbone), optim, 2, 5, 3)
    _, ad_metrics = ad_trainer.update(ad_trainer.init(jax.random.PRNGKey(0), data), data)
    dpt_cfg = dpt.DPTConfig(context_len=4, backbone=backbone)
    goals = jnp.array([[1, 2], [3, 0]])
    dpt_trainer = dpt.make_train(dpt_cfg, optim, dpt.make_model(dpt_cfg, 2, 5),
                                 lambda k, b: dpt.darkroom_batch(k, goals, 5, 4, b))
    _, dpt_metrics = dpt_trainer.update(dpt_trainer.init(jax.random.PRNGKey(0), None), None)
    for m in (ad_metrics, dpt_metrics):
        losses = float(m["layer0/size_loss"] + m["layer1/size_loss"])
        assert losses > 0 and "layer0/first" in m
        assert float(m["loss"]) == pytest.approx(float(m["task_loss"]) + losses, rel=1e-6)


def test_importing_the_backbone_loads_no_envs_or_source_algorithms():
    """``jaxrl_icl.icl`` loads ``ad``, ``dpt`` and ``posterior`` (and through them gymnax and the
    source RL algorithms) on first use only."""
    code = ("import sys\nimport jaxrl_icl.icl.transformer\n"
            "print([m for m in ('gymnax', 'envs', 'jaxrl_icl.rl', 'jaxrl_icl.icl.dpt') if m in sys.modules])\n"
            "from jaxrl_icl import icl\nprint(icl.dpt.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["[]", "jaxrl_icl.icl.dpt"]
