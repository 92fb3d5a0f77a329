"""``packetclip lab synth``: a seeded, pure-Python generator of labelled ACI-IoT-style captures.

One run draws an IoT network, schedules benign background traffic, benign bursts and at least one
episode of each attack class (the paper's 9, or 17 with ``classes="all"``), lets each episode's behaviour model write its packets (each
episode has its own RNG stream derived from the seed, so episodes do not disturb each other), merges all
episodes by timestamp into the workspace's capture and writes the labels (all through
:class:`~packetclip.traffic.workspace.Workspace`, which names the files):

- packet labels: one row per pcap record (``packet_number`` = index in the pcap): fine class,
  mission, sender role (attacker / victim / benign / other), attacker and victim addresses, episode
- episodes: the schedule: episode id, class, tool model, parameters (JSON), start/end,
  attacker/victim addresses, packet count
- after ingest (``packetclip.traffic.ingest``): the flow table (with ``label``, ``mission`` and ``episode``
  columns added), the packet table (every packet's view, so flow labels come from all of a flow's
  packets), the flow labels table (one row per flow) and a manifest of kind ``"lab"``.

The capture spans exactly the requested duration: sessions still open at the end are cut there, as a
capture stopped at that moment would cut them. Durations below :data:`MIN_DURATION_S` are refused: each of
the attack episodes needs a few seconds of its own (a shorter request used to produce a longer capture).
The same seed gives byte-identical files; nothing reads the clock or the global RNG.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from packetclip.errors import PacketClipError
from packetclip.traffic.labels import ALL_CLASSES, FINE_CLASSES, mission_of
from packetclip.lab.network import Network, build_network
from packetclip.lab.packets import ip_text
from packetclip.lab.scenarios import Ctx, Plan, attack_scenarios, benign_scenarios
from packetclip.lab.wire import ROLE_NAMES, Trace, Wire

from packetclip.traffic.workspace import Workspace

#: Shortest capture ``lab synth`` makes: attack episodes are drawn over at least 5 s each and placed inside the
#: capture, so below this the schedule could not fit in the time asked for.
MIN_DURATION_S = 10.0

#: ``classes="paper"`` reproduces the paper's 10 classes (its tables are reported on them); ``"all"`` adds the
#: lab's extended classes (HTTP floods, amplification, UDP scans, ...) that a detector meets in the wild.
CLASS_SETS: dict[str, tuple[str, ...]] = {"paper": FINE_CLASSES, "all": ALL_CLASSES}


@dataclass
class SynthConfig:
    """Everything that shapes a synthetic capture; the seed fixes every random draw."""

    duration_s: float = 600.0
    seed: int = 7
    n_devices: tuple[int, int] = (10, 20)
    # Floods are scaled so that a 10-minute run is ~1e5-5e5 packets; raise for stress tests.
    flood_rate_pps: tuple[float, float] = (150.0, 1000.0)
    flood_duration_s: tuple[float, float] = (8.0, 40.0)
    attacks_per_class_per_10min: float = 2.0
    bursts_per_10min: float = 3.0
    classes: tuple[str, ...] = FINE_CLASSES
    start_unix: float = 1_678_000_000.0    # capture clock at t=0 (fixed, never the current time)
    background: tuple[str, ...] = ()       # the user's benign captures, re-addressed and re-timed (lab/background.py)
    background_share: float = 0.5          # at most this part of all packets is background

    def validate(self) -> None:
        if not (self.duration_s > 0 and math.isfinite(self.duration_s)):
            raise PacketClipError(f"--duration must be a positive number of seconds, not {self.duration_s}")
        if self.duration_s < MIN_DURATION_S:
            raise PacketClipError(f"--duration {self.duration_s:g}s is too short: the lab needs at least "
                                  f"{MIN_DURATION_S:g}s to fit an episode of each attack class")
        if self.duration_s > 24 * 3600:
            raise PacketClipError("duration above 24 h is not supported by the in-memory merge")
        unknown = [c for c in self.classes if c not in ALL_CLASSES]
        if unknown:
            raise PacketClipError(f"unknown class(es) {unknown}; known: {', '.join(ALL_CLASSES)}")
        from packetclip.lab.background import check_share

        check_share(self.background_share)
        lo, hi = self.flood_rate_pps
        if not (0 < lo <= hi):
            raise PacketClipError(f"flood_rate_pps must be (low, high) with 0 < low <= high, not {self.flood_rate_pps}")


@dataclass
class EpisodeRecord:
    episode: int
    label: str
    scenario: str
    tool: str
    start_s: float
    end_s: float
    attacker: str
    victim: str
    params: str
    seed: int
    packets: int = 0


@dataclass
class SynthResult:
    """Paths written by :meth:`SynthLab.generate` and per-class counts for the summary."""

    out_dir: Path
    pcap: Path
    packet_labels: Path
    episodes: Path
    flows: Path | None = None
    flow_labels: Path | None = None
    packets: int = 0
    elapsed_s: float = 0.0
    summary: list[dict] = field(default_factory=list)

    def paths(self) -> dict[str, Path]:
        out = {"pcap": self.pcap, "packet_labels": self.packet_labels, "episodes": self.episodes}
        if self.flows is not None:
            out["flows"] = self.flows
        if self.flow_labels is not None:
            out["labels"] = self.flow_labels
        return out


class SynthLab:
    """Synthetic lab: ``SynthLab(duration_s=600, seed=7).generate("out/")``."""

    def __init__(self, duration_s: float = 600.0, seed: int = 7, **kwargs):
        classes = kwargs.get("classes")
        if isinstance(classes, str):
            if classes not in CLASS_SETS:
                raise PacketClipError(f"--classes must be one of {', '.join(CLASS_SETS)}, not {classes!r}")
            kwargs["classes"] = CLASS_SETS[classes]
        self.config = SynthConfig(duration_s=float(duration_s), seed=int(seed), **kwargs)
        self.config.validate()

    # -- schedule ---------------------------------------------------------------------------------------

    def _streams(self, n: int) -> list[int]:
        seq = np.random.SeedSequence([self.config.seed, 0x1AB])
        return [int(s.generate_state(2, dtype=np.uint64)[0] & ((1 << 63) - 1)) for s in seq.spawn(n)]

    def network(self) -> Network:
        seeds = self._streams(2)
        return build_network(random.Random(seeds[0]), n_devices=self.config.n_devices)

    def schedule(self, net: Network) -> list[Plan]:
        """Benign background for the whole capture, then bursts and attacks placed at random times."""
        cfg = self.config
        rng = random.Random(self._streams(2)[1])
        d = cfg.duration_s
        plans: list[Plan] = []
        background, bursts = benign_scenarios()
        if "Benign" in cfg.classes:
            for model in background:
                plans.append(_tag(model.plan(rng, net, 0.0, d), model))
            n_bursts = max(1, _poisson(rng, cfg.bursts_per_10min * d / 600.0))
            for _ in range(n_bursts):
                model = rng.choice(bursts)
                plans.append(_place(rng, _tag(model.plan(rng, net, 0.0, d * 0.5), model), d))
        attacks = attack_scenarios({"flood_rate_pps": cfg.flood_rate_pps, "flood_duration_s": cfg.flood_duration_s})
        room = max(5.0, d * 0.4)
        for label in cfg.classes:
            if label == "Benign":
                continue
            # one RNG stream per class: changing one behaviour model does not reshuffle the other classes
            crng = random.Random(self._class_stream(label))
            model = attacks[label]
            n = max(1, _poisson(crng, cfg.attacks_per_class_per_10min * d / 600.0)) if d >= 600 else 1
            for _ in range(n):
                plans.append(_place(crng, _tag(model.plan(crng, net, 0.0, room), model), d))
        return plans

    def _add_background(self, background, place, net: Network, traces: list[Trace],
                        records: list[EpisodeRecord]) -> None:
        """The user's captures as Benign episodes (one per capture) with their own RNG stream."""
        cfg = self.config
        seed = int(np.random.SeedSequence([cfg.seed, 0x1AD]).generate_state(1, dtype=np.uint64)[0] & ((1 << 63) - 1))
        placed = place(background, net, random.Random(seed), duration_s=cfg.duration_s,
                       lab_packets=sum(len(t) for t in traces), share=cfg.background_share)
        for cap in placed:
            traces.append(cap.trace)
            records.append(EpisodeRecord(
                episode=len(records), label="Benign", scenario="background", tool=f"user capture {cap.path.name}",
                start_s=round(cap.start_s, 6), end_s=round(cap.end_s, 6), attacker="", victim="",
                params=json.dumps(cap.params(), sort_keys=True), seed=seed, packets=len(cap.trace)))

    def _class_stream(self, label: str) -> int:
        # the paper's classes keep their indices in ALL_CLASSES: adding classes leaves their streams as they were
        seq = np.random.SeedSequence([self.config.seed, 0x1AC, ALL_CLASSES.index(label)])
        return int(seq.generate_state(2, dtype=np.uint64)[0] & ((1 << 63) - 1))

    # -- generation -------------------------------------------------------------------------------------

    def generate(self, out_dir: str | Path, *, progress: bool = True, ingest: bool = True,
                 ingest_settings=None, overwrite: bool = False) -> SynthResult:
        """Write the capture, packet labels and episodes (and the flow tables when ``ingest``) into ``out_dir``.

        A non-empty ``out_dir`` is refused unless ``overwrite`` (before anything is generated).
        ``ingest_settings`` (a :class:`packetclip.traffic.ingest.IngestSettings`) changes how the flow table is
        made, e.g. CICFlowMeter's 120 s flow timeout for comparisons with CIC datasets; default: ingest's own.
        """
        from packetclip.lab.background import place_background, read_background

        started = time.perf_counter()
        background = read_background(list(self.config.background))     # a bad capture stops us before writing
        ws = Workspace.create(out_dir, overwrite=overwrite, empty=True)
        net = self.network()
        plans = self.schedule(net)
        seeds = self._streams(len(plans) + 2)[2:]
        traces: list[Trace] = []
        records: list[EpisodeRecord] = []
        bar = _progress(progress)
        task = bar.add_task("lab synth: episodes", total=len(plans)) if bar else None
        try:
            if bar:
                bar.start()
            for i, plan in enumerate(plans):
                rng = random.Random(seeds[i])
                wire = Wire(net, rng, attackers=tuple(h.ip for h in plan.attackers),
                            victims=tuple(h.ip for h in plan.victims))
                plan.model.run(Ctx(net, rng, wire, plan))
                trace = wire.finish()
                traces.append(trace)
                records.append(EpisodeRecord(
                    episode=i, label=plan.label, scenario=plan.model.name, tool=plan.tool,
                    start_s=round(plan.start, 6), end_s=round(plan.end, 6),
                    attacker=",".join(ip_text(h.ip) for h in plan.attackers),
                    victim=",".join(ip_text(h.ip) for h in plan.victims),
                    params=json.dumps(plan.params, sort_keys=True), seed=seeds[i], packets=len(trace)))
                if bar:
                    bar.update(task, advance=1, description=f"lab synth: {plan.label:<18} {len(trace):>8,} pkts")
            if background:
                self._add_background(background, place_background, net, traces, records)
            if bar:
                bar.update(task, description="lab synth: writing capture")
            n = _write_capture(ws, traces, records, self.config.start_unix, self.config.duration_s)
        finally:
            if bar:
                bar.stop()
        episodes = pd.DataFrame([asdict(r) for r in records])
        episodes.insert(2, "mission", [mission_of(lbl) for lbl in episodes["label"]])
        start_ns = int(round(self.config.start_unix * 1e6)) * 1000
        episodes["start_ns"] = start_ns + (episodes["start_s"] * 1e9).round().astype(np.int64)
        episodes["end_ns"] = start_ns + (episodes["end_s"] * 1e9).round().astype(np.int64)
        ws.write_table("episodes", episodes)
        meta = {"generator": "packetclip lab synth", "config": asdict(self.config)}
        with ws.atomic("lab_meta") as tmp:
            tmp.write_text(json.dumps(meta, indent=2, default=list))
        result = SynthResult(ws.root, ws.path("capture"), ws.path("packet_labels"), ws.path("episodes"), packets=n)
        if ingest:
            label_flows(ws, progress=progress, result=result, settings=ingest_settings, lab=meta)
        result.summary = summarise(ws)
        result.elapsed_s = time.perf_counter() - started
        return result


