"""The ``packetclip`` command line. This module only wires commands to library functions.

Conventions every command follows (tests/test_cli.py checks them): ``-o/--out`` is always a folder; boolean
options are ``--x/--no-x`` switches; every option has help text and every ``--help`` an ``Example:`` line;
numeric options are range-checked here so messages name the flag that was typed; bad input is one line on
stderr and exit code 2. Process-wide settings (torch threads, logging) are made here and nowhere else.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

try:                                    # typer >= 0.2x vendors its own copy of click
    from typer._click import exceptions as _click_errors
except ImportError:                     # pragma: no cover - older typer uses click itself
    from click import exceptions as _click_errors

from packetclip.errors import PacketClipError

_CONTEXT = {"help_option_names": ["-h", "--help"]}
_STATE = {"verbose": False}
log = logging.getLogger("packetclip")


def _typer(help_text: str) -> typer.Typer:
    """One place for the app's settings. Plain (not rich) help: rich help shows a misleading ``<bool>`` value
    after every switch, though switches take none."""
    return typer.Typer(help=help_text, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                       rich_markup_mode=None, context_settings=_CONTEXT)


app = _typer("packetclip: ingest traffic, generate labelled traffic, describe it in language, align and detect.")


# --- process-wide settings: logging and torch threads (the CLI entry point is the only place) -----


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - logging must never break a command
            self.handleError(record)


def configure_logging(verbose: bool = False) -> None:
    """Lines from the ``packetclip`` logger on stderr: INFO (slow-work progress when not on a terminal) by
    default, DEBUG with ``-v``."""
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("packetclip: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(logging.DEBUG if verbose else logging.INFO)


def default_threads() -> int:
    """The cores free for us: usable cores (CPU affinity) minus the 1-minute load average, at least 1.

    Why not all cores: torch's intra-op workers spin-wait for cores that other processes hold, so on a busy box
    more threads is slower (issue 17: `encoder pretrain --minutes 1` did 4 steps in 65 s with the default
    thread count, 53 steps in 31 s with one thread, on 2 cores with another job running). On an idle machine
    this is every core.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):
        busy = 0.0
    return max(1, min(cores, int(round(cores - busy))))


def use_threads(threads: Optional[int]) -> int:
    """Set torch's intra-op thread count for this process (``None``: :func:`default_threads`)."""
    import torch

    n = int(threads) if threads else default_threads()
    torch.set_num_threads(n)
    log.debug("torch threads: %d", n)
    return n


def _threads_option():
    return typer.Option(None, "--threads", min=1, max=512,
                        help="Torch CPU threads (default: the free cores = usable cores minus the 1-minute "
                             "load average, at least 1).")


def _positive(value: Optional[float]) -> Optional[float]:
    if value is not None and not value > 0:
        raise typer.BadParameter(f"must be > 0, got {value:g}")
    return value


def _fraction(value: float) -> float:
    if not 0 <= value < 1:
        raise typer.BadParameter(f"must be in [0, 1), got {value:g}")
    return value


def _accepts(fn, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _open_workspace(path: Path, *, packets: bool = False, check: bool = False):
    """Open (and optionally verify) a workspace before any slow work, so a wrong path fails in a second."""
    from packetclip.traffic.workspace import Workspace

    ws = Workspace.open(path)
    if check:
        ws.check()
    if packets and not ws.has_packets():
        raise PacketClipError("this workspace has no packet views (an imported CSV has flow rows only); "
                              "use a workspace from `packetclip ingest` or `packetclip lab synth`", path=str(path))
    return ws


def _new_workspace_folder(out: Path, overwrite: bool) -> None:
    """Refuse a folder that already holds a workspace (unless --overwrite) or cannot be written, up front."""
    from packetclip.traffic.workspace import Workspace

    Workspace.create(out, overwrite=overwrite)


def _version_callback(value: bool) -> None:
    if value:
        from packetclip import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_version_callback,
                                 help="Print the packetclip version and exit."),
    verbose: bool = typer.Option(False, "--verbose/--no-verbose", "-v",
                                 help="Debug lines on stderr; unexpected errors show their traceback."),
) -> None:
    """packetclip: ingest traffic, generate labelled traffic, describe it in language, align and detect.

    \b
    Example: packetclip -v ingest traffic/ --out ws/
    """
    _STATE["verbose"] = verbose
    configure_logging(verbose)


@app.command()
def version() -> None:
    """Print the packetclip version.

    \b
    Example: packetclip version
    """
    from packetclip import __version__

    typer.echo(__version__)


# --- commands are added below this line, one block per stage -------------------------------------

lab_app = _typer("Labelled traffic lab: synthetic captures, or real tools against real servers (live).")
app.add_typer(lab_app, name="lab")


# --- lab: synth (pure-Python behaviour models of the tools; no root) ----------------------------


@lab_app.command("synth")
def lab_synth(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for capture.pcap, labels and the flow table."),
    duration: str = typer.Option("10m", "--duration", "-d", help="Capture length: 90s, 5m, 10m, 1h30m."),
    seed: int = typer.Option(7, "--seed", help="Same seed, byte-identical capture and labels."),
    ingest: bool = typer.Option(True, "--ingest/--no-ingest", help="Also write the flow table (--no-ingest: only "
                                "capture and packet labels)."),
    quiet: bool = typer.Option(False, "--quiet/--no-quiet", "-q", help="No progress bars."),
    figure: Optional[Path] = typer.Option(None, "--figure", help="Also draw packets over time per class to this PNG."),
    overwrite: bool = typer.Option(False, "--overwrite/--no-overwrite", help="Replace a workspace already in OUT."),
    classes: str = typer.Option("all", "--classes", help="all: the paper's 10 classes and the lab's extended ones "
                                "(HTTP floods, amplification, UDP scans, ...); paper: the paper's 10 only."),
    background: Optional[List[Path]] = typer.Option(None, "--background", help="Your own benign capture (file or "
                                                    "folder; repeat it): re-addressed into the lab subnet, re-timed "
                                                    "into the lab timeline, labelled Benign."),
    background_share: float = typer.Option(0.5, "--background-share", help="At most this part of all packets is "
                                           "background (0..1]; captures are cut to fit, never repeated."),
) -> None:
    """Write a labelled synthetic IoT capture (behaviour models of nmap, hping3, HULK, hydra, ...).

    Writes OUT/capture.pcap, packet_labels.parquet, episodes.parquet and, unless --no-ingest,
    flows.parquet (CICFlowMeter columns + label/mission), packets.parquet and labels.parquet.
    With --background, your network's normal traffic joins the lab's as Benign (payloads kept).

    \b
    Example: packetclip lab synth --out lab/ --duration 10m --seed 7
    Example: packetclip lab synth --out lab/ --background my-office.pcap --background-share 0.5
    """
    from rich.console import Console
    from rich.table import Table

    from packetclip.lab.synth import SynthLab, parse_duration

    duration_s = parse_duration(duration)
    _new_workspace_folder(out, overwrite)
    extra = {"background": tuple(str(p) for p in _capture_files(background)),
             "background_share": background_share} if background else {}
    lab = SynthLab(duration_s=duration_s, seed=seed, classes=classes, **extra)
    kwargs = {"overwrite": overwrite} if _accepts(lab.generate, "overwrite") else {}
    result = lab.generate(out, progress=not quiet, ingest=ingest, **kwargs)
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
    scale: float = typer.Option(1.0, "--scale", min=0.1, max=4.0, help="Multiplies flood counts and scan sizes (0.1..4)."),
    ingest: bool = typer.Option(True, "--ingest/--no-ingest", help="Also write the flow table (--no-ingest: only "
                                "capture and packet labels)."),
    class_set: str = typer.Option("all", "--classes", help="all: the paper's 10 classes and the extended ones (siege/ab, "
                                  "nping reflection, ncrack, ...); paper: the paper's 10 only."),
) -> None:
    """Make the lab's classes with real tools (nmap, hping3, slowhttptest, hydra, dnsperf, siege, ab, nping,
    ncrack) against real servers.

    Everything runs inside network namespaces this command creates and deletes; every tool run is bounded
    by count and time. Needs root, Linux and the tools of `packetclip lab install`.

    \b
    Example: sudo packetclip lab live --out lab-live/ --duration 2m --seed 7
    """
    from rich.console import Console
    from rich.table import Table

    from packetclip.lab.live import LiveLab
    from packetclip.lab.live_tools import require_live_environment
    from packetclip.lab.synth import parse_duration

    from packetclip.traffic.labels import ALL_CLASSES, FINE_CLASSES

    duration_s = parse_duration(duration)
    if class_set not in ("all", "paper"):
        raise PacketClipError(f"--classes must be 'all' or 'paper', not {class_set!r}")
    kwargs = {"scale": scale, "classes": tuple(classes) if classes else
              (ALL_CLASSES if class_set == "all" else FINE_CLASSES)}
    require_live_environment(classes=kwargs["classes"])
    result = LiveLab(duration_s=duration_s, seed=seed, **kwargs).run(out, ingest=ingest)
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

    \b
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
    optional: bool = typer.Option(True, "--optional/--no-optional", help="Also install optional tools (dnsperf)."),
    dry_run: bool = typer.Option(False, "--dry-run/--no-dry-run", help="Only print the packages that would be installed."),
) -> None:
    """Install the Debian packages `lab live` needs with apt-get (root; system services are not started).

    \b
    Example: sudo packetclip lab install
    """
    from packetclip.lab.live_tools import install_missing

    packages = install_missing(include_optional=optional, dry_run=dry_run, echo=typer.echo)
    if not packages:
        typer.echo("every lab tool is already installed")
    elif dry_run:
        typer.echo("would install: " + " ".join(packages))
    else:
        typer.echo("installed: " + " ".join(packages))


