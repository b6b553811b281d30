"""Env cards: the README's env section is ``vpt-gym list --markdown`` today, and every card documents every
observation feature its env returns, at the index the env returns it."""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path

import gymnasium as gym
import pytest
from extras import env_params, needs

import vpt_gym  # noqa: F401  (registers the ids)
from vpt_gym.cli import (
    CARD_HEADINGS,
    README_BEGIN,
    README_END,
    main,
    parse_card,
    render_card,
    render_markdown,
    update_readme,
)
from vpt_gym.envs import ACTION_KINDS, ENV_IDS, EnvSpec

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = README_BEGIN, README_END
REGENERATE = "regenerate it with: python -c \"from vpt_gym.cli import update_readme; update_readme('README.md')\""


def _factory(env_id: str):
    module, _, name = ENV_IDS[env_id]["entry_point"].partition(":")
    return getattr(importlib.import_module(module), name)


def test_readme_env_section_is_the_current_list_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    text = README.read_text(encoding="utf-8")
    assert BEGIN in text and END in text, "README.md lacks the vpt-gym list --markdown markers"
    section = text[text.index(BEGIN) + len(BEGIN):text.index(END)]
    assert main(["list", "--markdown"]) == 0
    printed = capsys.readouterr().out
    assert section == printed, f"README.md's env section is not the current `vpt-gym list --markdown`; {REGENERATE}"


TINY_CARD = """Build `vpt/Tiny-v0`: a ``toy`` card.

    Description:
        One line, see :class:`~vpt_gym.core.Task`.

    Action Space:
        ``Discrete(2)``.

    Observation Space:
        | index | name |
        |---|---|
        | 0 | ``x`` |

    Reward:
        r.

    Episode End:
        e.

    Budget:
        b.

    Arguments:
        size: ``tiny`` or
            ``small``.
        seed: s.

    Raises:
        ValueError: v.

    Version History:
        v0: first.
    """

TINY_CARD_MARKDOWN = """<details><summary><code>vpt/Tiny-v0</code>: a <code>toy</code> card.</summary>

**Description**

One line, see `vpt_gym.core.Task`.

**Action Space**

`Discrete(2)`.

**Observation Space**

| index | name |
|---|---|
| 0 | `x` |

**Reward**

r.

**Episode End**

e.

**Budget**

b.

**Arguments**

- size: `tiny` or `small`.
- seed: s.

**Raises**

- ValueError: v.

**Version History**

- v0: first.

</details>"""


def test_render_card_of_a_tiny_docstring_is_the_hand_written_markdown() -> None:
    assert render_card("vpt/Tiny-v0", TINY_CARD) == TINY_CARD_MARKDOWN


def test_update_readme_rewrites_only_the_env_section(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{BEGIN}stale table\n{END}\n\nafter\n")
    update_readme(readme)
    assert readme.read_text() == f"# title\n\n{BEGIN}{render_markdown()}{END}\n\nafter\n"
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="markers"):
        update_readme(readme)


def test_list_markdown_table_has_a_row_per_id() -> None:
    rows = [line for line in render_markdown().splitlines() if line.startswith("| `vpt/")]
    assert [r.split("`")[1] for r in rows] == list(ENV_IDS)
    toy = rows[0]
    assert "| 0.9 |" in toy and "| - |" in toy  # CPU ms/step, no size presets
    lm = rows[list(ENV_IDS).index("vpt/LM-SoftTargets-v0")]
    assert "`tiny`, `small`, `paper`" in lm and "tiny 17, small 160" in lm
    assert "one_hot (standard) \\| uniform" in lm  # pipes inside cells are escaped


