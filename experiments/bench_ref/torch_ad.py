"""Benchmark-only PyTorch Algorithm Distillation on Dark Room 9x9 (not part of the library).

What a PyTorch researcher would write for the same model as :mod:`jaxrl_icl.icl.ad`, in
eager mode (no ``torch.compile``), for :mod:`experiments.benchmarks.icl_torch`:

* :class:`ADTransformer`: the same maths and parameter shapes as
  :mod:`jaxrl_icl.icl.transformer` with ALiBi positions and a sliding window of ``window``
  tokens: input ``embed``, pre-LN blocks (``ln1``, fused ``attn.qkv``, ``attn.proj``, ``ln2``,
  tanh-GELU MLP ``fc``/``out``), final ``ln_f`` and linear ``head``; LayerNorm epsilon 1e-6.
  ``forward`` runs whole sequences (training); ``step`` feeds one token per call against a
  :class:`KVCache` ring buffer of ``window`` slots per layer, O(window) per token.
* :func:`step_tokens` / :func:`triplet_tokens`: the two AD token layouts of
  :mod:`jaxrl_icl.icl.tokens`.
* :class:`DarkRoom`: a batch of Dark Room 9x9 tasks as tensors (start (4, 4), horizon 20,
  reward 1 on the goal, auto-reset at the time limit), as :mod:`envs.darkroom`.
* :func:`evaluate`: in-context rollouts of B tasks at once, a Python loop over env steps;
  every transition enters the context.
* :func:`train_step`: one AdamW update on a batch of random context windows;
  :func:`make_optimizer` gives AdamW with linear warmup + cosine decay like
  :mod:`jaxrl_icl.icl.train`.
* :func:`load_flax_params`: copy our flax parameters in (Dense kernels are ``[in, out]``).

Only ALiBi positions are implemented (the AD default).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-6  # flax.linen.LayerNorm's default


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """ALiBi slopes ``[num_heads]``: ``2^(-8h/m)`` for the largest power of two ``m <= n``,
    then every other slope of ``2m`` for the remaining heads."""
    m = 2 ** int(math.floor(math.log2(num_heads)))
    slopes = [2.0 ** (-8.0 * h / m) for h in range(1, m + 1)]
    slopes += [2.0 ** (-4.0 * (2 * k - 1) / m) for k in range(1, num_heads - m + 1)]
    return torch.tensor(slopes, dtype=torch.float32)


@dataclasses.dataclass
class KVCache:
    """``keys``/``values`` ``[num_layers, B, H, window, D]``; the token at position ``p``
    lives in slot ``p % window``. ``pos``: tokens fed so far."""

    keys: torch.Tensor
    values: torch.Tensor
    pos: int = 0


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x, bias, cache=None, slot: int = 0):
        """``x [B, T, W]``, additive ``bias [H, T, S]``; with ``cache = (keys, values)``
        (``[B, H, S, D]``, T = 1) this token's key/value is written into ``slot`` first."""
        batch, length, width = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        if cache is not None:
            keys, values = cache
            keys[:, :, slot], values[:, :, slot] = k[:, :, 0], v[:, :, 0]
            k, v = keys, values
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(batch, length, width))


