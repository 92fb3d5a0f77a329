"""Only the workspace module names workspace files: every other module goes through ``Workspace``.

The scan reads every module's string literals (f-string parts included) with ``ast``; docstrings are left out,
since documenting a workspace's layout is not the same as depending on a file name. A name spelled anywhere
else in code (a path, an error message) means that module knows the layout and would break when it changes.
"""

from __future__ import annotations

import ast
from pathlib import Path

from packetclip.traffic import workspace

SRC = Path(workspace.__file__).resolve().parents[1]          # src/packetclip
OWNER = Path(workspace.__file__).resolve()
NAMES = (workspace.FLOWS, workspace.PACKETS, workspace.LABELS, workspace.SPLITS, workspace.DESCRIPTIONS,
         workspace.MANIFEST, workspace.PACKET_LABELS, workspace.EPISODES, workspace.LAB_META, workspace.CAPTURE)

# Modules still being migrated by their owners (issue 9), shrunk as each one lands; must end empty.
NOT_YET_MIGRATED: set[str] = {
    "cli.py",          # `lab synth` / `lab live` --out help texts name capture.pcap (CLI engineer)
}


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                ids.add(id(body[0].value))
    return ids


def workspace_names_in(path: Path) -> list[tuple[int, str]]:
    """(line, file name) for each string literal of ``path`` that spells a workspace file name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skip = _docstring_nodes(tree)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            hits.extend((node.lineno, name) for name in NAMES if name in node.value)
    return sorted(set(hits))


def test_the_scan_finds_a_name_in_code_but_not_in_a_docstring(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('"""Reads flows.parquet."""\n\ndef f(root):\n    """Writes splits.parquet."""\n'
                      '    return root / "labels.parquet", f"{root}/manifest.json"\n')
    assert workspace_names_in(sample) == [(5, "labels.parquet"), (5, "manifest.json")]


def test_no_module_but_the_workspace_names_a_workspace_file():
    offenders = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if path.resolve() == OWNER or rel in NOT_YET_MIGRATED:
            continue
        hits = workspace_names_in(path)
        if hits:
            offenders[rel] = hits
    assert not offenders, "workspace file names outside traffic/workspace.py (use Workspace.path/flows/...): " + \
        "; ".join(f"{rel}: " + ", ".join(f"line {line} {name}" for line, name in hits)
                  for rel, hits in offenders.items())


def test_the_allow_list_only_holds_modules_that_still_need_it():
    stale = [rel for rel in NOT_YET_MIGRATED if not (SRC / rel).is_file() or not workspace_names_in(SRC / rel)]
    assert not stale, f"migrated already, remove from NOT_YET_MIGRATED: {stale}"
