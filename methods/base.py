"""What a method is, and the registry the harness expands `--methods` from.

A method module defines a config dataclass (paper-scale defaults, appendix values with equation/section
comments), the per-scale reductions, and `run(ctx)`, which trains and evaluates one (suite, seed) job through
a `harness.context.JobContext`. Shared prerequisites (the skill model) are *stages*: registered like methods
but hidden from `all`; a method lists the stages it needs and the harness runs each once per job key and seed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import yaml

if TYPE_CHECKING:
    from harness.context import JobContext
    from tasks import Suite

SCALES = ("smoke", "small", "paper")
SMALL_SCALE_FILE = Path(__file__).with_name("small_scale.yaml")


@functools.cache
def _small_scale_file() -> dict[str, dict[str, Any]]:
    with open(SMALL_SCALE_FILE) as f:
        return yaml.safe_load(f)


def small_scale(method: str) -> dict[str, Any]:
    """The `small` scale's settings for `method`: methods/small_scale.yaml, where every reduction relative to the
    paper is written down once, with its reason."""
    return dict(_small_scale_file().get(method) or {})


@dataclass(frozen=True)
class MethodSpec:
    name: str
    description: str  # one line for `--list`
    config_cls: type  # a dataclass whose defaults are the paper-scale settings
    run: Callable[["JobContext"], None]
    # scale, suite -> field overrides on top of the dataclass defaults (domain-specific paper values too)
    scale_settings: Callable[[str, "Suite"], dict[str, Any]] = lambda scale, suite: {}
    needs: tuple[str, ...] = ("target_tasks",)  # what the suite must provide (tasks.NEEDS)
    prerequisites: tuple[str, ...] = ()  # stage names whose artifacts run() loads via ctx.artifact(name)
    stage: bool = False  # a shared prerequisite (e.g. "skills"), not a method of the comparison
    # A stage's result is shared by every suite whose share_key(suite) is equal (e.g. the offline dataset).
    share_key: Callable[["Suite"], str] | None = None
    conditioning_episodes: int = 0  # target-task episodes spent before learning (drawn as a dotted line)
    # A sharded stage runs as n_shards(suite) parallel jobs per seed (e.g. one per meta-train task); the jobs that
    # need it load each shard's artifact with ctx.load_artifact(stage, name, shard=i).
    n_shards: Callable[["Suite"], int] | None = None

    def resolve_config(self, scale: str, suite: "Suite", overrides: dict[str, Any] | None = None) -> Any:
        """The dataclass instance for this scale and suite, with `overrides` (field -> value) applied."""
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r}; choose one of: {', '.join(SCALES)}")
        values = dict(self.scale_settings(scale, suite))
        values.update(overrides or {})
        return dataclasses.replace(self.config_cls(), **values)

    def field_names(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self.config_cls)]


class UnknownMethodError(KeyError):
    pass


# The values each numeric setting may take, by field name (one meaning per name across the methods' configs).
# Every int and float field of a registered method's config has a rule here (tests/test_harness.py checks it); a
# resolved config that breaks one is refused before anything runs (harness.grid.build_grid).
_RULES: dict[str, tuple[str, Callable[[float], bool]]] = {
    "positive": ("a finite number > 0", lambda v: math.isfinite(v) and v > 0),
    "non-negative": ("a finite number >= 0", lambda v: math.isfinite(v) and v >= 0),
    "unit": ("in (0, 1]", lambda v: 0 < v <= 1),  # discount, Polyak rate
    "fraction": ("in [0, 1)", lambda v: 0 <= v < 1),
    "finite": ("a finite number", lambda v: math.isfinite(v)),
}
SETTING_RULES: dict[str, str] = {
    **dict.fromkeys((
        # sizes, counts and intervals (PEARL's initial and prior episodes are what fill its task buffers)
        "batch_size", "buffer_size", "checkpoint_every", "conditioning_episodes", "context_size", "decoder_layers",
        "e_dim", "encoder_buffer_size", "encoder_heads", "encoder_hidden_dim", "encoder_inducing",
        "encoder_lstm_units", "episodes", "epoch_cycles", "epochs", "eval_every", "hidden_dim", "horizon",
        "initial_episodes", "iterations", "meta_train_episodes", "n_eval_episodes", "n_eval_windows", "n_post_tasks",
        "n_prior_tasks", "n_steps", "post_context_size", "prior_context_size", "prior_episodes", "prior_layers",
        "reuse_rate", "rollout_episodes", "tasks_per_iteration", "tasks_per_step", "z_dim",
        # step sizes, and coefficients kept as logarithms or used as clip bounds
        "lr", "alpha_lr", "coef_lr", "alpha_init", "alpha_init_large", "alpha_init_small", "enc_coef_init_large",
        "enc_coef_init_small", "kl_clip", "init_grad_clip"), "positive"),
    **dict.fromkeys((
        "n_hidden", "encoder_n_hidden", "learning_starts", "n_probe_episodes", "posterior_episodes",
        "init_grad_clip_steps", "beta", "kl_lambda", "target_kl", "target_kl_large", "target_kl_small",
        "enc_target_kl_large", "enc_target_kl_small"), "non-negative"),
    "gamma": "unit", "tau": "unit",
    "heldout_fraction": "fraction",
    "target_entropy_per_dim": "finite",
}


def setting_problems(config: Any) -> dict[tuple[str, ...], str]:
    """(fields) -> 'FIELD=VALUE: must be RULE' for every numeric field of a config dataclass outside its range
    (SETTING_RULES; fields without a rule, e.g. a plugin's, and None values are not checked), then a sentence for
    each pair of settings that cannot go together."""
    problems = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in SETTING_RULES and isinstance(value, (int, float)) and not isinstance(value, bool):
            text, ok = _RULES[SETTING_RULES[f.name]]
            if not ok(value):
                problems[(f.name,)] = f"{f.name}={value}: must be {text}"
    if problems:  # the pairs below compare valid values only
        return problems
    # A target-task learner (a config with `episodes`) trains once its replay buffer holds a batch
    if all(hasattr(config, n) for n in ("episodes", "batch_size", "buffer_size")) \
            and config.batch_size > config.buffer_size:
        problems[("batch_size", "buffer_size")] = (
            f"batch_size={config.batch_size} > buffer_size={config.buffer_size}: the learner trains once its replay "
            f"buffer holds a batch, so it would never train; lower batch_size or raise buffer_size")
    # Meta-RL methods spend their first episodes on a target task conditioning (they count in `episodes`)
    if all(hasattr(config, n) for n in ("episodes", "conditioning_episodes")) \
            and config.conditioning_episodes > config.episodes:
        problems[("conditioning_episodes", "episodes")] = (
            f"conditioning_episodes={config.conditioning_episodes} > episodes={config.episodes}: the run would end "
            f"before its conditioning does and never adapt; episodes include the conditioning episodes")
    return problems


_METHODS: dict[str, MethodSpec] = {}
# The order of the comparison (and of `all`): the paper's Figure 4 legend order.
PAPER_METHODS = ("sac", "spirl", "pearl", "pearl-ft", "mtrl", "simpl")


def register_method(spec: MethodSpec) -> MethodSpec:
    if spec.name in _METHODS:
        raise ValueError(f"method {spec.name!r} is registered twice")
    _METHODS[spec.name] = spec
    return spec


def _load_methods() -> None:
    import importlib

    for module in ("methods.sac", "methods.skills", "methods.spirl", "methods.pearl", "methods.mtrl", "methods.simpl"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:  # not built yet: registers nothing
            if e.name != module:
                raise
    from tasks.base import load_plugins

    load_plugins()


def method_names(include_stages: bool = False) -> list[str]:
    _load_methods()
    names = [n for n, s in _METHODS.items() if include_stages or not s.stage]
    order = {n: i for i, n in enumerate(PAPER_METHODS)}
    return sorted(names, key=lambda n: (order.get(n, len(order)), n))


def get_method(name: str) -> MethodSpec:
    _load_methods()
    if name not in _METHODS:
        raise UnknownMethodError(f"unknown method {name!r}; choose from: {', '.join(method_names())} (or 'all')")
    return _METHODS[name]


def expand_methods(text: str) -> list[str]:
    """'all' -> every registered method of the comparison; 'sac,spirl' -> those, validated, in paper order."""
    names = method_names() if text.strip() == "all" else [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise UnknownMethodError("no method given; use --methods all or a comma-separated list")
    for n in names:
        get_method(n)
        if _METHODS[n].stage:
            raise UnknownMethodError(f"{n!r} is a shared stage, not a method; it runs automatically when needed")
    return list(dict.fromkeys(names))
