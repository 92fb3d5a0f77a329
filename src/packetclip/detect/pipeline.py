"""The streaming detector: packets → :class:`~packetclip.traffic.stream.FlowStream` → early decisions →
scorer → thresholds → aggregated EVE alerts.

Per packet batch (all vectorised; Python loops only over alert groups): the flow meter assigns flows,
:class:`~packetclip.detect.features.EarlyFeatures` finds the flows reaching their 1st, 2nd, 4th, 8th …
packet and their features, the scorer scores them in one call, decisions whose mission probability exceeds
the bundle's calibrated threshold become alerts, grouped per (source, destination, class) before the
:class:`~packetclip.detect.alerts.Aggregator` sees them. Flows that end get one last decision.

Latency: an alert cannot be written before the batch holding its packet has been processed, so the batch
bounds it. A batch is full at ``batch_packets`` (default 2048: ~10 ms of work on one core) or, for a live
source, when its oldest packet is ``batch_ms`` old, whichever comes first; alerts are written and flushed
line by line as each batch's decisions are made (no second queue), and each new alert's latency is taken
when its line has been written: from the read of the batch holding the packet that raised it (a live
source: that batch's first packet's receipt).
"""

from __future__ import annotations

import heapq
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from packetclip.detect.alerts import (SEVERITY, Aggregator, AlertSink, concepts_of, explain, iso_time, proto_name)
from packetclip.detect.features import CONTEXT_FEATURES, FEATURES, EarlyFeatures, host_key, mix
from packetclip.traffic.decode import format_ip
from packetclip.traffic.stream import (CaptureSource, FlowExpiry, FlowStream, FlowUpdate, SourceEnd, StreamSettings,
                                       as_sources)

_CTX_AT = {name: FEATURES.index(name) for name in CONTEXT_FEATURES}
_BWD_AT = FEATURES.index("bwd_pkts")


class TimedSource:
    """Wraps a packet source: stamps each batch with the wall time it was read (``batch.read_wall``) for the
    alert latency, and forwards everything else (name, stats, position) to the source."""

    def __init__(self, source):
        self.source = source
        self.name = getattr(source, "name", "source")

    def __getattr__(self, item):
        return getattr(self.source, item)

    def __iter__(self):
        for batch in self.source:
            if getattr(batch, "read_wall", None) is None:     # a live source stamps its first packet's receipt
                batch.read_wall = time.perf_counter()
            batch.read_cpu = time.thread_time()
            yield batch


@dataclass
class DetectResult:
    """What a run saw and did."""

    packets: int = 0
    flows: int = 0
    decisions: int = 0
    alerts: int = 0
    lines: int = 0
    per_mission: dict = field(default_factory=dict)
    latencies_ms: list = field(default_factory=list)
    latencies_cpu_ms: list = field(default_factory=list)    # the same in CPU time of the detecting thread
    latency_at_expiry: list = field(default_factory=list)     # per latency: raised at a flow's expiry (bool)
    first_alerts: dict = field(default_factory=dict)    # arrays: source, flow_id, n, packet_number, mission, fine
    summaries: list = field(default_factory=list)
    elapsed_s: float = 0.0
    peak_tracked_flows: int = 0


