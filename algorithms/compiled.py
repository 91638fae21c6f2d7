"""Opt-in ``torch.compile`` of an agent's hot paths, the same math as eager (docs/performance.md).

``compile_agent(agent)`` (``Agent.compile()``) compiles, for every network the agent holds, its ``forward`` (act,
targets, losses: inductor fuses the bias, activation and loss arithmetic between the matmuls, and AOTAutograd
compiles the backward too) and, for a diffusion noise predictor, the whole reverse chain (``diffusion.run_chain``:
all T steps in one graph). What stays eager: drawing random numbers from the agent's ``torch.Generator`` (so
compiled and eager runs draw the same bits, and a checkpoint resumes exactly), optimizer steps (already one fused
kernel), and the host-side bookkeeping of ``update``.

One compiled function serves every instance of a class (the online network and its target / EMA copy share one
graph per input shape). A function that fails to compile runs eagerly from then on, after one warning naming it.
Compilation time is counted (``compile_seconds``) so speed figures can leave it out.

CUDA graphs (``mode="reduce-overhead"``) are opt-in and untested on a GPU here: outputs that are fed back into the
next call are cloned by the chain, and ``torch.compiler.cudagraph_mark_step_begin`` is called before each step.
"""

from __future__ import annotations

import functools
import time
import warnings
from typing import Any, Callable

import torch
from torch import nn

from algorithms.config import COMPILE_MODES as MODES
# One graph per input shape and grad mode (acting with n_envs rows, evaluation, update batches, best-of-N
# batches): more than dynamo's default limit of 8 per function, and each is compiled once.
RECOMPILE_LIMIT = 64

_compiled: dict[tuple[Callable[..., Any], str], "CompiledCall"] = {}
_compile_seconds = 0.0


class CompiledCall:
    """``fn`` through ``torch.compile`` with fixed shapes, falling back to ``fn`` for good (one warning) if compiling
    or running the compiled code raises where the eager call does not."""

    def __init__(self, fn: Callable[..., Any], name: str, mode: str = "default") -> None:
        self.eager, self.name, self.mode = fn, name, mode
        options = None if mode == "default" else mode
        self.compiled = torch.compile(fn, dynamic=False, mode=options)
        self.failed = False

    def __deepcopy__(self, memo: dict[int, Any]) -> CompiledCall:
        return self  # process-wide: a copied module keeps sharing the compiled graphs and the fallback decision

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.failed:
            return self.eager(*args, **kwargs)
        if self.mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        before = _dynamo_compile_seconds()
        began = time.perf_counter()
        try:
            result = self.compiled(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - any compiler failure: the eager call below decides
            result = self.eager(*args, **kwargs)  # a genuine error (bad shapes) raises here, as in eager mode
            self.failed = True
            warnings.warn(f"torch.compile of {self.name} failed ({type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else ''}); running it eagerly from now on",
                          RuntimeWarning, stacklevel=2)
            return result
        if _dynamo_compile_seconds() > before:  # this call compiled a graph: its whole wall time is compile time
            _add_compile_seconds(time.perf_counter() - began)
        return result


def _dynamo_compile_seconds() -> float:
    metrics = torch._dynamo.utils.compilation_time_metrics
    return sum(metrics.get("_compile.compile_inner", ())) + sum(_backward_compile_times(metrics))


def _backward_compile_times(metrics: dict[str, list[float]]) -> list[float]:
    # AOTAutograd compiles the backward graph lazily, in the first loss.backward() that reaches it: outside any
    # call of ours, so it is read from dynamo's own timers.
    return [t for key, times in metrics.items() if "bw_compiler" in key for t in times]


def _add_compile_seconds(seconds: float) -> None:
    global _compile_seconds
    _compile_seconds += seconds


def compile_seconds() -> float:
    """Wall seconds spent compiling in this process so far: forward graphs (the whole call that compiled them) and
    backward graphs (dynamo's timer)."""
    return _compile_seconds + sum(_backward_compile_times(torch._dynamo.utils.compilation_time_metrics))


def compiled(fn: Callable[..., Any], name: str, mode: str = "default") -> CompiledCall:
    """The process-wide compiled version of ``fn`` (one per function and mode, shared by every caller)."""
    key = (fn, mode)
    if key not in _compiled:
        _compiled[key] = CompiledCall(fn, name, mode)
    return _compiled[key]


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown compile mode {mode!r}; valid choices: {', '.join(MODES)}")
    return mode


def compile_module(module: nn.Module, mode: str = "default") -> None:
    """Route ``module``'s calls through the compiled ``forward`` of its class. The hook is a ``functools.partial``
    of the module itself, so a deep copy (a target network made later) calls its own copy, and ``state_dict`` keys
    do not change (checkpoints of compiled and eager runs are interchangeable)."""
    forward = type(module).forward
    call = compiled(forward, f"{type(module).__name__}.forward", mode)
    module.forward = functools.partial(call, module)
    if hasattr(module, "compiled_chain_mode"):  # a diffusion noise predictor: its reverse chain too
        module.compiled_chain_mode = mode


def compile_agent(agent: Any, mode: str = "default") -> Any:
    """Compile every network that ``agent`` holds as an attribute (see the module docstring); returns ``agent``."""
    check_mode(mode)
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    for value in list(vars(agent).values()):
        if isinstance(value, nn.Module) and _has_parameters(value) and "forward" not in vars(value):
            compile_module(value, mode)
    agent.compile_mode = mode
    return agent


def _has_parameters(module: nn.Module) -> bool:
    # A module without weights (a noise schedule's buffers) has no forward worth compiling.
    return any(True for _ in module.parameters())
