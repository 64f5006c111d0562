"""The shape of the code: no two modules of codecdash import each other, even through others
or from inside a function; the AWS helpers have one home."""

from __future__ import annotations

import ast
import fnmatch
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "codecdash"


def module_names(root: Path = PACKAGE) -> dict[str, Path]:
    """codecdash.x.y -> its file (a package is its __init__.py)."""
    names: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The codecdash modules `name` imports, anywhere in it (functions and TYPE_CHECKING
    blocks too). `from pkg import mod` imports pkg.mod when mod is a module; else pkg."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parts, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in known:
                    found.add(full)
                elif base in known:
                    found.add(base)
    found.discard(name)
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    known = module_names(root)
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import one another (strongly connected, Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert "codecdash.cli" in graph and "codecdash.deploy.stack" in graph
    assert cycles(graph) == []


def test_the_cycle_check_finds_cycles(tmp_path: Path) -> None:
    root = tmp_path / "codecdash"
    (root / "pkg").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "pkg" / "__init__.py").write_text("")
    (root / "a.py").write_text("def f():\n    from codecdash.pkg import b\n")
    (root / "pkg" / "b.py").write_text("from .c import x\n")
    (root / "pkg" / "c.py").write_text("import codecdash.a\nx = 1\n")
    (root / "d.py").write_text("from codecdash import a\n")
    graph = import_graph(root)
    assert graph["codecdash.d"] == {"codecdash.a"}
    assert cycles(graph) == [["codecdash.a", "codecdash.pkg.b", "codecdash.pkg.c"]]


def test_one_home_for_aws_clients_and_one_event_loop_per_command() -> None:
    """boto3 sessions are made in aws_clients.py only; no module runs a throwaway event loop
    but the Lambda's, which keeps one per container."""
    sessions = {
        name
        for name, path in module_names().items()
        if "boto3.session.Session(" in path.read_text(encoding="utf-8")
    }
    assert sessions == {"codecdash.aws_clients"}
    loops = {
        name
        for name, path in module_names().items()
        if "new_event_loop(" in path.read_text(encoding="utf-8")
    }
    assert loops <= {"codecdash.aws_lambda"}


def test_the_command_line_starts_without_boto3() -> None:
    """boto3 takes a tenth of a second to import: only the AWS commands load it, when run."""
    code = "import sys, codecdash.cli; print(sorted({'boto3', 'botocore'} & set(sys.modules)))"
    command = [sys.executable, "-c", code]
    answer = subprocess.run(command, capture_output=True, text=True, check=True)
    assert answer.stdout.strip() == "[]"


# The layers, lowest first (docs/architecture.md draws the same map). A module may import
# its own layer and those below it, never one above. The first pattern that matches a
# module names its layer; `*.command` modules (click commands) are entry points.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("entry points", ("codecdash.*.command", "codecdash.cli", "codecdash.__main__")),
    (
        "foundation",
        (
            "codecdash",
            "codecdash.client",
            "codecdash.step_sender",
            "codecdash.ids",
            "codecdash.timefmt",
            "codecdash.net",
            "codecdash.models",
            "codecdash.snapshot_models",
            "codecdash.config",
            "codecdash.codec_metrics",
            "codecdash.curve_rules",
            "codecdash.curve_models",
            "codecdash.results",
            "codecdash.results.reader",
            "codecdash.results.bundled",
            "codecdash.results.datasets",
            "codecdash.results.sequences",
            "codecdash.redact",
            "codecdash.curation_models",
            "codecdash.page_vocabulary",
            "codecdash.sources.base",
            "codecdash.events",
            "codecdash.aws_clients",
            "codecdash.experiments.vocabulary",
            "codecdash.experiments.query",
            "codecdash.alerts.model",
            "codecdash.alerts.facts",
            "codecdash.alerts.rules",
            "codecdash.alerts.rules.*",
            "codecdash.alerts.message",
            "codecdash.alerts.redact",
            "codecdash.sources.checks",
        ),
    ),
    ("store", ("codecdash.store", "codecdash.store.*")),
    (
        "services",
        (
            "codecdash.experiments",
            "codecdash.experiments.*",
            "codecdash.alerts",
            "codecdash.alerts.*",
            "codecdash.backup",
            "codecdash.backup.*",
        ),
    ),
    ("sources", ("codecdash.sources", "codecdash.sources.*")),
    ("snapshot", ("codecdash.snapshot",)),
    ("api", ("codecdash.api", "codecdash.api.*")),
    ("applications", ("*",)),
)
RANK = {
    "foundation": 0,
    "store": 1,
    "services": 2,
    "sources": 3,
    "snapshot": 4,
    "api": 5,
    "applications": 6,
    "entry points": 7,
}


def layer_of(module: str) -> str:
    for name, patterns in LAYERS:
        if any(fnmatch.fnmatchcase(module, pattern) for pattern in patterns):
            return name
    raise AssertionError(module)  # "*" matches every module


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} ({layer_of(module)}) imports {other} ({layer_of(other)})"
        for module, others in graph.items()
        for other in others
        if RANK[layer_of(other)] > RANK[layer_of(module)]
    )


def test_imports_point_down_the_layers() -> None:
    """sources → snapshot → API → page: nothing imports a layer above its own."""
    graph = import_graph()
    assert {layer_of(name) for name in graph} == set(RANK)
    assert upward_imports(graph) == []


def test_the_layer_check_finds_an_upward_import(tmp_path: Path) -> None:
    root = tmp_path / "codecdash"
    (root / "store").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "store" / "__init__.py").write_text("")
    (root / "store" / "rows.py").write_text("def f():\n    from codecdash.api import app\n")
    (root / "api").mkdir()
    (root / "api" / "__init__.py").write_text("")
    (root / "api" / "app.py").write_text("from codecdash.store import rows\n")
    assert upward_imports(import_graph(root)) == [
        "codecdash.store.rows (store) imports codecdash.api.app (api)"
    ]


def third_party(path: Path) -> dict[str, set[str]]:
    """The top-level packages a module imports from, each with the names it takes."""
    found: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.setdefault(alias.name.split(".")[0], set()).add("*")
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            top = node.module.split(".")[0]
            found.setdefault(top, set()).update(alias.name for alias in node.names)
    return found


def test_each_library_stays_in_its_layer() -> None:
    """SQL is written in store/ only (elsewhere a Connection may be named in a type); the web
    framework lives in api/ (and the server module); sources know nothing of HTTP; the API
    knows nothing of boto3."""
    wrong: list[str] = []
    for name, path in module_names().items():
        layer = layer_of(name)
        for library, names in third_party(path).items():
            if library == "sqlalchemy" and layer != "store" and not names <= {"Connection"}:
                wrong.append(f"{name} builds SQL ({sorted(names)})")
            if library in {"fastapi", "starlette"} and layer != "api":
                wrong.append(f"{name} imports {library}")
            if library in {"boto3", "botocore"} and layer == "api":
                wrong.append(f"{name} imports {library}")
    assert wrong == []
