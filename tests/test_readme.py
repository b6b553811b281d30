"""Every fenced ``python`` and ``bash``/``shell`` block of README.md runs here, in README order.

Blocks run in one temporary working directory per session (``README_WORKDIR``), so a block may use the files
an earlier one wrote (``results/``, ``runs/``, ``my_designer.py``). The folder holds links to the repository's
``benchmarks/`` and to the data folder as ``../shared/data``, so the README's commands run unchanged; the
environment has ``HF_HUB_OFFLINE=1``, ``VPT_GYM_DATA`` (the data folder) and the session's ``VPT_GYM_CACHE``
(``tests/conftest.py``), and no thread-count variable (``OMP_NUM_THREADS`` ...: a plain shell has none). Each block
runs in a fresh process: python blocks as a script file, shell blocks in ``bash -eo pipefail``.

A block whose first line is ``# NAME.py`` or ``# NAME.toml`` is written to ``NAME`` when the folder is made (the
README tells the reader to save it so); a python one also runs. An HTML comment right before a fence marks it
(blank lines between are allowed):

- ``<!-- readme-test: skip, REASON -->``: never run here; reported as skipped with REASON;
- ``<!-- readme-test: slow, REASON -->``: runs only under ``-m slow`` (must not need earlier blocks' files);
- ``<!-- readme-test: gpu, REASON -->``: runs only under ``-m gpu`` on a machine with CUDA.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from extras import env_extras, missing_modules

from vpt_gym.envs import ENV_IDS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RUN_LANGS = {"python", "bash", "shell", "sh"}
FILE_LANGS = {"python", "toml"}
BLOCK_TIMEOUT_S = 600


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README."""

    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    marker: str | None  # "skip" | "slow" | "gpu" | None
    reason: str
    filename: str | None  # first-line "# NAME.py" / "# NAME.toml"


_FENCE = re.compile(r"^```([\w+-]*)\s*$")
_MARKER = re.compile(r"^<!--\s*readme-test:\s*(skip|slow|gpu)\s*(?:,\s*(.*?))?\s*-->\s*$")
_FILENAME = re.compile(r"^#\s*([\w.-]+\.(?:py|toml))\s*$")