def _tag(plan: Plan, model) -> Plan:
    plan.model = model
    return plan


def _place(rng: random.Random, plan: Plan, duration: float) -> Plan:
    """Shift a plan drawn at t=0 to a random start that keeps it inside the capture."""
    length = plan.end - plan.start
    offset = rng.uniform(0.0, max(0.0, duration - length))
    plan.start += offset
    plan.end += offset
    return plan


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth's method; lam is small here.
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _write_capture(ws: Workspace, traces: list[Trace], records: list[EpisodeRecord], start_unix: float,
                   duration_s: float) -> int:
    """Merge the episode traces by timestamp into one pcap, cut at ``duration_s`` (sessions still open then are
    cut, as a capture stopped at that moment cuts them), and write the per-packet labels beside it. Each
    record's packet count and end become those of its packets inside the capture."""
    from packetclip.traffic.writer import PcapWriter

    sizes = [len(tr) for tr in traces]
    ts = np.concatenate([tr.ts_ns for tr in traces]) if traces else np.zeros(0, np.int64)
    episode = np.repeat(np.arange(len(traces), dtype=np.int32), sizes)
    local = np.concatenate([np.arange(s, dtype=np.int64) for s in sizes]) if traces else np.zeros(0, np.int64)
    roles = np.concatenate([tr.roles for tr in traces]) if traces else np.zeros(0, np.int8)
    order = np.argsort(ts, kind="stable")          # ties keep episode order, then the episode's own order
    order = order[ts[order] <= int(round(duration_s * 1e9))]
    total = int(order.size)
    kept = np.bincount(episode[order], minlength=len(records))
    for record, count in zip(records, kept.tolist()):
        record.packets = int(count)
        record.end_s = min(record.end_s, round(duration_s, 6))
    start_ns = int(round(start_unix * 1e6)) * 1000
    with ws.atomic("capture") as tmp, PcapWriter(tmp) as writer:
        for k in order.tolist():
            tr = traces[episode[k]]
            j = local[k]
            writer.write(start_ns + int(ts[k]), tr.blob[tr.offsets[j]: tr.offsets[j + 1]])
    ep = episode[order]
    labels = np.array([r.label for r in records], dtype=object)
    missions = np.array([mission_of(r.label) for r in records], dtype=object)
    attackers = np.array([r.attacker for r in records], dtype=object)
    victims = np.array([r.victim for r in records], dtype=object)
    role_names = np.array(ROLE_NAMES, dtype=object)
    df = pd.DataFrame({
        "packet_number": np.arange(total, dtype=np.int64),
        "ts_ns": start_ns + ts[order],
        "episode": ep,
        "label": pd.Categorical(labels[ep], categories=list(
            FINE_CLASSES if set(labels) <= set(FINE_CLASSES) else ALL_CLASSES)),
        "mission": pd.Categorical(missions[ep], categories=["Benign", "DoS", "Reconnaissance", "Brute Force"]),
        "role": pd.Categorical(role_names[roles[order]], categories=list(ROLE_NAMES)),
        "attacker": attackers[ep],
        "victim": victims[ep],
    })
    ws.write_table("packet_labels", df)
    return total


