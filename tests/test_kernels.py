"""Kernels against independent computations, identities between them, and clear errors.

* eNTK vs finite-difference Jacobians in float64 (an oracle that does not use autodiff).
* pNTK = (1/O) sum_ij Theta_ij, trace = (1/O) Tr Theta, logit = Theta_kk, projection = v^T Theta v
  (THEORY.md §1), for every implementation.
* All implementations agree pairwise; K(X, X) is symmetric and positive semi-definite.
"""

from __future__ import annotations

import ast
import itertools
import math
from pathlib import Path

import jax
import jax.flatten_util  # not imported by `import jax` on newer releases
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import RTOL, rel_err, small_problem

from suite import _nt, kernels
from suite.errors import MemoryBudgetError, SuiteError
from suite.kernels import api, auto, implementations

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
    """pNTK = (1/O) sum_ij Theta_ij, i.e. O x the mean block entry (THEORY.md §1)."""
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


WIDTHS = {"mlp": (64, 256, 1024), "cnn": (16, 64, 256), "resnet": (16, 64, 256), "wrn": (8, 32, 128)}


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


@pytest.mark.parametrize("kernel", list(kernels.KERNELS))
def test_second_call_with_the_same_signature_neither_retraces_nor_reruns_eval_shape(kernel, monkeypatch):
    """Count traces: apply_fn runs in Python only while jax traces it (eval_shape, compiling),
    so a cached signature must not run it at all; eval_shape itself is counted too."""
    traces = []

    def apply_fn(params, x):
        traces.append(1)
        return jnp.tanh(x @ params["w"]) @ params["v"]

    evals = []
    real_eval_shape = jax.eval_shape
    monkeypatch.setattr(jax, "eval_shape", lambda *a, **k: evals.append(1) or real_eval_shape(*a, **k))
    params = {"w": jnp.ones((3, 5)) / 3, "v": jnp.ones((5, 4)) / 5}
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
    kw = KWARGS.get(kernel, {})
    compute = kernels.KERNELS[kernel].compute
    first = compute(apply_fn, params, x, **kw)  # auto: timing and compiling trace apply_fn
    n_traces, n_evals = len(traces), len(evals)
    assert n_traces > 0 and n_evals == 1
    # same signature, new values: nothing is traced, validated by eval_shape or compiled again
    second = compute(apply_fn, jax.tree_util.tree_map(lambda a: 2 * a, params), x + 1, **kw)
    prepared = kernels.prepare(kernel, apply_fn, params, x, **kw)
    assert (len(traces), len(evals)) == (n_traces, n_evals)
    assert rel_err(prepared.run(), first) < 1e-12
    assert rel_err(second, first) > 1e-3  # it did compute with the new values
    # a new signature (another N) is validated and traced again
    compute(apply_fn, params, x[:3], **kw)
    assert len(evals) == n_evals + 1 and len(traces) > n_traces
    assert kernels.compiled(apply_fn, "jax", "scalar") is kernels.compiled(apply_fn, "jax", "scalar")


def test_cached_call_reads_the_device_once():
    """The value checks of a cached call are one fused reduction with one explicit transfer:
    no implicit device-to-host read (such as bool(jnp.all(...)) per parameter leaf) remains."""
    model, params, x, _ = small_problem("cnn")
    kernels.pntk(model.apply, params, x, implementation="jax")
    with jax.transfer_guard_device_to_host("disallow"):
        got = kernels.pntk(model.apply, params, x, implementation="jax")
    assert got.shape == (x.shape[0], x.shape[0])
    # the check still catches a NaN in one of many leaves on the cached path
    leaves, treedef = jax.tree_util.tree_flatten(params)
    leaves[-1] = leaves[-1].at[0].set(jnp.nan)
    with pytest.raises(SuiteError, match="params contain NaN or inf"):
        kernels.pntk(model.apply, jax.tree_util.tree_unflatten(treedef, leaves), x, implementation="jax")