def parse_blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text`` with their markers.

    Raises:
        ValueError: an unclosed fence, or a ``readme-test`` marker that is not right before a fence.
    """
    lines = text.splitlines()
    blocks: list[Block] = []
    pending: tuple[str, str, int] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = _MARKER.match(line.strip())
        if marker:
            pending = (marker.group(1), marker.group(2) or marker.group(1), i + 1)
        elif "readme-test" in line:
            raise ValueError(f"README.md:{i + 1}: malformed readme-test marker {line.strip()!r}")
        fence = _FENCE.match(line)
        if fence:
            start = i
            i += 1
            body = []
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            if i == len(lines):
                raise ValueError(f"README.md:{start + 1}: unclosed code fence")
            first = _FILENAME.match(body[0]) if body else None
            kind, reason = (pending[0], pending[1]) if pending else (None, "")
            blocks.append(Block(start + 1, fence.group(1).lower(), "\n".join(body) + "\n", kind, reason,
                                first.group(1) if first else None))
            pending = None
        elif pending is not None and line.strip() and not marker:
            raise ValueError(f"README.md:{pending[2]}: a readme-test marker must come right before a code fence")
        i += 1
    return blocks


BLOCKS = parse_blocks(README.read_text(encoding="utf-8"))
RUNNABLE = [b for b in BLOCKS if b.lang in RUN_LANGS]

_ENV_ID = re.compile(r"vpt/[A-Za-z]+(?:-[A-Za-z]+)*-v\d+")
_SUITE_FILE = re.compile(r"[\w./-]+\.toml")
_USES_EXTRA = (
    (re.compile(r"\bstable_baselines3\b|\bsb3_contrib\b|vpt-gym train\b|\bsb3:"), "sb3"),
    (re.compile(r"vpt-gym leaderboard\b"), "bench"),
)


def block_extras(block: Block, blocks: list[Block] = BLOCKS) -> tuple[str, ...]:
    """The extras a block needs, sorted: ``sb3`` (it imports SB3, trains or loads an SB3 designer), ``bench`` (it
    renders a leaderboard), and those of every env it names, directly or in a suite file it runs (a repository
    file, or one that a block of ``blocks`` writes)."""
    needed = {extra for pattern, extra in _USES_EXTRA if pattern.search(block.code)}
    text = block.code
    for name in _SUITE_FILE.findall(block.code):
        if (ROOT / name).is_file():
            text += (ROOT / name).read_text(encoding="utf-8")
        text += "".join(b.code for b in blocks if b.filename == Path(name).name)
    for env_id in set(_ENV_ID.findall(text)):
        if env_id in ENV_IDS:
            needed.update(env_extras(env_id))
    return tuple(sorted(needed))


def _param(block: Block):
    marks = []
    if block.marker == "slow":
        marks.append(pytest.mark.slow)
    if block.marker == "gpu":
        marks.append(pytest.mark.gpu)
    return pytest.param(block, marks=marks, id=f"line{block.line}-{block.lang}")


@pytest.fixture(scope="session")
def readme_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<tmp>/repo`` with ``benchmarks`` linked to the repository's, ``<tmp>/shared/data`` to the data folder,
    and every file block (``# NAME.py``, ``# NAME.toml``) written, so a slow block runs without earlier ones."""
    top = tmp_path_factory.mktemp("readme")
    work = top / "repo"
    work.mkdir()
    (work / "benchmarks").symlink_to(ROOT / "benchmarks", target_is_directory=True)
    (top / "shared").mkdir()
    (top / "shared" / "data").symlink_to(Path(os.environ["VPT_GYM_DATA"]).resolve(), target_is_directory=True)
    for block in BLOCKS:
        if block.filename:
            (work / block.filename).write_text(block.code, encoding="utf-8")
    return work


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""Removed from a block's environment: a new user's shell does not set them (setting them hid a hang)."""


def _shell_env() -> dict[str, str]:
    """The environment of a user's plain shell: this one (conftest has set ``VPT_GYM_DATA``, ``VPT_GYM_CACHE``
    and ``HF_HUB_OFFLINE``) with the venv's ``vpt-gym`` on ``PATH`` and no thread-count variables."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")  # the venv's vpt-gym
    return env


def _run(block: Block, workdir: Path) -> None:
    """Run a block in a fresh process (as a user would, and so that a block that starts worker processes
    cannot inherit or hang the test process), with a timeout."""
    if block.lang == "python":
        script = workdir / f"_readme_block_{block.line}.py"
        script.write_text(block.code, encoding="utf-8")
        command = [sys.executable, script.name]
    else:
        command = ["bash", "-e", "-o", "pipefail", "-c", block.code]
    proc = subprocess.run(command, cwd=workdir, env=_shell_env(), capture_output=True, text=True,
                          timeout=BLOCK_TIMEOUT_S)
    if proc.returncode != 0:
        pytest.fail(f"README.md:{block.line} ({block.lang}) exited {proc.returncode}\n--- block ---\n{block.code}"
                    f"--- stdout (tail) ---\n{proc.stdout[-3000:]}\n--- stderr (tail) ---\n{proc.stderr[-3000:]}")


@pytest.mark.parametrize("block", [_param(b) for b in RUNNABLE])
def test_readme_block_runs(block: Block, readme_workdir: Path) -> None:
    if block.marker == "skip":
        pytest.skip(f"README.md:{block.line}: {block.reason}")
    if block.marker == "gpu":
        import torch

        if not torch.cuda.is_available():
            pytest.skip(f"README.md:{block.line}: {block.reason} (no CUDA device here)")
    extras = block_extras(block)
    missing = missing_modules(*extras)
    if missing:
        pytest.skip(f"README.md:{block.line}: needs the {'/'.join(extras)} extra(s); {missing} not installed")
    _run(block, readme_workdir)


