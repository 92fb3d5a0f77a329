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


# --- traffic: leakage-safe splits ---------------------------------------------------------------


@app.command()
def split(
    workspace: Path = typer.Argument(..., help="Workspace folder written by `packetclip ingest`."),
    by: str = typer.Option("capture", "--by", help="Group unit: 'capture' (whole files) or 'flow' (whole flows)."),
    test_size: float = typer.Option(0.2, "--test-size", help="Fraction of rows for test."),
    val_size: float = typer.Option(0.1, "--val-size", help="Fraction of rows for validation (0: none)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the group order; same seed, same split."),
    label_column: str = typer.Option("label", "--label-column", help="Stratify on this column if present."),
) -> None:
    """Split a workspace's flows into train/val/test by capture file or by flow (never by packet).

    Writes WORKSPACE/splits.parquet (flow_id, capture columns, split) and prints rows per split and label.

    Example: packetclip split ws/ --by capture --test-size 0.2 --seed 0
    """
    import warnings

    from rich.console import Console
    from rich.table import Table

    from packetclip.traffic.splits import SplitWarning, split_workspace

    console = Console()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SplitWarning)
        _, summary = split_workspace(workspace, by=by, test_size=test_size, val_size=val_size, seed=seed,
                                     label_col=label_column)
    table = Table(title=f"split by {by} (seed {seed}) -> {summary.attrs['path']}")
    table.add_column(summary.index.name or "label")
    for column in summary.columns:
        table.add_column(str(column), justify="right")
    for label, row in summary.iterrows():
        style = "bold" if label == "total" else None
        table.add_row(str(label), *(f"{int(v):,}" for v in row.to_numpy()), style=style)
    groups = summary.attrs.get("groups_per_split", {})
    table.add_row(f"{by} groups", *(f"{groups.get(c, 0):,}" if c != "total" else f"{sum(groups.values()):,}"
                                     for c in summary.columns), style="dim")
    console.print(table)
    for warning in caught:
        if issubclass(warning.category, SplitWarning):
            console.print(f"[yellow]warning:[/] {warning.message}")