@pytest.mark.parametrize("kernel", list(kernels.KERNELS))
def test_prepare_reports_the_plan_and_runs_the_public_kernel(kernel):
    model, params, x1, x2 = small_problem("mlp", n_outputs=5)
    kw = KWARGS.get(kernel, {})
    prepared = kernels.prepare(kernel, model.apply, params, x1, x2, implementation="auto", **kw)
    assert prepared.kernel == kernel
    assert prepared.implementation in kernels.IMPLEMENTATIONS  # auto resolved
    assert prepared.problem.n1 == x1.shape[0] and prepared.problem.n2 == x2.shape[0]
    assert prepared.problem.n_outputs == 5 and prepared.problem.example_shape == x1.shape[1:]
    assert prepared.compiled_bytes is None or prepared.compiled_bytes > 0
    got = prepared.run()
    assert got.shape == prepared.output_shape
    bare = prepared.run_unchecked()
    public = kernels.KERNELS[kernel].compute(model.apply, params, x1, x2, **kw)
    assert rel_err(got, bare) < 1e-12 and rel_err(public, bare) < 1e-12
    fixed = kernels.prepare(kernel, model.apply, params, x1, x2, implementation="jax", **kw)
    assert fixed.implementation == "jax"
    assert rel_err(fixed.run(), bare) < 1e-9


def test_scalar_directions_live_in_the_registry():
    """Every scalar kernel is the NTK of v^T f with v = KERNELS[k].direction(O, **kw)."""
    o = 4
    assert np.allclose(kernels.KERNELS["pntk"].direction(o), np.ones(o) / 2)
    assert np.allclose(kernels.KERNELS["logit_ntk"].direction(o, index=2), np.eye(o)[2])
    v = kernels.KERNELS["projected_ntk"].direction(o, key=KEY)
    assert np.allclose(v, kernels.projection(KEY, o)) and math.isclose(np.linalg.norm(v), 1.0)
    for name, spec in kernels.KERNELS.items():
        assert (spec.direction is None) == (spec.mode != "scalar"), name


def test_prepare_rejects_unknown_kernel_arguments():
    f, p, x = _mlp()
    with pytest.raises(SuiteError, match=r"pntk got unexpected argument.* index"):
        kernels.prepare("pntk", f, p, x, index=1)
    with pytest.raises(SuiteError, match="valid kernels: entk"):
        kernels.prepare("ntk", f, p, x)


def test_memory_budget_change_is_not_hidden_by_the_cache(monkeypatch):
    """The budget setting is part of the cached signature: a call that fitted is refused once
    SUITE_MEMORY_BUDGET drops below it."""
    f, p, x = _mlp()
    kernels.entk(f, p, x, implementation="structured_derivatives")
    monkeypatch.setenv("SUITE_MEMORY_BUDGET", "1kB")
    with pytest.raises(MemoryBudgetError, match="over the memory budget"):
        kernels.entk(f, p, x, implementation="structured_derivatives")


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
    """CIFAR-10 at full size: a (5e5 x 5e5) float64 eNTK is about 2 TB (THEORY.md §1)."""
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
    root = Path(kernels.__file__).parent.parent  # the whole suite package
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


def _count_builds(monkeypatch, built):
    """Record the implementation of every executable auto or prepare builds (or fetches)."""
    real = implementations.executable

    def counting(kernel_, fn, impl, mode, args):
        built.append(impl)
        return real(kernel_, fn, impl, mode, args)

    monkeypatch.setattr(auto, "executable", counting)
    monkeypatch.setattr(api, "executable", counting)