def test_block_extras_from_imports_commands_and_suite_files() -> None:
    suite = Block(1, "toml", '# s.toml\n[[envs]]\nid = "vpt/SSL-Mask-v0"\n', None, "", "s.toml")
    cases = {
        "from stable_baselines3 import PPO\n": ("sb3",),
        "vpt-gym run vpt/Toy-Alignment-v0 --designer sb3:runs/ppo_toy\n": ("sb3",),
        "vpt-gym run vpt/SSL-Augment-v0 --size tiny\n": ("vision",),
        "vpt-gym bench s.toml --out r.jsonl\n": ("vision",),  # through the suite file a block writes
        "vpt-gym bench benchmarks/suites/tiny.toml --out r.jsonl\nvpt-gym leaderboard r.jsonl\n": ("bench", "vision"),
        "vpt-gym run vpt/LM-SoftTargets-v0 --size tiny\n": (),
    }
    for code, extras in cases.items():
        assert block_extras(Block(2, "bash", code, None, "", None), [suite]) == extras, code


def test_blocks_run_without_thread_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    env = _shell_env()
    assert not set(THREAD_VARIABLES) & set(env)
    assert env["VPT_GYM_DATA"] == os.environ["VPT_GYM_DATA"]


def test_parse_blocks_reads_markers_and_files() -> None:
    text = ("intro\n<!-- readme-test: skip, needs a CUDA GPU -->\n\n```bash\nvpt-gym run x\n```\n"
            "```python\n# my_designer.py\nimport numpy\n```\n<!-- readme-test: slow -->\n```sh\necho hi\n```\n"
            "```toml\n# s.toml\nname = 1\n```\n")
    blocks = parse_blocks(text)
    assert [(b.line, b.lang, b.marker, b.reason, b.filename) for b in blocks] == [
        (4, "bash", "skip", "needs a CUDA GPU", None),
        (7, "python", None, "", "my_designer.py"),
        (12, "sh", "slow", "slow", None),
        (15, "toml", None, "", "s.toml"),
    ]
    assert blocks[0].code == "vpt-gym run x\n"
    assert all(b.lang in FILE_LANGS for b in BLOCKS if b.filename), "a file block must be python or toml"
    with pytest.raises(ValueError, match="right before a code fence"):
        parse_blocks("<!-- readme-test: skip, x -->\ntext\n```bash\nls\n```\n")
    with pytest.raises(ValueError, match="unclosed"):
        parse_blocks("```bash\nls\n")
    with pytest.raises(ValueError, match="malformed"):
        parse_blocks("<!-- readme-test: maybe -->\n```bash\nls\n```\n")


def test_readme_covers_the_guide() -> None:
    """The README's sections in the issue's order, and the blocks a new user runs are not skipped."""
    headings = [line[3:].strip() for line in README.read_text(encoding="utf-8").splitlines() if line.startswith("## ")]
    assert headings == ["Setup and the main job", "Environments", "Train a designer with Stable-Baselines3",
                        "Write your own designer", "Put it on the leaderboard", "Reward modes and what each costs",
                        "Reward validity", "Performance", "Scaling out", "The paper preset on a GPU", "Troubleshooting", "Citing",
                        "License"]
    default = [b for b in RUNNABLE if b.marker is None]
    joined = "\n".join(b.code for b in default)
    for needle in ("vpt-gym run vpt/LM-SoftTargets-v1 --size tiny", "PPO(", "vpt-gym train vpt/Toy-Alignment-v0",
                   "--designer my_designer.py:EpsilonGreedy", "vpt-gym bench benchmarks/suites/tiny.toml",
                   "--designers fixed random", "vpt-gym leaderboard", "vpt-gym validate", "gym.make_vec"):
        assert needle in joined, f"no default-run README block contains {needle!r}"
    skipped = [b for b in RUNNABLE if b.marker == "skip"]
    assert all(b.reason and b.reason != "skip" for b in skipped), "every skipped block needs a visible reason"
    install = next(b for b in skipped if "pip install" in b.code)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -e '.[all]'" in install.code and "pip install -e '.[all]'" in ci
    test_cmd = next(b for b in skipped if "pytest" in b.code)
    assert test_cmd.code.strip() == "HF_HUB_OFFLINE=1 VPT_GYM_DATA=../shared/data python -m pytest"
    assert "python -m pytest\n" in ci and "HF_HUB_OFFLINE=1" in ci


