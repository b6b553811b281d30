"""Stable-Baselines3 task designers: hyperparameter presets, :func:`train` and :class:`SB3Designer`.

A vpt_gym episode is short (16-256 decisions) and, for the LM envs, every step is a real optimizer update,
so SB3's defaults (tuned for MuJoCo/Atari: PPO collects 2048 steps before its first update) would not
update once in a handful of episodes. The presets of :data:`ALGOS` are sized for short, expensive episodes:

| algo         | hyperparameter         | preset    | SB3 default | reason                                          |
|--------------|------------------------|-----------|-------------|-------------------------------------------------|
| ppo          | n_steps                | 128       | 2048        | an update every 1-2 toy episodes (budget 64-128)|
|              | batch_size             | 64        | 64          | 2 minibatches per rollout                       |
|              | n_epochs               | 10        | 10          | squeeze each expensive rollout                  |
|              | gamma, gae_lambda      | 0.99, 0.95| 0.99, 0.95  | a horizon as long as an episode                 |
|              | ent_coef               | 0.01      | 0.0         | keep trying the whole menu early on             |
|              | clip_range             | 0.2       | 0.2         | standard                                        |
|              | learning_rate          | 3e-4      | 3e-4        | standard Adam step                              |
| maskable_ppo | (as ppo)               |           |             | same learner; masked tasks never sampled        |
| a2c          | n_steps                | 16        | 5           | lower-variance returns over 16-256 decisions    |
|              | gamma, gae_lambda      | 0.99, 0.95| 0.99, 1.0   | as ppo                                          |
|              | ent_coef               | 0.01      | 0.0         | as ppo                                          |
|              | learning_rate          | 7e-4      | 7e-4        | RMSprop default                                 |
| dqn          | learning_starts        | 128       | 100         | 1-2 short episodes of random data, then learn   |
|              | buffer_size            | 10_000    | 1_000_000   | a short run never collects more                 |
|              | batch_size             | 64        | 32          | less noisy TD targets per (expensive) sample    |
|              | train_freq             | 4         | 4           | one gradient step per 4 decisions               |
|              | target_update_interval | 256       | 10_000      | the target net must move within a short run     |
|              | exploration_fraction   | 0.3       | 0.1         | epsilon decays over the first 30% of the run    |
|              | exploration_final_eps  | 0.05      | 0.05        | standard                                        |
|              | learning_rate          | 1e-3      | 1e-4        | few updates in total: larger steps              |
|              | gamma                  | 0.99      | 0.99        | as ppo                                          |

Measured on ``vpt/Toy-Alignment-v0`` (budget 128, 2 CPU cores): PPO runs ~400 decisions/s (30k in ~75 s)
and its deterministic policy reaches a final ``eval_loss`` of 0.10 / 0.36 / 0.08 (seeds 0-2; 5 held-out
episodes) against the random designer's 0.51 (tests/test_sb3.py, ``slow``). Results vary a lot between seeds
and checkpoints: the toy's ``alignment`` reward is first-order and also pays for overshooting (a constant
source has a higher return than random but a worse ``eval_loss``); ``overrides={"gamma": 0.9}`` lowers the
variance of advantages on such near-myopic rewards.

Every algo uses ``MlpPolicy`` (64x64, SB3's default) on CPU; the observation mixes scales (losses ~10,
alignments ~1e-3, log10 norms ~1), so :func:`train` wraps the env in
``VecNormalize(norm_obs=True, norm_reward=True)`` by default and saves its statistics beside the model.
The same presets, in rl-zoo3's format, are in ``vpt_gym/agents/hyperparams/{ppo,a2c,dqn}.yml`` (rl-zoo3 has
no MaskablePPO).

Everything heavy (stable_baselines3, sb3_contrib, torch policies) is imported inside the functions: importing
this module is cheap, and a missing package raises ``ImportError`` naming the ``vpt-gym[sb3]`` extra.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import logging
import os
import pickle
import platform
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.vec_env import VecEnv

logger = logging.getLogger(__name__)

SB3_EXTRA = "pip install 'vpt-gym[sb3]'"
"""The install hint of every ImportError raised here."""
MODEL_FILE = "model.zip"
CONFIG_FILE = "config.json"
VECNORMALIZE_FILE = "vecnormalize.pkl"
"""File names inside a training run's folder (``vecnormalize.pkl`` is rl-zoo3's name)."""


@dataclass(frozen=True, kw_only=True)
class AlgoPreset:
    """An SB3 algorithm and its hyperparameter preset for short, expensive episodes.

    Attributes:
        name: the CLI name (``--algo``).
        import_path: ``"module:Class"`` of the algorithm.
        hyperparameters: keyword arguments of the algorithm's constructor (read-only; copy with
            :func:`hyperparameters`).
        discrete_only: the algorithm needs a ``Discrete`` action space.
        maskable: the algorithm takes ``action_masks`` (``env.unwrapped.action_masks()``).
    """

    name: str
    import_path: str
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    discrete_only: bool = False
    maskable: bool = False

    def algo_class(self) -> type[BaseAlgorithm]:
        """The algorithm class (imported now).

        Raises:
            ImportError: stable-baselines3 / sb3-contrib missing (names the pip extra).
        """
        module, name = self.import_path.split(":")
        try:
            return getattr(importlib.import_module(module), name)
        except ImportError as exc:
            raise ImportError(f"--algo {self.name} needs {module.split('.')[0]}: {SB3_EXTRA}") from exc


_PPO = MappingProxyType({
    "policy": "MlpPolicy",
    "n_steps": 128,
    "batch_size": 64,
    "n_epochs": 10,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "clip_range": 0.2,
    "ent_coef": 0.01,
    "learning_rate": 3e-4,
})

ALGOS: dict[str, AlgoPreset] = {
    "ppo": AlgoPreset(name="ppo", import_path="stable_baselines3:PPO", hyperparameters=_PPO),
    "a2c": AlgoPreset(name="a2c", import_path="stable_baselines3:A2C", hyperparameters=MappingProxyType({
        "policy": "MlpPolicy",
        "n_steps": 16,
        "gamma": 0.99,
        "gae_lambda": 0.95,
        "ent_coef": 0.01,
        "learning_rate": 7e-4,
    })),
    "dqn": AlgoPreset(name="dqn", import_path="stable_baselines3:DQN", discrete_only=True,
                      hyperparameters=MappingProxyType({
                          "policy": "MlpPolicy",
                          "learning_rate": 1e-3,
                          "buffer_size": 10_000,
                          "learning_starts": 128,
                          "batch_size": 64,
                          "train_freq": 4,
                          "gradient_steps": 1,
                          "target_update_interval": 256,
                          "exploration_fraction": 0.3,
                          "exploration_final_eps": 0.05,
                          "gamma": 0.99,
                      })),
    "maskable_ppo": AlgoPreset(name="maskable_ppo", import_path="sb3_contrib:MaskablePPO", hyperparameters=_PPO,
                               discrete_only=True, maskable=True),
}
"""SB3 algorithms by CLI name, with presets for short, expensive episodes (table in the module docstring)."""


def hyperparameters(algo: str) -> dict[str, Any]:
    """A fresh, mutable copy of the preset hyperparameters of ``algo``.

    Raises:
        ValueError: unknown ``algo`` (the message lists :data:`ALGOS`).
    """
    return copy.deepcopy(dict(_preset(algo).hyperparameters))


def hyperparams_file(algo: str) -> Path:
    """The packaged rl-zoo3 hyperparameter file of ``algo`` (``vpt_gym/agents/hyperparams/<algo>.yml``).

    Use it as ``python -m rl_zoo3.train --gym-packages vpt_gym --env ID --algo ALGO -conf FILE``.

    Raises:
        ValueError: ``algo`` has no rl-zoo3 file (rl-zoo3 has no MaskablePPO; accepted: a2c, dqn, ppo).
    """
    from importlib.resources import files

    folder = files("vpt_gym.agents").joinpath("hyperparams")
    path = Path(str(folder.joinpath(f"{algo}.yml")))
    if algo not in ALGOS or not path.is_file():
        accepted = sorted(a for a in ALGOS if Path(str(folder.joinpath(f"{a}.yml"))).is_file())
        raise ValueError(f"no rl-zoo3 hyperparameter file for algo {algo!r}; accepted: {accepted}")
    return path


def _preset(algo: str) -> AlgoPreset:
    if algo not in ALGOS:
        raise ValueError(f"unknown algo {algo!r}; accepted: {sorted(ALGOS)}")
    return ALGOS[algo]


def _require(*modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"{', '.join(missing)} not installed: {SB3_EXTRA}")


def _check_action_space(preset: AlgoPreset, space: gym.Space | str, env_id: str) -> None:
    """Raise for a Discrete-only algo on another action space (``space``: the built space, or the registry's
    ``action`` kind, ``"discrete"`` or ``"box"``, before the env is built)."""
    discrete = isinstance(space, gym.spaces.Discrete) or space == "discrete"
    if preset.discrete_only and not discrete:
        accepted = sorted(name for name, p in ALGOS.items() if not p.discrete_only)
        described = "a Box action space" if space == "box" else space
        raise ValueError(f"algo {preset.name!r} needs a Discrete action space; {env_id} has {described}; "
                         f"accepted algos for it: {accepted}")


def _action_masks(env: gym.Env) -> np.ndarray:
    """``ActionMasker``'s mask function (module level, so the wrapper pickles)."""
    base: Any = env.unwrapped  # a TaskDesignEnv (gym.Env.unwrapped is typed as the base Env)
    return base.action_masks()


