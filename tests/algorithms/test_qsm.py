"""QSM (algorithms/qsm.py): the regression target, the Langevin and DDPM chains, best-of-K, the lr schedule, the update
order, and the interface checks of both variants."""

import math

import pytest
import torch
from torch import nn

from algorithms import make_agent, testing
from algorithms.nets import CriticEnsemble
from algorithms.qsm import DDPMStep, QSMConfig, critic_action_gradient, ddpm_sample, langevin_sample, score_lr
from algorithms.diffusion import beta_schedule

OBS_DIM, ACT_DIM, BATCH = 4, 2, 16
SMALL = {"hidden": "32,32", "batch_size": BATCH, "particles": 4}
ORIGINAL = {"sampler": "ddpm", "particles": 1, "action_noise": 0.1, "q_grad_scale": 50.0,
            "score_target_critic": "mean", "score_activation": "mish"}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_agent(seed: int = 0, **overrides):
    return make_agent("qsm", OBS_DIM, ACT_DIM, {**SMALL, **overrides}, seed=seed)


class QuadraticCritic(nn.Module):
    """n known critics Q_j(s, a) = -w_j ||a - c_j||^2 + b_j . s, with the CriticEnsemble call convention ([n, B])."""

    def __init__(self, centers: torch.Tensor, widths: torch.Tensor, obs_weights: torch.Tensor) -> None:
        super().__init__()
        self.n = len(centers)
        self.centers, self.widths, self.obs_weights = centers, widths, obs_weights

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if obs.dim() == 2:
            obs, actions = obs.expand(self.n, *obs.shape), actions.expand(self.n, *actions.shape)
        squared = (actions - self.centers[:, None, :]).pow(2).sum(-1)
        return -self.widths[:, None] * squared + (obs * self.obs_weights[:, None, :]).sum(-1)

    def gradient(self, actions: torch.Tensor) -> torch.Tensor:
        """[n, B, |A|], by hand: -2 w_j (a - c_j)."""
        return -2 * self.widths[:, None, None] * (actions - self.centers[:, None, :])


def quadratic_critic() -> QuadraticCritic:
    g = torch.Generator().manual_seed(5)
    return QuadraticCritic(torch.rand(2, ACT_DIM, generator=g) * 2 - 1, torch.tensor([1.0, 3.0]),
                           torch.randn(2, OBS_DIM, generator=g))


# The regression target is the critic's action-gradient ------------------------------------------------------
def test_target_is_the_action_gradient_of_the_smaller_critic_on_a_known_critic():
    critic, batch = quadratic_critic(), testing.random_batch(OBS_DIM, ACT_DIM, 256, seed=1)
    grads, q = critic_action_gradient(critic, batch.obs, batch.actions, "min")
    by_hand = critic.gradient(batch.actions)
    smaller = critic(batch.obs, batch.actions).argmin(0)
    assert 0 < int(smaller.sum()) < 256  # both critics are the smaller one somewhere: the choice is tested
    torch.testing.assert_close(grads, by_hand[smaller, torch.arange(256)])
    torch.testing.assert_close(q, critic(batch.obs, batch.actions))
    mean, _ = critic_action_gradient(critic, batch.obs, batch.actions, "mean")
    torch.testing.assert_close(mean, by_hand.mean(0))


def test_target_matches_torch_autograd_on_a_network_critic_member_by_member():
    torch.manual_seed(0)
    critic = CriticEnsemble(OBS_DIM, ACT_DIM, (32, 32), n=3)
    batch = testing.random_batch(OBS_DIM, ACT_DIM, 64, seed=2)
    grads, q = critic_action_gradient(critic, batch.obs, batch.actions, "min")
    per_member = []
    for j in range(3):  # each member on its own: Q_j summed over the batch, differentiated by torch.autograd
        actions = batch.actions.clone().requires_grad_(True)
        per_member.append(torch.autograd.grad(critic(batch.obs, actions)[j].sum(), actions)[0])
    per_member = torch.stack(per_member)
    smaller = critic(batch.obs, batch.actions).argmin(0)
    torch.testing.assert_close(grads, per_member[smaller, torch.arange(64)])
    assert all(p.grad is None for p in critic.parameters())  # the critic's own gradients are untouched


