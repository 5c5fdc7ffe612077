"""The modules import only downwards through the layers of docs/architecture.md."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dcloop"

# Higher imports lower, never the other way round.
LAYERS = {
    "errors": 0, "fsutil": 0, "table": 0, "config": 0, "progress": 0, "names": 0, "signals": 0,
    "backends": 1, "backends.csv": 1, "backends.gsheet": 1, "backends.memory": 1, "backends.sheet_grid": 1,
    "backends.sheet_http": 1, "backends.sheet_layout": 1, "backends.xlsx": 1, "backends.rewrite": 1,
    "model": 2, "threads": 2, "networks": 2, "suspicion": 2,
    "images": 3, "image_http": 3, "history": 3, "effect": 3, "agreement": 3, "review": 3, "lock": 3, "runs": 3,
    "pull": 3, "dataset": 3, "metrics": 3, "training": 3, "scoring": 3, "writeback": 3, "results": 3,
    "status": 4, "versions": 4, "splits": 4, "reeval": 4, "cap": 4, "augment": 4, "report": 4, "project": 4,
    "quickstart": 4, "doctor": 4, "review_page": 4,
    "sync": 5, "watch": 5, "unchanged": 5,
    "cli": 6, "render": 6,
    "reference": 7,
}
# The arrows against the layers that the code still has (docs/architecture.md, "Where it does not
# hold yet"). Take one off when it is fixed; never add one.
KNOWN: set[tuple[str, str]] = set()


def imports() -> set[tuple[str, str]]:
    """(module, module it imports) for every relative import inside the package."""
    edges = set()
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        package = parts[:-1]
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[:len(package) - (node.level - 1)]
                targets = [".".join(base + node.module.split("."))] if node.module else \
                    [".".join(base + [alias.name]) for alias in node.names]
                edges |= {(name, t) for t in targets if t and t != name}
    return edges


def test_every_module_has_a_layer():
    modules = {".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
               for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE}
    assert modules - set(LAYERS) == set()


def test_imports_go_down_the_layers():
    upward = {(a, b) for a, b in imports() if a in LAYERS and b in LAYERS and LAYERS[a] < LAYERS[b]}
    assert upward - KNOWN == set(), "new imports against the layers of docs/architecture.md"
    assert KNOWN - upward == set(), "an arrow listed in KNOWN is gone: take it off the list"