def make_vec_env(env_id: str, env_kwargs: Mapping[str, Any] | None = None, *, algo: str = "ppo",
                 normalize: bool = True, gamma: float = 0.99, monitor_file: str | os.PathLike[str] | None = None,
                 ) -> VecEnv:
    """One ``gymnasium.make(env_id, **env_kwargs)`` env, wrapped for SB3.

    ``Monitor`` (episode return/length, optionally to ``monitor_file``), then ``ActionMasker`` for maskable
    algos, in a ``DummyVecEnv`` (one env: the LM envs are too expensive to run several), then
    ``VecNormalize(norm_obs=True, norm_reward=True, gamma=gamma)`` when ``normalize``.

    Raises:
        ValueError: unknown ``algo``; an algo that needs a Discrete action space on another space.
        ImportError: stable-baselines3 / sb3-contrib missing.
    """
    preset = _preset(algo)
    _require("stable_baselines3", *(["sb3_contrib"] if preset.maskable else []))
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    import vpt_gym  # noqa: F401  (registers the ids)

    env = gym.make(env_id, **dict(env_kwargs or {}))
    try:
        _check_action_space(preset, env.action_space, env_id)
    except ValueError:
        env.close()
        raise
    env = Monitor(env, filename=None if monitor_file is None else str(monitor_file))
    if preset.maskable:
        from sb3_contrib.common.wrappers import ActionMasker

        env = ActionMasker(env, _action_masks)
    venv: VecEnv = DummyVecEnv([lambda: env])
    if normalize:
        venv = VecNormalize(venv, norm_obs=True, norm_reward=True, gamma=gamma)
    return venv


