"""Agent.compile(): the compiled networks and chains compute what eager ones do, resume exactly, and fall back to eager
with one warning where the compiler fails.

Compiling costs seconds per graph on CPU, so the parity test runs a representative subset here: SDAC (best-of-N
reverse chains without autograd, the critic ensemble with and without autograd, the weighted loss) and DACER
(backpropagation through the whole chain, the distributional critic). ``python benchmarks/compile_parity.py`` runs
the same check on all ten agents (docs/performance.md).
"""

import warnings

import pytest
import torch

from algorithms.compiled import CompiledCall, compile_seconds
from algorithms.testing import compile_check_agent, compiled_parity, state_dict_round_trip


@pytest.mark.parametrize("name", ["sdac", "dacer"])
def test_compiled_updates_match_eager(name):
    differences = compiled_parity(name, updates=4)
    assert set(differences) == {"losses", "state", "actions"}
    assert compile_seconds() > 0


def test_compiled_agent_resumes_exactly():
    # A compiled agent loaded from another's state dict acts and updates bit for bit like it.
    state_dict_round_trip(compile_check_agent("sdac", True), lambda: compile_check_agent("sdac", True, seed=5))


def test_a_failing_compiler_warns_once_and_runs_eagerly(monkeypatch):
    # A real inductor failure: the C++ compiler it calls does not exist (a machine without one).
    monkeypatch.setattr(torch._inductor.config.cpp, "cxx", ("/nonexistent/c++",))
    monkeypatch.setattr(torch._inductor.config, "fx_graph_cache", False)
    monkeypatch.setattr(torch._functorch.config, "enable_autograd_cache", False)

    def scaled_tanh(x):  # a function of its own, so no earlier compiled graph of it exists
        return torch.tanh(x) * 3.0 + 1.0

    call = CompiledCall(scaled_tanh, "scaled_tanh")
    x = torch.randn(4, 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, second = call(x), call(x)
    notices = [w for w in caught if "torch.compile of scaled_tanh failed" in str(w.message)]
    assert len(notices) == 1 and "running it eagerly" in str(notices[0].message)
    assert call.failed
    torch.testing.assert_close(first, scaled_tanh(x))
    torch.testing.assert_close(second, scaled_tanh(x))


def test_an_error_of_the_caller_still_raises():
    call = CompiledCall(lambda a, b: a @ b, "matmul")
    with pytest.raises(RuntimeError):
        call(torch.randn(2, 3), torch.randn(4, 5))
    assert not call.failed
