"""A small Markdown report that pipeline runs (the demo, studies) append sections, tables and figures to."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence


@dataclass
class Report:
    """Collects sections and writes ``report.md`` (+ ``metrics.json``) into ``root``."""

    root: Path
    title: str = "packetclip report"
    sections: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)

    def section(self, heading: str, text: str = "") -> None:
        self.sections.append(f"## {heading}\n\n{text.strip()}\n" if text else f"## {heading}\n")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
        self.sections.append("\n".join(lines) + "\n")

    def figure(self, path: Path, caption: str) -> None:
        rel = Path(path).resolve().relative_to(self.root.resolve())
        self.sections.append(f"![{caption}]({rel.as_posix()})\n\n*{caption}*\n")

    def record(self, **metrics: Any) -> None:
        self.metrics.update(metrics)

    def write(self) -> Path:
        header = f"# {self.title}\n\nGenerated {time.strftime('%Y-%m-%d %H:%M:%S')}.\n"
        path = self.root / "report.md"
        path.write_text("\n".join([header, *self.sections]))
        (self.root / "metrics.json").write_text(json.dumps(self.metrics, indent=2, default=str))
        return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