def resolve_hyperparameters(algo: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The preset of ``algo`` updated with ``overrides`` (e.g. ``{"gamma": 0.9}``), keys checked.

    Raises:
        ValueError: unknown ``algo``; an override that is not a constructor argument of the algorithm (the
            message lists the accepted ones) or one that :func:`train` sets itself.
        ImportError: stable-baselines3 / sb3-contrib missing (only when ``overrides`` is non-empty).
    """
    import inspect

    preset_values = hyperparameters(algo)
    if overrides:
        reserved = {"env", "seed", "device", "tensorboard_log", "verbose", "_init_setup_model"}
        accepted = set(inspect.signature(_preset(algo).algo_class()).parameters) - reserved
        unknown = sorted(set(overrides) - accepted)
        if unknown:
            raise ValueError(f"unknown {algo} hyperparameters {unknown}; accepted: {sorted(accepted)}")
        preset_values.update(copy.deepcopy(dict(overrides)))
    return preset_values


def build_model(algo: str, venv: VecEnv, *, seed: int, tensorboard_log: str | None = None, verbose: int = 0,
                overrides: Mapping[str, Any] | None = None) -> BaseAlgorithm:
    """The algorithm ``algo`` with its preset (updated by ``overrides``) on ``venv``, on CPU, seeded by SB3.

    Raises:
        ValueError: unknown ``algo`` or override (see :func:`resolve_hyperparameters`).
        ImportError: stable-baselines3 / sb3-contrib missing.
    """
    preset = _preset(algo)
    return preset.algo_class()(env=venv, seed=seed, device="cpu", tensorboard_log=tensorboard_log,
                               verbose=verbose, **resolve_hyperparameters(algo, overrides))


def _eval_info_callback():
    from stable_baselines3.common.callbacks import BaseCallback

    class EvalInfoCallback(BaseCallback):
        """Logs ``info["eval"]`` (held-out metrics at episode end) as ``episode_eval/<metric>`` means."""

        def _on_step(self) -> bool:
            for info, done in zip(self.locals.get("infos", ()), self.locals.get("dones", ()), strict=False):
                if done and isinstance(info.get("eval"), dict):
                    for key, value in info["eval"].items():
                        if isinstance(value, (int, float)) and np.isfinite(value):
                            self.logger.record_mean(f"episode_eval/{key}", float(value))
            return True

    return EvalInfoCallback()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("vpt-gym", "stable-baselines3", "sb3-contrib", "gymnasium", "torch", "numpy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _replace_atomic(target: Path, write: Any) -> None:
    """``write(binary_handle)`` into a temp file beside ``target``, then ``os.replace`` it onto ``target``."""
    from vpt_gym.atomic import atomic_target

    with atomic_target(target) as tmp, open(tmp, "wb") as handle:
        write(handle)


def train(env_id: str, algo: str, timesteps: int, seed: int, out_dir: str | os.PathLike[str],
          env_kwargs: Mapping[str, Any] | None = None, progress: bool = True, *, normalize: bool = True,
          overrides: Mapping[str, Any] | None = None) -> Path:
    """Train an SB3 task designer on ``env_id`` and save it to ``out_dir``.

    Writes ``out_dir/model.zip``, ``out_dir/vecnormalize.pkl`` (when ``normalize``), ``out_dir/monitor.csv``
    (episode returns), TensorBoard logs under ``out_dir/tb`` (when tensorboard is installed; the mean of
    ``info["eval"]`` per rollout is logged as ``episode_eval/*``) and, last, ``out_dir/config.json`` (algo,
    env_id, env_kwargs, hyperparameters, timesteps, seed, normalize, versions). Model, statistics and config
    are each written to a temp file and moved in place with ``os.replace``.

    Args:
        env_id: a registered ``vpt/...`` id.
        algo: a key of :data:`ALGOS`.
        timesteps: decisions to train for, >= 1 (SB3 rounds up to whole rollouts).
        seed: >= 0; the only source of randomness (SB3's ``seed=``: policy init, env resets, exploration).
        out_dir: run folder (created; files of an earlier run there are replaced).
        env_kwargs: keyword arguments of ``gymnasium.make`` (e.g. ``{"budget": 64}``).
        progress: show SB3's progress bar (tqdm + rich).
        normalize: wrap the env in ``VecNormalize`` and save its statistics.
        overrides: hyperparameters replacing the preset's (e.g. ``{"gamma": 0.9}``); recorded in the config.

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        ValueError: unknown ``algo`` or ``env_id``; ``timesteps`` < 1; ``seed`` < 0; ``out_dir`` is a file;
            an algo that needs a Discrete action space (dqn, maskable_ppo) on a Box one; an unknown override.
        ImportError: stable-baselines3 / sb3-contrib (or, with ``progress``, tqdm / rich) missing.
    """
    from vpt_gym.envs import ENV_IDS
    from vpt_gym.atomic import write_json_atomic

    preset = _preset(algo)
    if env_id not in ENV_IDS:
        raise ValueError(f"unknown env id {env_id!r}; accepted: {sorted(ENV_IDS)}")
    _check_action_space(preset, ENV_IDS[env_id].action, env_id)  # before building it
    if isinstance(timesteps, bool) or not isinstance(timesteps, (int, np.integer)) or timesteps < 1:
        raise ValueError(f"timesteps must be an integer >= 1, got {timesteps!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if env_kwargs is not None and not isinstance(env_kwargs, Mapping):
        raise ValueError(f"env_kwargs must be a mapping of gymnasium.make keyword arguments, got {env_kwargs!r}")
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ValueError(f"overrides must be a mapping of hyperparameters, got {overrides!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {str(out)!r} is a file; give a folder")
    _require("stable_baselines3", *(["sb3_contrib"] if preset.maskable else []),
             *(["tqdm", "rich"] if progress else []))
    hyper = resolve_hyperparameters(algo, overrides)

    out.mkdir(parents=True, exist_ok=True)
    venv = make_vec_env(env_id, env_kwargs, algo=algo, normalize=normalize, gamma=hyper["gamma"],
                        monitor_file=out / "monitor.csv")
    tensorboard_log = None
    if importlib.util.find_spec("tensorboard") is not None:
        tensorboard_log = str(out / "tb")
    else:
        logger.warning("tensorboard is not installed: no TensorBoard logs under %s (pip install tensorboard)",
                       out / "tb")
    try:
        model = build_model(algo, venv, seed=int(seed), tensorboard_log=tensorboard_log, overrides=overrides)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="rich is experimental")  # tqdm.rich, used by SB3's bar
            model.learn(total_timesteps=int(timesteps), progress_bar=progress, callback=_eval_info_callback(),
                        tb_log_name=algo)
        logger.info("trained %s on %s for %d timesteps in %.1f s", algo, env_id, model.num_timesteps,
                    time.perf_counter() - start)
        _replace_atomic(out / MODEL_FILE, model.save)
        if normalize:
            _replace_atomic(out / VECNORMALIZE_FILE, lambda handle: pickle.dump(venv, handle))
        elif (out / VECNORMALIZE_FILE).exists():
            (out / VECNORMALIZE_FILE).unlink()  # stale statistics of an earlier run in this folder
    finally:
        venv.close()
    write_json_atomic(out / CONFIG_FILE, {
        "algo": algo,
        "env_id": env_id,
        "env_kwargs": dict(env_kwargs or {}),
        "hyperparameters": hyper,
        "timesteps": int(timesteps),
        "num_timesteps": int(model.num_timesteps),
        "torch_threads": _torch_threads(),
        "seed": int(seed),
        "normalize": bool(normalize),
        "versions": _versions(),
    })
    return out


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


class SB3Designer:
    """A trained SB3 policy (a :func:`train` run folder) behind the Designer protocol; acts deterministically.

    Reads ``config.json`` (which algo), ``model.zip`` and, when the run normalized observations,
    ``vecnormalize.pkl`` (frozen statistics). Maskable policies get ``env.unwrapped.action_masks()``.
    The env must have the observation and action spaces the model was trained on (checked); it need not be
    the training configuration otherwise (e.g. another budget).

    Args:
        env: the env the designer acts in.
        path: the run folder (or its ``model.zip``).

    Raises:
        FileNotFoundError: ``path``, its ``config.json`` or ``model.zip`` (or the statistics the config
            names) do not exist.
        ValueError: a corrupt or foreign config, model or statistics file (named), or mismatching spaces.
        ImportError: stable-baselines3 / sb3-contrib missing.
    """

    def __init__(self, env: gym.Env, path: str | os.PathLike[str]) -> None:
        self.name = f"sb3:{path}"
        self.env = env
        folder = Path(path)
        if folder.suffix == ".zip" and folder.is_file():
            folder = folder.parent
        if not folder.is_dir():
            raise FileNotFoundError(f"SB3 designer: no run folder {str(path)!r} (train one with `vpt-gym train`)")
        config_path, model_path = folder / CONFIG_FILE, folder / MODEL_FILE
        for required in (config_path, model_path):
            if not required.is_file():
                raise FileNotFoundError(f"SB3 designer: {str(required)!r} is missing; {str(folder)!r} is not a "
                                        "complete `vpt-gym train` run folder")
        try:
            self.config = json.loads(config_path.read_text())
            algo = self.config["algo"]
            preset = _preset(algo)
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"SB3 designer: corrupt config {str(config_path)!r}: {exc}") from exc
        cls = preset.algo_class()
        try:
            self.model: Any = cls.load(str(model_path), device="cpu")  # predict() differs by algo (action_masks)
        except Exception as exc:  # SB3 raises zipfile, pickle, KeyError, ValueError... for a bad archive
            raise ValueError(f"SB3 designer: cannot load {str(model_path)!r} as a {algo} model: {exc!r}") from exc
        self.maskable = preset.maskable
        self.obs_stats = None
        if self.config.get("normalize", False):
            stats_path = folder / VECNORMALIZE_FILE
            if not stats_path.is_file():
                raise FileNotFoundError(f"SB3 designer: {str(stats_path)!r} is missing (the run normalized "
                                        "observations)")
            self.obs_stats = self._load_stats(stats_path)
        trained_on = f"{self.config.get('env_id', '?')} {self.config.get('env_kwargs', {})}"
        this_env = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        hint = f"train one on this env: vpt-gym train {this_env} --out RUN_DIR"
        if self.model.observation_space.shape != env.observation_space.shape:
            raise ValueError(f"SB3 designer {str(path)!r} was trained on {trained_on} (observation shape "
                             f"{self.model.observation_space.shape}); this env, {this_env}, has observation shape "
                             f"{env.observation_space.shape}: {hint}")
        if self.model.action_space != env.action_space:
            raise ValueError(f"SB3 designer {str(path)!r} was trained on {trained_on} (action space "
                             f"{self.model.action_space}); this env, {this_env}, has action space "
                             f"{env.action_space}: {hint}")

    @staticmethod
    def _load_stats(stats_path: Path) -> Any:
        from stable_baselines3.common.vec_env import VecNormalize

        try:
            with open(stats_path, "rb") as handle:
                stats = pickle.load(handle)
        except Exception as exc:  # unpickling raises many types for a corrupt file
            raise ValueError(f"SB3 designer: corrupt statistics {str(stats_path)!r}: {exc!r}") from exc
        if not isinstance(stats, VecNormalize):
            raise ValueError(f"SB3 designer: {str(stats_path)!r} holds {type(stats).__name__}, not VecNormalize")
        stats.training = False
        return stats

    def reset(self, seed: int | None = None) -> None:
        """No episode state (the policy is deterministic); ``seed`` is unused."""
        return None

    def act(self, observation: np.ndarray, info: dict[str, Any]) -> Any:
        """The policy's deterministic action for ``observation`` (normalized with the run's statistics)."""
        obs = np.asarray(observation, dtype=np.float32)
        if self.obs_stats is not None:
            obs = self.obs_stats.normalize_obs(obs).astype(np.float32)
        if self.maskable:
            base: Any = self.env.unwrapped  # a TaskDesignEnv (gym.Env.unwrapped is typed as the base Env)
            action, _ = self.model.predict(obs, deterministic=True, action_masks=base.action_masks())
        else:
            action, _ = self.model.predict(obs, deterministic=True)
        if isinstance(self.env.action_space, gym.spaces.Discrete):
            return int(np.asarray(action).reshape(()))
        return np.asarray(action, dtype=self.env.action_space.dtype).reshape(self.env.action_space.shape)

    def observe(self, action, reward, observation, terminated, truncated, info) -> None:
        """No-op: the policy is frozen."""
        return None