def test_registry_fields_are_valid() -> None:
    from vpt_gym.envs.lm import LM_PRESETS
    from vpt_gym.envs.vision import VISION_PRESETS
    from vpt_gym.value import VALUE_ESTIMATORS

    for env_id, spec in ENV_IDS.items():
        assert isinstance(spec, EnvSpec) and spec.action in ACTION_KINDS, env_id  # a typed record, not prose
        assert dict(spec) == {f.name: getattr(spec, f.name) for f in dataclasses.fields(EnvSpec)}, env_id
        assert spec["rewards"] and set(spec["rewards"]) <= set(VALUE_ESTIMATORS), env_id
        v1 = env_id.endswith(("-v1", "-v2", "-v3"))  # README "Reward validity": v1 LM ids preconditioned, v1+ SSL value_gain
        default = ("preconditioned" if v1 and env_id.startswith("vpt/LM-") else
                   "value_gain" if v1 and env_id.startswith("vpt/SSL-") else "alignment")
        assert spec["rewards"][0] == default, f"{env_id}: the default reward comes first"
        presets = VISION_PRESETS if env_id.startswith("vpt/SSL-") else LM_PRESETS if "/LM-" in env_id else {}
        assert tuple(spec["presets"]) == tuple(presets), env_id
        cost = spec["cpu_step_ms"]
        assert cost and all(v > 0 for v in cost.values()), env_id
        assert set(cost) <= set(spec["presets"]) | ({"default"} if not spec["presets"] else set()), env_id


@pytest.mark.parametrize("env_id", list(ENV_IDS))
def test_card_has_every_heading(env_id: str) -> None:
    summary, sections = parse_card(_factory(env_id).__doc__ or "")
    assert summary.startswith(f"Build ``{env_id}``"), summary
    assert list(sections) == list(CARD_HEADINGS), f"{env_id}: headings out of order"
    for heading in CARD_HEADINGS:
        assert any(line.strip() for line in sections[heading]), f"{env_id}: empty {heading}"
    assert "$BASE_ROWS" not in (_factory(env_id).__doc__ or "")


def test_parse_card_names_a_missing_heading() -> None:
    with pytest.raises(ValueError, match=r"lacks the heading\(s\) \['Action Space', 'Observation Space', 'Reward'"):
        parse_card("Build x.\n\n    Description:\n        d\n")


# ---------------------------------------------------------------------------------- observation coverage
_ROW = re.compile(r"^\|\s*([0-9K+.]+)\s*\|\s*``([^`]+)``\s*\|")


def _index(expr: str, k: int) -> int:
    """``"6"``, ``"K"``, ``"5+K"``, ``"6+2K"`` -> an int, with K = the menu size."""
    m = re.fullmatch(r"(\d+)|(?:(\d+)\+)?(\d*)K", expr)
    assert m, f"bad index expression {expr!r}"
    if m.group(1) is not None:
        return int(m.group(1))
    return int(m.group(2) or 0) + int(m.group(3) or 1) * k


def _pattern(documented: str) -> re.Pattern[str]:
    """A documented name; ``<placeholder>`` parts match one name segment (``last_value[<task>]``)."""
    parts = re.split(r"(<\w+>)", documented)
    return re.compile("".join(r"[^\]\s]+" if p.startswith("<") else re.escape(p) for p in parts))


def _coverage(names: tuple[str, ...], observation_section: list[str], k: int) -> list[str]:
    """Problems: names not documented, and table rows whose index range holds other names."""
    problems = []
    text = "\n".join(observation_section)
    documented = set(re.findall(r"``([^`]+)``", text))
    for name in names:
        if "[" in name:  # a group such as last_value[one_hot]: matched by its family prefix
            family = name[: name.index("[") + 1]
            if not any(d.startswith(family) for d in documented):
                problems.append(f"{name}: no {family}...] entry")
        elif name not in documented:
            problems.append(f"{name}: not in the card")
    covered = set()
    for line in observation_section:
        row = _ROW.match(line.strip())
        if not row:
            continue
        lo, _, hi = row.group(1).partition("..")
        first, last = _index(lo, k), _index(hi or lo, k)
        pattern = _pattern(row.group(2))
        for i in range(first, last + 1):
            if i >= len(names) or not pattern.fullmatch(names[i]):
                got = names[i] if i < len(names) else "nothing"
                problems.append(f"index {i}: card says {row.group(2)}, env returns {got}")
            covered.add(i)
    missing = sorted(set(range(len(names))) - covered)
    if missing:
        problems.append(f"indices {missing} are in no table row")
    return problems