# --- traffic: ingest / info / label ---------------------------------------------------------------


@app.command()
def ingest(
    captures: List[Path] = typer.Argument(..., help="pcap/pcapng files or folders of them."),
    out: Path = typer.Option(..., "--out", "-o", help="Workspace folder to write."),
    view_bytes: int = typer.Option(128, "--view-bytes", min=20, max=65535,
                                   help="Bytes per packet view, starting at the IP header."),
    view_packets: Optional[int] = typer.Option(
        None, "--view-packets", min=0,
        help="Packet views stored per flow: its first N packets (default: ingest's, 32; 0: every packet)."),
    mask: bool = typer.Option(True, "--mask/--no-mask",
                              help="Zero addresses/ports/IDs/checksums in views (--no-mask: ablations only)."),
    idle_timeout: float = typer.Option(120.0, "--idle-timeout", callback=_positive,
                                       help="Seconds of silence that end a flow."),
    active_timeout: float = typer.Option(1800.0, "--active-timeout", callback=_positive,
                                         help="Longest flow duration in seconds before it is split."),
    tcp_close: bool = typer.Option(True, "--tcp-close/--no-tcp-close",
                                   help="End TCP flows on FIN/RST (--no-tcp-close: nfstream/ndpiReader behaviour)."),
    strict: bool = typer.Option(False, "--strict/--no-strict",
                                help="Stop at the first unreadable capture instead of reporting it."),
    overwrite: bool = typer.Option(False, "--overwrite/--no-overwrite", help="Replace a workspace already in OUT."),
    quiet: bool = typer.Option(False, "--quiet/--no-quiet", "-q", help="No progress bar."),
    ray: Optional[str] = typer.Option(None, "--ray", "--ray-address", metavar="[ADDRESS]",
                                      help="Over Ray: one task per capture (and per chunk of a large one); --ray "
                                      "alone starts a Ray here, ADDRESS 'auto' joins this machine's cluster, or "
                                      "HOST:PORT."),
) -> None:
    """Turn captures into a workspace: flows.parquet (CICFlowMeter columns) and packets.parquet (masked views).

    \b
    Example: packetclip ingest traffic/*.pcap --out ws/
    Example: packetclip ingest /data/captures --out ws/ --ray auto
    """
    from packetclip.traffic import ingest as ingest_module
    from packetclip.traffic.ingest import IngestSettings, ingest_captures

    paths = getattr(ingest_module, "expand_capture_paths", _capture_files)(captures)
    _new_workspace_folder(out, overwrite)
    settings = IngestSettings(view_bytes=view_bytes, mask=mask, idle_timeout=idle_timeout,
                              active_timeout=active_timeout, tcp_close=tcp_close)
    if view_packets is not None and hasattr(settings, "view_packets"):
        settings.view_packets = view_packets or None
    kwargs = {"overwrite": overwrite} if _accepts(ingest_captures, "overwrite") else {}
    if ray is not None:
        from packetclip.scale.cluster import ray_session
        from packetclip.scale.ray_ingest import ingest_captures_ray

        with ray_session(ray):
            workspace = ingest_captures_ray(paths, out, settings=settings, strict=strict, progress=not quiet,
                                            overwrite=overwrite)
    else:
        workspace = ingest_captures(paths, out, settings=settings, strict=strict, progress=not quiet, **kwargs)
    captures_read = workspace.manifest.get("captures", [])
    if captures_read and all(c.get("error") for c in captures_read):
        raise PacketClipError(f"none of the {len(captures_read)} capture(s) could be read; first: "
                              f"{captures_read[0]['error']}")
    _print_workspace_summary(workspace)
    typer.echo(f"workspace: {workspace.root}")


CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".dmp")


def _capture_files(paths: List[Path]) -> List[Path]:
    """Files as given, folders expanded to the capture files inside them (sorted, recursive)."""
    out: List[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in CAPTURE_SUFFIXES)
            if not found:
                raise PacketClipError("folder holds no .pcap/.pcapng files", path=str(p))
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise PacketClipError("no such capture file or folder", path=str(p))
    return out


@app.command()
def info(workspace: Path = typer.Argument(..., help="Workspace folder (from ingest, lab synth or import-csv).")) -> None:
    """Summarise a workspace after checking its files: captures, packets, flows, protocols, labels, damage.

    A missing or damaged table (deleted, truncated, row count not the manifest's) is one line, exit code 2.

    \b
    Example: packetclip info ws/
    """
    _print_workspace_summary(_open_workspace(workspace, check=True))


def _print_workspace_summary(workspace) -> None:
    from rich.console import Console
    from rich.table import Table

    from packetclip.traffic.ingest import summary_rows

    table = Table(title=f"workspace {workspace.root}")
    table.add_column("what")
    table.add_column("value", overflow="fold")
    for key, value in summary_rows(workspace):      # names each damaged capture (file, offset) on its own row
        table.add_row(key, value)
    Console().print(table)


