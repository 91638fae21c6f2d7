"""CPQL (algorithms/cpql.py) and the Karras/EDM consistency math (algorithms/consistency.py).
Interface conformance (shapes, range, state_dict round trip) is in test_agents.py."""

import numpy as np
import pytest
import torch

import algorithms
from algorithms import make_agent
from algorithms.consistency import (ConsistencyNet, KarrasSchedule, adjacent_noise_levels, consistency_fn, one_step,
                                    sample)
from tests.algorithms.test_agents import ACT_DIM, BATCH, OBS_DIM, random_batch

SMALL = {"hidden": "32,32", "batch_size": BATCH, "candidates": 8}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_agent(seed: int = 0, **overrides):
    return make_agent("cpql", OBS_DIM, ACT_DIM, {**SMALL, **overrides}, seed=seed)


# Consistency function -----------------------------------------------------------------------------
def test_boundary_condition_f_at_sigma_min_is_the_identity():
    """f(x, sigma_min, s) = x for any network weights (c_skip = 1, c_out = 0), but not at larger sigma."""
    schedule = KarrasSchedule()
    torch.manual_seed(0)
    net = ConsistencyNet(OBS_DIM, ACT_DIM, hidden=(32, 32))
    with torch.no_grad():  # large weights: the network output is far from zero
        for param in net.parameters():
            param.mul_(5.0)
    x = torch.rand(64, ACT_DIM) * 2 - 1
    obs = torch.randn(64, OBS_DIM)
    out = consistency_fn(net, schedule, x, torch.full((64,), schedule.sigma_min), obs)
    torch.testing.assert_close(out, x, rtol=0, atol=1e-6)
    assert (consistency_fn(net, schedule, x, torch.full((64,), 0.5), obs) - x).abs().max() > 0.1
    c_skip, c_out, _ = schedule.scalings(torch.tensor([schedule.sigma_min, schedule.sigma_max]))
    assert float(c_skip[0]) == 1.0 and float(c_out[0]) == 0.0
    assert float(c_skip[1]) < 1e-4  # at sigma_max the input noise is all but ignored


def test_karras_grid_runs_from_sigma_max_to_sigma_min_and_adjacent_levels_lie_on_it():
    schedule = KarrasSchedule(num_scales=40)
    grid = schedule.sigmas()
    assert grid.shape == (40,) and bool((grid[1:] < grid[:-1]).all())
    torch.testing.assert_close(grid[[0, -1]], torch.tensor([80.0, 0.002]))
    high, low = adjacent_noise_levels(schedule, 500, torch.Generator().manual_seed(0), torch.device("cpu"))
    index = (high.unsqueeze(1) - grid).abs().argmin(1)
    torch.testing.assert_close(high, grid[index], rtol=1e-5, atol=0)
    torch.testing.assert_close(low, grid[index + 1], rtol=1e-5, atol=0)
    assert int(index.max()) == 38 and int(index.min()) == 0  # n ~ U{0..N-2}
    assert schedule.sampling_sigmas(1) == [80.0]
    levels = schedule.sampling_sigmas(3)
    assert levels[0] == 80.0 and levels[0] > levels[1] > levels[2] > schedule.sigma_min


@pytest.mark.parametrize("steps", [1, 3])
def test_sampling_gives_actions_in_the_unit_box_that_depend_on_the_noise(steps):
    torch.manual_seed(0)
    net = ConsistencyNet(OBS_DIM, ACT_DIM, hidden=(32, 32))
    obs = torch.randn(256, OBS_DIM)
    actions = sample(net, KarrasSchedule(), obs, steps, torch.Generator().manual_seed(1))
    again = sample(net, KarrasSchedule(), obs, steps, torch.Generator().manual_seed(2))
    assert actions.shape == (256, ACT_DIM) and not torch.equal(actions, again)
    with torch.no_grad():
        for param in net.parameters():
            param.mul_(10.0)  # outputs far outside [-1, 1] before the clip
    actions = sample(net, KarrasSchedule(), obs, steps, torch.Generator().manual_seed(1))
    assert actions.abs().max() <= 1.0 and actions.abs().max() == 1.0


def test_one_step_sample_is_a_single_network_call_at_sigma_max():
    calls = []
    net = ConsistencyNet(OBS_DIM, ACT_DIM, hidden=(16,))
    net.register_forward_hook(lambda module, inputs, output: calls.append(inputs[1]))
    schedule = KarrasSchedule()
    one_step(net, schedule, torch.randn(5, OBS_DIM), torch.Generator().manual_seed(0))
    assert len(calls) == 1
    torch.testing.assert_close(calls[0], torch.full((5,), 250.0 * np.log(80.0)))
    calls.clear()
    sample(net, schedule, torch.randn(5, OBS_DIM), 3, torch.Generator().manual_seed(0))
    assert len(calls) == 3


