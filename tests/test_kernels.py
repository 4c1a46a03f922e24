"""Kernels against independent computations, identities between them, and clear errors.

* eNTK vs finite-difference Jacobians in float64 (an oracle that does not use autodiff).
* pNTK = (1/O) sum_ij Theta_ij, trace = (1/O) Tr Theta, logit = Theta_kk, projection = v^T Theta v
  (theory.md §1), for every implementation.
* All implementations agree pairwise; K(X, X) is symmetric and positive semi-definite.
"""

from __future__ import annotations

import ast
import itertools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import RTOL, rel_err, small_problem

from suite import _nt, kernels
from suite.errors import MemoryBudgetError, SuiteError

IMPLS = list(kernels.IMPLEMENTATIONS)
KEY = jax.random.PRNGKey(7)
KWARGS = {"logit_ntk": {"index": 1}, "projected_ntk": {"key": KEY}}


# --------------------------------------------------------------------------- an oracle


def _tiny_apply(params, x):
    """A 2-layer tanh network whose params are a nested pytree (dict of tuple and dict)."""
    h = jnp.tanh(x @ params["hidden"]["w"] + params["hidden"]["b"])
    w_out, b_out = params["readout"]
    return h @ w_out + b_out


def _tiny_params(seed=0, d=3, n=5, o=4):
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    return {
        "hidden": {"w": jax.random.normal(k[0], (d, n)), "b": jax.random.normal(k[1], (n,))},
        "readout": (jax.random.normal(k[2], (n, o)), jax.random.normal(k[3], (o,))),
    }


def _fd_jacobian(apply_fn, params, x, eps=1e-6):
    """(N, O, P) Jacobian by central differences in float64, one parameter at a time."""
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    flat = np.asarray(flat, np.float64)
    cols = []
    for i in range(flat.size):
        step = np.zeros_like(flat)
        step[i] = eps
        hi = np.asarray(apply_fn(unravel(flat + step), x))
        lo = np.asarray(apply_fn(unravel(flat - step), x))
        cols.append((hi - lo) / (2 * eps))
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("implementation", [*IMPLS, "auto"])
@pytest.mark.parametrize("symmetric", [True, False], ids=["x2=None", "x2"])
def test_entk_matches_finite_difference_jacobians(implementation, symmetric):
    params = _tiny_params()
    x1 = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    x2 = x1 if symmetric else jax.random.normal(jax.random.PRNGKey(2), (3, 3))
    j1, j2 = _fd_jacobian(_tiny_apply, params, x1), _fd_jacobian(_tiny_apply, params, x2)
    oracle = np.einsum("aoP,bqP->aboq", j1, j2)
    got = kernels.entk(_tiny_apply, params, x1, None if symmetric else x2, implementation=implementation)
    assert got.shape == (x1.shape[0], x2.shape[0], 4, 4)
    # central differences with eps=1e-6 in float64 are accurate to ~1e-9 relative
    assert rel_err(got, oracle) < 1e-7


def test_finite_difference_oracle_is_sensitive():
    """Guard against a vacuous oracle: a perturbed network's eNTK must not match it."""
    params = _tiny_params()
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    j = _fd_jacobian(_tiny_apply, params, x)
    other = kernels.entk(_tiny_apply, _tiny_params(seed=1), x)
    assert rel_err(other, np.einsum("aoP,bqP->aboq", j, j)) > 1e-2


# --------------------------------------------------------------------------- identities


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kernel", kernels.APPROXIMATIONS)
@pytest.mark.parametrize("implementation", IMPLS)
def test_scalar_kernels_follow_from_the_entk(arch, kernel, implementation, dtype):
    model, params, x1, x2 = small_problem(arch, dtype)
    spec = kernels.KERNELS[kernel]
    full = kernels.entk(model.apply, params, x1, x2, implementation="jax")
    got = spec.compute(model.apply, params, x1, x2, implementation=implementation, **KWARGS.get(kernel, {}))
    want = spec.from_entk(full, **KWARGS.get(kernel, {}))
    assert got.shape == (x1.shape[0], x2.shape[0])
    assert got.dtype == dtype
    assert rel_err(got, want) < RTOL[np.dtype(dtype)]


