"""The ``packetclip`` command line. This module only wires commands to library functions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from packetclip.errors import PacketClipError

app = typer.Typer(
    help="packetclip: ingest traffic, generate labelled traffic, describe it in language, align and detect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def version() -> None:
    """Print the packetclip version.

    Example: packetclip version
    """
    from packetclip import __version__

    typer.echo(__version__)


# --- commands are added below this line, one block per stage -------------------------------------


# --- traffic: ingest / info ---------------------------------------------------------------------


@app.command()
def ingest(
    captures: List[Path] = typer.Argument(..., help="pcap/pcapng files or folders of them."),
    out: Path = typer.Option(..., "--out", "-o", help="Workspace folder to write."),
    view_bytes: int = typer.Option(128, help="Bytes per packet view, starting at the IP header."),
    no_mask: bool = typer.Option(False, "--no-mask", help="Keep addresses/ports/IDs/checksums in views (ablations only)."),
    idle_timeout: float = typer.Option(120.0, help="Seconds of silence that end a flow."),
    active_timeout: float = typer.Option(1800.0, help="Longest flow duration in seconds before it is split."),
    no_tcp_close: bool = typer.Option(False, "--no-tcp-close", help="Do not end TCP flows on FIN/RST."),
    strict: bool = typer.Option(False, help="Stop at the first unreadable capture instead of reporting it."),
) -> None:
    """Turn captures into a workspace: flows.parquet (CICFlowMeter columns) and packets.parquet (masked views).

    Example: packetclip ingest traffic/*.pcap --out ws/
    """
    from packetclip.traffic.ingest import IngestSettings, expand_capture_paths, ingest_captures

    settings = IngestSettings(view_bytes=view_bytes, mask=not no_mask, idle_timeout=idle_timeout,
                              active_timeout=active_timeout, tcp_close=not no_tcp_close)
    workspace = ingest_captures(expand_capture_paths(captures), out, settings=settings, strict=strict)
    _print_workspace_summary(workspace)
    typer.echo(f"workspace: {workspace.root}")


@app.command()
def info(workspace: Path = typer.Argument(..., help="Workspace folder written by `packetclip ingest`.")) -> None:
    """Summarise a workspace: captures, packets, flows, protocols, labels, skipped records.

    Example: packetclip info ws/
    """
    from packetclip.traffic.ingest import Workspace

    _print_workspace_summary(Workspace.open(workspace))


def _print_workspace_summary(workspace) -> None:
    from rich.console import Console
    from rich.table import Table

    from packetclip.traffic.ingest import summary_rows

    table = Table(title=f"workspace {workspace.root}")
    table.add_column("what")
    table.add_column("value")
    for key, value in summary_rows(workspace):
        table.add_row(key, value)
    errors = [c for c in workspace.manifest["captures"] if c.get("error")]
    console = Console()
    console.print(table)
    for c in errors[:10]:
        console.print(f"[yellow]skipped[/] {c['error']}")
    if len(errors) > 10:
        console.print(f"[yellow]... and {len(errors) - 10} more unreadable captures (see manifest.json)[/]")


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point: user errors become one line on stderr and exit code 2, never a traceback.

    Usage errors (unknown command, missing argument) are handled by click itself, also with exit code 2.
    """
    try:
        app(args=argv, prog_name="packetclip")
    except PacketClipError as err:
        typer.echo(f"packetclip: error: {err.one_line()}", err=True)
        sys.exit(2)
    except (FileNotFoundError, IsADirectoryError, PermissionError, NotADirectoryError) as err:
        name = getattr(err, "filename", None) or ""
        typer.echo(f"packetclip: error: {name}: {err.strerror or err}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
