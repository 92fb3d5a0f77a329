"""A small Markdown report that pipeline runs (the demo, studies) append sections, tables and figures to; the same
sections can also be written as one self-contained ``index.html`` (figures embedded, no external resources)."""

from __future__ import annotations

import base64
import html
import json
import re
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


    def write_html(self, name: str = "index.html") -> Path:
        """The sections as one HTML page: figures embedded as data URIs, so the file stands alone (no CDN)."""
        body = [f"<h1>{html.escape(self.title)}</h1>",
                f"<p>Generated {time.strftime('%Y-%m-%d %H:%M:%S')}.</p>"]
        for block in self.sections:
            body.append(_block_html(block, self.root))
        page = ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>"
                f"{html.escape(self.title)}</title><style>{_CSS}</style></head><body>\n" + "\n".join(body)
                + "\n</body></html>\n")
        path = self.root / name
        path.write_text(page)
        return path


_CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:90%}td,th{border:1px solid #ccc;padding:3px 8px}"
        "th{background:#f0f0f0}img{max-width:100%;border:1px solid #eee}figcaption{font-style:italic;color:#555}")


def _inline(text: str) -> str:
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)
    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', out)


def _block_html(block: str, root: Path) -> str:
    """One section block (as :class:`Report` writes them) as HTML."""
    lines = block.strip("\n").split("\n")
    if lines and lines[0].startswith("|"):
        rows = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines if not ln.startswith("|---")]
        head = "".join(f"<th>{_inline(c)}</th>" for c in rows[0])
        cells = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
        return f"<table><tr>{head}</tr>{cells}</table>"
    image = re.match(r"!\[(.*)\]\((.+)\)$", lines[0]) if lines else None
    if image:
        caption, rel = image.groups()
        path = root / rel
        src = (f"data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}" if path.is_file()
               else html.escape(rel))
        return f'<figure><img src="{src}" alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}' \
               "</figcaption></figure>"
    parts, para = [], []
    for ln in lines:
        if ln.startswith("## "):
            parts.append(f"<h2>{_inline(ln[3:])}</h2>")
        elif ln.strip():
            para.append(_inline(ln))
        elif para:
            parts.append("<p>" + " ".join(para) + "</p>")
            para = []
    if para:
        parts.append("<p>" + " ".join(para) + "</p>")
    return "\n".join(parts)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