@app.command("import-csv")
def import_csv(
    csv_paths: List[Path] = typer.Argument(..., help="CICFlowMeter CSVs (CIC-IDS2017/2018, ACI-IoT-2023) or folders of them."),
    out: Path = typer.Option(..., "--out", "-o", help="Workspace folder to write."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Label column (default: Label/label/Class/...)."),
    fill_value: float = typer.Option(0.0, "--fill-value", help="Value for Infinity/NaN/empty numeric cells."),
    overwrite: bool = typer.Option(False, "--overwrite/--no-overwrite", help="Replace a workspace already in OUT."),
    quiet: bool = typer.Option(False, "--quiet/--no-quiet", "-q", help="No progress bar."),
) -> None:
    """Import labelled flow CSVs into a flow-only workspace (canonical columns, labels, missions).

    Several files and folders may be given; they become one workspace.

    \b
    Example: packetclip import-csv ../shared/data/cicids2017/*.csv --out ws/cic
    """
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from packetclip.traffic.datasets.cic import import_flow_csv, list_csv_files

    files: list[Path] = []
    for path in csv_paths:
        files.extend(f for f in list_csv_files(path) if f not in files)
    _new_workspace_folder(out, overwrite)
    kwargs = {"overwrite": overwrite} if _accepts(import_flow_csv, "overwrite") else {}
    target, df = import_flow_csv(files, out, label_column=label_column, fill_value=fill_value,
                                 progress=not quiet, **kwargs)
    report = df.attrs.get("packetclip_report", {})
    table = Table(title=f"{len(df):,} flows from {len(report.get('files', files))} file(s) -> {target}")
    table.add_column("label")
    table.add_column("mission")
    table.add_column("flows", justify="right")
    if "label" in df.columns:
        mission = df["mission"] if "mission" in df.columns else pd.Series(pd.NA, index=df.index)
        counts = pd.DataFrame({"label": df["label"], "mission": mission}).groupby(
            ["label", "mission"], dropna=False).size().sort_values(ascending=False)
        for (label, mission_name), n in counts.items():
            table.add_row(str(label), "-" if pd.isna(mission_name) else str(mission_name), f"{n:,}")
    console = Console()
    console.print(table)
    if report:
        console.print(
            f"non-finite cells set to {report.get('fill_value', fill_value):g}: {report.get('nonfinite_filled', 0):,}; "
            f"renamed columns: {len(report.get('renamed_columns', []))}; duplicate columns dropped: "
            f"{len(report.get('duplicate_columns_dropped', []))}; repeated header rows dropped: "
            f"{report.get('repeated_header_rows_dropped', 0):,}; rows without label dropped: "
            f"{report.get('rows_without_label_dropped', 0):,}")


label_app = _typer("Attach ground-truth labels to a workspace's flows.")
app.add_typer(label_app, name="label")


@label_app.command("ndpi")
def label_ndpi_command(
    workspace: Path = typer.Argument(..., help="Workspace ingested from the captures the results describe."),
    results: List[Path] = typer.Argument(..., help="nDPI result files (<capture>.out) or folders of them."),
    level: str = typer.Option("master", "--level", help="Label by master protocol (HTTP, TLS, DNS), app or category."),
    quiet: bool = typer.Option(False, "--quiet/--no-quiet", "-q", help="No progress bar."),
) -> None:
    """Label a workspace's flows with nDPI ground truth (protocol per flow, joined by 5-tuple).

    Writes the workspace's labels table, so `describe`, `split` and training see the labels; flows nDPI
    does not list stay unlabelled.

    \b
    Example: packetclip label ndpi ws/ndpi ../shared/data/ndpi/result
    """
    from rich.console import Console

    from packetclip.traffic.datasets import label_ndpi

    if level not in ("master", "app", "category"):
        raise typer.BadParameter(f"must be master, app or category, not {level!r}", param_hint="'--level'")
    ws = _open_workspace(workspace)
    for path in results:
        if not path.exists():
            raise PacketClipError("no such nDPI result file or folder", path=str(path))
    target, table = label_ndpi(ws, results if len(results) > 1 else results[0], level=level, progress=not quiet)
    report = table.attrs.get("packetclip_report", {})
    flows = len(ws.flow_ids()) if hasattr(ws, "flow_ids") else None
    console = Console()
    console.print(f"{len(table):,} flows labelled" + (f" of {flows:,}" if flows is not None else "")
                  + f" from {report.get('result_files', '?')} nDPI result file(s) ({level}) -> {target}")
    if len(table):
        counts = table["label"].value_counts()
        top = ", ".join(f"{k} {v:,}" for k, v in counts.head(12).items())
        console.print(f"labels: {top}" + (f", ... ({len(counts)} in all)" if len(counts) > 12 else ""))


# --- traffic: leakage-safe splits ---------------------------------------------------------------


@app.command()
def split(
    workspace: Path = typer.Argument(..., help="Workspace folder (from ingest, lab synth or import-csv)."),
    by: str = typer.Option("capture", "--by", help="Group unit: 'capture' (whole files) or 'flow' (whole flows)."),
    test_size: float = typer.Option(0.2, "--test-size", callback=_fraction, help="Fraction of rows for test, in [0, 1)."),
    val_size: float = typer.Option(0.1, "--val-size", callback=_fraction,
                                   help="Fraction of rows for validation, in [0, 1) (0: none)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the group order; same seed, same split."),
    label_column: str = typer.Option("label", "--label-column", help="Stratify on this column if present."),
) -> None:
    """Split a workspace's flows into train/val/test by capture file or by flow (never by packet).

    Writes the workspace's splits table (flow_id, capture columns, split) and prints rows per split and label.

    \b
    Example: packetclip split ws/ --by capture --test-size 0.2 --seed 0
    """
    import warnings

    from rich.console import Console
    from rich.table import Table

    from packetclip.traffic.splits import SplitWarning, split_workspace

    if by not in ("capture", "flow"):
        raise typer.BadParameter(f"must be 'capture' or 'flow', not {by!r}", param_hint="'--by'")
    if test_size + val_size >= 1:
        raise typer.BadParameter(f"--test-size {test_size:g} plus --val-size {val_size:g} leaves no training rows",
                                 param_hint="'--test-size' / '--val-size'")
    ws = _open_workspace(workspace)
    console = Console()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SplitWarning)
        _, summary = split_workspace(ws, by=by, test_size=test_size, val_size=val_size, seed=seed,
                                     label_col=label_column)
    table = Table(title=f"split by {by} (seed {seed}) -> {summary.attrs.get('path', workspace)}")
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


# --- knowledge: mission knowledge graphs ---------------------------------------------------------

kg_app = _typer("Mission knowledge graphs (concept DAGs for DoS, Reconnaissance, Brute Force).")
app.add_typer(kg_app, name="kg")


@kg_app.command("build")
def kg_build(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for <mission>.json, .graphml and .png."),
    mission: Optional[List[str]] = typer.Option(
        None, "--mission", "-m", help="dos, recon(naissance) or brute(-force), any case ('Brute Force', "
        "brute_force); repeat it; default all three."),
    source: str = typer.Option("attack", "--source", help="attack (offline MITRE ATT&CK v15) or llm."),
    backend: str = typer.Option("smollm2", "--backend", help="Chat backend for --source llm: smollm2 or openai."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible server URL (--backend openai)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name on that server (--backend openai)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="API key for that server, if it needs one."),
    n_key: int = typer.Option(6, "--n-key", min=1, max=32, help="V: key concepts at level 0 (1..32)."),
    levels: int = typer.Option(2, "--levels", min=0, max=6,
                               help="N: expansion levels after the key concepts (0..6)."),
    per_node: int = typer.Option(2, "--per-node", min=1, max=8, help="Associated words asked for each concept (1..8)."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same graph."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Where the parsed ATT&CK corpus is cached."),
    png: bool = typer.Option(True, "--png/--no-png", help="Also draw each graph as a PNG."),
    threads: Optional[int] = _threads_option(),
) -> None:
    """Build mission knowledge graphs and write them as JSON, GraphML and PNG.

    \b
    Example: packetclip kg build --mission dos --source attack --out kg/
    """
    import time

    from rich.console import Console
    from rich.table import Table

    from packetclip.knowledge import get_source, mission_spec, write_graph_files
    from packetclip.knowledge.attack import AttackSource
    from packetclip.util.progress import Progress

    if source not in ("attack", "llm"):
        raise typer.BadParameter(f"must be 'attack' or 'llm', not {source!r}", param_hint="'--source'")
    specs = [mission_spec(m) for m in (mission or ["dos", "reconnaissance", "brute-force"])]
    console = Console()
    attack = AttackSource(cache_dir=cache_dir)
    bar = Progress(f"kg build ({source})", len(specs), transient=True)
    calls = [0]
    if source == "llm":
        if backend.strip().lower() == "smollm2":
            use_threads(threads)

        def on_call(prompt: str) -> None:
            calls[0] += 1
            bar.set(bar.done, description=f"{spec_now[0]}: {calls[0]} {backend} calls")
            log.debug("asking %s: %s", backend, prompt[:80])

        kwargs = {k: v for k, v in {"base_url": base_url, "model": model, "api_key": api_key}.items() if v}
        builder = get_source("llm", backend=backend, backend_kwargs=kwargs,
                             fallback=AttackSource(cache_dir=cache_dir, temperature=0.0), on_call=on_call)
    else:
        builder = attack
    table = Table(title=f"mission graphs ({source}, seed {seed}) -> {out}")
    for column in ("mission", "levels after key", "concepts", "edges", "key concepts", "seconds"):
        table.add_column(column)
    spec_now = [""]
    with bar:
        for spec in specs:
            spec_now[0] = spec.label
            bar.set(bar.done, description=f"building the {spec.label} graph ({source})")
            started = time.perf_counter()
            graph = builder.build(spec.key, n_key=n_key, n_levels=levels, per_node=per_node, seed=seed)
            write_graph_files(graph, out, png=png)
            keys = ", ".join(graph.key_concepts())
            if source == "llm":
                keys += f"  (llm words {graph.meta['llm_words']}, ATT&CK fallback {graph.meta['fallback_words']})"
            table.add_row(spec.label, str(graph.n_levels - 1), str(len(graph.nodes)), str(len(graph.edges)), keys,
                          f"{time.perf_counter() - started:.1f}")
            bar.advance(1)
    console.print(table)


