"""QVPO (algorithms/qvpo.py): the weights on known Q values, no gradient through them (and the released leak when asked),
the entropy term, the critic target's reward scale, the released bugs as flags, schedules, acting. Interface conformance
(shapes, range, state_dict round trip) is also in test_agents.py."""

import numpy as np
import pytest
import torch

import algorithms
from algorithms import make_agent, testing
from algorithms.qvpo import entropy_rows, entropy_weight, qvpo_weights

OBS_DIM, ACT_DIM, BATCH = 4, 2, 16
SMALL = {"hidden": "32,32", "batch_size": BATCH, "diffusion_steps": 5, "particles": 4, "eval_particles": 4,
         "target_particles": 4, "train_particles": 4}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_agent(seed: int = 0, **overrides):
    return make_agent("qvpo", OBS_DIM, ACT_DIM, {**SMALL, **overrides}, seed=seed)


def random_batch(seed: int = 0):
    return testing.random_batch(OBS_DIM, ACT_DIM, BATCH, seed, terminal_fraction=0.25)


def set_critic_output(critic, member_values, keep_action_dependence=False):
    """Make member j of a CriticEnsemble output member_values[j] (plus its action-dependent part if kept)."""
    last = critic.net[-1]
    with torch.no_grad():
        if not keep_action_dependence:
            last.weight.zero_()
            last.bias.copy_(torch.tensor(member_values).view(-1, 1, 1))
        else:
            last.bias.add_(torch.tensor(member_values).view(-1, 1, 1))


# Weights --------------------------------------------------------------------------------------------------------
def test_weights_on_known_q_values():
    q = torch.tensor([[0.5, 2.0, -3.0],     # best 2.0 > 1: weight 2.0
                      [0.9, 1.0, 0.2],      # best exactly 1: not > 1, weight 0
                      [-5.0, -1.0, -2.0],   # negative Q (e.g. Pendulum): weight 0
                      [5.0, 1.5, 4.0]])     # best 5.0: the raw Q, not normalised over the batch
    torch.testing.assert_close(qvpo_weights(q, "q_above_one"), torch.tensor([2.0, 0.0, 0.0, 5.0]))
    # Original QVPO: best minus the mean over the state's samples, clipped at 0.
    torch.testing.assert_close(qvpo_weights(q, "advantage"),
                               torch.tensor([2.0 + 0.5 / 3, 1.0 - 2.1 / 3, -1.0 + 8.0 / 3, 5.0 - 10.5 / 3]))


def test_agent_weights_are_the_raw_min_q_of_its_critics():
    """In the agent: w = min over the twin critics of Q(s, a_best), no scaling or normalisation; min-Q <= 1 gives 0."""
    agent = small_agent()
    obs = random_batch().obs
    set_critic_output(agent.critic, [3.0, 1.5])
    actions, weights = agent.training_samples(obs)
    assert actions.shape == (BATCH, ACT_DIM) and bool((actions.abs() <= 1).all())
    torch.testing.assert_close(weights, torch.full((BATCH,), 1.5))
    set_critic_output(agent.critic, [3.0, 0.8])
    torch.testing.assert_close(agent.training_samples(obs)[1], torch.zeros(BATCH))


def test_critic_target_scales_rewards_by_0_2():
    """y = 0.2 r + 0.99 (1 - d) min_j Qbar_j(s', a'): the weights' threshold of 1 applies to Q in these units."""
    agent = small_agent()
    assert (agent.config.reward_scale, agent.config.gamma) == (0.2, 0.99)
    batch = random_batch()
    set_critic_output(agent.critic_target, [4.0, 2.5])
    expected = 0.2 * batch.rewards + 0.99 * (1 - batch.terminated) * 2.5
    torch.testing.assert_close(agent.td_target(batch), expected)


def test_no_policy_learning_while_every_q_is_at_most_one():
    """The released weights vanish while min-Q <= 1 (a fresh critic, or negative-reward tasks), and the entropy rows
    weigh lambda * w: the policy gets a zero gradient. With Q > 1 it moves."""
    agent = small_agent()
    set_critic_output(agent.critic, [0.5, 0.7])
    before = [p.clone() for p in agent.policy.parameters()]
    agent._update_policy(random_batch().obs, 0.02)
    assert all(torch.equal(a, b) for a, b in zip(before, agent.policy.parameters()))
    set_critic_output(agent.critic, [2.0, 3.0])
    agent._update_policy(random_batch().obs, 0.02)
    assert not all(torch.equal(a, b) for a, b in zip(before, agent.policy.parameters()))


