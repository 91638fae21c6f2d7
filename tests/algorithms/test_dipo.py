"""DIPO (algorithms/dipo.py): the action-gradient refinement (raises Q, Adam's step bound, the released global-norm
clip), the denoising loss on the refined actions, the critic target, the cadence of the targets, the defaults.
Interface conformance (shapes, range, state_dict round trip) is also in test_agents.py."""

import math

import numpy as np
import pytest
import torch

import algorithms
from algorithms import make_agent, testing
from algorithms.diffusion import beta_schedule
from algorithms.dipo import action_gradient_ascent, clip_grad_norm_per_member
from algorithms.nets import CriticEnsemble, optimizer_step

OBS_DIM, ACT_DIM, BATCH = 4, 2, 16
SMALL = {"hidden": "32,32", "batch_size": BATCH, "diffusion_steps": 8}
LR, STEPS, CLIP = 0.03, 30, 0.16  # the released settings of the refinement

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_agent(seed: int = 0, **overrides):
    return make_agent("dipo", OBS_DIM, ACT_DIM, {**SMALL, **overrides}, seed=seed)


def random_batch(seed: int = 0):
    return testing.random_batch(OBS_DIM, ACT_DIM, BATCH, seed, terminal_fraction=0.0)


def known_critic(goal: torch.Tensor, scale: float = 1.0):
    """A twin critic with known maxima: Q1 = -|a - goal|^2, Q2 = -1.5 |a - goal - 0.05|^2; returns min(Q1, Q2)."""
    def q_fn(actions: torch.Tensor) -> torch.Tensor:
        q1 = -(actions - goal).pow(2).sum(-1)
        q2 = -1.5 * (actions - goal - 0.05).pow(2).sum(-1)
        return scale * torch.minimum(q1, q2)
    return q_fn


def adam_step_bound(t: int, b1: float = 0.9, b2: float = 0.999) -> float:
    """max |m_hat_t| / sqrt(v_hat_t) over all gradient histories (Cauchy-Schwarz on Adam's bias-corrected moments):
    (1 - b1) / (1 - b1^t) * sqrt((1 - b2^t) / (1 - b2)) * sqrt(sum_{j<t} (b1^2 / b2)^j). 1 at t = 1, 1.30 at t = 30."""
    return ((1 - b1) / (1 - b1**t) * math.sqrt((1 - b2**t) / (1 - b2))
            * math.sqrt(sum((b1 * b1 / b2) ** j for j in range(t))))


# The action gradient on a known critic -------------------------------------------------------------------
def test_action_gradient_raises_q_of_the_stored_actions_on_a_known_critic():
    generator = torch.Generator().manual_seed(0)
    goal = torch.rand(64, ACT_DIM, generator=generator) * 1.6 - 0.8
    stored = torch.rand(64, ACT_DIM, generator=generator) * 2 - 1
    q_fn = known_critic(goal)
    refined = action_gradient_ascent(q_fn, stored, STEPS, LR, CLIP)
    torch.testing.assert_close(refined.q_start, q_fn(stored))
    torch.testing.assert_close(refined.q_end, q_fn(refined.actions))
    assert bool((refined.q_end > refined.q_start).all())  # every stored action improves
    assert float((refined.q_end - refined.q_start).mean()) > 0.5 * float(-refined.q_start.mean())
    assert float((refined.actions - goal).norm(dim=-1).mean()) < 0.5 * float((stored - goal).norm(dim=-1).mean())
    assert torch.equal(stored, action_gradient_ascent(q_fn, stored, 0, LR, CLIP).actions)  # 0 steps: unchanged


def test_action_gradient_stays_in_the_box_and_within_adams_step_bound():
    """The released code bounds the refinement by Adam's normalisation and the [-1, 1] clip (the 0.16 global-norm
    clip does not bound the move): step 1 moves every coordinate by exactly lr, step t by at most lr * C_t, the
    total by lr * sum_t C_t, and a goal outside the box pins the action on its edge."""
    generator = torch.Generator().manual_seed(1)
    goal = torch.tensor([3.0, -0.2])  # first coordinate beyond the box
    stored = torch.rand(32, ACT_DIM, generator=generator) * 2 - 1
    q_fn = known_critic(goal, scale=50.0)  # a steep critic: raw gradient norms far above the clip
    path = [stored] + [action_gradient_ascent(q_fn, stored, t, LR, CLIP).actions for t in range(1, STEPS + 1)]
    # Adam restarts at every call, so the first t steps of a 30-step refinement are the t-step refinement.
    for t in range(1, STEPS + 1):
        move = (path[t] - path[t - 1]).abs()
        assert bool((path[t].abs() <= 1.0).all())
        assert float(move.max()) <= LR * adam_step_bound(t) + 1e-6, t
    first = (path[1] - stored).abs()
    torch.testing.assert_close(first[stored[:, 0] < 1 - LR][:, 0], torch.full_like(first[stored[:, 0] < 1 - LR][:, 0], LR))
    total_bound = LR * sum(adam_step_bound(t) for t in range(1, STEPS + 1))
    assert total_bound == pytest.approx(1.006, abs=1e-3)
    assert float((path[-1] - stored).abs().max()) <= total_bound + 1e-6
    near_edge = stored[:, 0] > 0.5  # within 17 steps of ~0.03 of the edge: pinned on it by step 30
    assert bool(near_edge.any()) and bool((path[-1][near_edge, 0] == 1.0).all())


