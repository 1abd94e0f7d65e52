"""The package's import graph has no circles (issue 15): every module can be
read, and imported, after the modules it uses."""

import ast
import pathlib

import jaxgmm

PACKAGE = pathlib.Path(jaxgmm.__file__).parent


def imports_of(path):
    """The package modules ``path`` imports, at top level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
    return found


def find_circle(graph):
    """A list of modules that import each other in a circle, or None."""
    done, path = set(), []

    def visit(mod):
        if mod in path:
            return path[path.index(mod):] + [mod]
        if mod in done or mod not in graph:
            return None
        path.append(mod)
        for dep in sorted(graph[mod]):
            circle = visit(dep)
            if circle:
                return circle
        path.pop()
        done.add(mod)
        return None

    for mod in sorted(graph):
        circle = visit(mod)
        if circle:
            return circle
    return None


def test_no_import_circles():
    graph = {p.stem: imports_of(p) for p in PACKAGE.glob("*.py")}
    assert len(graph) > 20 and "_engine" in graph
    assert find_circle(graph) is None, " -> ".join(find_circle(graph))


def test_the_check_finds_a_circle(tmp_path):
    # The test above must be able to fail: a circle through a function-level
    # import is found.
    (tmp_path / "a.py").write_text("from .b import f\n")
    (tmp_path / "b.py").write_text("def f():\n    from .c import g\n")
    (tmp_path / "c.py").write_text("from . import a\n")
    graph = {p.stem: imports_of(p) for p in tmp_path.glob("*.py")}
    assert find_circle(graph) == ["a", "b", "c", "a"]