# No gradient through the weights, unless weight_grad_leak ------------------------------------------------------------
@pytest.mark.parametrize("leak", [False, True])
def test_samples_and_weights_carry_gradient_only_with_the_leak_flag(leak):
    agent = small_agent(weight_grad_leak=leak)
    set_critic_output(agent.critic, [5.0, 5.0], keep_action_dependence=True)  # Q > 1 and still depends on a
    actions, weights = agent.training_samples(random_batch().obs)
    assert not actions.requires_grad
    assert float(weights.detach().min()) > 1.0
    assert weights.requires_grad == leak
    if leak:  # the weights' gradient runs back through the critic and the chain to the policy's parameters
        grads = torch.autograd.grad(weights.sum(), list(agent.policy.parameters()), allow_unused=True)
        assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0
        assert all(p.grad is None for p in agent.critic.parameters())  # the critic is not trained by this loss


def test_the_leak_changes_the_gradient_not_the_loss():
    """Same draws, same loss value; the leak adds sum_i e_i dw_i/dtheta to the gradient (spec 7.5.5 bug 1)."""
    def loss_and_grad(leak: bool):
        agent = small_agent(weight_grad_leak=leak)
        set_critic_output(agent.critic, [5.0, 5.0], keep_action_dependence=True)
        loss, _ = agent.policy_loss(random_batch().obs, 0.02)
        grads = torch.autograd.grad(loss, list(agent.policy.parameters()))
        return loss.detach(), torch.cat([g.flatten() for g in grads])

    (loss_off, grad_off), (loss_on, grad_on) = loss_and_grad(False), loss_and_grad(True)
    torch.testing.assert_close(loss_off, loss_on)
    assert float((grad_on - grad_off).norm()) > 1e-3 * float(grad_off.norm())


# Entropy term -----------------------------------------------------------------------------------------------------
def test_entropy_rows_pair_uniform_actions_with_their_own_state_and_weight():
    generator = torch.Generator().manual_seed(0)
    obs, weights = torch.randn(8, 3, generator=generator), torch.rand(8, generator=generator) * 5
    states, actions, row_weights = entropy_rows(obs, weights, 10, 2, generator)
    assert states.shape == (80, 3) and actions.shape == (80, 2) and row_weights.shape == (80,)
    rows = torch.arange(80)
    torch.testing.assert_close(states, obs[rows % 8])            # each row is a real state ...
    torch.testing.assert_close(row_weights, weights[rows % 8])   # ... with that state's weight
    # Uniform on [-1, 1]^|A|: inside the box, mean ~0, spread over it.
    assert bool((actions.abs() <= 1).all()) and abs(float(actions.mean())) < 0.15
    assert float(actions.min()) < -0.9 and float(actions.max()) > 0.9


def test_entropy_obs_shuffle_reproduces_the_released_pseudo_states():
    """Released: the rows are made of all observation numbers, each repeated 10 times, permuted, so a row is not a
    state; the weights are the repeated weights under another permutation."""
    generator = torch.Generator().manual_seed(0)
    obs, weights = torch.randn(8, 3, generator=generator), torch.arange(8.0)
    states, _, row_weights = entropy_rows(obs, weights, 10, 2, generator, shuffle=True)
    assert states.shape == (80, 3)
    torch.testing.assert_close(states.flatten().sort().values, obs.flatten().repeat_interleave(10).sort().values)
    real = (states.unsqueeze(1) == obs.unsqueeze(0)).all(-1).any(-1)
    assert int(real.sum()) < 8  # almost no row is a real state
    torch.testing.assert_close(row_weights.sort().values, weights.repeat_interleave(10))
    assert not torch.equal(row_weights, weights.repeat(10))


def test_entropy_weight_schedule():
    # Released: 0.02 (1 - step / 2e5), floored at 0.002 (reached at 180k updates = 900k env steps at UTD 0.2).
    assert entropy_weight(0, 0.02, 0.002, 200_000) == 0.02
    assert entropy_weight(90_000, 0.02, 0.002, 200_000) == pytest.approx(0.011)
    assert entropy_weight(180_000, 0.02, 0.002, 200_000) == pytest.approx(0.002)
    assert entropy_weight(10**6, 0.02, 0.002, 200_000) == 0.002
    # Original QVPO: min(0.02, max(0.002, 0.02 - 0.02 steps / 1e6)), steps = updates + 10k warm-up steps.
    for updates in (0, 123_456, 900_000):
        original = max(0.002, 0.02 - 0.02 * (updates + 10_000) / 1e6)
        assert entropy_weight(updates, 0.0198, 0.002, 990_000) == pytest.approx(original)


def test_policy_loss_weighs_entropy_rows_by_lambda_times_w():
    """With a constant critic (w = 2 for every state) the loss is mean over rows and dims of w_row (eps_hat - eps)^2,
    w_row = 2 for the B sample rows and 2 lambda for the 10 B entropy rows, on the rows entropy_rows gives."""
    agent = small_agent()
    set_critic_output(agent.critic, [2.0, 4.0])
    obs, lam = random_batch().obs, 0.3
    state = agent.generator.get_state()
    loss, weights = agent.policy_loss(obs, lam)
    torch.testing.assert_close(weights, torch.full((BATCH,), 2.0))
    agent.generator.set_state(state)  # replay the same draws in the same order
    with torch.no_grad():
        actions, _ = agent.training_samples(obs)
        extra_obs, extra_actions, _ = entropy_rows(obs, weights, 10, ACT_DIM, agent.generator)
        all_obs, clean = torch.cat([obs, extra_obs]), torch.cat([actions, extra_actions])
        k = agent.schedule.random_steps((len(clean),), agent.generator)
        noise = torch.randn(clean.shape, generator=agent.generator)
        error = (agent.policy(all_obs, agent.schedule.add_noise(clean, k, noise), k) - noise).pow(2)
    row_weights = torch.cat([torch.full((BATCH,), 2.0), torch.full((10 * BATCH,), 2.0 * lam)])
    torch.testing.assert_close(loss.detach(), (row_weights.unsqueeze(-1) * error).mean())


