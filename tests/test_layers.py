"""The import graph of src/gdscope has no cycle, type-only imports included.

(The layer order itself is the import-linter contract in pyproject.toml, run by `make test`.)
"""

import grimp


def _cycles(adjacency):
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for root in adjacency:
        if root in index:
            continue
        work = [(root, iter(sorted(adjacency[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(adjacency[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_of_gdscope_imports_itself_back():
    graph = grimp.build_graph("gdscope", include_external_packages=False)
    adjacency = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert _cycles(adjacency) == []


def test_every_package_init_only_documents_and_re_exports():
    """One ``__init__`` convention: a docstring, imports, ``__all__`` (and the lazy stub's line)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "src" / "gdscope"
    offenders = []
    for init in sorted(root.rglob("__init__.py")):
        body = ast.parse(init.read_text()).body
        for node in body[1:] if body and isinstance(body[0], ast.Expr) else body:
            allowed = (
                isinstance(node, ast.Import | ast.ImportFrom | ast.Assign | ast.AnnAssign)
                or (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
            ) and not any(isinstance(n, ast.Lambda) for n in ast.walk(node))
            if not allowed:
                offenders.append(f"{init.relative_to(root)}:{node.lineno} {type(node).__name__}")
    assert not offenders, offenders