class Detector:
    """``Detector(scorer, sinks=[AlertSink("alerts.jsonl")]).run(["a.pcap"])``.

    ``fpr``: the target false-positive rate whose calibrated thresholds the scorer's bundle stores.
    ``record``: keep the first alert of every flow (flow id, packets seen, packet number) for evaluation.
    """

    def __init__(self, scorer, *, sinks: list[AlertSink] = (), fpr: float | None = None, interval_s: float = 60.0,
                 batch_packets: int = 2048, fan_limit: int = 16, record: bool = False, summary: bool = False,
                 stream_settings=None, slots: int = 1 << 19, model_name: str = "default",
                 max_open_flows: int = 1 << 16, idle_timeout_s: float = 30.0, expire_every: int = 1):
        self.scorer = scorer
        self.fpr = fpr
        th = scorer.thresholds(fpr)
        self.fpr_used = float(fpr) if fpr is not None else \
            float(getattr(scorer, "info", {}).get("default_fpr", _default_fpr()))
        self.missions = tuple(scorer.missions)
        self.th = np.array([th.get(m, np.inf) if m != "Benign" else np.inf for m in self.missions], np.float32)
        self.classes = tuple(scorer.classes)
        cm = scorer.class_mission
        self.class_mission_idx = np.array([self.missions.index(cm[c]) for c in self.classes])
        self.mask = np.zeros((len(self.missions), len(self.classes)), np.float32)
        for i, j in enumerate(self.class_mission_idx):
            self.mask[j, i] = 1.0
        self.window_s = float(getattr(scorer, "window_s", 10.0))
        self.features = EarlyFeatures(window_s=self.window_s, slots=slots)
        self.aggregator = Aggregator(list(sinks), interval_s=interval_s, fan_limit=fan_limit, window_s=self.window_s)
        self.batch_packets = int(batch_packets)
        self.expire_every = int(expire_every)       # batches between pops of ended flows (ids only: cheap)
        self.record = record
        self.summary = summary
        # bounded state: flows idle for ``idle_timeout_s`` end (a detector, like Suricata's 30 s for unanswered
        # flows, need not hold a one-packet flood flow for nfstream's 120 s), and at most ``max_open_flows`` are
        # open, the idlest evicted at the cap; both are scored as at expiry. Given settings are kept as given.
        settings = StreamSettings.of(stream_settings) if stream_settings is not None else \
            StreamSettings(idle_timeout=float(idle_timeout_s))
        if settings.max_open_flows is None:
            settings.max_open_flows = int(max_open_flows)
        self.stream_settings = settings
        self.model_name = model_name
        self._fa: dict[str, list] = {k: [] for k in ("source", "flow_id", "n", "packet_number", "mission", "fine")}

    # -- sources --------------------------------------------------------------------------------------------
    def _sources(self, source) -> list:
        out = []
        for s in as_sources(source):
            if isinstance(s, CaptureSource):
                s.batch_packets = self.batch_packets
            out.append(TimedSource(s))
        return out

    # -- run ------------------------------------------------------------------------------------------------
    def run(self, source, *, on_source_end=None, on_event=None) -> DetectResult:
        """Stream ``source`` (paths, packet sources) to the end; alerts go to the sinks as they are raised.
        ``on_source_end(summary)`` is called after each source (e.g. to report a damaged capture);
        ``on_event(event)`` sees every stream event first (evaluation hooks)."""
        res = DetectResult()
        started = time.perf_counter()
        rows_scorer = bool(getattr(self.scorer, "needs_flow_rows", False))     # a reasoning bundle
        stream = FlowStream(self._sources(source), self.stream_settings, expire_every=self.expire_every,
                            flow_tables=rows_scorer)
        live = _LiveSummary(self, res, started) if self.summary else None
        read_wall = started
        self.aggregator.trigger_cpu = time.thread_time()
        try:
            for event in stream:
                if on_event is not None:
                    on_event(event)
                if isinstance(event, FlowUpdate):
                    read_wall = getattr(event.batch, "read_wall", time.perf_counter())
                    self.aggregator.trigger_cpu = getattr(event.batch, "read_cpu", time.thread_time())
                    res.packets += len(event.batch)
                    dec = self.features.update(event.batch, event.flow_id, event.direction)
                    pn0 = int(event.batch.first_packet_number)
                    if not rows_scorer:
                        self._decide(dec, res, read_wall, event.source_index, pn0)
                    if stream.clock_ns is not None:
                        self.aggregator.close_until(stream.clock_ns)
                    res.peak_tracked_flows = max(res.peak_tracked_flows, stream.open_flows)
                    if live is not None:
                        live.count_talkers(event.batch, event.flow_id)
                        live.tick(stream)
                elif isinstance(event, FlowExpiry):
                    res.flows += len(event)
                    if rows_scorer:
                        self._decide_rows(self.features.expire(event.flow_ids), event, res, read_wall)
                    else:
                        # a flood's flows time out together (tens of thousands at once): scored in batch-sized
                        # chunks, each chunk's alerts written before the next is scored, flows that never
                        # alerted first (a flow already in an alert mostly only grows it: no new line to wait for)
                        ids = event.flow_ids
                        if len(ids) > self.batch_packets:
                            seen = self.features.alert_cls[ids & (self.features.slots - 1)] >= 0
                            ids = ids[np.argsort(seen, kind="stable")]
                        for at in range(0, len(ids), self.batch_packets):
                            dec = self.features.expire(ids[at:at + self.batch_packets])
                            self._decide(dec, res, read_wall, event.source_index, -1)
                elif isinstance(event, SourceEnd):
                    res.summaries.append(event.summary)
                    if on_source_end is not None:
                        on_source_end(event.summary)
        finally:
            self.aggregator.flush()          # final lines of open alerts, also when interrupted
            if live is not None:
                live.stop()
        res.alerts = self.aggregator.alerts
        res.lines = self.aggregator.lines
        res.per_mission = dict(self.aggregator.per_mission)
        res.elapsed_s = time.perf_counter() - started
        res.latencies_ms = list(self.aggregator.latencies_ms)
        res.latencies_cpu_ms = list(self.aggregator.latencies_cpu_ms)
        res.latency_at_expiry = list(self.aggregator.latency_at_expiry)
        res.first_alerts = {k: np.asarray(v) for k, v in self._fa.items()}
        return res

    def _decide_rows(self, dec, event: FlowExpiry, res: DetectResult, read_wall: float) -> None:
        """Ended flows scored from their flow-table rows (a reasoning bundle)."""
        if not len(dec):
            return
        import pandas as pd

        rows = event.flows.to_pandas()
        pos = pd.Index(rows["flow_id"].to_numpy(np.int64)).get_indexer(dec.flow_id)
        if (pos < 0).any():
            dec = dec.take(pos >= 0)
            pos = pos[pos >= 0]
        sc, emb = self.scorer.score_rows(rows.iloc[pos].reset_index(drop=True))
        self._decide(dec, res, read_wall, event.source_index, -1, scores=sc, embeddings=emb)

    def _decide(self, dec, res: DetectResult, read_wall: float, source_index: int, pn0: int, *,
                scores=None, embeddings=None) -> None:
        if not len(dec):
            return
        res.decisions += len(dec)
        sc = self.scorer.score(dec) if scores is None else scores
        margin = sc.mission - self.th[None, :]
        j = np.argmax(margin, axis=1)
        hit = margin[np.arange(len(j)), j] > 0
        if not hit.any():
            return
        rows = np.flatnonzero(hit)
        mj = j[rows]
        fine_p = sc.fine[rows] * self.mask[mj]
        cls = np.argmax(fine_p, axis=1).astype(np.int16)
        score = sc.mission[rows, mj]
        slot = dec.slot[rows]
        feats = self.features
        prior_cls = feats.alert_cls[slot]
        same = prior_cls == cls
        new_flow = ~same
        pk = dec.n[rows].astype(np.int64) - np.where(same, feats.alert_n[slot], 0)
        if self.record:
            first = prior_cls < 0
            if first.any():
                f = rows[first]
                self._fa["source"].extend([source_index] * len(f))
                self._fa["flow_id"].extend(dec.flow_id[f].tolist())
                self._fa["n"].extend(dec.n[f].tolist())
                pn = dec.rows[f] + pn0 if pn0 >= 0 else np.full(len(f), -1)
                self._fa["packet_number"].extend(pn.tolist())
                self._fa["mission"].extend(self.missions[m] for m in mj[first])
                self._fa["fine"].extend(self.classes[c] for c in cls[first])
        feats.alert_cls[slot] = cls
        feats.alert_n[slot] = dec.n[rows]
        src_k = host_key(dec.src_hi[rows], dec.src_lo[rows])
        dst_k = host_key(dec.dst_hi[rows], dec.dst_lo[rows])
        cu = cls.astype(np.uint64)
        in_h, out_h = mix(dst_k, cu), mix(mix(src_k, cu), np.uint64(1))
        agg = self.aggregator
        # fold before the Python loop: rows of a (destination, class) that many sources hit (spoofed floods)
        # or of a (source, class) that reaches many destinations (sweeps) become one group each
        fold_in = self._fans(in_h, src_k, agg.folded)
        fold_out = ~fold_in & self._fans(out_h, dst_k, agg.folded)
        g_src = np.where(fold_in, np.uint64(0), src_k)
        g_dst = np.where(fold_out, np.uint64(0), dst_k)
        gk = mix(mix(g_src, g_dst), cu)
        uk, first_idx, inv = np.unique(gk, return_index=True, return_inverse=True)
        flows_g = np.bincount(inv, weights=new_flow, minlength=len(uk))
        pk_g = np.bincount(inv, weights=pk, minlength=len(uk))
        dec_g = np.bincount(inv, minlength=len(uk))
        score_g = np.zeros(len(uk))
        np.maximum.at(score_g, inv, score)
        ts = dec.ts_ns[rows]
        last_g = np.zeros(len(uk), np.int64)
        np.maximum.at(last_g, inv, ts)
        folded_g = np.flatnonzero(fold_in[first_idx] | fold_out[first_idx])
        members = {}
        if len(folded_g):
            order = np.argsort(inv, kind="stable")
            bounds = np.searchsorted(inv[order], np.arange(len(uk) + 1))
            for g in folded_g.tolist():
                m = order[bounds[g]:bounds[g + 1]]
                members[g] = m
        agg.trigger_wall, agg.trigger_expiry = read_wall, bool(dec.at_expiry)
        for g in range(len(uk)):
            r = int(first_idx[g])
            i = int(rows[r])
            fine = self.classes[int(cls[r])]
            mission = self.missions[int(mj[r])]
            src = None if fold_in[r] else int(src_k[r])
            dst = None if fold_out[r] else int(dst_k[r])
            m = members.get(g)
            agg.add(src=src, dst=dst, fine=fine, mission=mission, ts_ns=int(ts[r]),
                    last_ns=int(last_g[g]), flows=int(flows_g[g]), packets=int(pk_g[g]), decisions=int(dec_g[g]),
                    score=float(score_g[g]), in_hash=int(in_h[r]), out_hash=int(out_h[r]),
                    src_keys=np.unique(src_k[m]).tolist() if m is not None else (),
                    dst_keys=np.unique(dst_k[m]).tolist() if m is not None else (),
                    make_base=lambda i=i, fine=fine, mission=mission, s=float(score[r]), sp=sc.mission[i]:
                    self._base(dec, i, fine, mission, s, sp, None if embeddings is None else embeddings[i]))

    def _fans(self, fan_h: np.ndarray, other: np.ndarray, folded: set) -> np.ndarray:
        """Rows whose fan (hash) is already folded, or that reach more than ``fan_limit`` distinct
        others in this batch."""
        out = np.zeros(len(fan_h), bool)
        if folded:
            out |= np.isin(fan_h, np.fromiter(folded, np.uint64, len(folded)))
        pairs, first = np.unique(mix(fan_h, other), return_index=True)
        fh, counts = np.unique(fan_h[first], return_counts=True)
        wide = fh[counts > self.aggregator.fan_limit]
        if len(wide):
            out |= np.isin(fan_h, wide)
        return out

    def _base(self, dec, i: int, fine: str, mission: str, score: float, mission_p,
              embedding=None) -> tuple[dict, dict]:
        """EVE fields and packetclip object of decision ``i`` (only for decisions that open an alert)."""
        src, dst = format_ip(int(dec.src_hi[i]), int(dec.src_lo[i])), format_ip(int(dec.dst_hi[i]), int(dec.dst_lo[i]))
        proto = proto_name(int(dec.proto[i]))
        sport, dport = int(dec.sport[i]), int(dec.dport[i])
        if proto not in ("TCP", "UDP"):
            sport = dport = 0
        x = dec.X[i]
        ctx = {name: float(x[k]) for name, k in _CTX_AT.items()}
        flow = {"src_ip": src, "dest_ip": dst, "dest_port": dport, "n": int(dec.n[i]), "bwd": int(x[_BWD_AT])}
        sig_id = 9_100_000 + self.classes.index(fine)
        base = {"timestamp": iso_time(int(dec.ts_ns[i])), "flow_id": int(dec.flow_id[i]), "event_type": "alert",
                "src_ip": src, "src_port": sport, "dest_ip": dst, "dest_port": dport, "proto": proto,
                "alert": {"action": "allowed", "gid": 1, "signature_id": sig_id, "rev": 1,
                          "signature": f"PACKETCLIP {mission} - {fine}", "category": mission,
                          "severity": SEVERITY.get(mission, 3)}}
        j = self.missions.index(mission)
        pc = {"mission": mission, "fine_class": fine, "score": round(score, 4), "threshold": float(self.th[j]),
              "fpr": self.fpr_used,
              "mission_scores": {m: round(float(p), 4) for m, p in zip(self.missions, mission_p)},
              "top_concepts": concepts_of(fine, mission),
              "explanation": explain(fine, mission, score, ctx, flow, self.window_s),
              "class_definition": self.aggregator.definitions.get(fine),
              "nearest_description": None,
              "packets_seen": int(dec.n[i]), "decision": "expiry" if dec.at_expiry else "early",
              "model": self.model_name}
        if embedding is not None:            # a reasoning bundle: the GNN's own concepts and sentence
            pc["top_concepts"], pc["explanation"] = self.scorer.explain(embedding, mission)
        return base, pc