def test_pntk_is_mean_row_sum_not_mean_entry():
    """pNTK = (1/O) sum_ij Theta_ij, i.e. O x the mean block entry (theory.md §1)."""
    model, params, x1, _ = small_problem("mlp", n_outputs=5)
    full = np.asarray(kernels.entk(model.apply, params, x1))
    p = np.asarray(kernels.pntk(model.apply, params, x1))
    assert np.allclose(p, full.sum(axis=(2, 3)) / 5, rtol=1e-10)
    assert np.allclose(p, 5 * full.mean(axis=(2, 3)), rtol=1e-10)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["f32", "f64"])
def test_implementations_agree_pairwise(arch, dtype):
    model, params, x1, x2 = small_problem(arch, dtype)
    results = {impl: kernels.entk(model.apply, params, x1, x2, implementation=impl) for impl in IMPLS}
    for a, b in itertools.combinations(IMPLS, 2):
        assert rel_err(results[a], results[b]) < RTOL[np.dtype(dtype)], (a, b)


@pytest.mark.parametrize("kernel", list(kernels.KERNELS))
def test_symmetric_call_equals_explicit_x2_and_is_psd(arch, kernel):
    model, params, x1, _ = small_problem(arch)
    spec = kernels.KERNELS[kernel]
    kw = KWARGS.get(kernel, {})
    k_none = spec.compute(model.apply, params, x1, **kw)
    k_same = spec.compute(model.apply, params, x1, x1, **kw)
    assert rel_err(k_none, k_same) < 1e-12
    mat = np.asarray(kernels.as_matrix(k_none) if spec.block else k_none)
    assert np.allclose(mat, mat.T, rtol=1e-10, atol=0)
    eig = np.linalg.eigvalsh(mat)
    assert eig.min() > -1e-9 * eig.max()


def test_as_matrix_layout():
    full = jnp.arange(2 * 3 * 2 * 2, dtype=jnp.float64).reshape(2, 3, 2, 2)
    mat = kernels.as_matrix(full)
    assert mat.shape == (4, 6)
    # entry (a*O + i, b*O + j) is full[a, b, i, j]
    assert mat[1 * 2 + 0, 2 * 2 + 1] == full[1, 2, 0, 1]


# --------------------------------------------------------------------------- convergence to infinite width


WIDTHS = {"mlp": (64, 256, 1024), "cnn": (16, 64, 256), "resnet": (16, 64, 256)}


def test_entk_approaches_infinite_width_ntk(arch):
    """eNTK -> Theta_inf x I_O as width grows (NTK parameterization), error ~ n^-1/2.

    A 4x width step should roughly halve the error, so the seed-mean over 4 seeds must fall
    monotonically over three widths spanning 16x.
    """
    from suite import models

    x = jax.random.normal(jax.random.PRNGKey(0), (4, 6, 6, 1))
    errors = []
    for width in WIDTHS[arch]:
        model = models.build(arch, width=width, depth=1, n_outputs=2)
        inf = np.kron(np.asarray(model.kernel(x, None, "ntk")), np.eye(2))
        errs = []
        for seed in range(4):
            params = model.init(jax.random.PRNGKey(100 + seed), (6, 6, 1))
            errs.append(rel_err(kernels.as_matrix(kernels.entk(model.apply, params, x)), inf))
        errors.append(np.mean(errs))
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < 0.5 * errors[0], errors


# --------------------------------------------------------------------------- caching


def test_repeated_calls_do_not_retrace():
    traces = []

    def apply_fn(params, x):
        traces.append(1)  # runs only while jax traces
        return x @ params

    params = jnp.ones((3, 2))
    x = jnp.ones((4, 3))
    kernels.pntk(apply_fn, params, x, implementation="jax")
    first = len(traces)
    kernels.pntk(apply_fn, params, x * 2, implementation="jax")
    assert len(traces) == first  # neither the kernel nor validation (eval_shape) retraces
    assert kernels.compiled(apply_fn, "jax", "scalar") is kernels.compiled(apply_fn, "jax", "scalar")


# --------------------------------------------------------------------------- errors


