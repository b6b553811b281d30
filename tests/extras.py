"""Which optional extras a test needs, so that on the core install (``pip install -e . pytest``) it skips with
the reason instead of failing.

Import from a test module as ``from extras import env_param, needs`` (pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from vpt_gym.envs import ENV_IDS

EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "vision": ("torchvision",),
    "sb3": ("stable_baselines3", "sb3_contrib"),
    "bench": ("rliable",),
}
"""The modules each extra of pyproject.toml provides that the tests need."""

ENV_EXTRAS: dict[str, tuple[str, ...]] = {"vpt_gym.envs.vision": ("vision",)}
"""The extras the envs of an entry-point module need (every other env runs on the core install)."""


def missing_modules(*extras: str) -> list[str]:
    """The modules of ``extras`` that are not installed."""
    return [m for extra in extras for m in EXTRA_MODULES[extra] if importlib.util.find_spec(m) is None]


def env_extras(env_id: str) -> tuple[str, ...]:
    """The extras the registered env ``env_id`` needs (from its entry point's module)."""
    return ENV_EXTRAS.get(ENV_IDS[env_id]["entry_point"].partition(":")[0], ())


def needs(*extras: str) -> pytest.MarkDecorator:
    """A skip mark when one of ``extras`` is not installed, naming the extra and its missing modules."""
    missing = missing_modules(*extras)
    return pytest.mark.skipif(bool(missing), reason=f"needs the {'/'.join(extras)} extra: {missing} not installed")


def superseded(env_id: str) -> bool:
    """Whether a newer version of ``env_id`` is registered (``vpt/X-v0`` when ``vpt/X-v1`` exists)."""
    name, _, version = env_id.rpartition("-v")
    return f"{name}-v{int(version) + 1}" in ENV_IDS


def env_param(env_id: str, *values: Any, latest_only: bool = False, **kwargs: Any) -> Any:
    """``pytest.param(env_id, *values)`` (id: the env id) that skips when the env's extras are missing; with
    ``latest_only``, a :func:`superseded` id is marked ``slow`` (its version differs from the newest only in
    defaults, on the same code: the default run checks the newest, ``-m slow`` every version)."""
    marks = [needs(*env_extras(env_id))]
    if latest_only and superseded(env_id):
        marks.append(pytest.mark.slow)
    return pytest.param(env_id, *values, marks=marks, id=kwargs.get("id", env_id))


def env_params(env_ids: Any = None, *, latest_only: bool = False) -> list[Any]:
    """:func:`env_param` of every id of ``env_ids`` (default: every registered id, in registry order)."""
    return [env_param(e, latest_only=latest_only) for e in (ENV_IDS if env_ids is None else env_ids)]
