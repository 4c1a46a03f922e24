"""``python -m suite doctor`` (issue 13, item 3): versions, devices, budget, neural-tangents and
structured derivatives, with the exact fix for each problem and exit status 1 when there is one."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jaxlib
import pytest

from suite import _nt, cli
from suite.paths import ROOT


def _doctor(capsys) -> tuple[int, str]:
    code = cli.main(["doctor"])
    return code, capsys.readouterr().out


@pytest.mark.needs_nt
def test_doctor_passes_where_everything_works(capsys):
    code, out = _doctor(capsys)
    assert code == 0, out
    assert f"{jax.__version__}, {jaxlib.__version__}" in out
    assert "neural-tangents          0.6.5; imports: yes" in out
    assert f"backend, devices         {jax.default_backend()}: {len(jax.devices())} x" in out
    assert "memory budget" in out and "half the free memory" in out
    assert "structured derivatives   OK (implementation 3 agrees with the jax path" in out
    assert out.rstrip().endswith("OK: everything the suite needs works here")


def test_doctor_names_the_install_command_when_neural_tangents_is_missing(capsys, monkeypatch):
    monkeypatch.setattr(_nt, "nt", None)
    monkeypatch.setattr(_nt, "IMPORT_ERROR", "ModuleNotFoundError: No module named 'neural_tangents'")
    code, out = _doctor(capsys)
    assert code == 1
    assert "imports: no (ModuleNotFoundError" in out
    assert "suite's own kernels      OK" in out  # the kernels work without it
    assert "structured derivatives   not checked" in out
    assert "1 problem(s):" in out and "models.build, the infinite-width kernels and the experiments do not" in out
    assert "fix: " in out and ("pip install --no-deps neural-tangents==0.6.5" in out or "pip install 'jax[cpu]==0.5.3'" in out)


def test_doctor_names_a_bad_memory_budget_and_its_fix(capsys, monkeypatch):
    monkeypatch.setenv("SUITE_MEMORY_BUDGET", "plenty")
    code, out = _doctor(capsys)
    assert code == 1
    assert "memory budget            unusable: cannot parse memory size 'plenty'" in out
    assert "fix: export SUITE_MEMORY_BUDGET=16GB" in out


def test_doctor_catches_wrong_structured_derivatives(capsys, monkeypatch):
    if not _nt.available():
        pytest.skip("needs neural-tangents: structured derivatives is its implementation")
    from suite import doctor, kernels

    real = kernels.entk

    def off(apply_fn, params, x, x2=None, *, implementation="auto", **kw):
        k = real(apply_fn, params, x, x2, implementation=implementation, **kw)
        return k * 1.01 if implementation == "structured_derivatives" else k

    monkeypatch.setattr(kernels, "entk", off)
    assert doctor.run() == 1
    out = capsys.readouterr().out
    assert "structured derivatives   WRONG: relative error 1.0e-02" in out
    assert "fix: pip install 'jax[cpu]==0.5.3'" in out


def test_python_m_suite_doctor_runs_as_a_command():
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "suite", "doctor"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == (0 if _nt.available() else 1), proc.stdout + proc.stderr
    assert proc.stdout.startswith("suite                    pntk-suite")
    assert f"jax, jaxlib              {jax.__version__}" in proc.stdout
    assert "backend, devices         cpu: " in proc.stdout
    assert proc.stderr == ""
