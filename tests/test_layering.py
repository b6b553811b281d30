"""The package's layering, read statically from the source with ``ast`` (every import, also those inside functions,
``importlib.import_module`` calls and ``"vpt_gym.module:name"`` entry-point strings).

- no import cycle among ``vpt_gym`` modules;
- no module imports another module's private (``_name``) names;
- the vision side (``vpt_gym.vision``, ``vpt_gym.envs.vision``) and the LM side (``vpt_gym.lm``,
  ``vpt_gym.envs.lm``, ``vpt_gym.envs.lm_domains``) do not import each other;
- ``vpt_gym.envs`` does not import ``vpt_gym.agents``; ``vpt_gym.agents`` does not import ``vpt_gym.benchmark``;
- the env core (``vpt_gym/envs/task_design``) never probes its parts with ``getattr``/``hasattr``: optional
  capabilities are ``vpt_gym.core`` Protocols resolved once at construction;
- no file under ``vpt_gym/`` or ``tests/`` points at a doc the repository does not hold (``DESIGN.md``,
  ``STYLE.md``), and package code does not point at the data folder beside the repository (``../shared``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vpt_gym"

VISION_SIDE = ("vpt_gym.vision", "vpt_gym.envs.vision")
LM_SIDE = ("vpt_gym.lm", "vpt_gym.envs.lm", "vpt_gym.envs.lm_domains")
MISSING_DOCS = ("DESIGN.md", "STYLE.md")
SIBLING_DATA = "../shared"
SIBLING_DATA_ALLOWED = {
    # the README's commands name the data folder as ../shared/data; these files reproduce or document that layout
    "tests/test_readme.py": "runs the README's blocks in a temp folder laid out as the README describes",
    "tests/conftest.py": "the default data folder when $VPT_GYM_DATA is unset, as the README's Data section says",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _owner(name: str) -> str | None:
    """The longest ``vpt_gym`` module that ``name`` (a module or ``module.attribute``) lies in."""
    while name not in MODULES:
        if "." not in name:
            return None
        name = name.rsplit(".", 1)[0]
    return name


TARGET = re.compile(r"^(vpt_gym(?:\.\w+)+)(?::(\w+))?$")
"""A ``"module:name"`` target string (an entry point, loaded with ``importlib``) or a module name."""


def _imports(module: str) -> list[tuple[str, str | None, int]]:
    """``(imported vpt_gym module, imported name or None, line)`` for every import of ``module``: import
    statements, ``importlib.import_module("vpt_gym...")`` calls and ``"vpt_gym.module:name"`` target strings
    (entry points the package loads by name)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and (match := TARGET.match(node.value)):
            owner = _owner(match.group(1))
            if owner is not None and match.group(2):  # "module:name"
                found.append((owner, match.group(2), node.lineno))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            owner = _owner(node.args[0].value)
            if owner is not None:
                found.append((owner, None, node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                owner = _owner(alias.name)
                if owner is not None:
                    found.append((owner, None, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                full = f"{source}.{alias.name}"
                if full in MODULES:  # `from package import submodule`
                    found.append((full, None, node.lineno))
                else:
                    owner = _owner(source)
                    if owner is not None:
                        found.append((owner, alias.name, node.lineno))
    return found


GRAPH: dict[str, set[str]] = {m: {t for t, _, _ in _imports(m) if t != m} for m in MODULES}


def _in(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _edges(source: tuple[str, ...], target: tuple[str, ...]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in GRAPH.items() if _in(a, source) for b in targets if _in(b, target))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def test_the_scan_sees_the_package() -> None:
    assert {"vpt_gym", "vpt_gym.runner", "vpt_gym.agents", "vpt_gym.agents.sb3", "vpt_gym.utils"} <= set(MODULES)
    assert "vpt_gym.envs.task_design" in GRAPH["vpt_gym.envs.toy"]  # a top-level import
    assert "vpt_gym.runner" in GRAPH["vpt_gym.benchmark.runner"]  # an import inside a function
    assert "vpt_gym.envs.toy" in GRAPH["vpt_gym.envs"]  # an entry-point string, loaded with importlib
    assert ("vpt_gym.envs.toy", "make_toy_env") in {(m, n) for m, n, _ in _imports("vpt_gym.envs")}


def test_cycle_finder_finds_a_known_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycle() -> None:
    assert _cycles(GRAPH) == []


def test_no_private_cross_module_import() -> None:
    private = [f"{m}:{line} imports {name} from {source}" for m in MODULES for source, name, line in _imports(m)
               if name is not None and name.startswith("_") and not name.startswith("__") and source != m]
    assert private == []


@pytest.mark.parametrize(("source", "target"), [(VISION_SIDE, LM_SIDE), (LM_SIDE, VISION_SIDE)],
                         ids=["vision->lm", "lm->vision"])
def test_vision_and_lm_sides_are_independent(source: tuple[str, ...], target: tuple[str, ...]) -> None:
    assert _edges(source, target) == []


def test_envs_do_not_import_agents() -> None:
    assert _edges(("vpt_gym.envs",), ("vpt_gym.agents",)) == []


def test_agents_do_not_import_the_benchmark() -> None:
    assert _edges(("vpt_gym.agents",), ("vpt_gym.benchmark",)) == []


def _text_files() -> list[Path]:
    """The text files under ``vpt_gym/`` and ``tests/``, this file (which names what it looks for) excepted."""
    return sorted(p for folder in (PACKAGE, ROOT / "tests") for p in folder.rglob("*")
                  if p.is_file() and p.suffix in {".py", ".md", ".toml", ".yml", ".txt", ".jsonl"}
                  and p.resolve() != Path(__file__).resolve() and "__pycache__" not in p.parts)


def test_no_reference_to_docs_the_repository_does_not_hold() -> None:
    found = [f"{p.relative_to(ROOT)} names {doc}" for p in _text_files()
             for doc in MISSING_DOCS if doc in p.read_text(encoding="utf-8", errors="replace")]
    assert found == []


def test_no_reference_to_the_sibling_data_folder() -> None:
    found = [str(p.relative_to(ROOT)) for p in _text_files()
             if SIBLING_DATA in p.read_text(encoding="utf-8", errors="replace")]
    unexpected = [f for f in found if f not in SIBLING_DATA_ALLOWED]
    assert unexpected == [], f"files naming {SIBLING_DATA}: {unexpected}"
    stale = sorted(set(SIBLING_DATA_ALLOWED) - set(found))
    assert stale == [], f"allowed but no longer naming {SIBLING_DATA} (drop them from SIBLING_DATA_ALLOWED): {stale}"


def test_the_env_core_does_not_probe_its_parts() -> None:
    """No ``getattr(self.task_space, ...)``-style probing of a part in the env core (issue: hidden interface)."""
    parts = {"task_space", "feedback", "learner", "stream"}
    found = []
    for path in sorted((PACKAGE / "envs" / "task_design").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in ("getattr", "hasattr") and node.args):
                continue
            target = node.args[0]
            name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
            if name in parts:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not found, "\n".join(found)
