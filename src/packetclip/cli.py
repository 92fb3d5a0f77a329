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

lab_app = typer.Typer(help="Labelled traffic lab: synthetic captures, or real tools against real servers (live).",
                      no_args_is_help=True)
app.add_typer(lab_app, name="lab")


# --- lab: synth (pure-Python behaviour models of the tools; no root) ----------------------------


@lab_app.command("synth")
def lab_synth(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for capture.pcap, labels and the flow table."),
    duration: str = typer.Option("10m", "--duration", "-d", help="Capture length: 90s, 5m, 10m, 1h30m."),
    seed: int = typer.Option(7, "--seed", help="Same seed, byte-identical capture and labels."),
    no_ingest: bool = typer.Option(False, "--no-ingest", help="Only capture and packet labels, no flow table."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    figure: Optional[Path] = typer.Option(None, "--figure", help="Also draw packets over time per class to this PNG."),
) -> None:
    """Write a labelled synthetic IoT capture with the 10 classes (behaviour models of nmap, hping3, ...).

    Writes OUT/capture.pcap, packet_labels.parquet, episodes.parquet and, unless --no-ingest,
    flows.parquet (CICFlowMeter columns + label/mission), packets.parquet and labels.parquet.

    Example: packetclip lab synth --out lab/ --duration 10m --seed 7
    """
    from rich.console import Console
    from rich.table import Table

    from packetclip.lab.synth import SynthLab, parse_duration

    result = SynthLab(duration_s=parse_duration(duration), seed=seed).generate(out, progress=not quiet,
                                                                               ingest=not no_ingest)
    table = Table(title=f"lab synth -> {out} ({result.packets:,} packets, {result.elapsed_s:.1f} s)")
    for column in ("class", "mission", "episodes", "packets", "flows"):
        table.add_column(column, justify="left" if column in ("class", "mission") else "right")
    for row in result.summary:
        table.add_row(row["class"], row["mission"], str(row["episodes"]), f"{row['packets']:,}",
                      "-" if row["flows"] is None else f"{row['flows']:,}")
    console = Console()
    console.print(table)
    paths = result.paths()
    if figure is not None:
        from packetclip.lab.figures import draw_lab_traffic

        paths["figure"] = draw_lab_traffic(out, figure)
    for name, path in paths.items():
        console.print(f"{name:>14}: {path}")


# --- lab: live / doctor / install (real tools in network namespaces; root, Linux) ---------------


@lab_app.command("live")
def lab_live(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for capture.pcap, labels and the flow table."),
    duration: str = typer.Option("3m", "--duration", "-d", help="Capture length: 90s, 2m, 10m (at most 1h)."),
    seed: int = typer.Option(7, "--seed", help="Same seed, same schedule and tool parameters."),
    classes: Optional[List[str]] = typer.Option(None, "--class", "-c", help="Only these classes (repeat it)."),
    scale: float = typer.Option(1.0, "--scale", help="Multiplies flood counts and scan sizes (0.1..4)."),
    no_ingest: bool = typer.Option(False, "--no-ingest", help="Only capture and packet labels, no flow table."),
) -> None:
    """Make the 10 classes with real tools (nmap, hping3, slowhttptest, hydra, dnsperf) against real servers.

    Everything runs inside network namespaces this command creates and deletes; every tool run is bounded
    by count and time. Needs root, Linux and the tools of `packetclip lab install`.

    Example: sudo packetclip lab live --out lab-live/ --duration 2m --seed 7
    """
    from rich.console import Console
    from rich.table import Table

    from packetclip.lab.live import LiveLab
    from packetclip.lab.live_tools import require_live_environment
    from packetclip.lab.synth import parse_duration

    require_live_environment()
    kwargs = {"scale": scale}
    if classes:
        kwargs["classes"] = tuple(classes)
    result = LiveLab(duration_s=parse_duration(duration), seed=seed, **kwargs).run(out, ingest=not no_ingest)
    table = Table(title=f"lab live -> {out} ({result.capture_s:.0f} s captured, {result.packets:,} packets)")
    for column in ("class", "mission", "episodes", "packets", "flows", "tool"):
        table.add_column(column)
    for row in result.summary:
        table.add_row(row["class"], row["mission"], str(row["episodes"]), f"{row['packets']:,}",
                      "-" if row["flows"] is None else f"{row['flows']:,}", row["tool"])
    console = Console()
    console.print(table)
    outside = result.stats.get("packets_outside_lab_subnet", 0)
    console.print(f"packets outside the lab subnet: {outside}; unattributed: "
                  f"{result.stats.get('packets_unattributed', 0)}; elapsed {result.elapsed_s:.0f} s")


@lab_app.command("doctor")
def lab_doctor() -> None:
    """List the tools `lab live` needs, where each one is, and the Debian packages that are missing.

    Exit code 0 when every required tool is present, 1 otherwise.

    Example: packetclip lab doctor
    """
    from rich.console import Console
    from rich.table import Table

    from packetclip.lab.live_tools import doctor_rows, is_root, missing_packages

    rows = doctor_rows()
    table = Table(title="lab live: tools")
    table.add_column("tool", no_wrap=True)
    table.add_column("package", no_wrap=True)
    table.add_column("found", no_wrap=True)
    table.add_column("purpose")
    for r in rows:
        found = r["path"] or ("[red]missing[/]" if r["required"] else "[yellow]missing (optional)[/]")
        table.add_row(r["binary"], r["package"], found, r["purpose"])
    console = Console()
    console.print(table)
    missing = missing_packages(include_optional=True)
    required_missing = missing_packages(include_optional=False)
    if missing:
        console.print(f"missing packages: {' '.join(missing)} -> run `sudo packetclip lab install`")
    if not is_root():
        console.print("[yellow]lab live needs root[/]")
    raise typer.Exit(1 if required_missing else 0)


@lab_app.command("install")
def lab_install(
    no_optional: bool = typer.Option(False, "--no-optional", help="Skip optional tools (dnsperf)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only print the packages that would be installed."),
) -> None:
    """Install the Debian packages `lab live` needs with apt-get (root; system services are not started).

    Example: sudo packetclip lab install
    """
    from packetclip.lab.live_tools import install_missing

    packages = install_missing(include_optional=not no_optional, dry_run=dry_run, echo=typer.echo)
    if not packages:
        typer.echo("every lab tool is already installed")
    elif dry_run:
        typer.echo("would install: " + " ".join(packages))
    else:
        typer.echo("installed: " + " ".join(packages))


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
    captures_read = workspace.manifest["captures"]
    if captures_read and all(c.get("error") for c in captures_read):
        raise PacketClipError(f"none of the {len(captures_read)} capture(s) could be read; first: "
                              f"{captures_read[0]['error']}")
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


# --- encoders: Lens packet encoder (pre-training, generation task) -------------------------------

encoder_app = typer.Typer(help="Packet encoder (Lens-style T5 over masked packet bytes): pre-train and evaluate.",
                          no_args_is_help=True)
app.add_typer(encoder_app, name="encoder")


@encoder_app.command("pretrain")
def encoder_pretrain(
    workspaces: List[Path] = typer.Argument(..., help="Workspaces written by `packetclip ingest` (packets.parquet)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the model, checkpoint/ and loss_curves.png."),
    size: str = typer.Option("tiny", "--size", help="tiny | small | base."),
    steps: int = typer.Option(2000, "--steps", min=1, help="Optimiser steps in total (a resumed run continues to this)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint with its stored settings."),
    tokenisation: str = typer.Option("byte", "--tokenisation", help="byte (4-byte patches) | bigram (ET-BERT style)."),
    k_packets: int = typer.Option(4, "--k", min=1, help="Packets per flow input."),
    seed: int = typer.Option(0, "--seed", help="Seed for initialisation and every sampled batch."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate."),
    minutes: Optional[float] = typer.Option(None, "--minutes", help="Stop after this many minutes (resumable)."),
    save_every: int = typer.Option(250, "--save-every", min=0, help="Refresh OUT/checkpoint every N steps (0: at the end)."),
) -> None:
    """Pre-train the packet encoder with span, packet-order and homologous-traffic prediction.

    Example: packetclip encoder pretrain ws/ --size tiny --steps 2000 --out models/lens-tiny
    """
    from packetclip.encoders.lens import LensConfig
    from packetclip.encoders.pretrain import PretrainSettings, pretrain

    config = None if resume else LensConfig(size=size, tokenisation=tokenisation, k_packets=k_packets,
                                            patch_size=4 if tokenisation == "byte" else 1)
    settings = PretrainSettings(steps=steps, seed=seed, lr=lr, save_every=save_every)
    result = pretrain(workspaces, out, config=config, settings=None if resume else settings,
                      resume=resume, max_seconds=None if minutes is None else minutes * 60.0,
                      steps_override=steps if resume else None)
    last = result.history[-1] if result.history else {}
    typer.echo(f"steps {result.steps_done}/{steps} in {result.seconds:.0f} s"
               + (" (stopped by --minutes; continue with --resume)" if result.stopped_early else "")
               + (f"; last losses msp {last['msp']:.3f} pop {last['pop']:.3f} htp {last['htp']:.3f}" if last else ""))
    typer.echo(f"model: {result.out_dir}  curves: {result.out_dir / 'loss_curves.png'}")


@encoder_app.command("eval-generation")
def encoder_eval_generation(
    checkpoint: Path = typer.Argument(..., help="Model folder written by `packetclip encoder pretrain`."),
    workspaces: List[Path] = typer.Argument(..., help="Workspace(s) to take held-out flows from."),
    max_packets: int = typer.Option(3000, "--max-packets", min=1, help="Packets evaluated (sampled, seeded)."),
    per_flow: int = typer.Option(20, "--per-flow", min=1, help="At most this many packets per flow."),
    seed: int = typer.Option(0, "--seed"),
    json_out: bool = typer.Option(False, "--json", help="Also print the scores as one JSON line."),
) -> None:
    """Generate masked header fields (TTL, IP length, TCP flags/window, UDP length) on held-out flows.

    Per field: exact-match accuracy of the decoder next to the most-frequent-value baseline.

    Example: packetclip encoder eval-generation models/lens-tiny ws/
    """
    import json as _json

    from rich.console import Console
    from rich.table import Table

    from packetclip.encoders.generation import evaluate_generation, holdout_modulus_of
    from packetclip.encoders.lens import LensModel

    model = LensModel.from_pretrained(checkpoint)
    report = evaluate_generation(model, workspaces, holdout_modulus=holdout_modulus_of(checkpoint),
                                 per_flow=per_flow, max_packets=max_packets, seed=seed, progress=True)
    table = Table(title=f"generation on held-out flows ({report.heldout_flows:,} flows, "
                        f"{report.heldout_packets:,} packets sampled; split by {report.split})")
    for col in ("field", "packets", "model exact match", "baseline (most frequent)", "baseline value"):
        table.add_column(col)
    for s in report.scores:
        table.add_row(s.field, f"{s.packets:,}", f"{s.model_accuracy:.3f}", f"{s.baseline_accuracy:.3f}",
                      s.baseline_value)
    Console().print(table)
    if json_out:
        typer.echo(_json.dumps(report.to_dict()))


# --- language: flow descriptions, chat backends, OpenAI-compatible server ------------------------


@app.command()
def describe(
    workspace: Path = typer.Argument(..., help="Workspace with labelled flows (flows.parquet, labels.parquet)."),
    backend: str = typer.Option("rules", "--backend", "-b", help="Paraphraser: rules (offline), smollm2 or openai."),
    per_flow: int = typer.Option(3, "--per-flow", help="Descriptions per flow."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same descriptions."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Describe at most N flows, spread evenly over labels."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output file (default WORKSPACE/descriptions.parquet)."),
    figures: bool = typer.Option(False, "--figures", help="Also draw Figure 6: word clouds and top-10 words per mission."),
    figures_dir: Optional[Path] = typer.Option(None, "--figures-dir", help="Where the figures go (default WORKSPACE/figures)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="LLM answer cache (default $PACKETCLIP_CACHE/language)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the LLM answer cache."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible server URL (--backend openai)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name on that server (--backend openai)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="API key for that server, if it needs one."),
) -> None:
    """Describe labelled flows in natural language (templates -> mission-graph concepts -> paraphrase).

    Writes one row per description (flow_id, k, label, mission, text, backend, fallback) to
    WORKSPACE/descriptions.parquet. LLM answers that fail validation fall back to the rules paraphraser.

    Example: packetclip describe ws/ --backend rules --per-flow 3 --figures
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from packetclip.language.describe import Describer
    from packetclip.language.workspace import describe_workspace

    chat_options = {"base_url": base_url, "model": model, "api_key": api_key} if backend.strip().lower() == "openai" else {}
    describer = Describer(backend, per_flow, seed, cache_dir=cache_dir, use_cache=not no_cache,
                          chat_options={k: v for k, v in chat_options.items() if v})
    console = Console()
    with Progress(TextColumn("[bold]describing ({task.fields[backend]})"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task("describe", total=None, backend=backend)
        target, table = describe_workspace(
            workspace, describer, limit=limit, out=out, progress=lambda n: bar.advance(task, n),
            on_total=lambda n: bar.update(task, total=n))
    summary = Table(title=f"{len(table):,} descriptions ({backend}, seed {seed}) -> {target}")
    for column in ("label", "descriptions", "LLM fallbacks"):
        summary.add_column(column)
    for label, group in table.groupby("label", sort=True):
        summary.add_row(str(label), f"{len(group):,}", f"{int(group['fallback'].sum()):,}")
    console.print(summary)
    if len(table):
        console.print(f"[dim]example:[/] {table['text'].iloc[0]}")
    cache = getattr(describer.paraphraser, "cache", None)
    if cache is not None:
        console.print(f"LLM cache: {cache.hits:,} hits, {cache.misses:,} misses ({cache.path})")
    if figures:
        from packetclip.language.figures import write_mission_figures

        paths = write_mission_figures(table, figures_dir or Path(workspace) / "figures", seed=seed)
        for path in paths:
            console.print(f"figure: {path}")


llm_app = typer.Typer(help="Local chat models: an OpenAI-compatible server and a one-shot chat.", no_args_is_help=True)
app.add_typer(llm_app, name="llm")


@llm_app.command("serve")
def llm_serve(
    port: int = typer.Option(8000, "--port", "-p", help="TCP port to listen on (0: any free port)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; keep loopback unless you mean to share it."),
    backend: str = typer.Option("smollm2", "--backend", help="Local chat backend to serve (smollm2)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="Require this bearer token from clients."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Torch CPU threads for the model."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every request."),
) -> None:
    """Serve a local chat model under the OpenAI chat-completions protocol (POST /v1/chat/completions).

    Example: packetclip llm serve --port 8000 --backend smollm2
    """
    from rich.console import Console

    from packetclip.language.server import make_server

    console = Console()
    server = make_server(backend, host=host, port=port, api_key=api_key, threads=threads,
                         log=(lambda line: console.print(f"[dim]{line}[/]")) if verbose else None)
    with console.status(f"loading {backend}"):
        server.backend.chat([{"role": "user", "content": "Hi"}], max_tokens=1)   # load before accepting requests
    console.print(f"serving {backend} at {server.url} (POST /chat/completions, GET /models); Ctrl-C stops")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        server.server_close()


@llm_app.command("chat")
def llm_chat(
    prompt: str = typer.Argument(..., help="The user message."),
    backend: str = typer.Option("smollm2", "--backend", help="smollm2 (offline) or openai."),
    system: Optional[str] = typer.Option(None, "--system", help="A system message."),
    max_tokens: int = typer.Option(128, "--max-tokens", help="Longest answer in tokens."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 is greedy."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample when temperature > 0."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible server URL (--backend openai)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name on that server (--backend openai)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="API key for that server."),
) -> None:
    """Ask a chat backend one question and print the answer.

    Example: packetclip llm chat "List three words about port scans." --backend smollm2
    """
    from packetclip.language.chat import get_chat_backend

    options = {"base_url": base_url, "model": model, "api_key": api_key} if backend.strip().lower() == "openai" else {}
    chat = get_chat_backend(backend, **options)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    typer.echo(chat.chat(messages, max_tokens=max_tokens, temperature=temperature, seed=seed))


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