@pytest.mark.parametrize("env_id", env_params(latest_only=True))
def test_card_documents_every_observation_feature(env_id: str) -> None:
    env = gym.make(env_id, **ENV_IDS[env_id]["smoke_kwargs"])
    base = env.unwrapped
    names = tuple(base.observation_names)
    assert len(names) == env.observation_space.shape[0]
    _, sections = parse_card(_factory(env_id).__doc__ or "")
    problems = _coverage(names, sections["Observation Space"], base.num_menu)
    assert not problems, f"{env_id} card is out of date: " + "; ".join(problems)
    env.close()


def test_index_expressions() -> None:
    assert [_index(e, 7) for e in ("6", "K", "5+K", "6+2K", "2K")] == [6, 7, 12, 20, 14]


def test_coverage_catches_drift() -> None:
    section = ["| index | name | feature | range | unit |", "|---|---|---|---|---|",
               "| 0 | ``budget_remaining`` | x | [0, 1] | - |",
               "| 1..K | ``last_value[<task>]`` | x | x | x |",
               "| 1+K | ``batch.phase`` | x | x | x |"]
    good = ("budget_remaining", "last_value[a]", "last_value[b]", "batch.phase")
    assert _coverage(good, section, 2) == []
    assert _coverage(("budget_remaining", "last_value[a]", "last_value[b]", "batch.other"), section, 2) == [
        "batch.other: not in the card", "index 3: card says batch.phase, env returns batch.other"]
    assert _coverage(good + ("batch.new",), section, 2) == ["batch.new: not in the card",
                                                            "indices [4] are in no table row"]


def test_lm_versions_build_their_documented_defaults() -> None:
    """v0 keeps its published defaults; v1 has the procedural stream, lr 1e-4 at small only, the preconditioned reward."""
    from vpt_gym.envs.lm import LM_PRESETS
    from vpt_gym.lm.corpus import PROCEDURAL_SOURCE

    v0 = gym.make("vpt/LM-SoftTargets-v0", size="tiny", device="cpu").unwrapped
    v1 = gym.make("vpt/LM-SoftTargets-v1", size="tiny", device="cpu").unwrapped
    assert v0.data_sources["math"].startswith("gsm8k:") and v0.value_estimator.name == "alignment"
    assert v1.data_sources["math"] == PROCEDURAL_SOURCE and v1.value_estimator.name == "preconditioned"
    assert v0.learner.lr == v1.learner.lr == LM_PRESETS["tiny"].lr  # the tiny preset keeps its lr in v1
    explicit = gym.make("vpt/LM-SoftTargets-v1", size="tiny", device="cpu", math_stream="gsm8k", reward="alignment",
                        lr=3e-4).unwrapped
    assert explicit.data_sources["math"] == v0.data_sources["math"] and explicit.learner.lr == 3e-4
    with pytest.raises(ValueError, match=r"math_stream='web' is not accepted.*procedural"):
        gym.make("vpt/LM-SoftTargets-v1", size="tiny", math_stream="web")