def _mlp():
    model, params, x1, _ = small_problem("mlp")
    return model.apply, params, x1


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda f, p, x: (f, p, x, x.reshape(x.shape[0], -1)), "x1 has per-example shape .* but x2 has"),
        (lambda f, p, x: (f, p, x.at[0, 0, 0, 0].set(jnp.nan), None), "x1 contains NaN or inf"),
        (lambda f, p, x: (f, p, x, x.at[1, 0, 0, 0].set(jnp.inf)), "x2 contains NaN or inf"),
        (lambda f, p, x: (f, jax.tree_util.tree_map(lambda a: a * jnp.inf, p), x, None), "params contain NaN or inf"),
        (lambda f, p, x: (lambda q, y: f(q, y)[:, 0], p, x, None), r"must return logits of shape \(N, O\)"),
        (lambda f, p, x: (f, p, np.ones((2, 6, 6, 1), dtype=np.int32), None), "dtype int32; kernels need floating"),
        (lambda f, p, x: (f, p, x[0, 0, 0], None), "inputs need a leading batch axis"),
        (lambda f, p, x: (f, p, jnp.ones((2, 5, 5, 2)), None), "apply_fn\\(params, x\\) failed on inputs"),
        (lambda f, p, x: ("not callable", p, x, None), "apply_fn must be callable"),
    ],
    ids=["shape-mismatch", "nan-x1", "inf-x2", "inf-params", "rank", "integer", "no-batch", "wrong-net", "callable"],
)
def test_bad_input_gets_a_clear_error(mutate, match):
    f, p, x, x2 = mutate(*_mlp())
    with pytest.raises(SuiteError, match=match):
        kernels.pntk(f, p, x, x2)


def test_unknown_implementation_and_kernel():
    f, p, x = _mlp()
    with pytest.raises(SuiteError, match="unknown implementation 'fast'; valid implementations: auto, jacobian_contraction"):
        kernels.entk(f, p, x, implementation="fast")
    with pytest.raises(SuiteError, match="valid kernels: entk, logit_ntk, pntk"):
        kernels.get_kernel("ntk")


def test_logit_index_out_of_range():
    f, p, x = _mlp()
    with pytest.raises(SuiteError, match=r"index must be an integer in \[0, 3\)"):
        kernels.logit_ntk(f, p, x, index=3)


def test_entk_over_budget_is_refused_with_size_and_pntk_hint(monkeypatch):
    model, params, _, _ = small_problem("mlp")
    x = jax.random.normal(jax.random.PRNGKey(3), (32, 6, 6, 1))
    # the budget the pNTK needs (XLA's estimate), slightly raised: the eNTK's 9x larger
    # result (O = 3) does not fit in it
    sd = "structured_derivatives"
    args = (x, None, params, jnp.ones(3) / jnp.sqrt(3.0))
    need = kernels.compiled_bytes(kernels.executable("pntk", model.apply, sd, "scalar", args))
    monkeypatch.setenv("SUITE_MEMORY_BUDGET", str(int(need * 1.1)))
    with pytest.raises(MemoryBudgetError, match=r"entk with implementation .* over the memory budget .*pntk"):
        kernels.entk(model.apply, params, x, implementation=sd)
    assert kernels.pntk(model.apply, params, x, implementation=sd).shape == (32, 32)
    # refused before compiling when the result alone is too big, naming its size
    monkeypatch.setenv("SUITE_MEMORY_BUDGET", "1kB")
    with pytest.raises(MemoryBudgetError, match=r"the eNTK of 32x32 inputs with O=3 is a \(96\)x\(96\) matrix \(73.7 kB\); use pntk"):
        kernels.entk(model.apply, params, x, implementation=sd)


def test_memory_estimate_of_the_paper_example():
    """CIFAR-10 at full size: a (5e5 x 5e5) float64 eNTK is about 2 TB (theory.md §1)."""
    problem = kernels.Problem(50_000, 50_000, 10, 1, np.dtype("float64"))
    assert kernels.estimate_bytes("entk", problem, "structured_derivatives") == 50_000**2 * 100 * 8
    with pytest.raises(MemoryBudgetError, match=r"2\.0 TB"):
        kernels.check_memory("entk", problem, "structured_derivatives", budget=10**12)


@pytest.mark.parametrize(("text", "value"), [("4GB", 4 * 10**9), ("512MiB", 512 * 2**20), ("1000", 1000)])
def test_parse_bytes(text, value):
    assert kernels.parse_bytes(text) == value