@pytest.mark.needs_nt  # several candidates to time
@pytest.mark.parametrize("kernel", ["entk", "trace_ntk", "pntk"])
def test_auto_times_each_candidate_once_and_caches_the_choice(kernel, monkeypatch):
    """auto compiles and times every candidate of the kernel's mode on the first call only;
    a second call reuses the prepared plan (no executable fetched, nothing timed) and runs the
    chosen implementation, whose result equals that implementation's own."""
    params = _tiny_params(seed=3)
    apply_fn = lambda p, x: _tiny_apply(p, x)  # noqa: E731 -- a fresh function: nothing cached
    x = jax.random.normal(jax.random.PRNGKey(2), (4, 3))
    built = []
    _count_builds(monkeypatch, built)
    compute = kernels.KERNELS[kernel].compute
    got = compute(apply_fn, params, x)
    mode = kernels.KERNELS[kernel].mode
    assert sorted(set(built)) == sorted(kernels.AUTO_CANDIDATES[mode])
    chosen = kernels.prepare(kernel, apply_fn, params, x).implementation
    assert chosen in kernels.AUTO_CANDIDATES[mode]
    n_built = len(built)
    again = compute(apply_fn, params, x)
    assert len(built) == n_built, "a second call must run the cached plan without timing again"
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
    _count_builds(monkeypatch, built)
    apply_fn = lambda p, z: model.apply(p, z)  # noqa: E731 -- fresh, so auto decides anew
    kernels.entk(apply_fn, params, x)
    assert "jax" not in built and "structured_derivatives" in built


def test_experiments_do_not_depend_on_auto(monkeypatch):
    """The experiments' kernels use a fixed implementation, so their numbers do not depend on
    which candidate auto timed fastest on this run."""
    from suite.experiments import convergence

    def no_timing(*_, **__):
        raise AssertionError("an experiment asked auto to time implementations")

    monkeypatch.setattr(auto, "choose", no_timing)
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


@pytest.mark.needs_nt  # several candidates to time
@pytest.mark.parametrize("long_call", [True, False], ids=["long", "short"])
def test_auto_first_call_cost(long_call, monkeypatch):
    """A long first run is the measurement (one run per candidate, not 1 + AUTO_RUNS), and the
    chosen candidate's result is returned instead of being computed again."""
    monkeypatch.setattr(auto, "AUTO_LONG_CALL_S", 0.0 if long_call else 1e9)
    runs = []
    real = implementations.executable

    def counting(kernel_, fn, impl, mode, args):
        exe = real(kernel_, fn, impl, mode, args)
        return lambda *a: runs.append(impl) or exe(*a)

    monkeypatch.setattr(auto, "executable", counting)  # prepare's own fetch does not run it
    params = _tiny_params(seed=4)
    apply_fn = lambda p, x: _tiny_apply(p, x)  # noqa: E731 -- fresh: auto decides anew
    x = jax.random.normal(jax.random.PRNGKey(5), (4, 3))
    got = kernels.entk(apply_fn, params, x)
    candidates = auto.candidates("full")
    if long_call:
        assert len(runs) == len(candidates)
    else:
        assert all(runs.count(c) >= 1 + kernels.AUTO_RUNS for c in candidates)
    assert rel_err(got, kernels.entk(apply_fn, params, x, implementation="jax")) < 1e-6


def _scripted_auto(monkeypatch, script):
    """Make auto time fake candidates: ``script[c]`` is the list of seconds candidate c takes,
    one per run (the last one repeats)."""
    calls = {c: 0 for c in script}

    def timed(exe, args):
        seq = script[exe]
        t = seq[min(calls[exe], len(seq) - 1)]
        calls[exe] += 1
        return jnp.zeros(1), t

    monkeypatch.setattr(auto, "executable", lambda kernel, fn, impl, mode, args: impl)
    monkeypatch.setattr(auto, "_timed", timed)
    monkeypatch.setattr(auto, "AUTO_CANDIDATES", {"scalar": tuple(script), "full": tuple(script),
                                                  "trace": tuple(script)})
    monkeypatch.setattr(auto, "candidates", lambda mode, n_rows=None: tuple(script))
    return calls


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ({"structured_derivatives": [0.010], "jax": [0.0099]}, "structured_derivatives"),  # within margin
        ({"structured_derivatives": [0.010], "jax": [0.006]}, "jax"),  # clearly faster
        ({"structured_derivatives": [0.010], "jax": [0.008], "jacobian_contraction": [0.005]},
         "jacobian_contraction"),
        # one noisy slow run of the preferred does not count: the fastest run does
        ({"structured_derivatives": [0.010, 0.030, 0.010, 0.010], "jax": [0.0098]}, "structured_derivatives"),
    ],
    ids=["near-tie-keeps-preferred", "faster-wins", "third-candidate", "noisy-run"],
)
def test_auto_choice(script, expected, monkeypatch):
    _scripted_auto(monkeypatch, script)
    chosen, _ = auto.choose("pntk", lambda p, x: x, (jnp.zeros((2, 1)), None, 0.0, jnp.ones(1)), None)
    assert chosen == expected