# The released bugs as flags, delays, schedules ------------------------------------------------------------------------
@pytest.mark.parametrize("double", [False, True])
def test_critic_adam_steps_per_update(double):
    agent = small_agent(double_critic_step=double)
    for step in range(3):
        agent.update(random_batch(step))
    steps = {float(state["step"]) for state in agent.critic_optimizer.state.values()}
    assert steps == {6.0 if double else 3.0}


def test_policy_and_targets_move_at_even_steps_from_the_first_update():
    agent = small_agent()
    set_critic_output(agent.critic, [2.0, 3.0])
    ema_before = [p.clone() for p in agent.policy_ema.parameters()]
    agent.update(random_batch(0))  # step 0: policy step and Polyak averaging, as the released step % 2 == 0
    assert agent.num_policy_updates == 1
    assert not all(torch.equal(a, b) for a, b in zip(ema_before, agent.policy_ema.parameters()))
    ema_after_first = [p.clone() for p in agent.policy_ema.parameters()]
    agent.update(random_batch(1))  # step 1: critic only
    assert agent.num_policy_updates == 1
    assert all(torch.equal(a, b) for a, b in zip(ema_after_first, agent.policy_ema.parameters()))
    agent.update(random_batch(2))
    assert agent.num_policy_updates == 2


def test_policy_learning_rate_decays_in_policy_updates():
    agent = small_agent(policy_lr_decay_begin=1, policy_lr_decay_end=3)
    lrs = []
    for step in range(8):  # policy steps at updates 0, 2, 4, 6 with 0, 1, 2, 3 earlier policy steps
        agent.update(random_batch(step))
        lrs.append(agent.policy_optimizer.param_groups[0]["lr"])
    assert lrs[0::2] == pytest.approx([3e-4, 3e-4, 1.75e-4, 5e-5])


def test_defaults_are_the_released_code_values_with_the_bugs_off_and_the_cosine_schedule():
    c = algorithms.resolve_config("qvpo", "Hopper-v5")
    assert (c.particles, c.eval_particles, c.target_particles, c.train_particles) == (32, 32, 32, 32)
    assert (c.diffusion_steps, c.beta_schedule, c.beta_schedule_scale, c.init_noise_scale) == (20, "cosine", 1.0, 0.5)
    assert (c.hidden, c.activation, c.reward_scale, c.weighting) == ((256, 256, 256), "mish", 0.2, "q_above_one")
    assert (c.entropy_actions, c.entropy_weight, c.entropy_weight_min, c.entropy_weight_horizon) == (10, 0.02, 0.002,
                                                                                                    200_000)
    assert (c.critic_lr, c.policy_lr, c.policy_lr_end, c.policy_lr_decay_begin, c.policy_lr_decay_end) == (
        3e-4, 3e-4, 5e-5, 25_000, 75_000)
    assert (c.policy_delay, c.target_update_every, c.tau, c.ema_tau, c.max_grad_norm) == (2, 2, 0.005, 0.005, 0.0)
    assert (c.target_action_from, c.act_with_ema) == ("online", True)
    assert not (c.weight_grad_leak or c.double_critic_step or c.entropy_obs_shuffle)


# Acting -------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("with_ema", [True, False])
def test_the_ema_policy_acts_unless_told_otherwise(with_ema):
    agent = small_agent(act_with_ema=with_ema)
    obs = np.random.default_rng(0).normal(size=(3, OBS_DIM)).astype(np.float32)
    before = agent.act(obs, deterministic=True)
    with torch.no_grad():
        for param in agent.policy.parameters():
            param.add_(0.5)
    moved = not np.allclose(before, agent.act(obs, deterministic=True))
    assert moved != with_ema


def test_interface_checks_with_every_released_bug_on():
    """The exact-resume and interface checks, with the three bug flags and the original's choices switched on
    (advantage weights so that the policy moves in a few updates, see test_agents.py)."""
    overrides = {**SMALL, "weighting": "advantage", "weight_grad_leak": True, "double_critic_step": True,
                 "entropy_obs_shuffle": True, "target_action_from": "target", "max_grad_norm": 2.0, "adam_eps": 1e-5}
    assert len(testing.check_agent("qvpo", overrides, obs_dim=OBS_DIM, act_dim=ACT_DIM)) == 4