def test_action_gradient_is_the_released_clipped_adam():
    """Reference: a leaf tensor, the gradient of -sum min Q clipped to global norm 0.16 over the whole B x |A| tensor
    (torch.nn.utils.clip_grad_norm_, as the original DIPO code; optax.clip_by_global_norm in relax), one step of a
    fresh Adam(0.03), a clipped to [-1, 1]; 30 times."""
    generator = torch.Generator().manual_seed(2)
    goal = torch.rand(32, ACT_DIM, generator=generator) - 0.5
    stored = torch.rand(32, ACT_DIM, generator=generator) * 2 - 1
    q_fn = known_critic(goal, scale=20.0)
    leaf = stored.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([leaf], lr=LR)
    norms = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        (-q_fn(leaf).sum()).backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_([leaf], CLIP)))
        optimizer.step()
        with torch.no_grad():
            leaf.clamp_(-1.0, 1.0)
    assert min(norms) > CLIP  # the clip binds at every step (and the norm it scales down from changes)
    ours = action_gradient_ascent(q_fn, stored, STEPS, LR, CLIP).actions
    torch.testing.assert_close(ours, leaf.detach(), rtol=0, atol=1e-5)
    unclipped = action_gradient_ascent(q_fn, stored, STEPS, LR, 0.0).actions
    assert float((unclipped - leaf.detach()).abs().max()) > 1e-3  # the clip changes the result
    assert small_agent().action_clip == CLIP
    assert small_agent(action_grad_norm_per_dim=True).action_clip == pytest.approx(CLIP * ACT_DIM)  # d x ratio


