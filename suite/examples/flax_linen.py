"""A Flax linen CNN: the card takes ``model.apply`` and the variables ``model.init`` returns.

``python -m suite card suite.examples.flax_linen:build`` (needs ``pip install -e '.[frameworks]'``)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from suite.examples import digits


class CNN(nn.Module):
    """Conv(32)-ReLU-Conv(32)-ReLU-mean pool-Dense(10)."""

    width: int = 32
    n_outputs: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(nn.Conv(self.width, (3, 3))(x))
        x = nn.relu(nn.Conv(self.width, (3, 3))(x))
        return nn.Dense(self.n_outputs)(x.mean(axis=(1, 2)))


def build(seed: int = 0):
    """(model.apply, variables, x, y) at initialization on all 1797 digits."""
    x, y = digits()
    model = CNN()
    variables = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, *x.shape[1:]), jnp.float32))
    return model.apply, variables, x, y