def label_flows(out_dir, *, progress: bool = True, result: SynthResult | None = None,
                view_bytes: int = 128, mask: bool = True, settings=None, lab: dict | None = None) -> Path:
    """Ingest the lab capture into the same folder and label every flow from its packets' labels.

    A flow's label is the most frequent attack class among its packets if it has any attack packet, else
    Benign (``attack_packets`` and ``purity`` say how clear-cut that was). Writes the flow labels table (one
    row per flow), adds ``label``/``mission``/``episode`` columns to the flow table and marks the manifest
    as a lab workspace (``lab``: what made it). Returns the flow labels path.
    """
    from packetclip.traffic.ingest import IngestSettings, ingest_captures

    ws = out_dir if isinstance(out_dir, Workspace) else Workspace(out_dir)
    settings = settings or IngestSettings(view_bytes=view_bytes, mask=mask)
    # flow labels come from every packet's label, so the packet table must hold every packet
    settings = replace(settings, view_packets=None)
    # The folder holds the lab's own files (and, with overwrite, an older lab's): the caller vetted it.
    ingest_captures([ws.path("capture")], ws.root, settings=settings, progress=progress, overwrite=True)
    pk = ws.packets(["packet_number", "flow_id"])
    packet_labels = pd.read_parquet(ws.path("packet_labels"),
                                    columns=["packet_number", "label", "episode", "attacker", "victim"])
    flow_labels = flow_labels_from_packets(pk, packet_labels)
    flows = ws.flows()
    for col in ("label", "mission", "episode"):
        if col in flows.columns:
            flows = flows.drop(columns=[col])
    flows = flows.merge(flow_labels[["flow_id", "label", "mission", "episode"]], on="flow_id", how="left")
    ws.write_flows(flows)
    labels_path = ws.write_labels(flow_labels)    # after the flows: it records the table it labels
    if lab is None and ws.has("lab_meta"):
        lab = json.loads(ws.path("lab_meta").read_text())
    ws.update_manifest(kind="lab", lab=lab or {})
    if result is not None:
        result.flows = ws.flows_path
        result.flow_labels = labels_path
    return labels_path