# The agent's update ----------------------------------------------------------------------------------------
def test_update_fits_the_denoiser_to_the_refined_actions_with_the_updated_critic(monkeypatch):
    agent = small_agent()
    batch = random_batch(0)
    seen = {}
    refine, loss = agent.refine, agent.denoising_loss

    def spy_refine(obs, actions):
        seen["critic_at_refine"] = [p.detach().clone() for p in agent.critic.parameters()]
        seen["refined"] = refine(obs, actions)
        return seen["refined"]

    def spy_loss(obs, clean):
        seen["clean"] = clean
        return loss(obs, clean)

    monkeypatch.setattr(agent, "refine", spy_refine)
    monkeypatch.setattr(agent, "denoising_loss", spy_loss)
    critic_before = [p.detach().clone() for p in agent.critic.parameters()]
    metrics = agent.update(batch)
    # The refinement ran after the critic step ...
    assert all(torch.equal(a, b) for a, b in zip(seen["critic_at_refine"], agent.critic.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(critic_before, agent.critic.parameters()))
    # ... and the denoising loss was computed on its output, not on the stored actions.
    assert seen["clean"] is seen["refined"].actions
    assert float((seen["clean"] - batch.actions).abs().max()) > 0.1
    with torch.no_grad():
        q_stored = agent.critic(batch.obs, batch.actions).min(0).values
        q_refined = agent.critic(batch.obs, seen["clean"]).min(0).values
    assert float((q_refined - q_stored).mean()) > 0
    assert float(metrics["action/q_gain"]) == pytest.approx(float((q_refined - q_stored).mean()), rel=1e-4)


def test_denoising_loss_is_half_the_mse_of_the_noise_on_the_given_actions():
    agent = small_agent()
    batch = random_batch(1)
    clean = batch.actions.clamp(-0.9, 0.9) * 0.5
    state = agent.generator.get_state()
    loss = agent.denoising_loss(batch.obs, clean)
    generator = torch.Generator().manual_seed(0)
    generator.set_state(state)
    k = torch.randint(SMALL["diffusion_steps"], (BATCH,), generator=generator)
    noise = torch.randn(clean.shape, generator=generator)
    alpha_bar = torch.cumprod(1 - beta_schedule("cosine", SMALL["diffusion_steps"]), 0).float()[k].unsqueeze(-1)
    noisy = alpha_bar.sqrt() * clean + (1 - alpha_bar).sqrt() * noise
    expected = 0.5 * (agent.policy(batch.obs, noisy, k) - noise).pow(2).sum(-1).mean() / ACT_DIM
    torch.testing.assert_close(loss, expected)


def test_denoising_steps_lower_the_loss_on_fixed_refined_actions():
    agent = small_agent(policy_lr=1e-3)
    batch = random_batch(2)
    refined = agent.refine(batch.obs, batch.actions).actions
    state = agent.generator.get_state()

    def step() -> float:
        agent.generator.set_state(state)  # the same k and noise every time: a fixed regression
        loss = agent.denoising_loss(batch.obs, refined)
        optimizer_step(agent.policy_optimizer, loss)
        return float(loss.detach())

    first = step()
    for _ in range(100):
        last = step()
    assert last < 0.5 * first, (first, last)


def test_critic_target_uses_one_sample_of_the_target_policy():
    agent = small_agent(reward_scale=0.5)
    batch = testing.random_batch(OBS_DIM, ACT_DIM, BATCH, 3, terminal_fraction=0.3)
    with torch.no_grad():  # make the target policy differ from the online one
        for param in agent.policy_target.parameters():
            param.add_(0.3)
    state = agent.generator.get_state()
    with torch.no_grad():
        next_actions = agent.sample(agent.policy_target, batch.next_obs, agent.generator)
        target = 0.5 * batch.rewards + 0.99 * (1 - batch.terminated) * agent.critic_target(batch.next_obs, next_actions).min(0).values
        expected = (agent.critic(batch.obs, batch.actions) - target).pow(2).mean(-1).sum()
        same_draws = torch.Generator()
        same_draws.set_state(state)
        online = agent.sample(agent.policy, batch.next_obs, same_draws)
    assert float((online - next_actions).abs().max()) > 1e-3
    agent.generator.set_state(state)
    loss, _ = agent.update_critic(batch)
    torch.testing.assert_close(loss, expected)


def test_targets_cadence():
    """Critic targets every update; the target policy at updates 1, 3, 5, ... (relax: step % 2 == 0, step from 0)."""
    agent = small_agent()
    moved = []
    for step in range(4):
        policy_before = [p.clone() for p in agent.policy_target.parameters()]
        critic_before = [p.clone() for p in agent.critic_target.parameters()]
        agent.update(random_batch(step))
        moved.append((not all(torch.equal(a, b) for a, b in zip(policy_before, agent.policy_target.parameters())),
                      not all(torch.equal(a, b) for a, b in zip(critic_before, agent.critic_target.parameters()))))
    assert moved == [(True, True), (False, True), (True, True), (False, True)]


def test_each_critic_is_clipped_on_its_own():
    critic = CriticEnsemble(OBS_DIM, ACT_DIM, (8,), 2)
    for param in critic.parameters():
        param.grad = torch.ones_like(param)
        param.grad[1] *= 1e-3  # member 1's gradient is tiny
    norms = lambda: torch.stack([p.grad.pow(2).flatten(1).sum(1) for p in critic.parameters()]).sum(0).sqrt()  # noqa: E731
    before = norms()
    clip_grad_norm_per_member(critic.parameters(), 2.0)
    after = norms()
    assert float(after[0]) == pytest.approx(2.0, rel=1e-5) and float(before[0]) > 2.0
    torch.testing.assert_close(after[1], before[1])  # a joint clip would have scaled it too


# Acting, config ----------------------------------------------------------------------------------------------
def test_online_policy_acts_and_evaluation_noise_is_configurable():
    agent = small_agent()
    obs = np.random.default_rng(0).normal(size=(3, OBS_DIM)).astype(np.float32)
    before = agent.act(obs, deterministic=True)
    with torch.no_grad():
        for param in agent.policy_target.parameters():
            param.add_(1.0)
    np.testing.assert_array_equal(agent.act(obs, deterministic=True), before)  # the target policy does not act
    quiet = small_agent(eval_posterior_noise=0.0)
    np.testing.assert_array_equal(quiet.act(obs, True), quiet.act(obs, True))
    assert not np.allclose(quiet.act(obs, True), before)


def test_defaults_are_the_released_code_values_with_the_cosine_schedule():
    config = algorithms.resolve_config("dipo", "Hopper-v5")
    assert (config.diffusion_steps, config.beta_schedule, config.beta_schedule_scale, config.init_noise_scale) == (
        100, "cosine", 1.0, 0.5)
    assert (config.hidden, config.activation, config.time_dim, config.time_hidden) == ((256, 256, 256), "relu", 32, 0)
    assert (config.action_lr, config.action_gradient_steps, config.action_grad_norm) == (0.03, 30, 0.16)
    assert (config.target_policy_every, config.reward_scale, config.critic_max_grad_norm) == (2, 1.0, 2.0)
    agent = make_agent("dipo", 11, 3, config)
    assert agent.policy.input_layer.in_features == 11 + 3 + 32 and isinstance(agent.policy.time_mlp, torch.nn.Identity)
    released = make_agent("dipo", 11, 3, {"beta_schedule": "linear", "beta_schedule_scale": 0.3, "hidden": "8"})
    torch.testing.assert_close(released.schedule.betas, (0.3 * torch.linspace(1e-4, 0.999, 100, dtype=torch.float64)).float())


def test_check_agent():
    assert testing.check_agent("dipo", SMALL) == ["act_shapes_and_range", "exploration", "update_metrics",
                                                 "state_dict_round_trip"]