@kg_app.command("show")
def kg_show(path: Path = typer.Argument(..., help="A folder written by `packetclip kg build`, or one graph .json.")) -> None:
    """Print mission graphs as trees: levels, words, provenance (ATT&CK technique or llm) and parents.

    \b
    Example: packetclip kg show kg/
    """
    from rich.console import Console
    from rich.tree import Tree

    from packetclip.knowledge import load_graphs

    console = Console()
    for graph in load_graphs(path):
        meta = graph.meta
        built = graph.n_levels - 1      # what --levels counts: expansion levels after the key concepts
        tree = Tree(f"[bold]{meta.get('label', graph.mission)}[/] — {graph.source}, seed {meta.get('seed', '?')}, "
                    f"key concepts + {built} level{'s' if built != 1 else ''} (--levels {built}), "
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

encoder_app = _typer("Packet encoder (Lens-style T5 over masked packet bytes): pre-train and evaluate.")
app.add_typer(encoder_app, name="encoder")


def _encoder_folder(value: Optional[Path], flag: str = "--encoder") -> Optional[Path]:
    """An encoder folder as given, or the packaged folder of a shipped encoder name (``lens-tiny``)."""
    if value is None:
        return None
    from packetclip.encoders.pretrained import resolve_encoder, shipped_names

    folder = resolve_encoder(value)
    if not folder.is_dir():
        raise PacketClipError(f"no such {flag} folder (nor a shipped encoder: {', '.join(shipped_names())})",
                              path=str(value))
    return folder


@encoder_app.command("pretrain")
def encoder_pretrain(
    workspaces: List[Path] = typer.Argument(..., help="Workspaces with packet views (from ingest or lab synth)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the model, checkpoint/ and loss_curves.png."),
    size: str = typer.Option("tiny", "--size", help="tiny | small | base."),
    steps: int = typer.Option(2000, "--steps", min=1, help="Optimiser steps in total (a resumed run continues to this)."),
    resume: bool = typer.Option(False, "--resume/--no-resume", help="Continue from OUT/checkpoint with its stored settings."),
    tokenisation: str = typer.Option("byte", "--tokenisation", help="byte (4-byte patches) | bigram (ET-BERT style)."),
    k_packets: int = typer.Option(4, "--k", min=1, max=64, help="Packets per flow input."),
    seed: int = typer.Option(0, "--seed", help="Seed for initialisation and every sampled batch."),
    lr: float = typer.Option(1e-3, "--lr", callback=_positive, help="Peak learning rate (> 0)."),
    minutes: Optional[float] = typer.Option(None, "--minutes", callback=_positive,
                                            help="Stop after this many minutes (> 0; resumable)."),
    save_every: int = typer.Option(250, "--save-every", min=0, help="Refresh OUT/checkpoint every N steps (0: at the end)."),
    overwrite: bool = typer.Option(False, "--overwrite/--no-overwrite",
                                   help="Start afresh in an OUT that already holds a checkpoint."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
    quiet: bool = typer.Option(False, "--quiet/--no-quiet", "-q", help="No progress bar."),
    threads: Optional[int] = _threads_option(),
) -> None:
    """Pre-train the packet encoder with span, packet-order and homologous-traffic prediction.

    \b
    Example: packetclip encoder pretrain ws/ --size tiny --steps 2000 --out models/lens-tiny
    """
    if size not in ("tiny", "small", "base"):
        raise typer.BadParameter(f"must be tiny, small or base, not {size!r}", param_hint="'--size'")
    if tokenisation not in ("byte", "bigram"):
        raise typer.BadParameter(f"must be byte or bigram, not {tokenisation!r}", param_hint="'--tokenisation'")
    if not (device == "cpu" or device == "cuda" or device.startswith("cuda:")):
        raise typer.BadParameter(f"must be cpu, cuda or cuda:N, not {device!r}", param_hint="'--device'")
    for path in workspaces:        # before torch is imported: a wrong path fails in a second, not after loading
        _open_workspace(path, packets=True)
    if out.exists() and not out.is_dir():
        raise PacketClipError("--out must be a folder", path=str(out))
    use_threads(threads)
    from packetclip.encoders.lens import LensConfig
    from packetclip.encoders.pretrain import PretrainSettings, pretrain

    config = None if resume else LensConfig(size=size, tokenisation=tokenisation, k_packets=k_packets,
                                            patch_size=4 if tokenisation == "byte" else 1)
    settings = PretrainSettings(steps=steps, seed=seed, lr=lr, save_every=save_every)
    extra = {name: value for name, value in (("overwrite", overwrite), ("device", device))
             if _accepts(pretrain, name)}
    result = pretrain(workspaces, out, config=config, settings=None if resume else settings,
                      resume=resume, max_seconds=None if minutes is None else minutes * 60.0,
                      steps_override=steps if resume else None, progress=not quiet, **extra)
    last = result.history[-1] if result.history else {}
    losses = ", ".join(f"{k} {last[k]:.3f}" for k in ("msp", "pop", "htp") if k in last)
    typer.echo(f"steps {result.steps_done}/{steps} in {result.seconds:.0f} s"
               + (" (stopped by --minutes; continue with --resume)" if result.stopped_early else "")
               + (f"; last losses {losses}" if losses else ""))
    typer.echo(f"model: {result.out_dir}  curves: {result.out_dir / 'loss_curves.png'}")


@encoder_app.command("eval-generation")
def encoder_eval_generation(
    checkpoint: Path = typer.Argument(..., help="Model folder written by `packetclip encoder pretrain`, or "
                                      "lens-tiny (the shipped pre-trained encoder)."),
    workspaces: List[Path] = typer.Argument(..., help="Workspace(s) whose split flows are evaluated."),
    split_name: str = typer.Option("test", "--split", help="Which split's flows: test, val or train."),
    max_packets: int = typer.Option(3000, "--max-packets", min=1, help="Packets evaluated (sampled, seeded)."),
    packets_per_flow: int = typer.Option(20, "--packets-per-flow", min=1, help="At most this many packets per flow."),
    seed: int = typer.Option(0, "--seed", help="Seed of the packet sample; same seed, same packets."),
    json_out: bool = typer.Option(False, "--json/--no-json", help="Also print the scores as one JSON line."),
    threads: Optional[int] = _threads_option(),
) -> None:
    """Generate masked header fields (TTL, IP length, TCP flags/window, UDP length) on held-out flows.

    Per field: exact-match accuracy of the decoder next to the most-frequent-value baseline.

    \b
    Example: packetclip encoder eval-generation models/lens-tiny ws/
    Example: packetclip encoder eval-generation lens-tiny ws/
    """
    import json as _json

    if split_name not in ("test", "val", "train"):
        raise typer.BadParameter(f"must be test, val or train, not {split_name!r}", param_hint="'--split'")
    checkpoint = _encoder_folder(checkpoint, "model")
    for path in workspaces:
        _open_workspace(path, packets=True)
    use_threads(threads)
    from rich.console import Console
    from rich.table import Table

    from packetclip.encoders.generation import evaluate_generation
    from packetclip.encoders.lens import LensModel

    model = LensModel.from_pretrained(checkpoint)
    kwargs = {"split": split_name} if _accepts(evaluate_generation, "split") else {}
    report = evaluate_generation(model, workspaces, per_flow=packets_per_flow, max_packets=max_packets, seed=seed,
                                 progress=True, **kwargs)
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
    workspace: Path = typer.Argument(..., help="Workspace with flows (labelled or not)."),
    backend: str = typer.Option("rules", "--backend", "-b", help="Paraphraser: rules (offline), smollm2 or openai."),
    texts_per_flow: int = typer.Option(3, "--texts-per-flow", "-k", min=1, max=32, help="Descriptions per flow."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same descriptions."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Describe at most N flows, spread evenly over labels."),
    out: Optional[Path] = typer.Option(None, "--out", "-o",
                                       help="Folder for figures and a copy of the table (default: the workspace)."),
    figures: bool = typer.Option(False, "--figures/--no-figures",
                                 help="Also draw Figure 6: word clouds and top-10 words per mission."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="LLM answer cache (default $PACKETCLIP_CACHE/language)."),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Read and write the LLM answer cache."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible server URL (--backend openai)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name on that server (--backend openai)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="API key for that server, if it needs one."),
    quiet: bool = typer.Option(False, "--quiet/--no-quiet", "-q", help="No progress bar."),
    threads: Optional[int] = _threads_option(),
) -> None:
    """Describe flows in natural language (templates -> mission-graph concepts -> paraphrase).

    Writes the workspace's descriptions table (flow_id, k, label, mission, text, backend, fallback); --out
    gets the figures and a copy. A workspace without labels gets label-free descriptions. LLM answers that
    fail validation fall back to the rules paraphraser. The number of descriptions (= LLM calls for smollm2
    and openai, less what the cache answers) is printed before work starts.

    \b
    Example: packetclip describe ws/ --backend rules --texts-per-flow 3 --figures
    """
    from rich.console import Console
    from rich.table import Table

    from packetclip.language.describe import Describer
    from packetclip.language.workspace import describe_workspace
    from packetclip.util.progress import Progress

    kind = backend.strip().lower()
    if kind not in ("rules", "smollm2", "openai"):
        raise typer.BadParameter(f"must be rules, smollm2 or openai, not {backend!r}", param_hint="'--backend'")
    if out is not None and out.exists() and not out.is_dir():
        raise PacketClipError("--out must be a folder (descriptions stay in the workspace)", path=str(out))
    ws = _open_workspace(workspace)
    if kind == "smollm2":
        use_threads(threads)
    chat_options = {"base_url": base_url, "model": model, "api_key": api_key} if kind == "openai" else {}
    describer = Describer(backend, texts_per_flow, seed, cache_dir=cache_dir, use_cache=cache,
                          chat_options={k: v for k, v in chat_options.items() if v})
    console = Console()

    bar = Progress(f"describing ({backend})", None, enabled=not quiet, transient=True)

    def on_total(n: int) -> None:
        calls = f"; up to {n:,} {backend} calls (cached answers are reused; --limit N caps the flows)" \
            if kind != "rules" else ""
        typer.echo(f"describe: {n:,} descriptions ({n // texts_per_flow:,} flows x {texts_per_flow}){calls}",
                   err=True)
        bar.set_total(n)

    import time

    started = [time.monotonic(), False]

    def advance(n: int) -> None:
        bar.advance(n)
        if not started[1] and bar.total and kind != "rules" and bar.done >= min(10, bar.total) and bar.done < bar.total:
            started[1] = True       # one estimate, from the pace of the first answers
            per = (time.monotonic() - started[0]) / bar.done
            log.info("describe: about %.0f min for the remaining %s descriptions (%.1f s each so far)",
                     per * (bar.total - bar.done) / 60, f"{int(bar.total - bar.done):,}", per)

    with bar:
        target, table = describe_workspace(ws, describer, limit=limit, out=out, progress=advance,
                                           on_total=on_total)
    summary = Table(title=f"{len(table):,} descriptions ({backend}, seed {seed}) -> {target}")
    for column in ("label", "descriptions", "LLM fallbacks"):
        summary.add_column(column)
    labels = table["label"].fillna("").astype(str) if "label" in table.columns else None
    fallback = table["fallback"] if "fallback" in table.columns else None
    for label, group in (table.groupby(labels, sort=True) if labels is not None else [("", table)]):
        summary.add_row(label or "(unlabelled)", f"{len(group):,}",
                        f"{int(fallback.loc[group.index].sum()):,}" if fallback is not None else "0")
    console.print(summary)
    if len(table):
        console.print(f"[dim]example:[/] {table['text'].iloc[0]}")
    answer_cache = getattr(describer.paraphraser, "cache", None)
    if answer_cache is not None:
        console.print(f"LLM cache: {answer_cache.hits:,} hits, {answer_cache.misses:,} misses ({answer_cache.path})")
    if figures:
        from packetclip.language.figures import write_mission_figures
        from packetclip.language.workspace import figures_dir

        for path in write_mission_figures(table, figures_dir(ws, out), seed=seed):
            console.print(f"figure: {path}")


llm_app = _typer("Local chat models: an OpenAI-compatible server and a one-shot chat.")
app.add_typer(llm_app, name="llm")


@llm_app.command("serve")
def llm_serve(
    port: int = typer.Option(8000, "--port", "-p", min=1, max=65535, help="TCP port to listen on (1..65535)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; keep loopback unless you mean to share it."),
    backend: str = typer.Option("smollm2", "--backend", help="Local chat backend to serve (smollm2)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="Require this bearer token from clients."),
    threads: Optional[int] = _threads_option(),
    log_requests: bool = typer.Option(False, "--log-requests/--no-log-requests", help="Print every request."),
) -> None:
    """Serve a local chat model under the OpenAI chat-completions protocol (POST /v1/chat/completions).

    \b
    Example: packetclip llm serve --port 8000 --backend smollm2
    """
    from rich.console import Console

    from packetclip.language.server import make_server

    use_threads(threads)
    console = Console()
    server = make_server(backend, host=host, port=port, api_key=api_key,
                         log=(lambda line: console.print(f"[dim]{line}[/]")) if log_requests or _STATE["verbose"] else None)
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
    max_tokens: int = typer.Option(128, "--max-tokens", min=1, max=8192, help="Longest answer in tokens."),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, max=2.0, help="0 is greedy (0..2)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample when temperature > 0."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible server URL (--backend openai)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name on that server (--backend openai)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="API key for that server."),
    threads: Optional[int] = _threads_option(),
) -> None:
    """Ask a chat backend one question and print the answer.

    \b
    Example: packetclip llm chat "List three words about port scans." --backend smollm2
    """
    from packetclip.language.chat import get_chat_backend

    kind = backend.strip().lower()
    if kind == "smollm2":
        use_threads(threads)
    options = {"base_url": base_url, "model": model, "api_key": api_key} if kind == "openai" else {}
    chat = get_chat_backend(backend, **options)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    typer.echo(chat.chat(messages, max_tokens=max_tokens, temperature=temperature, seed=seed))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# --- reasoning: train a detector bundle (mission GNN over the aligned embedding; issue 11) ----------