@app.command("import-csv")
def import_csv(
    csv_path: Path = typer.Argument(..., help="A CICFlowMeter CSV (CIC-IDS2017/2018, ACI-IoT-2023) or a folder of them."),
    out: Path = typer.Option(..., "--out", "-o", help="Workspace folder to write flows.parquet into."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Label column (default: Label/label/Class/...)."),
    fill_value: float = typer.Option(0.0, "--fill-value", help="Value for Infinity/NaN/empty numeric cells."),
) -> None:
    """Import labelled flow CSVs into a flow-only workspace (canonical columns, labels, missions).

    Example: packetclip import-csv ../shared/data/cicids2017 --out ws-cic/
    """
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from packetclip.traffic.datasets.cic import import_flow_csv

    target, df = import_flow_csv(csv_path, out, label_column=label_column, fill_value=fill_value)
    report = df.attrs["packetclip_report"]
    table = Table(title=f"{len(df):,} flows from {len(report['files'])} file(s) -> {target}")
    table.add_column("label")
    table.add_column("mission")
    table.add_column("flows", justify="right")
    counts = df.groupby(["label", "mission"], dropna=False).size().sort_values(ascending=False)
    for (label, mission), n in counts.items():
        table.add_row(str(label), "-" if pd.isna(mission) else str(mission), f"{n:,}")
    console = Console()
    console.print(table)
    console.print(
        f"non-finite cells set to {report['fill_value']:g}: {report['nonfinite_filled']:,}; "
        f"renamed columns: {len(report['renamed_columns'])}; duplicate columns dropped: "
        f"{len(report['duplicate_columns_dropped'])}; repeated header rows dropped: "
        f"{report['repeated_header_rows_dropped']:,}; rows without label dropped: {report['rows_without_label_dropped']:,}"
    )


# --- knowledge: mission knowledge graphs ---------------------------------------------------------

kg_app = typer.Typer(help="Mission knowledge graphs (concept DAGs for DoS, Reconnaissance, Brute Force).",
                     no_args_is_help=True)
app.add_typer(kg_app, name="kg")


@kg_app.command("build")
def kg_build(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for <mission>.json, .graphml and .png."),
    mission: Optional[List[str]] = typer.Option(None, "--mission", "-m",
                                                help="dos, reconnaissance or brute-force; repeat it; default all three."),
    source: str = typer.Option("attack", "--source", help="attack (offline MITRE ATT&CK v15) or llm."),
    backend: str = typer.Option("smollm2", "--backend", help="Chat backend for --source llm: smollm2 or openai."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible server URL (--backend openai)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name on that server (--backend openai)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="API key for that server, if it needs one."),
    n_key: int = typer.Option(6, "--n-key", help="V: key concepts at level 0."),
    levels: int = typer.Option(2, "--levels", help="N: expansion iterations (levels after the key concepts)."),
    per_node: int = typer.Option(2, "--per-node", help="Associated words asked for each concept."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same graph."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Where the parsed ATT&CK corpus is cached."),
    no_png: bool = typer.Option(False, "--no-png", help="Skip the pictures."),
) -> None:
    """Build mission knowledge graphs and write them as JSON, GraphML and PNG.

    Example: packetclip kg build --mission dos --source attack --out kg/
    """
    import time

    from rich.console import Console
    from rich.table import Table

    from packetclip.knowledge import get_source, mission_spec, write_graph_files
    from packetclip.knowledge.attack import AttackSource

    specs = [mission_spec(m) for m in (mission or ["dos", "reconnaissance", "brute-force"])]
    console = Console()
    attack = AttackSource(cache_dir=cache_dir)
    status = console.status("building mission graphs")
    if source == "llm":
        calls = [0]

        def on_call(prompt: str) -> None:
            calls[0] += 1
            status.update(f"asking {backend} ({calls[0]} calls): {prompt[:60]}...")

        kwargs = {k: v for k, v in {"base_url": base_url, "model": model, "api_key": api_key}.items() if v}
        builder = get_source("llm", backend=backend, backend_kwargs=kwargs,
                             fallback=AttackSource(cache_dir=cache_dir, temperature=0.0), on_call=on_call)
    else:
        builder = attack if source == "attack" else get_source(source)
    table = Table(title=f"mission graphs ({source}, seed {seed}) -> {out}")
    for column in ("mission", "levels", "concepts", "edges", "key concepts", "seconds"):
        table.add_column(column)
    with status:
        for spec in specs:
            status.update(f"building the {spec.label} graph ({source})")
            started = time.perf_counter()
            graph = builder.build(spec.key, n_key=n_key, n_levels=levels, per_node=per_node, seed=seed)
            write_graph_files(graph, out, png=not no_png)
            keys = ", ".join(graph.key_concepts())
            if source == "llm":
                keys += f"  (llm words {graph.meta['llm_words']}, ATT&CK fallback {graph.meta['fallback_words']})"
            table.add_row(spec.label, str(graph.n_levels), str(len(graph.nodes)), str(len(graph.edges)), keys,
                          f"{time.perf_counter() - started:.1f}")
    console.print(table)


@kg_app.command("show")
def kg_show(path: Path = typer.Argument(..., help="A folder written by `packetclip kg build`, or one graph .json.")) -> None:
    """Print mission graphs as trees: levels, words, provenance (ATT&CK technique or llm) and parents.

    Example: packetclip kg show kg/
    """
    from rich.console import Console
    from rich.tree import Tree

    from packetclip.knowledge import load_graphs

    console = Console()
    for graph in load_graphs(path):
        meta = graph.meta
        tree = Tree(f"[bold]{meta.get('label', graph.mission)}[/] — {graph.source}, seed {meta.get('seed', '?')}, "
                    f"{len(graph.nodes)} concepts, {len(graph.edges)} edges")
        tree.add("[bold cyan]sensor[/] → every key concept")
        for depth, members in enumerate(graph.levels()):
            branch = tree.add("[bold]key concepts[/]" if depth == 0 else f"[bold]level {depth}[/]")
            for node in members:
                parents = "" if depth == 0 else f"  ← {', '.join(graph.parents(node.word))}"
                branch.add(f"{node.word} [dim]\\[{node.provenance}][/]{parents}")
        tree.add(f"[bold cyan]embedding[/] ← the {len(graph.concepts(graph.n_levels - 1))} concepts of the last level")
        console.print(tree)


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
