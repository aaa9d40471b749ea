"""The engine stays pure: no Django, no network, no clock, no randomness; same input, same output."""

from __future__ import annotations

import ast
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from procedures.engine import Event, step
from procedures.tests.engine_fixtures import NOW, catalog_of, choices, make_spec, step_dict, text

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ENGINE_DIR = PROJECT_ROOT / "procedures" / "engine"
FORBIDDEN = {"django", "linebot", "requests", "urllib", "urllib3", "http", "socket", "messaging", "aiohttp", "httpx"}
NONDETERMINISTIC = {"random", "secrets", "uuid", "time", "os"}


def _module_file(module: str) -> Path | None:
    base = PROJECT_ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    package = ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{parent}.{node.module}" if node.module else parent
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    """Every project module reachable from the engine package, with what it imports."""
    graph: dict[str, set[str]] = {}
    todo = [path for path in ENGINE_DIR.glob("*.py")]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        imported = _imports(path)
        graph[str(path.relative_to(PROJECT_ROOT))] = imported
        for module in imported:
            if module.startswith("procedures."):
                target = _module_file(module)
                if target is not None:
                    todo.append(target)
    return graph


def test_engine_import_graph_has_no_django_or_network_modules():
    graph = import_graph()
    assert "procedures/engine/core.py" in graph and "procedures/spec.py" in graph
    offenders = {
        path: sorted(module for module in modules if module.split(".")[0] in FORBIDDEN)
        for path, modules in graph.items()
    }
    assert {path: bad for path, bad in offenders.items() if bad} == {}


def test_engine_uses_no_clock_or_randomness():
    for path in ENGINE_DIR.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        modules = {module.split(".")[0] for module in _imports(path)}
        assert not modules & NONDETERMINISTIC, (path.name, modules & NONDETERMINISTIC)
        calls = {
            node.func.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        }
        assert not calls & {"now", "today", "utcnow"}, path.name


def test_importing_the_engine_loads_no_django_or_network_module():
    code = (
        "import sys, procedures.engine\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN)!r})\n"
        "print(','.join(bad))\n"
    )
    completed = subprocess.run(  # noqa: S603 - fixed command, our own interpreter
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert completed.stdout.strip() == ""


def test_step_gives_equal_results_for_equal_inputs():
    spec = make_spec(
        step_dict("name", "short_text", "お名前"),
        step_dict("item", "single_choice", "品目", choices=choices("sofa", "bed")),
        step_dict("day", "date", "収集日", options={"min_days": 2}),
    )
    catalog = catalog_of(spec)
    events = [text("粗大ごみ"), text("山田"), text("2"), Event(type="date", value="2026-06-10"), Event(type="command", name="submit")]
    runs = []
    for _ in range(2):
        state, now, results = None, NOW, []
        for event in events:
            now += timedelta(minutes=1)
            result = step(catalog, state, event, now)
            results.append(result)
            state = result.state
        runs.append(results)
    assert runs[0] == runs[1]
    assert runs[0][-1].effects  # the scenario really went all the way