RECIPES = ("default",)


@app.command("train")
def train_command(
    workspaces: Optional[List[Path]] = typer.Argument(None, help="Workspaces to learn from: labelled lab workspaces "
                                                      "(attacks) and unlabelled benign ones (your network's normal "
                                                      "traffic, as background). None with --recipe default: the "
                                                      "shipped detect model's recipe (its own lab + --background)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Bundle folder to write (empty or an earlier "
                                       "bundle); for the detect recipe, the model folder (default: detect-model)."),
    recipe: str = typer.Option("default", "--recipe", help="Training recipe: default (flow-table encoder + host "
                               "context unless --encoder, rule-described alignment unless --alignment)."),
    encoder: Optional[Path] = typer.Option(None, "--encoder", help="A packet encoder folder (Lens), or lens-tiny "
                                           "(the shipped one), to use instead of a flow-table encoder fitted on "
                                           "the training flows."),
    alignment: Optional[Path] = typer.Option(None, "--alignment", help="An alignment folder (`packetclip align "
                                             "train`) trained on the same encoder; default: a quick one is trained."),
    time_step: str = typer.Option("flow", "--time-step", help="What a time step is: flow (the flow alone, with its "
                                  "host context; best on validation) | src | dst | global (past-only windows)."),
    window: int = typer.Option(30, "--window", min=1, max=512, help="Steps per past-only window (paper: 30)."),
    epochs: int = typer.Option(12, "--epochs", min=1, help="GNN training epochs (the best one on validation is kept)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of initialisation, splits and batches (default 0; "
                                       "the detect recipe: 7, the shipped model's)."),
    background: Optional[Path] = typer.Option(None, "--background", help="Detect recipe: folder of benign captures "
                                              "(half, by capture, is background; the shipped model used "
                                              "../shared/data/ndpi/pcap)."),
    threads: Optional[int] = _threads_option(),
) -> None:
    """Train the mission GNN on lab attacks + benign background and write one self-describing bundle
    (encoder, alignment, GNN, calibrated 1 %-FPR threshold) that `Bundle.load` reads in one call. Without
    workspaces, `--recipe default` retrains the detect model shipped in the package (same seed, same model).

    \b
    Example: packetclip train ws/lab ws/my-benign --out models/bundle
    Example: packetclip train --recipe default --background ../shared/data/ndpi/pcap --out detect-model
    """
    from packetclip.reasoning.windows import TIME_STEPS

    _choice(recipe, RECIPES, "--recipe")
    if not workspaces:
        _train_detect_recipe(out or Path("detect-model"), seed=7 if seed is None else seed, background=background,
                             threads=threads)
        return
    if out is None:
        raise typer.BadParameter("give the bundle folder to write", param_hint="'--out'")
    seed = 0 if seed is None else seed
    _choice(time_step, TIME_STEPS, "--time-step")
    for ws in workspaces:
        _open_workspace(ws)
    encoder = _encoder_folder(encoder)
    if alignment is not None and not alignment.is_dir():
        raise PacketClipError("no such --alignment folder", path=str(alignment))
    use_threads(threads)
    from packetclip.reasoning.train import ReasoningSettings, train_bundle

    settings = ReasoningSettings(time_step=time_step, window=window, epochs=epochs, seed=seed)
    bundle, summary = train_bundle(workspaces, out, encoder=encoder, alignment=alignment, settings=settings,
                                   log=lambda r: log.info("epoch %d: loss %.4f val mAUC %s", r["epoch"], r["loss"],
                                                          r.get("val_mauc")))
    val = summary.get("val_mauc")
    typer.echo(f"{summary['flows']:,} flows ({summary['train_flows']:,} for training); validation mAUC "
               f"{'n/a' if val is None else f'{val:.4f}'}; {summary['trainable_params']:,} trainable GNN "
               f"parameters; alert threshold {bundle.threshold:.4f} (1 % FPR on validation benign flows)")
    typer.echo(f"bundle: {out}")


