"""The reverse diffusion chain against the matmuls it contains: GFLOP/s of the eager chain, the compiled chain
(``torch.compile``, ``algorithms.compiled``) and the chain's matmuls alone at the same shapes.

    python benchmarks/chain_profile.py                      # SDAC and DPMD update chains, Hopper dims, 1 thread
    python benchmarks/chain_profile.py --profile            # also the eager and compiled op profiles (top ops)
    python benchmarks/chain_profile.py --rows 8192 --steps 20 --reps 7
    python benchmarks/chain_profile.py --mish               # only Mish on one [8192, 256] tensor, four ways

Paper settings: T = 20 steps, best-of-32, 3 x 256 Mish noise predictor, Hopper-v5 dims (obs 11, act 3). One update's
chain has 256 x 32 = 8192 rows (DPMD: the next states) or 512 x 32 = 16384 (SDAC: next states and proposal states in
one pass). FLOPs count the matmuls only (2 per multiply-add): per step the action part of the first layer
(act -> 256), two 256 x 256 layers and the output layer (256 -> act); the obs and step parts of the first layer are
computed once per chain (diffusion.NoisePredictor.denoiser) and left out of both sides. Times are the process's CPU
time (time.process_time) at one thread, the best of ``--reps`` rounds, the three variants interleaved in every round,
so that a machine shared with other jobs inflates them less than wall time.
"""

from __future__ import annotations

import argparse
import time

import torch

from algorithms.compiled import compile_seconds
from algorithms.diffusion import DiffusionSchedule, NoisePredictor, reverse_sample
from algorithms.nets import mish_identity, mish_into

OBS_DIM, ACT_DIM, WIDTH = 11, 3, 256


def chain_flops(rows: int, steps: int, width: int = WIDTH, act_dim: int = ACT_DIM) -> float:
    return 2.0 * steps * rows * (act_dim * width + 2 * width * width + width * act_dim)


def matmuls_only(model: NoisePredictor, rows: int, steps: int):
    """The chain's matmuls (addmm with bias, the first layer's action part) on the same shapes, nothing between."""
    linears = [layer for layer in model.trunk if isinstance(layer, torch.nn.Linear)]
    action_weight = model._action_weight().t().contiguous()
    obs_features, action = torch.randn(rows, WIDTH), torch.randn(rows, ACT_DIM)

    def run() -> None:
        for _ in range(steps):
            x = torch.addmm(obs_features, action, action_weight)
            for layer in linears:
                x = torch.addmm(layer.bias, x, layer.weight.t())

    return run


def chains(rows: int, steps: int, particles: int):
    torch.manual_seed(0)
    model = NoisePredictor(OBS_DIM, ACT_DIM, steps).requires_grad_(False)
    schedule = DiffusionSchedule.build("linear", steps, 0.8)
    obs = torch.randn(rows // particles, OBS_DIM)

    def eager() -> torch.Tensor:
        with torch.no_grad():
            return reverse_sample(model, schedule, obs, particles, torch.Generator().manual_seed(0), 0.5)

    compiled_model = NoisePredictor(OBS_DIM, ACT_DIM, steps).requires_grad_(False)
    compiled_model.load_state_dict(model.state_dict())
    compiled_model.compiled_chain_mode = "default"

    def compiled_chain() -> torch.Tensor:
        with torch.no_grad():
            return reverse_sample(compiled_model, schedule, obs, particles, torch.Generator().manual_seed(0), 0.5)

    return {"eager chain": eager, "compiled chain": compiled_chain, "matmuls alone": matmuls_only(model, rows, steps)}


def cpu_seconds(call) -> float:
    began = time.process_time()
    call()
    return time.process_time() - began


def time_mish(rounds: int = 20, calls: int = 5) -> None:
    """CPU ms per Mish of one [8192, 256] fp32 tensor: eager mish_into, torch's native op, inductor's own mish and
    inductor on the exp identity (what a compiled agent uses), interleaved, best of ``rounds`` x ``calls``."""
    x = torch.randn(8192, WIDTH)
    out = torch.empty_like(x)
    native_compiled = torch.compile(torch.nn.functional.mish, dynamic=False)
    identity_compiled = torch.compile(mish_identity, dynamic=False)
    variants = {"eager mish_into (5 in-place passes)": lambda: mish_into(x, out),
                "eager torch.nn.functional.mish": lambda: torch.nn.functional.mish(x),
                "compiled torch.nn.functional.mish": lambda: native_compiled(x),
                "compiled nets.mish_identity": lambda: identity_compiled(x)}
    for call in variants.values():
        call()
    best = {name: float("inf") for name in variants}
    for _ in range(rounds):
        for name, call in variants.items():
            best[name] = min(best[name], cpu_seconds(lambda: [call() for _ in range(calls)]) / calls)
    print("| Mish of [8192, 256] fp32 | CPU ms |\n|---|---|")
    for name, seconds in best.items():
        print(f"| {name} | {1e3 * seconds:.2f} |")


def print_profile(label: str, call, top: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call()
    print(f"\n{label}: top ops by self CPU time\n")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="8192,16384", help="chain rows (states x particles), comma-separated")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--particles", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="print torch.profiler tables of both chains")
    parser.add_argument("--mish", action="store_true", help="time only Mish, four ways, and exit")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.mish:
        return time_mish()
    print(f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}, {args.threads} thread(s), "
          f"T = {args.steps}, best-of-{args.particles}, Hopper dims, 3 x {WIDTH} Mish\n")
    print("| rows | variant | CPU ms per chain (best) | GFLOP/s | % of matmul rate |")
    print("|---|---|---|---|---|")
    for rows in (int(r) for r in args.rows.split(",")):
        variants = chains(rows, args.steps, args.particles)
        before = compile_seconds()
        want, got = variants["eager chain"](), variants["compiled chain"]()  # compiles, and checks the result
        compiling = compile_seconds() - before
        difference = (want - got).abs().max().item()
        best = {name: float("inf") for name in variants}
        for _ in range(args.reps):
            for name, call in variants.items():  # interleaved: a load change hits every variant alike
                best[name] = min(best[name], cpu_seconds(call))
        flops = chain_flops(rows, args.steps)
        for name, seconds in best.items():
            share = 100.0 * best["matmuls alone"] / seconds
            print(f"| {rows} | {name} | {1e3 * seconds:.1f} | {flops / seconds / 1e9:.1f} | {share:.0f} % |",
                  flush=True)
        print(f"\nrows {rows}: compiled vs eager max |difference| {difference:.1e}; compile {compiling:.1f} s wall\n")
        if args.profile:
            print_profile(f"eager chain, {rows} rows", variants["eager chain"], 12)
            print_profile(f"compiled chain, {rows} rows", variants["compiled chain"], 12)


if __name__ == "__main__":
    main()