def test_domains_versions_build_their_documented_defaults() -> None:
    """LM-Domains v0 keeps GSM8K solutions as its math domain and alignment; v1 has the procedural math domain
    (and its tokenizer), lr 1e-4 at small only, the preconditioned reward; the math domain's pretraining windows
    hold no GSM8K feedback or eval problem either way."""
    from vpt_gym.envs.lm import LM_PRESETS
    from vpt_gym.envs.lm_domains import DOMAINS_VERSIONS
    from vpt_gym.lm.corpus import PROCEDURAL_SOURCE

    kwargs = {"size": "tiny", "device": "cpu", "heldout_eval_windows": 4}
    v0 = gym.make("vpt/LM-Domains-v0", **kwargs).unwrapped
    v1 = gym.make("vpt/LM-Domains-v1", **kwargs).unwrapped
    assert v0.data_sources["math"].startswith("gsm8k:") and v0.value_estimator.name == "alignment"
    assert v1.data_sources["math"] == PROCEDURAL_SOURCE and v1.value_estimator.name == "preconditioned"
    assert v0.learner.lr == v1.learner.lr == LM_PRESETS["tiny"].lr
    assert DOMAINS_VERSIONS[1].lr == {"small": 1e-4}
    assert v0.data_sources["code"] == v1.data_sources["code"] and v0.data_sources["prose"] == v1.data_sources["prose"]
    with pytest.raises(ValueError, match=r"math_stream='web' is not accepted.*procedural"):
        gym.make("vpt/LM-Domains-v1", size="tiny", math_stream="web")


def _assert_same_episode(a: gym.Env, b: gym.Env, *, seed: int, actions: tuple[int, ...]) -> None:
    """Two envs give the same first observation, rewards and final eval, bit for bit, on one seed and actions."""
    import numpy as np

    runs = []
    for env in (a, b):
        obs, _ = env.reset(seed=seed)
        steps = [env.step(action) for action in actions]
        runs.append((obs, [float(r) for _, r, *_ in steps], steps[-1][4]["eval"]))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1] and runs[0][2] == runs[1][2]


@needs("vision")
def test_ssl_versions_differ_only_in_the_default_reward() -> None:
    """SSL v1 ids default to value_gain; with an explicit reward= a v1 episode equals v0's bit for bit (same learner,
    menu, data and generators)."""
    for family in ("SSL-Augment", "SSL-MaskContinuous"):
        v1 = gym.make(f"vpt/{family}-v1", size="tiny", budget=3, device="cpu")
        assert v1.unwrapped.value_estimator.name == "value_gain", family
    v0 = gym.make("vpt/SSL-Mask-v0", size="tiny", budget=3, device="cpu")
    same = gym.make("vpt/SSL-Mask-v1", size="tiny", budget=3, device="cpu", reward="alignment")
    assert v0.unwrapped.value_estimator.name == "alignment"
    _assert_same_episode(v0, same, seed=2, actions=(0, 5, 12))


@needs("vision")
def test_ssl_augment_v2_is_v1_with_simclr_and_its_own_small_preset() -> None:
    """SSL-Augment-v2 = v1 with objective="simclr" and no local crops (tiny: bit for bit); at small its preset differs
    from v1's only in the documented fields (a SimCLR base of 300 steps, lr 1e-3)."""
    import dataclasses

    from vpt_gym.envs.vision import SSL_VERSIONS, VISION_PRESETS

    v2 = gym.make("vpt/SSL-Augment-v2", size="tiny", budget=3, device="cpu")
    same = gym.make("vpt/SSL-Augment-v1", size="tiny", budget=3, device="cpu", objective="simclr", num_local=0)
    assert v2.unwrapped.value_estimator.name == "value_gain" and v2.unwrapped.learner.objective == "simclr"
    assert v2.unwrapped.task_space.num_local == 0
    _assert_same_episode(v2, same, seed=3, actions=(0, 3, 5))
    v1_small, v2_small = VISION_PRESETS["small"], SSL_VERSIONS[2].presets["small"]
    changed = {f.name for f in dataclasses.fields(v1_small) if getattr(v1_small, f.name) != getattr(v2_small, f.name)}
    assert changed == {"model", "lr", "num_local"} and (v2_small.lr, v2_small.num_local) == (1e-3, 0)
    model_changed = {f.name: getattr(v2_small.model, f.name) for f in dataclasses.fields(v1_small.model)
                     if getattr(v1_small.model, f.name) != getattr(v2_small.model, f.name)}
    assert model_changed == {"objective": "simclr", "base_steps": 300, "base_lr": 1e-3}
    assert [v.objective for v in SSL_VERSIONS.values()] == ["dino", "dino", "simclr", "simclr"]