# Agent ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bc_loss", ["consistency", "reconstruction"])
def test_update_lowers_the_actor_loss_on_a_fixed_batch(bc_loss):
    """Repeat the policy step on one batch with the same randomness (sigma_n, z, x_T): the critic is fixed, so
    this is a fixed objective, which gradient steps must lower."""
    agent = small_agent(bc_loss=bc_loss, actor_lr=1e-3)
    batch = random_batch(0)
    randomness = agent.generator.get_state()

    def step() -> dict:
        agent.generator.set_state(randomness)
        return {k: float(v) for k, v in agent._update_actor(batch).items()}

    first = step()
    for _ in range(60):
        last = step()
    assert last["loss/actor"] < first["loss/actor"] - 0.1 * abs(first["loss/actor"]), (first, last)
    assert last["loss/q"] < first["loss/q"]


def test_bc_only_policy_reproduces_the_replay_actions():
    """With eta = 0 the policy is a conditional generative model of the replay actions: trained on one action
    per state, one-step samples move towards it."""
    agent = small_agent(q_weight=0.0, bc_loss="reconstruction", actor_lr=3e-3, hidden="64,64")
    batch = random_batch(1)
    before = (torch.as_tensor(agent.act(batch.obs.numpy(), True)) - batch.actions).abs().mean()
    for _ in range(400):
        agent._update_actor(batch)
    with torch.no_grad():
        after = (one_step(agent.actor, agent.schedule, batch.obs, agent.generator) - batch.actions).abs().mean()
    assert after < 0.6 * before, (float(before), float(after))


def test_selection_prefers_high_q_candidates():
    """Acting samples candidates and draws one from softmax(Q / temperature) of the target critic; greedy
    evaluation takes the argmax. With a critic that rewards the first action coordinate, chosen actions have a
    larger first coordinate than raw policy samples."""
    agent = small_agent(candidates=32, selection_temperature=0.05)
    with torch.no_grad():
        # At initialisation one-step samples of a state hardly depend on the noise; amplify the noise input
        # so that the candidates of a state spread over the box.
        agent.actor.net[0].weight[:, :ACT_DIM] *= 10.0
        agent.actor.net[-1].weight *= 3.0
        for param in agent.critic_target.parameters():
            param.zero_()
        layers = [layer for layer in agent.critic_target.net if hasattr(layer, "weight")]
        layers[0].weight[:, OBS_DIM, 0] = 1.0  # hidden unit 0 carries a_0 (Mish is increasing on [-1, 1]) ...
        for layer in layers[1:]:
            layer.weight[:, 0, 0] = 1.0        # ... through every layer to Q
    obs = np.random.default_rng(0).normal(size=(200, OBS_DIM)).astype(np.float32)
    with torch.no_grad():
        raw = one_step(agent.actor, agent.schedule, torch.as_tensor(obs), agent.generator)[:, 0].mean()
    chosen = agent.act(obs)[:, 0].mean()
    greedy = make_agent("cpql", OBS_DIM, ACT_DIM, {**SMALL, "candidates": 32, "eval_selection": "greedy"}, seed=0)
    greedy.actor.load_state_dict(agent.actor.state_dict())
    greedy.critic_target.load_state_dict(agent.critic_target.state_dict())
    assert chosen > float(raw) + 0.2
    assert greedy.act(obs, deterministic=True)[:, 0].mean() >= chosen - 0.02


def test_targets_follow_the_online_networks_only_from_ema_start_every_ema_every():
    agent = small_agent(ema_start=4, ema_every=2, ema_decay=0.5)
    initial = [p.clone() for p in agent.actor_target.parameters()]
    for step in range(4):
        agent.update(random_batch(step))
        assert all(torch.equal(a, b) for a, b in zip(initial, agent.actor_target.parameters())), step
    agent.update(random_batch(4))  # update index 4: first EMA step
    moved = [p.clone() for p in agent.actor_target.parameters()]
    assert not all(torch.equal(a, b) for a, b in zip(initial, moved))
    agent.update(random_batch(5))  # index 5: odd, no EMA
    assert all(torch.equal(a, b) for a, b in zip(moved, agent.actor_target.parameters()))


def test_bad_config_values_name_the_choices():
    with pytest.raises(algorithms.ConfigError, match=r"bc_loss.*consistency.*reconstruction.*'recon'"):
        small_agent(bc_loss="recon")
    with pytest.raises(algorithms.ConfigError, match=r"sigma_min < sigma_max"):
        small_agent(sigma_min=100.0)
    with pytest.raises(algorithms.ConfigError, match=r"sampling_steps must be >= 1"):
        small_agent(sampling_steps=0)