def _train_detect_recipe(out: Path, *, seed: int, background: Optional[Path], threads: Optional[int]) -> None:
    """`packetclip train --recipe default` without workspaces: the shipped detect model, reproducible by seed."""
    from packetclip.detect.train import train_default
    from packetclip.util.cache import cache_dir

    if background is not None and not background.is_dir():
        raise PacketClipError("no such --background folder", path=str(background))
    if background is None:
        log.warning("no --background: the model learns benign traffic from the lab alone (the shipped one also "
                    "saw half of the nDPI captures)")
    use_threads(threads if threads is not None else 1)
    scorer = train_default(out, work=cache_dir("detect-train"), seed=seed, ndpi=background)
    val = scorer.info.get("recall_at_default_fpr", {})
    typer.echo(f"detect model (seed {seed}): {scorer.info['val_flows']:,} validation flows; flow recall at FPR "
               f"{scorer.info['default_fpr']:g}: " + ", ".join(f"{m} {r:.3f}" for m, r in sorted(val.items())))
    typer.echo(f"model: {out} (use it with: packetclip detect CAPTURE --model {out})")


# --- align: traffic-language alignment, zero-shot evaluation, natural-language search (issue 10) ------

align_app = _typer("Align traffic with language: train the projection heads, evaluate zero-shot (Table 1, Figure 7).")
app.add_typer(align_app, name="align")


def _choice(value: str, allowed: tuple, flag: str) -> str:
    if value not in allowed:
        raise typer.BadParameter(f"must be one of {', '.join(allowed)}, not {value!r}", param_hint=f"'{flag}'")
    return value