class Block(nn.Module):
    """Pre-LN block: ``x + Attn(LN(x))`` then ``x + MLP(LN(x))``, dropout on both branches."""

    def __init__(self, width: int, num_heads: int, dropout: float, mlp_ratio: int = 4):
        super().__init__()
        self.ln1 = nn.LayerNorm(width, eps=LN_EPS)
        self.attn = CausalSelfAttention(width, num_heads, dropout)
        self.ln2 = nn.LayerNorm(width, eps=LN_EPS)
        self.fc = nn.Linear(width, mlp_ratio * width)
        self.out = nn.Linear(mlp_ratio * width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, bias, cache=None, slot: int = 0):
        x = x + self.drop(self.attn(self.ln1(x), bias, cache, slot))
        return x + self.drop(self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh")))


class ADTransformer(nn.Module):
    """Causal ALiBi transformer over a sliding window of ``window`` tokens.

    ``forward(tokens [B, T, d_in]) -> logits [B, T, d_out]``; ``step(token [B, d_in], cache)
    -> logits [B, d_out]`` (updates ``cache`` in place). Token ``t`` sees tokens
    ``max(0, t - window + 1) .. t``.
    """

    def __init__(self, d_in: int, d_out: int, width: int, num_layers: int, num_heads: int, window: int,
                 dropout: float = 0.0, mlp_ratio: int = 4):
        super().__init__()
        if width % num_heads or window < 1:
            raise ValueError(f"need width % num_heads == 0 and window >= 1, got {width}, {num_heads}, {window}")
        self.d_out, self.num_heads, self.window = d_out, num_heads, window
        self.embed = nn.Linear(d_in, width)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(width, num_heads, dropout, mlp_ratio) for _ in range(num_layers))
        self.ln_f = nn.LayerNorm(width, eps=LN_EPS)
        self.head = nn.Linear(width, d_out)
        self.register_buffer("slopes", alibi_slopes(num_heads), persistent=False)

    def _bias(self, offset: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """ALiBi ``-slope_h * offset`` ``[H, *offset.shape]``, ``-inf`` where not ``visible``."""
        bias = -self.slopes[:, None, None] * offset.float()
        return bias.masked_fill(~visible, float("-inf"))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        offset = positions[:, None] - positions[None, :]  # query - key
        bias = self._bias(offset, (offset >= 0) & (offset < self.window))
        x = self.drop(self.embed(tokens))
        for block in self.blocks:
            x = block(x, bias)
        return self.head(self.ln_f(x))

    def init_cache(self, batch_size: int) -> KVCache:
        first = self.blocks[0].attn.qkv.weight
        shape = (len(self.blocks), batch_size, self.num_heads, self.window, first.shape[1] // self.num_heads)
        return KVCache(first.new_zeros(shape), first.new_zeros(shape))

    def step(self, token: torch.Tensor, cache: KVCache) -> torch.Tensor:
        pos, slots = cache.pos, torch.arange(self.window, device=token.device)
        offset = (pos - slots) % self.window  # distance back to the token in each slot
        bias = self._bias(offset[None], (offset <= pos)[None])  # [H, 1, window]
        x = self.embed(token)[:, None]
        for i, block in enumerate(self.blocks):
            x = block(x, bias, (cache.keys[i], cache.values[i]), pos % self.window)
        cache.pos += 1
        return self.head(self.ln_f(x))[:, 0]


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": x}}`` -> ``{"a.b": x}``."""
    flat = {}
    for name, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[prefix + name] = value
    return flat


def load_flax_params(model: ADTransformer, flax_params: Mapping[str, Any]) -> None:
    """Copy ``jaxrl_icl.icl.transformer`` parameters (``{"params": {...}}`` or the inner dict)
    into ``model``: ``blocks.i`` <- ``block_i``, Linear ``weight`` <- ``kernel.T``, LayerNorm
    ``weight`` <- ``scale``. ValueError on a missing, extra or mis-shaped parameter."""
    flat = _flatten(flax_params.get("params", flax_params))
    modules, used = dict(model.named_modules()), set()
    with torch.no_grad():
        for name, param in model.named_parameters():
            owner, leaf = name.rsplit(".", 1)
            key = re.sub(r"^blocks\.(\d+)", r"block_\1", owner)  # torch blocks.3 = flax block_3
            linear = isinstance(modules[owner], nn.Linear)
            key += "." + ("kernel" if linear and leaf == "weight" else "scale" if leaf == "weight" else "bias")
            if key not in flat:
                raise ValueError(f"flax_params: no {key} for torch parameter {name}")
            value = torch.tensor(np.asarray(flat[key], dtype=np.float32))
            value = value.T if linear and leaf == "weight" else value
            if value.shape != param.shape:
                raise ValueError(f"flax_params: {key} has shape {tuple(value.shape)}, "
                                 f"{name} needs {tuple(param.shape)}")
            param.copy_(value)
            used.add(key)
    if extra := sorted(set(flat) - used):
        raise ValueError(f"flax_params: parameters with no torch counterpart: {extra}")


# ----------------------------------------------------------------------------- tokens


def step_tokens(obs, prev_action, prev_reward, num_actions: int) -> torch.Tensor:
    """One token per step ``[B, L, A + 1 + obs_dim]``: ``onehot(a_{t-1}) | r_{t-1} | o_t``.

    ``obs [B, L, obs_dim]`` float (already scaled), ``prev_action [B, L]`` long (-1 = none:
    zero one-hot), ``prev_reward [B, L]`` float.
    """
    onehot = F.one_hot(prev_action.clamp(min=0), num_actions).float() * (prev_action >= 0)[..., None]
    return torch.cat([onehot, prev_reward[..., None].float(), obs], dim=-1)


def triplet_tokens(obs, action, reward, num_actions: int) -> torch.Tensor:
    """Three tokens per step ``[B, 3L, 3 + obs_dim + A + 1]`` (``o_t, a_t, r_t``): a type one-hot,
    then the obs, action one-hot and reward slots, unused slots zero. ``obs [B, L, obs_dim]``."""
    batch, length, obs_dim = obs.shape
    tok = obs.new_zeros(batch, length, 3, 3 + obs_dim + num_actions + 1)
    tok[:, :, 0, 0], tok[:, :, 1, 1], tok[:, :, 2, 2] = 1.0, 1.0, 1.0
    tok[:, :, 0, 3 : 3 + obs_dim] = obs
    tok[:, :, 1, 3 + obs_dim : -1] = F.one_hot(action, num_actions).float()
    tok[:, :, 2, -1] = reward.float()
    return tok.view(batch, 3 * length, -1)


# ----------------------------------------------------------------------------- env and rollouts


class DarkRoom:
    """B Dark Room tasks (``goals [B, 2]`` long cells (x, y)); actions 0 stay, 1 up (y+1),
    2 down, 3 left (x-1), 4 right, clipped at the walls. Reward 1.0 when the new position is
    the goal; after ``horizon`` steps the episode ends (``done``) and the returned obs is the
    start cell again (auto-reset)."""

    MOVES = ((0, 0), (0, 1), (0, -1), (-1, 0), (1, 0))

    def __init__(self, goals: torch.Tensor, size: int = 9, start: tuple[int, int] = (4, 4), horizon: int = 20):
        self.goals, self.size, self.horizon = goals.long(), size, horizon
        self.start = torch.tensor(start, device=goals.device)
        self.moves = torch.tensor(self.MOVES, device=goals.device)

    def reset(self) -> torch.Tensor:
        """Observations ``[B, 2]`` long (the start cell)."""
        self.pos = self.start.expand_as(self.goals).clone()
        self.time = torch.zeros(len(self.goals), dtype=torch.long, device=self.goals.device)
        return self.pos.clone()

    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``action [B]`` long -> ``(obs [B, 2] long, reward [B] float32, done [B] bool)``."""
        self.pos = (self.pos + self.moves[action]).clamp(0, self.size - 1)
        reward = (self.pos == self.goals).all(-1).float()
        self.time += 1
        done = self.time >= self.horizon
        self.pos = torch.where(done[:, None], self.start, self.pos)
        self.time = torch.where(done, 0, self.time)
        return self.pos.clone(), reward, done


@torch.inference_mode()
def evaluate(model: ADTransformer, goals: torch.Tensor, num_steps: int, generator: torch.Generator, *,
             layout: str = "step", obs_scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Roll ``model`` out in context on the Dark Room tasks ``goals [N, 2]`` for ``num_steps``
    steps from a reset, sampling actions from the logits; every transition enters the context.

    Returns ``obs`` (the state each action was taken in, ``[N, num_steps, 2]`` long),
    ``logits [N, num_steps, A]``, ``action`` (long), ``reward`` (float32) and ``done`` (bool),
    each ``[N, num_steps]``.
    """
    model.eval()
    env, num_actions = DarkRoom(goals), model.d_out
    cache = model.init_cache(len(goals))
    obs = env.reset()
    prev_action = torch.full((len(goals),), -1, dtype=torch.long, device=goals.device)
    prev_reward = torch.zeros(len(goals), device=goals.device)
    out = {k: [] for k in ("obs", "logits", "action", "reward", "done")}
    for _ in range(num_steps):
        x = obs[:, None].float() * obs_scale
        if layout == "step":
            logits = model.step(step_tokens(x, prev_action[:, None], prev_reward[:, None], num_actions)[:, 0], cache)
        else:
            logits = model.step(triplet_tokens(x, prev_action[:, None].clamp(min=0), prev_reward[:, None],
                                               num_actions)[:, 0], cache)  # the obs token only
        action = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[:, 0]
        next_obs, reward, done = env.step(action)
        if layout == "triplet":
            tokens = triplet_tokens(x, action[:, None], reward[:, None], num_actions)
            model.step(tokens[:, 1], cache)
            model.step(tokens[:, 2], cache)
        for k, v in zip(out, (obs, logits, action, reward, done)):
            out[k].append(v)
        obs, prev_action, prev_reward = next_obs, action, reward
    return {k: torch.stack(v, dim=1) for k, v in out.items()}


# ----------------------------------------------------------------------------- training


@dataclasses.dataclass
class Histories:
    """Learning histories: ``obs [N, T, obs_dim]`` float32, ``action [N, T]`` long,
    ``reward [N, T]`` float32, on one device."""

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor

    @classmethod
    def from_numpy(cls, obs, action, reward, device) -> "Histories":
        obs = np.asarray(obs, np.float32).reshape(*np.shape(action), -1)
        return cls(*(torch.as_tensor(np.asarray(x), device=device) for x in
                     (obs, np.asarray(action, np.int64), np.asarray(reward, np.float32))))


def sample_tokens(data: Histories, batch_size: int, length: int, generator: torch.Generator, *,
                  layout: str, obs_scale: float, num_actions: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random windows of ``length`` consecutive steps (uniform history and start): ``(tokens
    [B, L * tokens_per_step, d], action_positions [L], actions [B, L])``."""
    num, steps = data.action.shape
    device = data.action.device
    history = torch.randint(num, (batch_size, 1), generator=generator, device=device)
    index = torch.randint(steps - length + 1, (batch_size, 1), generator=generator, device=device)
    index = index + torch.arange(length, device=device)
    obs, action = data.obs[history, index] * obs_scale, data.action[history, index]
    if layout == "triplet":
        return triplet_tokens(obs, action, data.reward[history, index], num_actions), \
            torch.arange(0, 3 * length, 3, device=device), action
    first = index == 0  # the history's first step has no previous action/reward
    prev_action = data.action[history, (index - 1).clamp(min=0)].masked_fill(first, -1)
    prev_reward = data.reward[history, (index - 1).clamp(min=0)].masked_fill(first, 0.0)
    return step_tokens(obs, prev_action, prev_reward, num_actions), torch.arange(length, device=device), action


def make_optimizer(model: nn.Module, *, lr: float, num_updates: int, warmup_updates: int = 100,
                   final_lr_fraction: float = 0.1, weight_decay: float = 1e-4):
    """AdamW (decay on every parameter) and a LambdaLR: linear warmup from 0, then cosine to
    ``lr * final_lr_fraction`` at ``num_updates``."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    warmup = min(warmup_updates, num_updates - 1)

    def factor(step: int) -> float:
        if step < warmup:
            return step / warmup
        done = min(1.0, (step - warmup) / max(1, num_updates - warmup))
        return final_lr_fraction + (1 - final_lr_fraction) * 0.5 * (1 + math.cos(math.pi * done))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_step(model: ADTransformer, optimizer, scheduler, data: Histories, generator: torch.Generator, *,
               batch_size: int, context_steps: int, layout: str = "step", obs_scale: float = 1.0,
               max_grad_norm: float = 1.0, bf16: bool = False) -> torch.Tensor:
    """One update: cross-entropy of the action at every step of ``batch_size`` random windows
    of ``context_steps`` steps, clipped gradients, an AdamW and a scheduler step. Returns
    the loss (a detached scalar tensor; no host sync)."""
    model.train()
    tokens, positions, actions = sample_tokens(data, batch_size, context_steps, generator, layout=layout,
                                               obs_scale=obs_scale, num_actions=model.d_out)
    with torch.autocast(tokens.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(tokens)[:, positions]
    loss = F.cross_entropy(logits.float().flatten(0, 1), actions.flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    return loss.detach()
