"""Agent.compile(): the compiled networks and chains compute what eager ones do, resume exactly, and fall back to eager
with one warning where the compiler fails.

Compiling costs seconds per graph on CPU, so the parity test runs a representative subset here: SDAC (best-of-N
reverse chains without autograd, the critic ensemble with and without autograd, the weighted loss) and DACER
(backpropagation through the whole chain, the distributional critic). ``python benchmarks/compile_parity.py`` runs the same check on all ten agents (docs/performance.md).
"""

import io
import warnings

import pytest
import torch

from algorithms import make_agent
from algorithms.compiled import CompiledCall, compile_seconds
from algorithms.testing import random_batch

# Tiny networks and chains: what is compared is the same arithmetic, not its scale.
TINY = {"hidden": (16, 16), "batch_size": 8}
SMALL_CHAINS = {
    "sdac": {"particles": 2, "diffusion_steps": 2, "reverse_samples": 4},
    "dacer": {"diffusion_steps": 2, "entropy_states": 4, "entropy_samples": 8},
}
# Inductor fuses elementwise work and may reorder float sums inside a fused kernel: the same math, rounding that
# differs in the last bits. Measured differences after 4 updates: 0 (SAC) to ~7e-8 (DPMD, SDAC).
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}
UPDATES = 4


def tiny_agent(name: str, compile_it: bool):
    agent = make_agent(name, 5, 3, {**TINY, **SMALL_CHAINS.get(name, {})}, seed=0)
    return agent.compile() if compile_it else agent


def batches(count: int = UPDATES):
    generator = torch.Generator().manual_seed(0)
    return [random_batch(5, 3, 8, generator=generator) for _ in range(count)]


def losses_and_weights(agent, data):
    losses = [{key: float(value) for key, value in agent.update(batch).items()} for batch in data]
    weights = {name: tensor.clone() for name, tensor in flat_tensors(agent.state_dict())}
    obs = data[0].obs.numpy()
    return losses, weights, agent.act(obs), agent.act(obs, deterministic=True)


def flat_tensors(state, prefix=""):
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            yield prefix + str(key), value
        elif isinstance(value, dict):
            yield from flat_tensors(value, f"{prefix}{key}.")


@pytest.mark.parametrize("name", ["sdac", "dacer"])
def test_compiled_updates_match_eager(name):
    data = batches()
    eager = losses_and_weights(tiny_agent(name, False), data)
    compiled = losses_and_weights(tiny_agent(name, True), data)
    for step, (want, got) in enumerate(zip(eager[0], compiled[0])):
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=TOLERANCE["rtol"], abs=TOLERANCE["atol"]), (step, key)
    want_weights, got_weights = eager[1], compiled[1]
    assert want_weights.keys() == got_weights.keys()  # the same state_dict keys: checkpoints are interchangeable
    for key, tensor in want_weights.items():
        if tensor.is_floating_point():
            torch.testing.assert_close(got_weights[key], tensor, **TOLERANCE, msg=key)
    for want_actions, got_actions in zip(eager[2:], compiled[2:]):
        torch.testing.assert_close(torch.from_numpy(got_actions), torch.from_numpy(want_actions), **TOLERANCE)
    assert compile_seconds() > 0


def test_compiled_agent_resumes_exactly():
    data = batches(6)
    straight = tiny_agent("sdac", True)
    for batch in data[:3]:
        straight.update(batch)
    saved = io.BytesIO()
    torch.save(straight.state_dict(), saved)
    want = [{key: float(value) for key, value in straight.update(batch).items()} for batch in data[3:]]

    resumed = tiny_agent("sdac", True)
    saved.seek(0)
    resumed.load_state_dict(torch.load(saved, weights_only=False))
    got = [{key: float(value) for key, value in resumed.update(batch).items()} for batch in data[3:]]
    assert got == want  # bit for bit: the same graphs on the same inputs
    for (key, tensor), (_, other) in zip(flat_tensors(straight.state_dict()), flat_tensors(resumed.state_dict())):
        assert torch.equal(tensor, other), key


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