def test_agent_regresses_on_the_gradient_at_replay_actions_langevin_and_minus_mq_at_noised_actions_ddpm():
    batch = testing.random_batch(OBS_DIM, ACT_DIM, BATCH, seed=3)
    agent = small_agent()
    agent.critic = quadratic_critic()
    inputs, target, k = agent.score_target(batch.obs, batch.actions)
    assert k is None and torch.equal(inputs, batch.actions)
    smaller = agent.critic(batch.obs, batch.actions).argmin(0)
    torch.testing.assert_close(target, agent.critic.gradient(batch.actions)[smaller, torch.arange(BATCH)])

    original = small_agent(**ORIGINAL)
    original.critic = quadratic_critic()
    noisy, target, k = original.score_target(batch.obs, batch.actions)
    assert k is not None and not torch.allclose(noisy, batch.actions)
    torch.testing.assert_close(target, -50.0 * original.critic.gradient(noisy).mean(0))


# The Langevin chain ----------------------------------------------------------------------------------------
def test_one_langevin_step_has_the_released_form():
    """T = 1: x1 = clip(x0 + (1/2) psi(x0) + 1 * xi, -1, 1) with x0 and xi drawn in that order (langevin.py:17-31)."""
    score = lambda x, j: 3.0 * torch.ones_like(x) - x  # noqa: E731
    sample = langevin_sample(score, 500, ACT_DIM, 1, torch.Generator().manual_seed(0), torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    x0, xi = torch.randn(500, ACT_DIM, generator=g), torch.randn(1, 500, ACT_DIM, generator=g)[0]
    torch.testing.assert_close(sample, (x0 + 0.5 * (3.0 - x0) + xi).clamp(-1, 1))
    # T = 4: step sizes 1, 3/4, 1/2, 1/4 and noise std their square roots; a zero score is a clipped random walk.
    walk = langevin_sample(lambda x, j: torch.zeros_like(x), 500, ACT_DIM, 4, torch.Generator().manual_seed(1),
                           torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    x, noise = torch.randn(500, ACT_DIM, generator=g), torch.randn(4, 500, ACT_DIM, generator=g)
    for j, delta in enumerate((1.0, 0.75, 0.5, 0.25)):
        x = (x + math.sqrt(delta) * noise[j]).clamp(-1, 1)
    torch.testing.assert_close(walk, x)


def test_langevin_chain_of_the_agent_climbs_a_known_quadratic_q():
    """With the score network replaced by the oracle grad_a Q of Q(a) = -||a - a*||^2 / (2 * 0.1), the agent's
    20-step chain ends near a* (its target exp(Q) is N(a*, 0.1 I)), far closer than the N(0, I) start."""
    agent = small_agent(particles=1)
    goal = torch.tensor([0.4, -0.3])
    agent.score.field = lambda obs, particles: (lambda x, j: -(x - goal) / 0.1)
    obs = torch.zeros(2000, OBS_DIM)
    samples = agent.sample(obs, 1, torch.Generator().manual_seed(0)).squeeze(1)
    start = torch.randn(2000, ACT_DIM, generator=torch.Generator().manual_seed(0))
    q = lambda a: -(a - goal).pow(2).sum(-1) / 0.2  # noqa: E731
    assert float(q(samples).mean()) > 5 * float(q(start).mean())
    torch.testing.assert_close(samples.mean(0), goal, atol=0.05, rtol=0)
    distance = (samples - goal).norm(dim=-1).mean()
    assert float(distance) < 0.5, float(distance)  # E||N(0, 0.1 I_2)|| = 0.40
    # Without the oracle (zero score) the chain is a clipped random walk and does not find a*.
    agent.score.field = lambda obs, particles: (lambda x, j: torch.zeros_like(x))
    walk = agent.sample(obs, 1, torch.Generator().manual_seed(0)).squeeze(1)
    assert float((walk - goal).norm(dim=-1).mean()) > 1.5 * float(distance)


def test_score_net_field_is_the_forward_pass():
    agent = small_agent()
    obs, x = torch.randn(3, OBS_DIM), torch.rand(12, ACT_DIM) * 2 - 1
    expected = agent.score(obs.repeat_interleave(4, dim=0), x)
    with torch.no_grad():
        torch.testing.assert_close(agent.score.field(obs, 4)(x, 0), expected.detach())
    torch.testing.assert_close(agent.score.field(obs, 4)(x, 0), expected)


# The original's DDPM chain -------------------------------------------------------------------------------
def test_ddpm_step_is_the_original_iterate_clipped_ancestral_step():
    betas = beta_schedule("vp", 5)
    eps = lambda x, k: 0.3 * x + 0.1 * k  # noqa: E731
    sample = ddpm_sample(eps, DDPMStep(betas), 300, ACT_DIM, torch.Generator().manual_seed(0), torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    x, noise = torch.randn(300, ACT_DIM, generator=g), torch.randn(5, 300, ACT_DIM, generator=g)
    alpha_bar = torch.cumprod(1 - betas, 0)
    for k in reversed(range(5)):
        beta = float(betas[k])
        x = (x - beta / math.sqrt(1 - float(alpha_bar[k])) * eps(x, k)) / math.sqrt(1 - beta)
        x = (x + (math.sqrt(beta) * noise[k] if k > 0 else 0)).clamp(-1, 1)
    torch.testing.assert_close(sample, x)


# Best of K --------------------------------------------------------------------------------------------------
def test_best_of_32_picks_the_candidate_with_the_highest_min_q():
    agent = small_agent(particles=32)
    agent.critic = quadratic_critic()
    obs = torch.randn(8, OBS_DIM)
    candidates = torch.rand(8, 32, ACT_DIM, generator=torch.Generator().manual_seed(4)) * 2 - 1
    agent.sample = lambda obs_, particles, generator: candidates
    best = agent.best_action(obs, agent.generator)
    min_q = agent.critic(obs.repeat_interleave(32, 0), candidates.reshape(-1, ACT_DIM)).min(0).values.view(8, 32)
    chosen = min_q.argmax(1)
    torch.testing.assert_close(best, candidates[torch.arange(8), chosen])
    # Not simply the candidate best for one of the critics alone: the minimum over both decides somewhere.
    first_only = agent.critic(obs.repeat_interleave(32, 0), candidates.reshape(-1, ACT_DIM))[0].view(8, 32).argmax(1)
    assert not torch.equal(first_only, chosen)


# Learning rate, update order -------------------------------------------------------------------------------
def test_score_lr_follows_optax_linear_schedule_and_the_cosine_of_the_original():
    c = QSMConfig()
    values = [score_lr(n, c) for n in (0, 25_000, 50_000, 75_000, 200_000)]
    assert values == pytest.approx([3e-4, 3e-4, 1.65e-4, 3e-5, 3e-5])
    cosine = QSMConfig(score_lr_schedule="cosine", score_lr_end=0.0, score_lr_decay_begin=0,
                       score_lr_decay_end=2_000_000)
    assert [score_lr(n, cosine) for n in (0, 1_000_000, 2_000_000, 3_000_000)] == pytest.approx([3e-4, 1.5e-4, 0, 0])
    assert score_lr(60_000, QSMConfig(score_lr_schedule="constant")) == 3e-4
    agent = small_agent()
    agent.num_updates = 50_000
    agent.update(testing.random_batch(OBS_DIM, ACT_DIM, BATCH, seed=0))
    assert agent.score_optimizer.param_groups[0]["lr"] == pytest.approx(1.65e-4)


def test_target_action_uses_the_pre_update_critics_and_the_score_target_the_updated_ones():
    agent = small_agent()
    before = [p.detach().clone() for p in agent.critic.parameters()]
    seen = {}
    best_action, score_target = agent.best_action, agent.score_target

    def record(name, call):
        def wrapped(*args):
            seen[name] = [p.detach().clone() for p in agent.critic.parameters()]
            return call(*args)
        return wrapped

    agent.best_action, agent.score_target = record("target", best_action), record("score", score_target)
    agent.update(testing.random_batch(OBS_DIM, ACT_DIM, BATCH, seed=0))
    after = list(agent.critic.parameters())
    assert all(torch.equal(a, b) for a, b in zip(seen["target"], before))
    assert all(torch.equal(a, b) for a, b in zip(seen["score"], after))
    assert not all(torch.equal(a, b) for a, b in zip(before, after))


# Interface ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides", [{}, ORIGINAL], ids=["langevin", "ddpm"])
def test_interface_checks_pass_for_both_variants(overrides):
    testing.check_agent("qsm", {"hidden": "32,32", "batch_size": BATCH, "particles": 4, **overrides},
                        obs_dim=OBS_DIM, act_dim=ACT_DIM)


def test_cpu_smoke_block_cuts_only_the_particles():
    from algorithms.base import CONFIG_DIR
    from algorithms.config import read_yaml, to_dict
    import algorithms
    block = read_yaml(CONFIG_DIR / "cpu-smoke.yaml")["qsm"]
    cheap, paper = algorithms.resolve_config("qsm", None, block), algorithms.resolve_config("qsm", None)
    assert cheap.particles < paper.particles
    assert {k for k, v in to_dict(cheap).items() if to_dict(paper)[k] != v} == {"particles"}