@align_app.command("train")
def align_train(
    workspace: Path = typer.Argument(..., help="A described (`packetclip describe`) and split workspace."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the alignment (config.json + model.safetensors)."),
    traffic: str = typer.Option("packet", "--traffic", help="Traffic side: packet | packet+context | flow."),
    heads: str = typer.Option("both", "--heads", help="Trained heads: none (temperature only) | packet | both."),
    encoder: Optional[Path] = typer.Option(None, "--encoder", help="Traffic encoder folder (Lens for packet sides, "
                                           "flow-table for flow). Default: packet sides use the shipped "
                                           "pre-trained lens-tiny; flow fits one on the training flows."),
    steps: int = typer.Option(3000, "--steps", min=1, help="Optimiser steps (paper: 3,000)."),
    batch_size: int = typer.Option(128, "--batch-size", min=2, help="Pairs per batch (paper: 128)."),
    lr: float = typer.Option(5e-4, "--lr", callback=_positive, help="Adam learning rate (> 0; paper: 5e-4)."),
    loss: str = typer.Option("multi-positive", "--loss", help="multi-positive (same-class pairs are positives) | clip."),
    seed: int = typer.Option(0, "--seed", help="Seed of the heads' initialisation and of every batch."),
    threads: Optional[int] = _threads_option(),
) -> None:
    """Train the traffic and text heads and the temperature on cached frozen embeddings (train split).

    \b
    Example: packetclip align train ws/ --traffic packet --heads both --encoder models/lens-tiny --out models/align
    """
    from packetclip.align.model import HEADS, TRAFFIC_KINDS

    _choice(traffic, TRAFFIC_KINDS, "--traffic")
    _choice(heads, HEADS, "--heads")
    _choice(loss, ("multi-positive", "clip"), "--loss")
    _open_workspace(workspace, packets=traffic != "flow")
    if out.exists() and not out.is_dir():
        raise PacketClipError("--out must be a folder", path=str(out))
    encoder = _encoder_folder(encoder)
    use_threads(threads)
    from packetclip.align.api import train_alignment
    from packetclip.align.train import TrainSettings

    settings = TrainSettings(steps=steps, batch_size=batch_size, lr=lr, multi_positive=loss == "multi-positive",
                             seed=seed)
    _, history, info = train_alignment(workspace, out, traffic=traffic, heads=heads, encoder=encoder,
                                       settings=settings)
    last = history[-1] if history else {}
    typer.echo(f"{info['flows']:,} flows, {info['descriptions']:,} descriptions; {steps} steps in "
               f"{info['train_seconds']:.1f} s; loss {last.get('loss', float('nan')):.3f} (clip "
               f"{last.get('loss_clip', float('nan')):.3f}, multi-positive {last.get('loss_multi_positive', float('nan')):.3f})")
    typer.echo(f"model: {out}")


@align_app.command("eval")
def align_eval(
    model: Path = typer.Argument(..., help="Alignment folder written by `packetclip align train`."),
    workspace: Path = typer.Argument(..., help="The described, split workspace to evaluate on (test split)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for table1.md and figure7.png (default: MODEL/eval)."),
    encoder: Optional[Path] = typer.Option(None, "--encoder", help="Traffic encoder folder, if it moved since training "
                                           "(must be the same encoder)."),
    curves: bool = typer.Option(True, "--curves/--no-curves", help="Train heads none/packet/both for Figure 7."),
    steps: int = typer.Option(3000, "--steps", min=1, help="Steps of each Figure 7 run."),
    eval_every: int = typer.Option(250, "--eval-every", min=1, help="Figure 7 evaluates zero-shot every N steps."),
    threads: Optional[int] = _threads_option(),
) -> None:
    """Zero-shot top-1/top-5 over the 10 class names next to a linear probe and XGBoost: Table 1 (Markdown)
    and Figure 7 (PNG).

    \b
    Example: packetclip align eval models/align ws/ --out report/
    """
    if not model.is_dir():
        raise PacketClipError("no such model folder", path=str(model))
    _open_workspace(workspace)
    use_threads(threads)
    from packetclip.align.api import run_eval

    result = run_eval(model, workspace, out or model / "eval", encoder=encoder, curves=curves, steps=steps,
                      eval_every=eval_every)
    typer.echo(result["table"].rstrip())
    typer.echo(f"table: {result['table_path']}" + (f"  figure: {result['figure_path']}" if "figure_path" in result else ""))


@app.command("search")
def search_flows(
    workspace: Path = typer.Argument(..., help="Workspace whose flows are searched."),
    query: str = typer.Argument(..., help="What to look for, in plain words."),
    top: int = typer.Option(20, "--top", "-n", min=1, max=10000, help="How many flows to show."),
    model: Optional[Path] = typer.Option(None, "--model", help="Alignment folder (default: the last one trained on "
                                         "this workspace)."),
    encoder: Optional[Path] = typer.Option(None, "--encoder", help="Traffic encoder folder, if it moved since training."),
    json_out: bool = typer.Option(False, "--json/--no-json", help="Print the hits as one JSON array."),
    rebuild: bool = typer.Option(False, "--rebuild/--no-rebuild", help="Rebuild the workspace's search index."),
    threads: Optional[int] = _threads_option(),
) -> None:
    """Find the flows nearest to a sentence: 5-tuple, time, class if known, similarity, description.

    \b
    Example: packetclip search ws/ "many half-open connections to one web server" --top 20
    """
    import json as _json

    _open_workspace(workspace)
    if model is not None and not model.is_dir():
        raise PacketClipError("no such model folder", path=str(model))
    use_threads(threads)
    from packetclip.align.api import run_search

    hits = run_search(workspace, query, model_dir=model, top=top, encoder=encoder, rebuild=rebuild)
    if json_out:
        typer.echo(_json.dumps(hits.where(hits.notna(), None).to_dict("records"), default=str))
        return
    for rank, h in enumerate(hits.to_dict("records"), 1):
        label = h.get("label") if isinstance(h.get("label"), str) else "?"
        typer.echo(f"{rank:>3}. {h['similarity']:.3f}  {h.get('time', '')}  {h.get('Src IP')}:{h.get('Src Port')} -> "
                   f"{h.get('Dst IP')}:{h.get('Dst Port')} proto {h.get('Protocol')}  [{label}]")
        if h.get("description"):
            typer.echo(f"      {_one_line(h['description'])[:240]}")


# --- detect: real-time alerts from captures or a live interface (issue 12) ---------------------------


@app.command("detect")
def detect_command(
    captures: Optional[List[Path]] = typer.Argument(None, help="pcap/pcapng files to scan (or use --interface)."),
    model: Optional[Path] = typer.Option(None, "--model", help="Detector model folder (default: the model shipped "
                                         "in the package)."),
    alerts: Optional[Path] = typer.Option(None, "--alerts", help="EVE JSON-lines file to append alerts to "
                                          "(flushed per line)."),
    eve: bool = typer.Option(False, "--eve/--no-eve", help="Write EVE alert lines to stdout (the summary then goes "
                             "to stderr)."),
    interface: Optional[str] = typer.Option(None, "--interface", "-i", help="Capture live on this interface "
                                            "(AF_PACKET; needs root or CAP_NET_RAW)."),
    duration: Optional[float] = typer.Option(None, "--duration", callback=_positive,
                                             help="With --interface: stop after this many seconds (default: Ctrl-C)."),
    fpr: Optional[float] = typer.Option(None, "--fpr", help="Target false-positive rate whose thresholds (calibrated "
                                        "on validation and stored in the model) are used; default: the model's."),
    interval: float = typer.Option(60.0, "--interval", callback=_positive, help="Seconds of traffic per aggregated "
                                   "alert of one (source, destination, class)."),
    batch_packets: int = typer.Option(2048, "--batch-packets", min=64, max=1 << 20,
                                      help="Packets per processing batch (bounds alert latency; larger: faster)."),
    quiet: bool = typer.Option(False, "--quiet/--no-quiet", "-q", help="No live summary on the terminal."),
    threads: Optional[int] = typer.Option(1, "--threads", min=1, max=512, help="CPU threads for the model "
                                          "(default 1: detection is designed for one core)."),
    ray: Optional[str] = typer.Option(None, "--ray", "--ray-address", metavar="[ADDRESS]",
                                      help="Over Ray, one task per capture, alerts merged in time order; --ray "
                                      "alone starts a Ray here, ADDRESS 'auto' joins this machine's cluster, or "
                                      "HOST:PORT."),
) -> None:
    """Scan captures or a live interface and write Suricata-EVE alerts with explanations, as traffic arrives.

    \b
    Example: packetclip detect capture.pcap --alerts alerts.jsonl
    Example: sudo packetclip detect --interface eth0 --eve
    Example: packetclip detect captures/*.pcap --alerts alerts.jsonl --ray auto
    """
    from threadpoolctl import threadpool_limits

    from packetclip.detect.api import run_detect, summary_line

    if fpr is not None and not 0 < fpr < 1:
        raise typer.BadParameter(f"must be in (0, 1), got {fpr:g}", param_hint="'--fpr'")
    if duration is not None and not interface:
        raise typer.BadParameter("only applies with --interface", param_hint="'--duration'")
    if model is not None and (model / "bundle.json").is_file():
        use_threads(threads)            # torch only for a reasoning bundle; the default model is numpy
    live = not quiet and sys.stderr.isatty()
    if ray is not None:
        if interface or not captures:
            raise typer.BadParameter("works on capture files, not --interface", param_hint="'--ray'")
        from packetclip.scale.cluster import ray_session
        from packetclip.scale.ray_work import detect_captures_ray

        with ray_session(ray):
            result = detect_captures_ray(_capture_files(captures), model=model, alerts=alerts, eve=eve, fpr=fpr,
                                         interval_s=interval, batch_packets=batch_packets, progress=live,
                                         warn=lambda line: typer.echo(f"packetclip: warning: {line}", err=True))
        typer.echo(summary_line(result), err=eve)
        if alerts is not None:
            typer.echo(f"alerts: {alerts}", err=eve)
        return
    with threadpool_limits(limits=threads):
        result = run_detect(captures or (), model=model, alerts=alerts, eve=eve, interface=interface,
                            duration_s=duration, fpr=fpr, interval_s=interval, batch_packets=batch_packets,
                            summary=live, warn=lambda line: typer.echo(f"packetclip: warning: {line}", err=True))
    typer.echo(summary_line(result), err=eve)
    if alerts is not None:
        typer.echo(f"alerts: {alerts}", err=eve)


# --- serve: the analyst console (issue 13) -----------------------------------------------------------------
@app.command("serve")
def serve_command(
    model: Optional[Path] = typer.Option(None, "--model", help="Detector model folder (default: the model shipped "
                                         "in the package); its card is shown on the Model page."),
    workspace: Optional[Path] = typer.Option(None, "--workspace", help="Workspace with an alignment (`packetclip "
                                             "align train`) for the Search page and nearest descriptions."),
    replay: Optional[List[Path]] = typer.Option(None, "--replay", help="Capture to replay through detect "
                                                "(repeatable)."),
    interface: Optional[str] = typer.Option(None, "--interface", "-i", help="Detect live on this interface "
                                            "(AF_PACKET; needs root or CAP_NET_RAW)."),
    speed: float = typer.Option(0.0, "--speed", min=0.0, max=1e6, help="Replay pace: 1 = the capture's own "
                                "timing, 10 = ten times faster, 0 = as fast as it reads."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; anything but loopback needs "
                             "--token."),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port to listen on (0: a free one)."),
    token: Optional[str] = typer.Option(None, "--token", envvar="PACKETCLIP_CONSOLE_TOKEN",
                                        help="Bearer token every request must carry (open /?token=TOKEN once "
                                        "in the browser); also read from $PACKETCLIP_CONSOLE_TOKEN."),
    report: Optional[Path] = typer.Option(None, "--report", help="Folder of a `reproduce` report (index.html) "
                                          "shown on the Model page."),
    buffer: int = typer.Option(20_000, "--buffer", min=100, max=10_000_000, help="Most recent alerts kept "
                               "for the table (older ones are dropped)."),
    fpr: Optional[float] = typer.Option(None, "--fpr", help="Target false-positive rate whose calibrated "
                                        "thresholds are used; default: the model's."),
    check: bool = typer.Option(False, "--check/--no-check", help="Check the options, model, workspace and report, "
                               "print what would be served, and exit without listening."),
) -> None:
    """Serve the analyst console: live alerts, their explanations, natural-language search, the model card.

    \b
    Example: packetclip serve --replay lab/capture.pcap --workspace lab/ --speed 10
    Example: packetclip serve --interface eth0 --host 0.0.0.0 --token "$(openssl rand -hex 16)"
    """
    from packetclip.console.run import build_console, serve

    if fpr is not None and not 0 < fpr < 1:
        raise typer.BadParameter(f"must be in (0, 1), got {fpr:g}", param_hint="'--fpr'")
    use_threads(1)
    console = build_console(model=model, workspace=workspace, replay=replay or (), interface=interface, speed=speed,
                            report=report, token=token, host=host, buffer=buffer, fpr=fpr)
    if check:
        typer.echo(f"console ready: {console.summary()} (not started: --check)")
        return
    serve(console, host=host, port=port,
          announce=lambda url: typer.echo(f"packetclip console: {url} (Ctrl-C stops)", err=True))


# --- reproduce: the paper's tables and figures (issue 11) --------------------------------------------------
@app.command("reproduce")
def reproduce_command(
    workspace: Path = typer.Argument(..., help="A labelled, split workspace (lab synth + split)."),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder to write (index.html, report.md, figures/)."),
    quick: bool = typer.Option(False, "--quick/--no-quick", help="Minutes instead of an hour: short training runs "
                               "and a seeded sample of test flows (the demo uses it)."),
    alignment: Optional[Path] = typer.Option(None, "--alignment", help="Alignment folder for Table 1 (default: the "
                                             "workspace's `align train` model, else a quick one trained here)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every training run and sample."),
    threads: Optional[int] = _threads_option(),
) -> None:
    """Reproduce the paper's Tables 1-2 and Figures 6-9 on a workspace: REPORT/index.html (self-contained) and
    REPORT/report.md.

    \b
    Example: packetclip reproduce ws/lab --out report --quick
    """
    ws = _open_workspace(workspace, packets=True)
    if not ws.has_splits():
        raise PacketClipError("the workspace has no split; run `packetclip split` first", path=str(workspace))
    if alignment is not None and not alignment.is_dir():
        raise PacketClipError("no such --alignment folder", path=str(alignment))
    use_threads(threads)
    from packetclip.evaluate.reproduce import ReproduceSettings, reproduce

    settings = ReproduceSettings.quick(seed) if quick else ReproduceSettings(seed=seed)
    result = reproduce(workspace, out, quick=quick, alignment=alignment, settings=settings)
    gnn = result["table2"]["MissionGNN (ours)"]["mauc"]
    typer.echo(f"MissionGNN test mAUC {gnn:.4f}; report: {result['index_html']}")


# --- embed: a workspace's flows into its embedding store, optionally over Ray (issue 14) ------------------
@app.command("embed")
def embed_command(
    workspace: Path = typer.Argument(..., help="Workspace whose flows are embedded."),
    encoder: Optional[Path] = typer.Option(None, "--encoder", help="Saved traffic encoder folder (e.g. from "
                                           "`packetclip encoder pretrain`); default: lens-tiny, the shipped "
                                           "pre-trained packet encoder."),
    ray: Optional[str] = typer.Option(None, "--ray", "--ray-address", metavar="[ADDRESS]",
                                      help="Over Ray: actors holding the model embed batches of flows; --ray "
                                      "alone starts a Ray here, ADDRESS 'auto' joins this machine's cluster, or "
                                      "HOST:PORT."),
    actors: Optional[int] = typer.Option(None, "--actors", min=1, max=100000, help="With --ray: model actors "
                                         "(default: one per CPU of the cluster)."),
    batch_flows: Optional[int] = typer.Option(None, "--batch-flows", min=1, max=1_000_000, help="With --ray: flows "
                                              "per actor call (default: four calls per actor)."),
    quiet: bool = typer.Option(False, "--quiet/--no-quiet", "-q", help="No progress bar."),
    threads: Optional[int] = _threads_option(),
) -> None:
    """Embed every flow of a workspace into its embedding store (reused by align, search and probes).

    \b
    Example: packetclip embed ws/lab
    Example: packetclip embed ws/lab --encoder models/lens-tiny
    Example: packetclip embed ws/big --encoder models/lens-tiny --ray auto
    """
    from packetclip.encoders.pretrained import default_packet_encoder_path

    _open_workspace(workspace)
    encoder = _encoder_folder(encoder) if encoder is not None else default_packet_encoder_path()
    if ray is not None:
        from packetclip.scale.cluster import ray_session
        from packetclip.scale.ray_work import embed_workspace_ray

        with ray_session(ray):
            emb, info = embed_workspace_ray(workspace, encoder, actors=actors, batch_flows=batch_flows,
                                            progress=not quiet)
    else:
        use_threads(threads)
        from packetclip.scale.ray_work import embed_workspace

        emb, info = embed_workspace(workspace, encoder, progress=not quiet)
    rate = info["flows"] / info["seconds"] if info["seconds"] > 0 else 0.0
    startup = f" after {info['startup_seconds']:.1f} s of actor start-up" if info.get("startup_seconds") else ""
    typer.echo(f"{info['flows']:,} flows embedded ({emb.shape[1] if emb.ndim == 2 else 0} dims, encoder "
               f"{info['fingerprint'][:12]}, {info['workers']} worker(s)) in {info['seconds']:.1f} s{startup}, "
               f"{rate:,.0f} flows/s; stored in {workspace}")


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point: every error is one line on stderr, never a traceback.

    Exit codes: 0 done; 2 bad input (a :class:`PacketClipError`, a usage error, a file that cannot be read
    or written); 130 interrupted; 1 an unexpected error (``-v`` shows its traceback).
    """
    configure_logging(False)
    from packetclip.scale.cluster import expand_ray_flag

    argv = expand_ray_flag(sys.argv[1:] if argv is None else list(argv))   # `--ray` with an optional ADDRESS
    try:
        rv = app(args=argv, prog_name="packetclip", standalone_mode=False)
    except _click_errors.NoArgsIsHelpError as err:
        typer.echo(err.ctx.get_help())
        sys.exit(0)
    except _click_errors.ClickException as err:     # usage errors: unknown option, bad value, missing argument
        hint = ""
        ctx = getattr(err, "ctx", None)
        if ctx is not None:
            hint = f" (see `{ctx.command_path} --help`)"
        typer.echo(f"packetclip: error: {_one_line(err.format_message())}{hint}", err=True)
        sys.exit(err.exit_code)
    except typer.Abort:
        typer.echo("packetclip: interrupted", err=True)
        sys.exit(130)
    except PacketClipError as err:
        typer.echo(f"packetclip: error: {err.one_line()}", err=True)
        sys.exit(2)
    except OSError as err:          # a file the user named cannot be read or written
        name = getattr(err, "filename", None)
        what = _one_line(err.strerror or err)
        typer.echo(f"packetclip: error: {name}: {what}" if name else f"packetclip: error: {what}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("packetclip: interrupted", err=True)
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - the last line of defence against tracebacks for users
        if _STATE["verbose"]:
            raise
        typer.echo(f"packetclip: internal error: {type(err).__name__}: {_one_line(err)[:300]} "
                   "(rerun with -v for the traceback and please report it)", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