# ------------------------------------------------------------------------------------------- troubleshooting
def _troubleshooting() -> str:
    text = README.read_text(encoding="utf-8")
    return text[text.index("## Troubleshooting"):text.index("## Citing")]


def _error_of(trigger) -> str:
    try:
        trigger()
    except Exception as exc:  # noqa: BLE001 - any error type: the message is what is checked
        return str(exc)
    raise AssertionError("the trigger raised nothing")


def _missing_data() -> None:
    import gymnasium as gym

    import vpt_gym  # noqa: F401

    gym.make("vpt/LM-SoftTargets-v0", size="tiny", data="no_such_data_folder")


def _missing_gsm8k(tmp: Path) -> None:
    from vpt_gym.lm.corpus import load_math_corpus

    load_math_corpus(tmp)


def _bad_action() -> None:
    import gymnasium as gym

    import vpt_gym  # noqa: F401

    env = gym.make("vpt/Toy-Alignment-v0", budget=4)
    env.reset(seed=0)
    env.step(9)


def _unknown_designer() -> None:
    import gymnasium as gym

    import vpt_gym  # noqa: F401
    from vpt_gym.agents import make_designer

    make_designer("no_such_designer", gym.make("vpt/Toy-Alignment-v0", budget=4))


def _not_a_designer(tmp: Path) -> None:
    import gymnasium as gym

    from vpt_gym.agents import make_designer

    (tmp / "half_designer.py").write_text("class Half:\n    def __init__(self, env):\n        pass\n")
    make_designer(f"{tmp / 'half_designer.py'}:Half", gym.make("vpt/Toy-Alignment-v0", budget=4))


def _cuda_without_gpu() -> None:
    from vpt_gym.lm.model import resolve_device

    resolve_device("cuda")


def test_troubleshooting_lists_the_current_messages(tmp_path: Path) -> None:
    """Each bold message of the troubleshooting list is part of the error its trigger raises today."""
    import torch

    section = _troubleshooting()
    cases = {
        "point --data or VPT_GYM_DATA at a folder holding gsm8k/train.jsonl and gsm8k/test.jsonl": _missing_data,
        "the data folder needs gsm8k/train.jsonl and gsm8k/test.jsonl": lambda: _missing_gsm8k(tmp_path),
        "is outside the action space": _bad_action,
        "or your own class as FILE.py:ClassName": _unknown_designer,
        "not a vpt_gym Designer": lambda: _not_a_designer(tmp_path),
    }
    if not torch.cuda.is_available():
        cases["requested but CUDA is not available"] = _cuda_without_gpu
    bold = set(re.findall(r"\*\*`([^`]+)`\*\*", section))
    assert bold >= set(cases), f"troubleshooting lacks {sorted(set(cases) - bold)}"
    for quote, trigger in cases.items():
        message = _error_of(trigger)
        assert quote in message, f"README quotes {quote!r}; the code now says {message!r}"
    assert "'no_such_data_folder' does not exist (data='no_such_data_folder'" in _error_of(_missing_data)
    assert "(accepted: 0..4; env.unwrapped.task_names lists the menu)" in _error_of(_bad_action)
    assert "missing: ['name', 'reset', 'act', 'observe']" in _error_of(lambda: _not_a_designer(tmp_path))


def test_train_numbers_are_for_the_commands_budget() -> None:
    """The PPO / fixed / random numbers quoted after the `vpt-gym train` example are for the budget its
    commands run at (the commands once used the default 256 while the numbers were for 64)."""
    text = README.read_text(encoding="utf-8")
    block = next(b for b in RUNNABLE if "vpt-gym train vpt/Toy-Alignment-v0" in b.code)
    train, run = (line for line in block.code.splitlines() if line.startswith("vpt-gym "))
    budget = re.search(r"--budget (\d+)", train)
    assert budget is not None and f"--budget {budget.group(1)}" in run, block.code
    after = text[text.index(block.code):]
    quoted = after[:after.index("rl-zoo3's format")]
    assert f"at budget {budget.group(1)}" in quoted, quoted
