"""A plain jax MLP whose parameters are nested dicts: what a hand-written jax model looks like.

``python -m suite card suite.examples.plain_jax:build``
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from suite.examples import digits

WIDTH = 256


def init(key: jax.Array, sizes: tuple[int, ...]) -> dict[str, Any]:
    """{"layer0": {"w", "b"}, ...}: LeCun-normal weights, zero biases (standard parameterization)."""
    params = {}
    keys = jax.random.split(key, len(sizes) - 1)
    for i, (k, fan_in, fan_out) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=True)):
        params[f"layer{i}"] = {
            "w": jax.random.normal(k, (fan_in, fan_out), jnp.float32) / jnp.sqrt(fan_in),
            "b": jnp.zeros((fan_out,), jnp.float32),
        }
    return params


def apply(params: dict[str, Any], x: jax.Array) -> jax.Array:
    """Logits (N, 10): ReLU hidden layers, linear readout."""
    h = x.reshape(x.shape[0], -1)
    names = sorted(params, key=lambda name: int(name.removeprefix("layer")))
    for name in names[:-1]:
        h = jax.nn.relu(h @ params[name]["w"] + params[name]["b"])
    return h @ params[names[-1]]["w"] + params[names[-1]]["b"]


def build(seed: int = 0):
    """(apply, params, x, y): a 64-256-256-10 MLP at initialization on all 1797 digits."""
    x, y = digits(flatten=True)
    params = init(jax.random.PRNGKey(seed), (x.shape[1], WIDTH, WIDTH, 10))
    return apply, params, x, y
