"""SPiRL's closed-loop skill model and skill prior (SiMPL §4.1, eq. 3; Pertsch et al. 2020).

From task-agnostic offline episodes, random windows of H+1 states and H actions train jointly
- a skill encoder q(z | s_0:H-1, a_0:H-1): an LSTM over the (action, state) pairs of the window,
- a closed-loop skill decoder pi(a_t | s_t, z): an MLP on (s_t, z), behavioural cloning (unit-variance Gaussian
  NLL, i.e. MSE),
- a beta-weighted KL of q to N(0, I)                                   (eq. 3),
- a skill prior p(z | s_0): an MLP trained on the log-likelihood of the encoder's sample z with the gradient
  stopped into the encoder (SPiRL's `nll_prior_train`).

At RL time (SPiRL, MTRL, SiMPL) the model is frozen in eval mode: the decoder is deterministic (its mean; the
reference implementation fixes its std to a tiny value), and one high-level step runs the decoder for H env
steps (`run_skill`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from methods.common.nets import frozen_forward, gaussian_kl, mlp, numpy_mlp_forward

LOG_STD_MIN, LOG_STD_MAX = -10.0, 4.0  # keeps exp(log std) finite; far outside what training reaches


@dataclass
class SkillModelConfig:
    """Paper-scale defaults: SPiRL's closed-loop kitchen model (`configs/skill_prior_learning/kitchen/hierarchical_cl`).

    Maze overrides (beta, decoder size, schedule) live in `methods/skills.py` (MAZE_SETTINGS)."""

    horizon: int = 10  # H: env steps per skill; windows hold H+1 states and H actions
    z_dim: int = 10  # dim z (SPiRL nz_vae)
    encoder_lstm_units: int = 128  # SPiRL nz_mid_lstm (one LSTM layer; nz_enc 128)
    hidden_dim: int = 128  # width of the decoder and prior MLPs (SPiRL nz_mid / nz_mid_prior)
    # SPiRL "processing layers": the MLP has an input layer, this many width->width layers, and a linear head,
    # i.e. layers + 1 hidden layers. Kitchen 5; maze: see methods/skills.py (scale_settings).
    decoder_layers: int = 5
    prior_layers: int = 6  # SPiRL num_prior_net_layers
    beta: float = 5e-4  # weight of KL(q || N(0, I)) in eq. 3 (kitchen 5e-4; maze: see methods/skills.py)
    lr: float = 1e-3  # RAdam
    batch_size: int = 128  # windows per gradient step
    # SPiRL clips the gradient norm to 1e-3 during the first 100 steps "to avoid NaNs" (spirl/train.py).
    init_grad_clip: float = 1e-3
    init_grad_clip_steps: int = 100
    # Length of training. None: SPiRL's schedule, epochs x epoch_cycles passes over an epoch of windows, where an
    # epoch is n_train_transitions / (H+1) windows ("transitions": SPiRL's D4RL/kitchen loader) or one window per
    # train episode ("episodes": SPiRL's maze loader). Kitchen: 100 x 50 (kitchen/hierarchical_cl).
    n_steps: int | None = None
    epochs: int = 100
    epoch_cycles: int = 50
    epoch_unit: str = "transitions"
    heldout_fraction: float = 0.1  # episodes held out for the reconstruction metric (SPiRL holds out 1%)
    n_eval_windows: int = 2048  # held-out windows per evaluation (fixed set)
    eval_every: int = 1000  # gradient steps between held-out evaluations (the prior-KL trajectory)
    checkpoint_every: int = 2000  # gradient steps between resumable checkpoints

    def total_steps(self, n_train_transitions: int, n_train_episodes: int) -> int:
        if self.n_steps is not None:
            return int(self.n_steps)
        if self.epoch_unit not in ("transitions", "episodes"):
            raise ValueError(f"epoch_unit {self.epoch_unit!r} is not 'transitions' or 'episodes'")
        windows_per_epoch = n_train_transitions / (self.horizon + 1) if self.epoch_unit == "transitions" \
            else n_train_episodes
        return max(1, math.ceil(self.epochs * self.epoch_cycles * windows_per_epoch / self.batch_size))


def _spirl_mlp(in_dim: int, out_dim: int, hidden_dim: int, processing_layers: int) -> nn.Sequential:
    """SPiRL's MLP ("Predictor"): LeakyReLU(0.2) and BatchNorm between hidden layers, linear head.

    SPiRL leaves BatchNorm off its first (input) layer; the shared builder puts it after every hidden layer."""
    return mlp(in_dim, out_dim, hidden_dim=hidden_dim, n_hidden=processing_layers + 1, activation=nn.LeakyReLU,
               batch_norm=True, activation_kwargs={"negative_slope": 0.2})


class SkillEncoder(nn.Module):
    """q(z | s_0:H-1, a_0:H-1): embed -> one-layer LSTM -> last output -> linear -> (mean, log std)."""

    def __init__(self, obs_dim: int, act_dim: int, z_dim: int, units: int):
        super().__init__()
        self.embed = nn.Linear(act_dim + obs_dim, units)
        self.lstm = nn.LSTM(units, units, batch_first=True)
        self.head = nn.Linear(units, 2 * z_dim)
        # forget-gate bias 1 (SPiRL's LSTM cell init); PyTorch orders the gates (input, forget, cell, output)
        with torch.no_grad():
            for name, p in self.lstm.named_parameters():
                if name.startswith("bias_ih"):
                    p[units:2 * units].fill_(1.0)

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """states (B, H+1, obs_dim), actions (B, H, act_dim) -> mean, std of q, each (B, z_dim)."""
        x = torch.cat([actions, states[:, :-1]], dim=-1)  # SPiRL pairs a_t with s_t (closed-loop model)
        out, _ = self.lstm(self.embed(x))
        mean, log_std = self.head(out[:, -1]).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()


class SkillModel(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, config: SkillModelConfig | None = None):
        super().__init__()
        self.config = cfg = config or SkillModelConfig()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.encoder = SkillEncoder(obs_dim, act_dim, cfg.z_dim, cfg.encoder_lstm_units)
        self.decoder = _spirl_mlp(obs_dim + cfg.z_dim, act_dim, cfg.hidden_dim, cfg.decoder_layers)
        self.prior = _spirl_mlp(obs_dim, 2 * cfg.z_dim, cfg.hidden_dim, cfg.prior_layers)
        # States are standardised with the training data's statistics before every network (not in SPiRL, whose
        # kitchen states are small): maze positions reach ~20 and would saturate the LSTM. Saved with the weights.
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))

    def set_obs_normalizer(self, observations: torch.Tensor) -> None:
        self.obs_mean.copy_(observations.mean(0))
        self.obs_std.copy_(observations.std(0).clamp_min(1e-3))

    def _norm(self, states: torch.Tensor) -> torch.Tensor:
        return (states - self.obs_mean) / self.obs_std

    @property
    def horizon(self) -> int:
        return self.config.horizon

    @property
    def z_dim(self) -> int:
        return self.config.z_dim

    # --- pieces ------------------------------------------------------------------------------------------
    def encode(self, states: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(self._norm(states), actions)

    def _prior(self, states: torch.Tensor,
               net: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = (net or self.prior)(self._norm(states)).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()

    def decode(self, states: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Mean actions for states (B, T, obs_dim) and one z (B, z_dim) per sequence -> (B, T, act_dim)."""
        b, t, _ = states.shape
        x = torch.cat([self._norm(states), z[:, None].expand(b, t, z.shape[-1])], dim=-1)
        return self.decoder(x.reshape(b * t, -1)).reshape(b, t, self.act_dim)

    # --- training loss (eq. 3 + the prior's loss) ----------------------------------------------------------
    def loss_terms(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The loss terms, with their graphs. batch: states (B, H+1, obs_dim), actions (B, H, act_dim)."""
        states, actions = batch["states"], batch["actions"]
        mu_q, std_q = self.encode(states, actions)
        z = mu_q + std_q * torch.randn_like(mu_q)  # reparameterised sample of q
        pred = self.decode(states[:, :-1], z)  # closed loop: a_t from (s_t, z)
        # skill prior p(z | s_0): log-likelihood of the encoder's sample, gradient stopped into q
        # (SPiRL's nll_prior_train)
        mu_p, std_p = self._prior(states[:, 0])
        z_sg = z.detach()
        prior_nll = (0.5 * ((z_sg - mu_p) / std_p).square() + std_p.log() + 0.5 * math.log(2 * math.pi)).sum(-1)
        return {
            "reconstruction_mse": (pred - actions).square().mean(),
            "kl_to_unit": gaussian_kl(mu_q, std_q, torch.zeros_like(mu_q), torch.ones_like(std_q)).mean(),
            "prior_nll": prior_nll.mean(),
            # KL(q || p), q held fixed: how well the prior matches the encoder (reported, not optimised)
            "prior_kl": gaussian_kl(mu_q.detach(), std_q.detach(), mu_p, std_p).mean(),
        }

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Eq. 3 + the prior's loss. Returns scalars; "loss" (the only one with a graph) is what to minimise."""
        t = self.loss_terms(batch)
        # eq. 3: unit-variance Gaussian NLL of the actions (= MSE / 2 up to a constant, averaged per action element
        # as SPiRL does) + beta * KL(q || N(0, I)) (summed over z, averaged over windows); plus the prior's NLL
        loss = 0.5 * t["reconstruction_mse"] + self.config.beta * t["kl_to_unit"] + t["prior_nll"]
        return {"loss": loss, **{k: v.detach() for k, v in t.items()}}

    # --- RL-time interface (frozen model) ------------------------------------------------------------------
    def freeze(self) -> "SkillModel":
        """Eval mode (BatchNorm running statistics) and no gradients: how SPiRL, MTRL and SiMPL use it."""
        self.eval()
        self.requires_grad_(False)
        return self

    def _frozen(self, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
        """The frozen decoder's or prior's forward without nn.Module's per-call overhead (`nets.frozen_forward`,
        bit-identical), built on first use. Callers check that the model is frozen."""
        cache = self.__dict__.setdefault("_frozen_forwards", {})
        if name not in cache:
            cache[name] = frozen_forward(getattr(self, name))
        return cache[name]

    def numpy_decoder(self) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """The frozen decoder's mean action as float32 numpy matmuls: f(states (n, obs_dim), z (n, z_dim)) ->
        actions (n, act_dim). Callers check that the model is frozen.

        Why: acting decodes one to a few rows per env step, where torch's per-op dispatch is nearly all of the cost
        (`decode_action` ~110 µs per call on the maze decoder's 13 layers, numpy ~15 µs), and a target-task
        learner decodes on every one of its ~10^5 env steps. The same function up to float32 rounding: the state
        standardisation and the eval-mode BatchNorms are affine, so they are folded (in float64) into the Linear
        layer next to them. Rebuilt when any decoder tensor changes in place (load_state_dict, an optimiser step),
        which torch counts in each tensor's `_version`."""
        return self._numpy_mlp("decoder")

    def numpy_prior(self) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """`prior_dist` as float32 numpy matmuls (`numpy_decoder`'s folding and rebuild rule): f(states (n, obs_dim))
        -> (mean, std), each (n, z_dim).

        Why: a skill-space learner runs the prior on one state per high-level step to act, and a loop that stores
        each transition as it comes (SB3's schedule, `harness.bench --method spirl`) once more; in torch each call
        of the prior's 7 layers at batch 1 costs ~140 µs of dispatch, in numpy ~20 µs."""
        self._check_frozen()  # the folding reads BatchNorm's running statistics
        net, z_dim = self._numpy_mlp("prior"), self.z_dim

        def prior(states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            out = net(states)
            log_std = np.minimum(np.maximum(out[:, z_dim:], LOG_STD_MIN), LOG_STD_MAX)  # np.clip: 3x the overhead
            return out[:, :z_dim], np.exp(log_std, out=log_std)
        return prior

    def _numpy_mlp(self, name: str) -> Callable[..., np.ndarray]:
        """The frozen mlp `name` (decoder or prior) folded into numpy (`_fold_numpy_mlp`), cached until one of its
        tensors changes."""
        cache = self.__dict__.setdefault("_frozen_forwards", {})
        tensors_key = f"numpy_{name}_tensors"
        if tensors_key not in cache:  # listed once: walking the modules costs more than decoding
            net = getattr(self, name)
            cache[tensors_key] = [*net.parameters(), *net.buffers(), self.obs_mean, self.obs_std]
        key = tuple(t._version for t in cache[tensors_key])
        if cache.get(f"numpy_{name}_key") != key:
            cache[f"numpy_{name}"] = _fold_numpy_mlp(getattr(self, name), self.obs_mean, self.obs_std)
            cache[f"numpy_{name}_key"] = key
        return cache[f"numpy_{name}"]

    def __getstate__(self) -> dict[str, Any]:  # copies and pickles rebuild the cache on their own tensors
        state = dict(self.__dict__)
        state.pop("_frozen_forwards", None)
        return state

    def _check_frozen(self) -> None:
        if self.training:
            raise RuntimeError("the skill model is in training mode; call model.freeze() (or load_skill_model) first")

    @torch.no_grad()
    def prior_dist(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(z | s): (mean, std), each (..., z_dim), for states (..., obs_dim)."""
        self._check_frozen()
        lead = states.shape[:-1]
        mean, std = self._prior(states.reshape(-1, self.obs_dim), self._frozen("prior"))
        return mean.reshape(*lead, -1), std.reshape(*lead, -1)

    def prior_skill(self, state: np.ndarray | torch.Tensor, deterministic: bool = False,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """One skill from p(z | s) for one state (obs_dim,): a sample (from `generator`, else torch's global RNG) or,
        `deterministic`, the prior's mean. (z_dim,)"""
        mean, std = self.prior_dist(torch.as_tensor(state, dtype=torch.float32))
        return mean if deterministic else mean + std * torch.randn(mean.shape, generator=generator)

    @torch.no_grad()
    def decode_action(self, state: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Deterministic low-level action (the decoder's mean) for state (..., obs_dim) and z (..., z_dim)."""
        self._check_frozen()
        lead = state.shape[:-1]
        x = torch.cat([self._norm(state.reshape(-1, self.obs_dim)), z.reshape(-1, self.z_dim)], dim=-1)
        return self._frozen("decoder")(x).reshape(*lead, self.act_dim)


def _fold_numpy_mlp(net: nn.Sequential, obs_mean: torch.Tensor,
                    obs_std: torch.Tensor) -> Callable[..., np.ndarray]:
    """A frozen SPiRL mlp on [standardised state, z] (no z for the prior) as numpy: (W, b, leaky slope) per
    Linear, with the input standardisation folded into the first Linear and each eval-mode BatchNorm into the Linear
    before it."""
    layers: list[list] = []  # [W (out, in), b (out,), slope or None], float64 while folding
    for m in net:
        if isinstance(m, nn.Linear):
            layers.append([m.weight.detach().double().cpu().numpy(), m.bias.detach().double().cpu().numpy(), None])
        elif isinstance(m, nn.BatchNorm1d) and not m.training and m.track_running_stats:
            scale = (m.weight.detach().double() / (m.running_var.double() + m.eps).sqrt()).cpu().numpy()
            shift = m.bias.detach().double().cpu().numpy() - m.running_mean.double().cpu().numpy() * scale
            w, b, _ = layers[-1]
            layers[-1][:2] = [w * scale[:, None], b * scale + shift]
        elif isinstance(m, nn.LeakyReLU) and 0.0 <= m.negative_slope <= 1.0:
            layers[-1][2] = float(m.negative_slope)
        elif isinstance(m, nn.ReLU):
            layers[-1][2] = 0.0
        else:
            raise TypeError(f"numpy decoder: {type(m).__name__} (training={m.training}) is not a frozen mlp layer")
    mean, std = obs_mean.double().cpu().numpy(), obs_std.double().cpu().numpy()
    w, b, slope = layers[0]
    d = len(mean)  # (s − mean)/std feeds the first d inputs: W·[(s − m)/σ; z] + b = [W_s/σ, W_z]·[s; z] + b − W_s·m/σ
    layers[0][:2] = [np.concatenate([w[:, :d] / std, w[:, d:]], axis=1), b - w[:, :d] @ (mean / std)]
    folded = [(np.ascontiguousarray(w.T, dtype=np.float32), b.astype(np.float32), slope) for w, b, slope in layers]

    def forward(states: np.ndarray, z: np.ndarray | None = None) -> np.ndarray:
        x = np.asarray(states, dtype=np.float32)
        if z is not None:
            x = np.concatenate([x, np.asarray(z, dtype=np.float32)], axis=-1)
        return numpy_mlp_forward(x, folded)

    return forward


def run_skill(env: Any, obs: np.ndarray, z: np.ndarray | torch.Tensor,
              model: SkillModel) -> tuple[np.ndarray, float, bool, bool, dict, int]:
    """One high-level step: run the frozen decoder with skill z for H env steps (fewer if the episode ends).

    Returns (next_obs, summed reward, terminated, truncated, last info, env steps taken)."""
    return run_skills([env], [obs], z, model)[0]


def run_skills(envs: Sequence[Any], obs: Sequence[np.ndarray], z: np.ndarray | torch.Tensor,
               model: SkillModel) -> list[tuple[np.ndarray, float, bool, bool, dict, int]]:
    """`run_skill` in several envs in lockstep, env i with skill z[i] (z: (n, z_dim)): each env step is one decoder
    call on the batch of envs whose skill is still running (an env drops out when its episode ends). The decoder
    runs in numpy on the CPU (`SkillModel.numpy_decoder`), wherever the learner's networks live.

    Returns `run_skill`'s tuple per env."""
    n = len(envs)
    model._check_frozen()
    decode = model.numpy_decoder()  # acting decodes a few rows per env step: numpy, not torch (numpy_decoder)
    z = (z.detach().cpu().numpy() if isinstance(z, torch.Tensor) else np.asarray(z)).reshape(n, model.z_dim)
    bounds = [(env.action_space.low, env.action_space.high) for env in envs]  # once: a wrapper chain lookup
    obs, total = list(obs), [0.0] * n
    ended, info, steps = [(False, False)] * n, [{}] * n, [0] * n
    running = list(range(n))
    for _ in range(model.horizon):
        states = obs[running[0]][None] if len(running) == 1 else np.stack([obs[i] for i in running])
        actions = decode(states, z[running] if len(running) < n else z)
        still = []
        for i, action in zip(running, actions):
            obs[i], reward, terminated, truncated, info[i] = envs[i].step(np.clip(action, *bounds[i]))
            total[i] += float(reward)
            steps[i] += 1
            ended[i] = (bool(terminated), bool(truncated))
            if not (terminated or truncated):
                still.append(i)
        running = still
        if not running:
            break
    return [(obs[i], total[i], *ended[i], info[i], steps[i]) for i in range(n)]


# --- offline data as tensors, windows gathered by index --------------------------------------------------------
class WindowSampler:
    """Random crops of H+1 states and H actions from a set of episodes held as two flat tensors.

    As SPiRL's loader: pick an episode uniformly, then a crop uniformly within it. Episodes shorter than H
    actions are skipped."""

    def __init__(self, episodes: Sequence[tuple[np.ndarray, np.ndarray]], horizon: int,
                 device: torch.device | str = "cpu"):
        self.horizon = horizon
        usable = [(o, a) for o, a in episodes if len(a) >= horizon]
        if not usable:
            raise ValueError(f"no episode has at least {horizon} actions: the offline data is too short for skills "
                             f"of length {horizon}")
        self.n_episodes = len(usable)
        self.n_transitions = sum(len(a) for _, a in usable)
        self.obs = torch.as_tensor(np.concatenate([o for o, _ in usable]), dtype=torch.float32, device=device)
        self.actions = torch.as_tensor(np.concatenate([a for _, a in usable]), dtype=torch.float32, device=device)
        lengths = np.array([len(a) for _, a in usable])
        self.act_start = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        self.obs_start = self.act_start + np.arange(len(usable))  # each episode has one more observation
        self.n_crops = lengths - horizon + 1
        self._steps = torch.arange(horizon + 1, device=device)

    def sample(self, rng: np.random.Generator, batch_size: int) -> dict[str, torch.Tensor]:
        ep = rng.integers(self.n_episodes, size=batch_size)
        t = (rng.random(batch_size) * self.n_crops[ep]).astype(np.int64)
        return self.gather(ep, t)

    def gather(self, ep: np.ndarray, t: np.ndarray) -> dict[str, torch.Tensor]:
        dev = self.obs.device
        o = torch.as_tensor(self.obs_start[ep] + t, device=dev)[:, None] + self._steps
        a = torch.as_tensor(self.act_start[ep] + t, device=dev)[:, None] + self._steps[:-1]
        return {"states": self.obs[o], "actions": self.actions[a]}


def episodes_from_dataset(dataset: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """(observations (T+1, obs_dim), actions (T, act_dim)) float32 pairs from a Minari dataset (or any iterable of
    episodes with `.observations` and `.actions`)."""
    it: Iterable[Any] = dataset.iterate_episodes() if hasattr(dataset, "iterate_episodes") else dataset
    episodes = []
    for ep in it:
        obs, act = np.asarray(ep.observations, dtype=np.float32), np.asarray(ep.actions, dtype=np.float32)
        if obs.ndim != 2 or act.ndim != 2 or len(obs) != len(act) + 1:
            raise ValueError(f"offline episode with observations {obs.shape} and actions {act.shape}: expected "
                             f"(T+1, obs_dim) and (T, act_dim) flat arrays; regenerate the dataset")
        episodes.append((obs, act))
    if not episodes:
        raise ValueError("the offline dataset has no episodes; regenerate it")
    return episodes


def split_episodes(episodes: list, heldout_fraction: float, rng: np.random.Generator) -> tuple[list, list]:
    """(train, held-out) episode lists; at least one held-out episode when there are two or more."""
    n = len(episodes)
    n_held = min(n - 1, max(1, round(heldout_fraction * n))) if n > 1 and heldout_fraction > 0 else 0
    order = rng.permutation(n)
    held = set(order[:n_held].tolist())
    return [e for i, e in enumerate(episodes) if i not in held], [e for i, e in enumerate(episodes) if i in held]


@torch.no_grad()
def evaluate(model: SkillModel, windows: dict[str, torch.Tensor], mean_action: torch.Tensor,
             chunk: int = 1024) -> dict[str, float]:
    """Held-out metrics (model in eval mode): reconstruction MSE with z = mean of q, the mean-action baseline's
    MSE, KL(q || N(0, I)) and the prior's KL(q || p)."""
    was_training = model.training
    model.eval()
    sums = {"reconstruction_mse": 0.0, "mean_action_baseline_mse": 0.0, "kl_to_unit": 0.0, "prior_kl": 0.0}
    n = windows["states"].shape[0]
    for i in range(0, n, chunk):
        s, a = windows["states"][i:i + chunk], windows["actions"][i:i + chunk]
        mu_q, std_q = model.encode(s, a)
        mu_p, std_p = model._prior(s[:, 0])
        m = s.shape[0]
        sums["reconstruction_mse"] += (model.decode(s[:, :-1], mu_q) - a).square().mean().item() * m
        sums["mean_action_baseline_mse"] += (mean_action - a).square().mean().item() * m
        sums["kl_to_unit"] += gaussian_kl(mu_q, std_q, torch.zeros_like(mu_q), torch.ones_like(std_q)).mean().item() * m
        sums["prior_kl"] += gaussian_kl(mu_q, std_q, mu_p, std_p).mean().item() * m
    model.train(was_training)
    return {k: v / n for k, v in sums.items()}


def load_skill_model(obj: dict[str, Any], device: torch.device | str = "cpu") -> SkillModel:
    """The frozen (eval-mode, no-grad) SkillModel from a `skills` stage artifact (`ctx.load_artifact("skills",
    "skill_model")` or `harness.context.load_checked(path)`)."""
    missing = [k for k in ("config", "obs_dim", "act_dim", "state_dict") if k not in obj]
    if missing:
        raise ValueError(f"not a skill-model artifact (missing {', '.join(missing)}); rerun the 'skills' stage")
    known = {f.name for f in fields(SkillModelConfig)}
    cfg = SkillModelConfig(**{k: v for k, v in obj["config"].items() if k in known})
    model = SkillModel(int(obj["obs_dim"]), int(obj["act_dim"]), cfg)
    model.load_state_dict(obj["state_dict"])
    return model.to(device).freeze()


def artifact(model: SkillModel, metrics: dict[str, Any]) -> dict[str, Any]:
    """What the `skills` stage saves: enough to rebuild the model without this run's config object."""
    return {"config": asdict(model.config), "obs_dim": model.obs_dim, "act_dim": model.act_dim,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "metrics": metrics}
