"""Interface conformance of every registered algorithm, plus SAC's own math."""

import numpy as np
import pytest
import torch

import algorithms
from algorithms import Batch, make_agent
from algorithms import testing as checks
from algorithms.sac import SAC, SACConfig

OBS_DIM, ACT_DIM, BATCH = checks.OBS_DIM, checks.ACT_DIM, checks.BATCH


# Diffusion settings for the algorithms that have them (applied only where the config has the field); DACER's
# GMM entropy estimate on 4 states x 50 samples instead of 256 x 200. QVPO's released weights (min-Q if > 1, else 0)
# are all zero while the fresh critics give Q < 1, so its policy would not move in a few updates: the interface checks
# use its original-paper advantage weights (tests/algorithms/test_qvpo.py covers the released ones).
SMALL_DIFFUSION = {"diffusion_steps": 5, "particles": 4, "reverse_samples": 8, "entropy_states": 4,
                   "entropy_samples": 50, "train_particles": 4, "target_particles": 4, "eval_particles": 4,
                   "weighting": "advantage"}


def small_config(name: str):
    # Small networks keep the suite fast; the interface does not depend on sizes.
    keys = set(algorithms.config_keys(name))
    small = {key: value for key, value in SMALL_DIFFUSION.items() if key in keys}
    return algorithms.resolve_config(name, None, {"hidden": "32,32", "batch_size": BATCH, **small})


def random_batch(seed: int = 0) -> Batch:
    return checks.random_batch(OBS_DIM, ACT_DIM, BATCH, seed)


@pytest.fixture(params=algorithms.available_algorithms())
def agent(request):
    return make_agent(request.param, OBS_DIM, ACT_DIM, small_config(request.param), seed=3)


# The conformance checks live in algorithms/testing.py, so that a new algorithm can be checked the same way
# (algorithms.testing.check_agent, docs/adding-an-algorithm.md).
def test_act_shapes_and_range(agent):
    checks.act_shapes_and_range(agent)


def test_stochastic_acting_explores_and_deterministic_does_not(agent):
    checks.exploration(agent)


def test_update_returns_declared_finite_scalars_and_changes_parameters(agent):
    checks.update_metrics(agent)


def test_state_dict_round_trip_restores_everything(agent):
    checks.state_dict_round_trip(agent, lambda: make_agent(agent.name, OBS_DIM, ACT_DIM, agent.config, seed=99))


def test_check_agent_catches_state_missing_from_state_attributes(monkeypatch):
    """The public helper fails an agent whose resume would not be exact (here: SAC forgetting its temperature)."""
    assert checks.check_agent("sac", {"hidden": "32,32"}) == ["act_shapes_and_range", "exploration", "update_metrics",
                                                             "state_dict_round_trip"]
    monkeypatch.setattr(SAC, "state_attributes",
                        tuple(a for a in SAC.state_attributes if a not in ("log_alpha", "alpha_optimizer")))
    with pytest.raises(AssertionError, match="state_dict_round_trip failed: metric .* differs .*state_attributes"):
        checks.check_agent("sac", {"hidden": "32,32"})


def test_same_seed_same_agent_different_seed_different_agent():
    config = small_config("sac")
    obs = np.ones((3, OBS_DIM), dtype=np.float32)
    a, b, c = (make_agent("sac", OBS_DIM, ACT_DIM, config, seed=s).act(obs, True) for s in (1, 1, 2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_unknown_algorithm_lists_valid_names():
    with pytest.raises(algorithms.ConfigError, match=r"unknown algorithm 'sdacc'.*sac"):
        make_agent("sdacc", OBS_DIM, ACT_DIM)


def test_sac_log_prob_matches_torch_distributions():
    """Our tanh-Gaussian log-density (with the softplus form of the Jacobian) equals the reference."""
    agent = SAC(OBS_DIM, ACT_DIM, SACConfig(hidden=(32,)), seed=0)
    obs = torch.randn(64, OBS_DIM)
    generator = torch.Generator().manual_seed(5)
    actions, log_prob = agent.actor.sample(obs, generator)
    mean, log_std = agent.actor(obs)
    base = torch.distributions.Normal(mean, log_std.exp())
    dist = torch.distributions.TransformedDistribution(base, [torch.distributions.TanhTransform(cache_size=1)])
    # Recompute the same pre-tanh sample from the same generator state.
    generator.manual_seed(5)
    pre_tanh = mean + log_std.exp() * torch.randn(mean.shape, generator=generator)
    expected = base.log_prob(pre_tanh).sum(-1) - torch.log1p(-torch.tanh(pre_tanh).pow(2) + 1e-12).sum(-1)
    torch.testing.assert_close(log_prob, expected, rtol=1e-4, atol=1e-3)
    assert dist.support.check(actions).all()


def test_sac_temperature_rises_when_entropy_is_below_target():
    config = SACConfig(hidden=(32, 32), init_alpha=0.5, target_entropy_scale=-5.0)  # target +5 nats/dim: unreachable
    agent = SAC(OBS_DIM, ACT_DIM, config, seed=0)
    start = float(agent.log_alpha.detach())
    for step in range(20):
        agent.update(random_batch(step))
    assert float(agent.log_alpha.detach()) > start


def test_sac_critic_fits_a_fixed_batch():
    agent = SAC(OBS_DIM, ACT_DIM, SACConfig(hidden=(64, 64), gamma=0.0, critic_lr=1e-3), seed=0)
    batch = random_batch(0)  # gamma=0: the target is the reward itself, a fixed regression problem
    first = float(agent.update(batch)["loss/critic"])
    for _ in range(200):
        last = float(agent.update(batch)["loss/critic"])
    assert last < 0.2 * first
