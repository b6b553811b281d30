"""What every env factory module uses, in a leaf module (it imports no other ``vpt_gym.envs`` module): the
card template (:data:`OBSERVATION_BASE_ROWS`, :func:`card`), the explicit keyword signature of a factory
(:func:`keyword_signature`) and the check of the parts a user passes through ``gymnasium.make``
(:func:`require_user_parts`). ``vpt_gym.envs`` re-exports them."""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["OBSERVATION_BASE_ROWS", "card", "keyword_signature", "require_user_parts"]

OBSERVATION_BASE_ROWS = """\
        | 0 | ``budget_remaining`` | learner-update budget left, fraction of T | [0, 1] | - |
        | 1 | ``ema_pretrain_loss`` | EMA of the pretraining loss of the chosen tasks | [0, 1e3] | learner loss |
        | 2 | ``ema_feedback_loss`` | EMA of L_down, updated at each g_down refresh | [0, 1e3] | feedback loss |
        | 3 | ``ema_log10_g_pre_norm`` | EMA of log10 of the norm of g_pre on S | [-30, 30] | log10 |
        | 4 | ``log10_g_down_norm`` | log10 of the norm of the current g_down on S | [-30, 30] | log10 |
        | 5 | ``ema_cosine`` | EMA of cos(g_down, g_pre) on S | [-1, 1] | - |"""
"""Rows 0-5 of every env card's Observation Space table (``TaskDesignEnv`` base features; EMA decay 0.9,
starting at the first measurement; a zero norm reads as -30). Env cards insert them at ``$BASE_ROWS``."""


def card(doc: str | None) -> str:
    """An env factory's docstring with ``$BASE_ROWS`` replaced by :data:`OBSERVATION_BASE_ROWS`."""
    return (doc or "").replace("        $BASE_ROWS", OBSERVATION_BASE_ROWS)


def keyword_signature(builder: Any = None, *, fixed: tuple[str, ...] = (), extra: Any = None) -> Any:
    """Decorator: give an env factory ``def make(**kwargs)`` the explicit keyword signature of ``builder``.

    The factory's ``inspect.signature`` (``help()``, notebooks, ``gymnasium.make`` checks) lists ``builder``'s
    keyword-only parameters (default ``builder``: the factory itself) except those the factory ``fixed``
    itself (e.g. ``continuous``), with their annotations and defaults; ``extra`` (a dataclass whose fields
    the factory's ``**overrides`` take) adds its fields as keyword-only parameters. A call is bound against
    that signature first: an unknown or fixed keyword raises ``ValueError`` naming it and the accepted ones,
    before any work. ``make.keyword_sources`` holds ``builder`` (and ``extra``), whose annotations resolve in
    their own module (``vpt_gym.envs.env_keywords`` reads the keywords' types there).
    """
    import dataclasses
    import inspect

    def decorate(factory: Any) -> Any:
        kept = [p for p in inspect.signature(builder or factory).parameters.values()
                if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in fixed]
        if extra is not None:
            names = {p.name for p in kept}
            kept += [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=f.type, default=f.default)
                     for f in dataclasses.fields(extra) if f.name not in names]
        signature = inspect.Signature(kept, return_annotation="TaskDesignEnv")

        accepted = sorted(signature.parameters)

        @functools.wraps(factory)
        def make(**kwargs: Any) -> Any:
            unknown = sorted(set(kwargs) - set(signature.parameters))
            if unknown:
                raise ValueError(f"{factory.__name__} has no keyword(s) {unknown}; accepted: {accepted}")
            return factory(**kwargs)

        make.__signature__ = signature  # type: ignore[attr-defined]
        make.keyword_sources = tuple(x for x in (builder or factory, extra) if x is not None)  # type: ignore[attr-defined]
        make.__annotations__ = {**{p.name: p.annotation for p in kept}, "return": "TaskDesignEnv"}
        del make.__wrapped__  # tools show the signature above, not the factory's **kwargs
        return make

    return decorate


def require_user_parts(*, feedback_set: Any = None, stream: Any = None) -> None:
    """Check the parts a user passes through ``gymnasium.make`` (``feedback_set=``, ``stream=``) before any work.

    A given part replaces the factory's own: ``feedback_set`` (a :class:`~vpt_gym.core.FeedbackSet`: its
    feedback split gives g_down and the probes, its eval split ``info["eval"]``) and ``stream`` (a
    :class:`~vpt_gym.core.PretrainStream` of batches the env's task space and learner take). An env built so
    cannot be put in a suite or replayed from a results row (a row records keywords, not objects).

    Raises:
        TypeError: a part that misses members of its Protocol (names the part, its type and what is missing).
    """
    from vpt_gym.core import FeedbackSet, PretrainStream, require

    if feedback_set is not None:
        require(feedback_set, FeedbackSet, "feedback_set")
    if stream is not None:
        require(stream, PretrainStream, "stream")
