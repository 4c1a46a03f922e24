"""The architecture registry: shapes, parameter counts, infinite-width kernels, clear errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from suite import models
from suite.errors import SuiteError


@pytest.mark.parametrize("readout", models.CNN_READOUTS)
def test_every_arch_builds_and_applies(arch, readout):
    opts = {"readout": readout} if arch != "mlp" else {}
    model = models.build(arch, width=8, depth=2, n_outputs=7, **opts)
    params = model.init(jax.random.PRNGKey(0), (6, 6, 1))
    x = jnp.ones((3, 6, 6, 1))
    assert model.apply(params, x).shape == (3, 7)
    n_leaf = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))
    assert model.param_count((6, 6, 1)) == n_leaf
    k = model.kernel(x, None, "ntk")
    assert k.shape == (3, 3)
    assert np.allclose(k, k.T)


def test_init_accepts_batched_shape():
    model = models.build("mlp", width=8)
    a = model.init(jax.random.PRNGKey(0), (5,))
    b = model.init(jax.random.PRNGKey(0), (-1, 5))
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda u, v: bool(jnp.all(u == v)), a, b))


def test_mlp_accepts_flat_and_image_inputs_alike():
    model = models.build("mlp", width=8, depth=1)
    params = model.init(jax.random.PRNGKey(0), (2, 2, 1))
    x = jnp.arange(8.0).reshape(2, 2, 2, 1)
    assert np.allclose(model.apply(params, x), model.apply(params, x.reshape(2, 4)))


def test_resnet_stages_downsample():
    model = models.build("resnet", width=4, stages=models.RESNET_STAGES["resnet18"], n_outputs=3)
    params = model.init(jax.random.PRNGKey(0), (8, 8, 1))
    assert model.apply(params, jnp.ones((2, 8, 8, 1))).shape == (2, 3)
    # stages double channels: the last stage's convs have 4 * 2**3 = 32 output channels
    shapes = {leaf.shape[-1] for leaf in jax.tree_util.tree_leaves(params) if leaf.ndim == 4}
    assert 32 in shapes


@pytest.mark.parametrize("activation", models.ACTIVATIONS)
@pytest.mark.parametrize("parameterization", models.PARAMETERIZATIONS)
def test_activations_and_parameterizations(activation, parameterization):
    model = models.build("mlp", width=16, activation=activation, parameterization=parameterization)
    params = model.init(jax.random.PRNGKey(0), (4,))
    out = model.apply(params, jnp.ones((2, 4)))
    assert out.shape == (2, 10) and bool(jnp.all(jnp.isfinite(out)))


def test_standard_parameterization_scales_weights():
    """Standard parameterization stores W ~ N(0, W_std^2/fan_in); NTK stores N(0, 1)."""
    w = {}
    for par in models.PARAMETERIZATIONS:
        params = models.build("mlp", width=512, depth=1, parameterization=par).init(jax.random.PRNGKey(0), (256,))
        w[par] = float(jnp.std(params[1][0]))
    assert w["ntk"] == pytest.approx(1.0, rel=0.05)
    assert w["standard"] == pytest.approx(1.5 / np.sqrt(256), rel=0.05)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"width": 0}, "width must be a positive integer"),
        ({"width": 2.5}, "width must be a positive integer"),
        ({"depth": -1}, "depth must be a positive integer"),
        ({"n_outputs": 0}, "n_outputs must be a positive integer"),
        ({"activation": "swish"}, "unknown activation 'swish'; valid activations: erf, gelu, relu"),
        ({"parameterization": "mup"}, "valid parameterizations: ntk, standard"),
        ({"W_std": -1.0}, "W_std must be a positive finite number"),
        ({"b_std": float("nan")}, "b_std must be None or a finite number"),
        ({"readout": "max"}, "valid readouts: flatten, gap"),
        ({"widht": 3}, r"unknown model option\(s\) \['widht'\]; valid options:"),
        ({"stages": (2, 2)}, "stages only apply to arch 'resnet'"),
    ],
)
def test_bad_config_errors_name_the_problem(kwargs, match):
    with pytest.raises(SuiteError, match=match):
        models.build("cnn", **kwargs)


def test_unknown_arch_lists_valid_names():
    with pytest.raises(SuiteError, match="unknown architecture 'vit'; valid architectures: cnn, mlp, resnet"):
        models.build("vit")


def test_unknown_kernel_type():
    model = models.build("mlp", width=4)
    with pytest.raises(SuiteError, match="valid kernel types: nngp, ntk"):
        model.kernel(jnp.ones((2, 3)), None, "cov")


def test_config_id_is_readable_and_stable():
    assert models.ModelConfig("mlp", width=512, depth=3).id == "mlp-d03-w0512-o10"


def test_resnet50_bottleneck_layout():
    """ResNet-50 (He et al. 2016): a stem conv, 16 bottleneck blocks of three convs (1x1, 3x3,
    1x1 to 4x the inner width), a 1x1 projection shortcut at the start of each of the 4 stages,
    then the readout: 1 + 48 + 4 = 53 conv kernels; the last stage outputs 4 * 2**3 * width."""
    width = 4
    model = models.build("resnet", width=width, n_outputs=3, **models.RESNETS["resnet50"])
    params = model.init(jax.random.PRNGKey(0), (8, 8, 1))
    # conv kernels are (h, w, in, out); stax's conv biases are (1, 1, 1, out)
    kernels = [leaf for leaf in jax.tree_util.tree_leaves(params) if leaf.ndim == 4 and leaf.shape[:3] != (1, 1, 1)]
    assert len(kernels) == 53
    assert sum(k.shape[:2] == (1, 1) for k in kernels) == 16 * 2 + 4
    assert max(k.shape[-1] for k in kernels) == models.BOTTLENECK_EXPANSION * 2**3 * width
    out = model.apply(params, jnp.ones((2, 8, 8, 1)))
    assert out.shape == (2, 3) and bool(jnp.all(jnp.isfinite(out)))


def test_bottleneck_needs_stages():
    with pytest.raises(SuiteError, match="bottleneck blocks need stages"):
        models.build("resnet", width=4, bottleneck=True)


def test_wrn_layout_and_name():
    """WRN-(6d+4)-k (Zagoruyko & Komodakis 2016): a stem conv, 3 stages of d basic blocks of two
    3x3 convs (width, 2 width, 4 width channels), a strided 1x1 projection at stages 2 and 3."""
    width, depth = 4, 2
    model = models.build("wrn", width=width, depth=depth, n_outputs=3)
    params = model.init(jax.random.PRNGKey(0), (8, 8, 1))
    kernels = [leaf for leaf in jax.tree_util.tree_leaves(params) if leaf.ndim == 4 and leaf.shape[:3] != (1, 1, 1)]
    assert len(kernels) == 1 + 3 * depth * 2 + 2
    assert sorted({k.shape[-1] for k in kernels}) == [width, 2 * width, 4 * width]
    out = model.apply(params, jnp.ones((2, 8, 8, 1)))
    assert out.shape == (2, 3) and bool(jnp.all(jnp.isfinite(out)))
    assert models.wrn_name(depth, width) == "WRN-16-0.25"
    assert models.wrn_name(4, 160) == "WRN-28-10"