def test_parse_bytes_rejects_garbage():
    with pytest.raises(SuiteError, match="cannot parse memory size"):
        kernels.parse_bytes("lots")


# --------------------------------------------------------------------------- neural-tangents isolation


def test_only_the_compat_module_imports_neural_tangents():
    root = Path(kernels.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if path.name == "_nt.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.split(".")[0] == "neural_tangents" for n in names):
                offenders.append(str(path.relative_to(root)))
    assert offenders == []


def test_own_path_works_without_neural_tangents(monkeypatch):
    """With neural-tangents missing (as on jax >= 0.6), auto falls back to the pure-JAX path."""
    params = _tiny_params()
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 3))
    want = kernels.entk(_tiny_apply, params, x, implementation="jax")
    monkeypatch.setattr(_nt, "nt", None)
    monkeypatch.setattr(_nt, "IMPORT_ERROR", "ImportError: simulated")
    assert kernels.resolve_implementation("auto", "entk") == "jax"
    assert rel_err(kernels.entk(_tiny_apply, params, x), want) < 1e-12
    with pytest.raises(ImportError, match=r"neural-tangents could not be imported.*implementation='jax'"):
        kernels.entk(_tiny_apply, params, x, implementation="structured_derivatives")


def test_compiled_memory_estimate_guards_temporaries(monkeypatch):
    """A call whose result fits but whose temporaries (by XLA's compiled estimate) do not is refused."""
    from suite import models

    model = models.build("cnn", width=12, depth=2, n_outputs=50)
    params = model.init(jax.random.PRNGKey(0), (6, 6, 1))
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 6, 6, 1))
    _, _, problem = kernels.validate(model.apply, params, x)
    result_bytes = kernels.estimate_bytes("entk", problem, "structured_derivatives")
    monkeypatch.setenv("SUITE_MEMORY_BUDGET", str(int(1.5 * result_bytes)))
    with pytest.raises(MemoryBudgetError, match="by XLA's estimate"):
        kernels.entk(model.apply, params, x, implementation="structured_derivatives")
    monkeypatch.delenv("SUITE_MEMORY_BUDGET")
    assert kernels.entk(model.apply, params, x, implementation="structured_derivatives").shape == (4, 4, 50, 50)


# --------------------------------------------------------------------------- auto


def test_pick_with_margin_keeps_the_preferred_on_near_ties():
    assert kernels.pick_with_margin({"a": 1.0, "b": 0.97}, 0.05) == "a"
    assert kernels.pick_with_margin({"a": 1.0, "b": 0.90}, 0.05) == "b"
    assert kernels.pick_with_margin({"a": 0.5, "b": 1.0}, 0.05) == "a"


@pytest.mark.parametrize("kernel", ["entk", "trace_ntk", "pntk"])
def test_auto_times_each_candidate_once_and_caches_the_choice(kernel, monkeypatch):
    """auto compiles and times every candidate of the kernel's mode on the first call only,
    and runs one of them; the result equals that implementation's."""
    params = _tiny_params(seed=3)
    apply_fn = lambda p, x: _tiny_apply(p, x)  # noqa: E731 -- a fresh function: nothing cached
    x = jax.random.normal(jax.random.PRNGKey(2), (4, 3))
    built = []
    real = kernels.executable

    def counting(kernel_, fn, impl, mode, args):
        built.append(impl)
        return real(kernel_, fn, impl, mode, args)

    monkeypatch.setattr(kernels, "executable", counting)
    compute = kernels.KERNELS[kernel].compute
    got = compute(apply_fn, params, x)
    mode = kernels.KERNELS[kernel].mode
    assert sorted(set(built)) == sorted(kernels.AUTO_CANDIDATES[mode])
    args = (x, None, params) if mode != "scalar" else (x, None, params, jnp.full(4, 0.5))
    chosen = kernels.choose_implementation(kernel, apply_fn, args)
    assert chosen in kernels.AUTO_CANDIDATES[mode]
    n_built = len(built)
    again = compute(apply_fn, params, x)
    assert len(built) == n_built + 1, "a second call must run the cached choice without timing again"
    assert built[-1] == chosen
    assert rel_err(again, compute(apply_fn, params, x, implementation=chosen)) < 1e-6
    assert rel_err(got, again) < 1e-6