def flow_labels_from_packets(packets: pd.DataFrame, packet_labels: pd.DataFrame) -> pd.DataFrame:
    """Per-flow labels from per-packet labels joined on ``packet_number`` (any attack packet wins)."""
    df = packets.merge(packet_labels, on="packet_number", how="inner")
    df = df[df["flow_id"] >= 0]
    df["label"] = df["label"].astype(str)
    df["is_attack"] = df["label"] != "Benign"
    counts = df.groupby(["flow_id", "label"], sort=False).size().rename("n").reset_index()
    counts["attack"] = counts["label"] != "Benign"
    counts = counts.sort_values(["flow_id", "attack", "n", "label"], ascending=[True, False, False, True])
    best = counts.drop_duplicates("flow_id", keep="first").set_index("flow_id")
    agg = df.groupby("flow_id").agg(packets=("packet_number", "size"), attack_packets=("is_attack", "sum"),
                                    first_packet=("packet_number", "min"))
    out = agg.join(best[["label", "n"]])
    out["purity"] = out["n"] / out["packets"]
    first = df.sort_values("packet_number").drop_duplicates("flow_id").set_index("flow_id")
    # episode / roles of the flow: those of its first packet carrying the winning label
    win = df.merge(out[["label"]].reset_index(), on=["flow_id", "label"])
    win = win.sort_values("packet_number").drop_duplicates("flow_id").set_index("flow_id")
    out["episode"] = win["episode"].astype(np.int32)
    out["attacker"] = win["attacker"]
    out["victim"] = win["victim"]
    del first
    out["mission"] = [mission_of(lbl) for lbl in out["label"]]
    out = out.reset_index()[["flow_id", "label", "mission", "episode", "attacker", "victim", "packets",
                             "attack_packets", "purity", "first_packet"]]
    out["attack_packets"] = out["attack_packets"].astype(np.int64)
    return out


def summarise(out_dir) -> list[dict]:
    """Per class: episodes, packets and (when the flow table exists) flows."""
    ws = out_dir if isinstance(out_dir, Workspace) else Workspace(out_dir)
    ep = pd.read_parquet(ws.path("episodes"), columns=["label", "packets"])
    rows = []
    flows = None
    if ws.has("labels"):
        flows = pd.read_parquet(ws.path("labels"), columns=["label"])["label"].value_counts()
    for label in ALL_CLASSES:
        sel = ep[ep["label"] == label]
        if sel.empty:
            continue
        rows.append({"class": label, "mission": mission_of(label), "episodes": int(len(sel)),
                     "packets": int(sel["packets"].sum()),
                     "flows": None if flows is None else int(flows.get(label, 0))})
    return rows


def _progress(enabled: bool):
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), transient=False)


def parse_duration(text: str) -> float:
    """'30s', '10m', '1h', '90' (seconds), '1m30s' -> seconds."""
    import re

    s = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(h|m|s|ms)", s)
    if not parts or "".join(n + u for n, u in parts) != s.replace(" ", ""):
        raise PacketClipError(f"cannot read duration {text!r}: use e.g. 30s, 10m, 1h or 1m30s")
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)