def _rewards_and_eval(env: gym.Env, *, seed: int, actions: tuple[int, ...]) -> tuple[list[float], dict]:
    env.reset(seed=seed)
    steps = [env.step(action) for action in actions]
    return [float(r) for _, r, *_ in steps], steps[-1][4]["eval"]


@needs("vision")
def test_ssl_augment_v3_is_v2_plus_the_papers_keep_masks() -> None:
    """SSL-Augment-v3 = v2's learner, preset and reward; its menu is v2's six recipes (tasks 0-5, bit for bit: the same
    rewards and final eval as v2's episode) then SSL-Mask's random / block keep-masks at keep 0.4 / 0.55 on the
    standard recipe (tasks 6-9, bit for bit against SSL-Mask-v1 on v2's SimCLR learner). Only the observation's
    per-task block differs (K = 10)."""
    from vpt_gym.envs.vision import SSL_VERSIONS

    v3 = gym.make("vpt/SSL-Augment-v3", size="tiny", budget=3, device="cpu")
    v2 = gym.make("vpt/SSL-Augment-v2", size="tiny", budget=3, device="cpu")
    names = [t.name for t in v3.unwrapped.task_space.tasks]
    assert names[:6] == [t.name for t in v2.unwrapped.task_space.tasks]
    assert names[6:] == ["random_k0.4", "random_k0.55", "block_k0.4", "block_k0.55"]
    assert v3.action_space.n == 10 and SSL_VERSIONS[3].presets == SSL_VERSIONS[2].presets
    assert v3.unwrapped.value_estimator.name == "value_gain" and v3.unwrapped.learner.objective == "simclr"
    assert _rewards_and_eval(v3, seed=3, actions=(0, 3, 5)) == _rewards_and_eval(v2, seed=3, actions=(0, 3, 5))
    mask = gym.make("vpt/SSL-Mask-v1", size="tiny", budget=3, device="cpu", objective="simclr", num_local=0)
    mask_names = [t.name for t in mask.unwrapped.task_space.tasks]
    v3_actions = (6, 9, 0)
    mask_actions = tuple(mask_names.index(names[a]) if a else 0 for a in v3_actions)
    assert mask_actions == (1, 5, 0)
    assert _rewards_and_eval(v3, seed=4, actions=v3_actions) == _rewards_and_eval(mask, seed=4, actions=mask_actions)


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_every_entry_point_has_an_explicit_keyword_signature(env_id: str) -> None:
    """inspect.signature of each registered factory lists exactly the keywords gym.make accepts (no **kwargs),
    with the builder's defaults; a keyword outside it is refused by name before any work."""
    import inspect

    from vpt_gym.envs import env_keywords

    module, _, name = ENV_IDS[env_id]["entry_point"].partition(":")
    try:
        factory = getattr(importlib.import_module(module), name)
    except ImportError as exc:
        pytest.skip(f"needs an extra: {exc}")
    params = inspect.signature(factory).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values()), env_id
    assert tuple(sorted(params)) == env_keywords(env_id)
    assert params["budget"].default in (None, 256)  # the builder's default, not a placeholder
    with pytest.raises(ValueError, match=r"has no keyword\(s\) \['no_such_knob'\]; accepted: \[.*'budget'"):
        factory(no_such_knob=1)


def test_a_registry_record_refuses_an_unknown_action_kind() -> None:
    fields = {**dict(ENV_IDS["vpt/Toy-Alignment-v0"]), "action": "Discrete(5)"}
    with pytest.raises(ValueError, match=r"action='Discrete\(5\)' is not accepted; choose one of \('discrete', "):
        EnvSpec(**fields)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ENV_IDS["vpt/Toy-Alignment-v0"].action = "box"  # type: ignore[misc]