def test_auto_skips_candidates_over_the_memory_budget(monkeypatch):
    """With a budget that fits the eNTK but not the per-example Jacobians of the jax path,
    auto never compiles that path."""
    model, params, x, _ = small_problem("mlp", n=6)
    problem = kernels.validate(model.apply, params, x)[2]
    budget = (kernels.estimate_bytes("entk", problem, "structured_derivatives")
              + kernels.estimate_bytes("entk", problem, "jax")) // 2
    monkeypatch.setenv("SUITE_MEMORY_BUDGET", str(budget))
    built = []
    real = kernels.executable
    monkeypatch.setattr(kernels, "executable", lambda *a: built.append(a[2]) or real(*a))
    apply_fn = lambda p, z: model.apply(p, z)  # noqa: E731 -- fresh, so auto decides anew
    kernels.entk(apply_fn, params, x)
    assert "jax" not in built and "structured_derivatives" in built


def test_experiments_do_not_depend_on_auto(monkeypatch):
    """The experiments' kernels use a fixed implementation, so their numbers do not depend on
    which candidate auto timed fastest on this run."""
    from suite.experiments import convergence

    def no_timing(*_, **__):
        raise AssertionError("an experiment asked auto to time implementations")

    monkeypatch.setattr(kernels, "choose_implementation", no_timing)
    cfg = convergence.Config(arch="mlp", width=8, depth=1, seed=0, n_inputs=4)
    assert not convergence.EXPERIMENT.run(cfg).empty  # a fresh network, so nothing is cached
    assert kernels.reproducible_implementation() in kernels.IMPLEMENTATIONS


def test_float32_pntk_of_one_pair_is_accurate_over_many_parameters():
    """One pair through a conv net with 300k parameters: the jax path's Gram must not sum the
    parameter axis in one sequential float32 loop. A sequential sum of P terms errs by about
    sqrt(P) eps (3e-5 here; measured 5e-5 before the fix); chunks of 4096 by about
    sqrt(4096) eps = 4e-6 (measured 2e-6). The bound sits between: 3 sqrt(4096) eps ~ 1e-5."""
    from suite import models

    model = models.build("cnn", n_outputs=10, width=128, depth=3)
    params = model.init(jax.random.PRNGKey(0), (8, 8, 3))
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 3), jnp.float64)
    want = kernels.pntk(model.apply, models.cast_params(params, jnp.float64), x[:1], x[1:],
                        implementation="structured_derivatives")
    got = kernels.pntk(model.apply, models.cast_params(params, jnp.float32), x[:1].astype(jnp.float32),
                       x[1:].astype(jnp.float32), implementation="jax")
    eps = float(jnp.finfo(jnp.float32).eps)
    assert rel_err(got, want) < 3 * math.sqrt(4096) * eps


@pytest.mark.parametrize(("long_call_s", "runs_per_candidate"), [(0.0, 1), (1e9, 1 + kernels.AUTO_RUNS)])
def test_auto_first_call_cost(long_call_s, runs_per_candidate, monkeypatch):
    """A long first run is the measurement (one run per candidate, not 1 + AUTO_RUNS), and the
    chosen candidate's result is returned instead of being computed again."""
    monkeypatch.setattr(kernels, "AUTO_LONG_CALL_S", long_call_s)
    runs = []
    real = kernels.executable

    def counting(kernel_, fn, impl, mode, args):
        exe = real(kernel_, fn, impl, mode, args)
        return lambda *a: runs.append(impl) or exe(*a)

    monkeypatch.setattr(kernels, "executable", counting)
    params = _tiny_params(seed=4)
    apply_fn = lambda p, x: _tiny_apply(p, x)  # noqa: E731 -- fresh: auto decides anew
    x = jax.random.normal(jax.random.PRNGKey(5), (4, 3))
    got = kernels.entk(apply_fn, params, x)
    candidates = kernels.AUTO_CANDIDATES["full"]
    assert len(runs) == runs_per_candidate * len(candidates)
    assert rel_err(got, kernels.entk(apply_fn, params, x, implementation="jax")) < 1e-6