def _default_fpr() -> float:
    from packetclip.detect.scorer import DEFAULT_FPR

    return DEFAULT_FPR


class _LiveSummary:
    """A rich panel on the terminal: packets/s, flows, alerts per mission, top talkers (refreshed twice a second)."""

    def __init__(self, det: Detector, res: DetectResult, started: float):
        from rich.console import Console
        from rich.live import Live

        self.det, self.res, self.started = det, res, started
        self.console = Console(stderr=True)
        self.live = Live(console=self.console, refresh_per_second=2, transient=False)
        self.live.start()
        self.last = 0.0
        self.talkers: dict[tuple[int, int], int] = {}

    def count_talkers(self, batch, flow_id) -> None:
        """Packets per source address (pruned to the top 1,000 when it passes 10,000 sources)."""
        sel = flow_id >= 0
        pairs = np.stack([batch.src_hi[sel], batch.src_lo[sel]], axis=1)
        uk, counts = np.unique(pairs, axis=0, return_counts=True)
        t = self.talkers
        for (hi, lo), c in zip(uk.tolist(), counts.tolist()):
            t[(hi, lo)] = t.get((hi, lo), 0) + c
        if len(t) > 10_000:
            self.talkers = dict(heapq.nlargest(1000, t.items(), key=lambda kv: kv[1]))

    def tick(self, stream) -> None:
        now = time.perf_counter()
        if now - self.last < 0.5:
            return
        self.last = now
        self.live.update(self._table(stream, now))

    def _table(self, stream, now: float):
        from rich.table import Table

        el = max(now - self.started, 1e-9)
        t = Table(title="packetclip detect", show_header=False)
        t.add_row("packets", f"{self.res.packets:,} ({self.res.packets / el:,.0f}/s)")
        t.add_row("flows open / ended", f"{stream.open_flows:,} / {self.res.flows:,}")
        agg = self.det.aggregator
        t.add_row("alerts", ", ".join(f"{m} {n}" for m, n in sorted(agg.per_mission.items())) or "none")
        top = heapq.nlargest(5, self.talkers.items(), key=lambda kv: kv[1])
        t.add_row("top talkers (packets)", ", ".join(f"{format_ip(hi, lo)}: {v:,}" for (hi, lo), v in top) or "-")
        return t

    def stop(self) -> None:
        self.live.stop()


def interactive(stream=None) -> bool:
    return bool(getattr(stream or sys.stderr, "isatty", lambda: False)())
