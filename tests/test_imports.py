"""The project's import graph has no circles (an import inside a function counts: it only
hides one), workloads never imports Ray, and results never imports a study: what a
report needs of a study, the study hands it."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("orchestrator", "workloads", "search_spaces", "results", "benchmarks")


def modules() -> dict[str, Path]:
    return {(pkg if f.stem == "__init__" else f"{pkg}.{f.stem}"): f
            for pkg in PACKAGES for f in sorted((ROOT / pkg).glob("*.py"))}


def type_checking_only(tree: ast.Module) -> set[int]:
    """Line numbers of imports under `if TYPE_CHECKING:` (annotations, never run)."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            lines |= {n.lineno for child in node.body for n in ast.walk(child) if hasattr(n, "lineno")}
    return lines


def imports(path: Path) -> list[tuple[str, int]]:
    """(module, line) of every import in the file, at any depth, absolute or relative."""
    tree = ast.parse(path.read_text())
    skip, found = type_checking_only(tree), []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [(node.module, node.lineno)] + [(f"{node.module}.{a.name}", node.lineno) for a in node.names]
    return found


def graph() -> dict[str, dict[str, int]]:
    mods = modules()
    return {m: {t: line for t, line in imports(f) if t in mods and t != m} for m, f in mods.items()}


def circles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))
    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    edges = graph()
    found = [" -> ".join(f"{a} (line {edges[a][b]})" for a, b in zip(c, c[1:] + c[:1]) if b in edges[a]) or str(c)
             for c in circles(edges)]
    assert not found, "import circles: " + "; ".join(found)


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]


def test_workloads_never_import_ray_and_results_never_import_a_study():
    for name, path in modules().items():
        targets = [t for t, _ in imports(path)]
        if name.startswith("workloads"):
            assert not [t for t in targets if t == "ray" or t.startswith("ray.")], name
        if name.startswith("results"):
            assert not [t for t in targets if t.startswith("search_spaces.") and t != "search_spaces.study"
                        and not t.startswith("search_spaces.study.")], name


def test_defining_the_studies_imports_no_plotting_or_statistics():
    """A study names its report ("results.reports:part3_report"); the report's libraries load
    when a sweep writes it."""
    import subprocess
    import sys
    code = ("import sys; from search_spaces import studies; studies(); "
            "print(sorted(m for m in ('matplotlib', 'scipy', 'ray', 'results.reports') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_report_and_figure_names_what_its_study_has():
    from search_spaces import studies
    for study in studies().values():
        study.report.resolve()  # the function exists
        names = {s.name for s in study.stages}
        assert set(study.report.stages) <= names, study.name
        if study.figures and all(s.planned for s in study.stages):
            groups = {t.group for s in study.stages for t in study.stage_trials(s, {})}
            for figure in study.figures:
                assert set(figure.groups) <= groups, (study.name, figure.name, set(figure.groups) - groups)