def test_auto_runs_every_candidate_once_then_times_them_round_robin(monkeypatch):
    """Warm-up runs of all candidates come before any timed run, and the timed runs alternate,
    so a machine that speeds up over the first calls does not favour the last candidate."""
    order = []
    script = {"structured_derivatives": [0.010], "jax": [0.010], "jacobian_contraction": [0.010]}
    calls = _scripted_auto(monkeypatch, script)
    real_timed = auto._timed

    def recording(exe, args):
        order.append(exe)
        return real_timed(exe, args)

    monkeypatch.setattr(auto, "_timed", recording)
    monkeypatch.setattr(auto, "AUTO_TIME_S", 0.0)  # exactly AUTO_RUNS timed runs each
    auto.choose("pntk", lambda p, x: x, (jnp.zeros((2, 1)), None, 0.0, jnp.ones(1)), None)
    pool = list(script)
    assert order[:3] == pool  # one warm-up run each, before any timed run
    assert order[3:3 + 3 * kernels.AUTO_RUNS] == pool * kernels.AUTO_RUNS
    assert all(n >= 1 + kernels.AUTO_RUNS for n in calls.values())


def test_auto_retimes_a_near_tie(monkeypatch):
    """A first measurement just past the margin (a noisy spell of the preferred) is re-timed
    alternately; with the preferred's later runs as fast as the contender, it is kept."""
    script = {"structured_derivatives": [0.010] * (1 + kernels.AUTO_RUNS) + [0.0093],
              "jax": [0.0093]}
    monkeypatch.setattr(auto, "AUTO_TIME_S", 0.0)  # exactly AUTO_RUNS timed runs each
    calls = _scripted_auto(monkeypatch, script)
    chosen, _ = auto.choose("pntk", lambda p, x: x, (jnp.zeros((2, 1)), None, 0.0, jnp.ones(1)), None)
    assert calls["structured_derivatives"] == 1 + kernels.AUTO_RUNS + auto.AUTO_RETIME_RUNS
    assert chosen == "structured_derivatives"
    assert auto.near_tie({"a": 1.0, "b": 0.5}) is None
    assert auto.near_tie({"a": 1.0, "b": 0.94}) == "b"


def test_auto_without_neural_tangents_chooses_among_what_runs(monkeypatch):
    monkeypatch.setattr(_nt, "nt", None)
    monkeypatch.setattr(_nt, "IMPORT_ERROR", "ImportError: simulated")
    assert kernels.available_implementations() == ("jax",)
    assert auto.candidates("scalar") == ("jax",)
    params = _tiny_params(seed=5)
    apply_fn = lambda p, x: _tiny_apply(p, x)  # noqa: E731 -- fresh
    x = jax.random.normal(jax.random.PRNGKey(6), (3, 3))
    assert kernels.prepare("pntk", apply_fn, params, x).implementation == "jax"


@pytest.mark.needs_nt  # jacobian_contraction is a neural-tangents implementation
def test_auto_leaves_jacobian_contraction_out_for_thin_grams():
    """One or two rows per side: XLA:CPU would sum the parameter axis in sequence (6e-4 off in
    float32 for one ResNet-18 pair), so only the paths that stay accurate are candidates."""
    assert "jacobian_contraction" in auto.candidates("scalar", 8)
    assert "jacobian_contraction" not in auto.candidates("scalar", 1)
    assert "jacobian_contraction" not in auto.candidates("scalar", auto.THIN_ROWS)
