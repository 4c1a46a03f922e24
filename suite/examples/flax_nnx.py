"""A Flax NNX MLP: NNX modules hold their own state, so the card gets a pure function through
``nnx.split`` (graph definition and state) and ``nnx.merge`` inside ``apply_fn``.

``python -m suite card suite.examples.flax_nnx:build`` (needs ``pip install -e '.[frameworks]'``)
"""

from __future__ import annotations

import jax
from flax import nnx

from suite.examples import digits


class MLP(nnx.Module):
    """Linear(256)-ReLU-Linear(256)-ReLU-Linear(10)."""

    def __init__(self, n_in: int, width: int, n_outputs: int, *, rngs: nnx.Rngs) -> None:
        self.hidden1 = nnx.Linear(n_in, width, rngs=rngs)
        self.hidden2 = nnx.Linear(width, width, rngs=rngs)
        self.out = nnx.Linear(width, n_outputs, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.relu(self.hidden1(x.reshape(x.shape[0], -1)))
        return self.out(nnx.relu(self.hidden2(x)))


def build(seed: int = 0):
    """(apply_fn, state, x, y): ``apply_fn(state, x) = nnx.merge(graphdef, state)(x)``."""
    x, y = digits(flatten=True)
    graphdef, state = nnx.split(MLP(x.shape[1], 256, 10, rngs=nnx.Rngs(seed)))

    def apply_fn(state: nnx.State, x: jax.Array) -> jax.Array:
        return nnx.merge(graphdef, state)(x)

    return apply_fn, state, x, y
