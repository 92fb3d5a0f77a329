"""Pictures of a lab capture: what each class looks like on the wire.

``draw_lab_traffic(out_dir, png)`` draws one panel per class: every packet of the class as a dot at
(seconds since the class's first packet, frame length), coloured by who sent it (attacker, victim, third
party; benign traffic by flow direction), with the class's packet count and peak rate in the title.
It reads only the files ``packetclip lab synth`` (or ``lab live``) writes, so it works on any lab folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from packetclip.errors import PacketClipError
from packetclip.traffic.labels import ALL_CLASSES
from packetclip.traffic.workspace import Workspace

# role -> (legend text, colour); benign packets are split by flow direction instead
_COLOURS = {
    "attacker": ("attacker → victim", "#d62728"),
    "victim": ("victim → attacker", "#1f77b4"),
    "other": ("third party", "#7f7f7f"),
    "fwd": ("benign, flow initiator", "#2ca02c"),
    "bwd": ("benign, responder", "#9467bd"),
}


def _packet_table(ws: Workspace) -> pd.DataFrame:
    """packet_number, ts_ns, label, role (+ length, direction) for every packet of the lab capture."""
    if not ws.has("packet_labels"):
        raise PacketClipError("not a lab folder (no packet labels); run `packetclip lab synth` first",
                              path=str(ws.root))
    df = pd.read_parquet(ws.path("packet_labels"), columns=["packet_number", "ts_ns", "label", "role"])
    if ws.has_packets():
        df = df.merge(ws.packets(["packet_number", "length", "direction"]), on="packet_number", how="left")
    else:
        df["length"] = np.nan
        df["direction"] = 0
    missing = df["length"].isna().to_numpy()
    if missing.any():
        # not ingested (or only each flow's first views stored): frame lengths straight from the capture
        from packetclip.traffic.pcap import open_capture

        lengths = np.concatenate([b.wirelen.copy() for b in open_capture(ws.path("capture"))] or [np.zeros(0)])
        numbers = df["packet_number"].to_numpy()
        df.loc[missing, "length"] = lengths[numbers[missing]]
        df["direction"] = df["direction"].fillna(0)
    df["label"] = df["label"].astype(str)
    df["role"] = df["role"].astype(str)
    return df


def draw_lab_traffic(out_dir: str | Path, png_path: str | Path, *, classes: tuple[str, ...] | None = None,
                     max_points: int = 6000, seed: int = 0, dpi: int = 72) -> Path:
    """Draw packets over time per class from a lab folder into ``png_path``; returns the PNG path.

    At most ``max_points`` packets are drawn per panel (an even, seeded sample: dense floods would
    otherwise be one solid band); titles give the real totals.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    ws = out_dir if isinstance(out_dir, Workspace) else Workspace(out_dir)
    out = ws.root
    df = _packet_table(ws)
    present = [c for c in (classes or ALL_CLASSES) if (df["label"] == c).any()]
    if not present:
        raise PacketClipError("the lab folder has no packets of the requested classes", path=str(out))
    rng = np.random.default_rng(seed)
    ncols = 2
    nrows = (len(present) + ncols - 1) // ncols
    fig = Figure(figsize=(11, 2.0 * nrows + 0.8))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[len(present):]:
        ax.set_visible(False)
    for ax, label in zip(axes.flat, present):
        sel = df[df["label"] == label]
        t = (sel["ts_ns"].to_numpy() - sel["ts_ns"].min()) / 1e9
        span = max(float(t.max()), 1e-3)
        # peak packets per second over 1 s bins
        peak = int(np.bincount(t.astype(np.int64)).max()) if len(t) else 0
        if label == "Benign":
            key = np.where(sel["direction"].to_numpy() == 1, "bwd", "fwd")
        else:
            key = sel["role"].to_numpy()
        idx = np.arange(len(sel))
        if len(idx) > max_points:
            idx = np.sort(rng.choice(len(idx), size=max_points, replace=False))
        lengths = sel["length"].to_numpy()
        # answers first as wide dots, senders on top as small ones: both stay visible where requests and
        # replies have the same size (ICMP echo, SYN probes and their RSTs)
        for role in ("victim", "other", "bwd", "attacker", "fwd"):
            m = idx[key[idx] == role]
            if len(m):
                top = role in ("attacker", "fwd")
                ax.scatter(t[m], lengths[m], s=3 if top else 12, c=_COLOURS[role][1], alpha=0.9 if top else 0.35,
                           linewidths=0, rasterized=True)
        ax.set_yscale("log")
        ax.set_ylim(45, 2500)
        ax.set_xlim(-0.01 * span, span * 1.01)
        ax.set_title(f"{label}: {len(sel):,} packets over {span:,.0f} s, peak {peak:,}/s", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("seconds since the class's first packet", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("frame bytes", fontsize=8)
    handles = [Line2D([], [], marker="o", ls="", color=c, label=name) for name, c in _COLOURS.values()]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(f"packetclip lab: packets over time per class ({_describe(ws)})", fontsize=11)
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    png = Path(png_path)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=dpi)
    return png


def _describe(ws: Workspace) -> str:
    """'synth, seed 7, 300 s' from the folder's lab metadata (the folder name when there is none)."""
    import json

    try:
        meta = json.loads(ws.path("lab_meta").read_text())
        cfg = meta["config"]
        kind = "synth" if "synth" in meta.get("generator", "synth") else meta.get("generator", "lab")
        return f"{kind}, seed {cfg['seed']}, {cfg['duration_s']:g} s"
    except (OSError, KeyError, TypeError, ValueError):
        return ws.root.name


__all__ = ["draw_lab_traffic"]
