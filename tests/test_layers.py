"""Lower layers never import higher ones (STYLE: the folder tree shows the data flow)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "portflow"
# package -> packages it must never import
FORBIDDEN = {
    "config": {"data", "alpha", "meta", "cli", "context"},
    "lakehouse": {"data", "alpha", "meta", "cli", "context", "config"},
    "ratings": {"data", "alpha", "meta", "cli", "context", "providers", "lakehouse"},
    "providers": {"data", "alpha", "meta", "cli", "context"},
    "data": {"alpha", "meta", "cli"},
    "alpha": {"meta", "cli"},
    "meta": {"cli"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("portflow."):
            out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("portflow.")}
    return out


def test_phase2_never_imports_the_phase1_runner() -> None:
    for p in (SRC / "alpha").rglob("*.py"):
        assert "portflow.data.flow" not in p.read_text(), p.name


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_only_downwards(layer: str) -> None:
    bad = {str(p.relative_to(SRC)): sorted(_imports(p) & FORBIDDEN[layer])
           for p in (SRC / layer).rglob("*.py") if _imports(p) & FORBIDDEN[layer]}
    assert not bad, f"{layer} imports a higher layer: {bad}"
