"""The console's live state: alerts in a ring buffer, rates per second, packet timelines of recent flows, and the
fan-out to stream clients. Everything here is bounded, so a flood of alerts cannot exhaust memory.

Detection runs in a background thread (:class:`LiveDetection`) and reaches this state only through
:class:`ConsoleSink` (an alert sink: ``write(event)`` per EVE line) and the detector's ``on_event`` hook (packet
counts and timelines). Stream clients are asyncio consumers: each has a bounded buffer that the detection thread
appends to and a wake-up scheduled on the server's event loop; a client whose buffer overflows is dropped (it
reconnects and pages the table from the ring buffer) instead of holding memory for it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from array import array
from collections import OrderedDict, deque
from pathlib import Path

import numpy as np

from packetclip.errors import PacketClipError

MISSIONS = ("DoS", "Reconnaissance", "Brute Force")


def alert_summary(event: dict, seen: float) -> dict:
    """The table row of an EVE alert line (what the page lists and filters on)."""
    pc = event.get("packetclip") or {}
    agg = pc.get("aggregate") or {}
    return {"id": int(agg.get("alert_id", 0)), "time": event.get("timestamp"), "mission": pc.get("mission"),
            "fine_class": pc.get("fine_class"), "src_ip": event.get("src_ip"), "dest_ip": event.get("dest_ip"),
            "dest_port": event.get("dest_port"), "proto": event.get("proto"), "score": pc.get("score"),
            "flows": agg.get("flows"), "packets": agg.get("packets"), "status": agg.get("status"),
            "any_source": agg.get("any_source"), "any_destination": agg.get("any_destination"),
            "flow_id": event.get("flow_id"), "seen": round(seen, 6)}


class Subscriber:
    """One stream client: a bounded buffer (of alert rows as JSON text) filled by any thread, drained by the
    client's coroutine."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_pending: int):
        self.loop = loop
        self.max_pending = int(max_pending)
        self.pending: deque = deque()
        self.lock = threading.Lock()
        self.wake = asyncio.Event()
        self.dropped = False
        self._wake_scheduled = False

    def offer(self, item: str) -> None:
        with self.lock:
            if self.dropped:
                return
            if len(self.pending) >= self.max_pending:     # too slow: drop it rather than buffer without bound
                self.dropped = True
                self.pending.clear()
            else:
                self.pending.append(item)
            if self._wake_scheduled:
                return
            self._wake_scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._set)
        except RuntimeError:      # the loop is closed: the server is shutting down
            self.dropped = True

    def _set(self) -> None:
        with self.lock:
            self._wake_scheduled = False
        self.wake.set()

    def take(self, limit: int) -> list:
        with self.lock:
            n = min(limit, len(self.pending))
            items = [self.pending.popleft() for _ in range(n)]
            if not self.pending:
                self.wake.clear()
            return items


class AlertStore:
    """The newest ``capacity`` alerts (id → table row + last EVE line), filtered and paged on the server, and
    the fan-out to stream subscribers (at most ``max_clients``, each buffering at most ``max_pending``)."""

    def __init__(self, capacity: int = 20_000, *, max_clients: int = 32, max_pending: int = 10_000):
        if capacity < 1:
            raise PacketClipError("the alert buffer needs a capacity of at least 1")
        self.capacity = int(capacity)
        self.max_clients = int(max_clients)
        self.max_pending = int(max_pending)
        self.lock = threading.Lock()
        self.rows: OrderedDict[int, dict] = OrderedDict()
        self.eve: dict[int, str] = {}
        self.total = 0
        self.lines = 0
        self.per_mission: dict[str, int] = {}
        self.subscribers: set[Subscriber] = set()
        self.dropped_clients = 0

    # -- writing (any thread) -----------------------------------------------------------------------------
    def add(self, event: dict) -> dict:
        """Account one EVE alert line (a new alert, or the final line of one already listed)."""
        row = alert_summary(event, time.time())
        line = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        with self.lock:
            self.lines += 1
            aid = row["id"]
            if row["status"] == "new" and aid not in self.rows:
                self.total += 1
                if row["mission"]:
                    self.per_mission[row["mission"]] = self.per_mission.get(row["mission"], 0) + 1
            self.rows[aid] = row          # a final line updates its alert in place: the table stays in id order
            self.eve[aid] = line
            while len(self.rows) > self.capacity:
                old, _ = self.rows.popitem(last=False)
                self.eve.pop(old, None)
            subs = list(self.subscribers)
        if subs:
            text = json.dumps(row, separators=(",", ":"))     # serialised once, whatever the number of clients
            for s in subs:
                s.offer(text)
        return row

    # -- reading --------------------------------------------------------------------------------------------
    def page(self, *, mission: str | None = None, fine_class: str | None = None, host: str | None = None,
             offset: int = 0, limit: int = 50) -> dict:
        """Newest first; ``host`` matches the start of a source or destination address."""
        with self.lock:
            rows = list(self.rows.values())
        match = []
        for r in reversed(rows):
            if mission and r["mission"] != mission:
                continue
            if fine_class and r["fine_class"] != fine_class:
                continue
            if host and not (str(r["src_ip"] or "").startswith(host) or str(r["dest_ip"] or "").startswith(host)):
                continue
            match.append(r)
        return {"total": len(match), "offset": offset, "limit": limit, "items": match[offset:offset + limit]}

    def get(self, alert_id: int) -> tuple[dict, dict] | None:
        with self.lock:
            row, line = self.rows.get(alert_id), self.eve.get(alert_id)
        return None if row is None else (row, json.loads(line))

    def classes(self) -> list[str]:
        with self.lock:
            return sorted({r["fine_class"] for r in self.rows.values() if r["fine_class"]})

    def counts(self) -> dict:
        with self.lock:
            return {"alerts": self.total, "lines": self.lines, "kept": len(self.rows),
                    "per_mission": dict(self.per_mission), "clients": len(self.subscribers),
                    "dropped_clients": self.dropped_clients}

    # -- subscribers ----------------------------------------------------------------------------------------
    def subscribe(self, loop: asyncio.AbstractEventLoop) -> Subscriber | None:
        """A new stream client, or None when ``max_clients`` are already connected."""
        with self.lock:
            if len(self.subscribers) >= self.max_clients:
                return None
            sub = Subscriber(loop, self.max_pending)
            self.subscribers.add(sub)
            return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self.lock:
            if sub in self.subscribers:
                self.subscribers.discard(sub)
                if sub.dropped:
                    self.dropped_clients += 1


class Rates:
    """Per-second samples (packets/s, flows ended/s, alerts per mission per second), the last ``keep``."""

    def __init__(self, keep: int = 600):
        self.lock = threading.Lock()
        self.samples: deque = deque(maxlen=int(keep))
        self.packets = 0
        self.flows = 0
        self.open_flows = 0
        self._last = (time.time(), 0, 0, {})

    def count(self, *, packets: int = 0, flows: int = 0) -> None:
        with self.lock:
            self.packets += packets
            self.flows += flows

    def sample(self, per_mission: dict, now: float | None = None) -> dict:
        now = time.time() if now is None else now
        with self.lock:
            t0, p0, f0, m0 = self._last
            dt = max(now - t0, 1e-6)
            s = {"t": round(now, 3), "packets_per_s": (self.packets - p0) / dt, "flows_per_s": (self.flows - f0) / dt,
                 "alerts_per_s": {m: (per_mission.get(m, 0) - m0.get(m, 0)) / dt for m in MISSIONS}}
            self._last = (now, self.packets, self.flows, dict(per_mission))
            self.samples.append(s)
            return s

    def series(self, last: int | None = None) -> list[dict]:
        with self.lock:
            items = list(self.samples)
        return items if last is None else items[-last:]

    def totals(self) -> dict:
        with self.lock:
            return {"packets": self.packets, "flows_ended": self.flows}


class Timelines:
    """The first ``per_flow`` packets (time, length, direction) of the ``max_flows`` most recently active flows,
    so an alert's detail can draw its flow's packet timeline. Packed arrays: at most 13 bytes per packet kept
    (33 MB with the defaults)."""

    def __init__(self, max_flows: int = 10_000, per_flow: int = 256):
        self.max_flows = int(max_flows)
        self.per_flow = int(per_flow)
        self.lock = threading.Lock()
        self.flows: OrderedDict[int, tuple] = OrderedDict()   # flow id -> (ts int64, length int32, direction int8)

    def update(self, flow_id: np.ndarray, ts_ns: np.ndarray, length: np.ndarray, direction: np.ndarray) -> None:
        sel = flow_id >= 0
        if not sel.any():
            return
        fid, ts, ln, dr = flow_id[sel], ts_ns[sel], length[sel], direction[sel]
        order = np.argsort(fid, kind="stable")
        fid = fid[order]
        ts = ts[order].astype(np.int64)
        ln = ln[order].astype(np.int32)
        dr = dr[order].astype(np.int8)
        starts = np.r_[0, np.flatnonzero(np.diff(fid)) + 1]
        ends = np.r_[starts[1:], len(fid)]
        with self.lock:
            flows = self.flows
            for f, a, b in zip(fid[starts].tolist(), starts.tolist(), ends.tolist()):
                rec = flows.get(f)
                if rec is None:
                    rec = flows[f] = (array("q"), array("i"), array("b"))
                else:
                    flows.move_to_end(f)
                room = self.per_flow - len(rec[0])
                if room > 0:
                    b = min(b, a + room)
                    rec[0].frombytes(ts[a:b].tobytes())
                    rec[1].frombytes(ln[a:b].tobytes())
                    rec[2].frombytes(dr[a:b].tobytes())
            while len(flows) > self.max_flows:
                flows.popitem(last=False)

    def get(self, flow_id: int) -> dict | None:
        with self.lock:
            rec = self.flows.get(int(flow_id))
            if rec is None:
                return None
            ts, ln, dr = rec[0].tolist(), rec[1].tolist(), rec[2].tolist()
        t0 = ts[0] if ts else 0
        return {"t_s": [(t - t0) / 1e9 for t in ts], "length": ln, "direction": dr, "start_ns": t0}


class ConsoleSink:
    """An alert sink for the detector (``write(event)`` per EVE line) that feeds the console's store."""

    def __init__(self, store: AlertStore):
        self.store = store
        self.lines = 0

    def write(self, event: dict) -> None:
        self.store.add(event)
        self.lines += 1

    def close(self) -> None:
        pass


class ReplaySource:
    """A capture replayed as a packet source: at ``speed`` × its own pace (0: as fast as it reads), stoppable."""

    def __init__(self, path: str | Path, *, speed: float = 0.0, stop: threading.Event | None = None,
                 batch_packets: int = 1024):
        from packetclip.traffic.stream import CaptureSource

        self.capture = CaptureSource(path, batch_packets=batch_packets)
        self.name = self.capture.name
        self.speed = float(speed)
        self.stop = stop or threading.Event()

    def __getattr__(self, item):
        return getattr(self.capture, item)

    def __iter__(self):
        start_wall = time.perf_counter()
        first_ts = None
        for batch in self.capture:
            if self.stop.is_set():
                return
            if self.speed > 0 and len(batch):
                ts = int(batch.ts_ns[0])
                first_ts = ts if first_ts is None else first_ts
                due = start_wall + (ts - first_ts) / 1e9 / self.speed
                while not self.stop.is_set() and (wait := due - time.perf_counter()) > 0:
                    self.stop.wait(min(wait, 0.25))
                if self.stop.is_set():
                    return
            yield batch


class LiveDetection:
    """``packetclip detect`` in a background thread, feeding the console: replayed captures or an interface.

    The detector is the real one (:class:`packetclip.detect.pipeline.Detector`); the console only listens
    through its alert sink and its ``on_event`` hook."""

    def __init__(self, store: AlertStore, rates: Rates, timelines: Timelines, *, model: str | Path | None = None,
                 captures=(), interface: str | None = None, speed: float = 0.0, fpr: float | None = None,
                 interval_s: float = 60.0):
        from packetclip.detect.scorer import load_scorer

        if bool(captures) == bool(interface):
            raise PacketClipError("give --replay CAPTURE... or --interface IF, not both" if captures else
                                  "give --replay CAPTURE... or --interface IF")
        for c in captures:
            if not Path(c).is_file():
                raise PacketClipError("no such capture file", path=str(c))
        if speed < 0:
            raise PacketClipError(f"--speed must be 0 (as fast as possible) or positive, not {speed:g}")
        self.scorer = load_scorer(model)          # a bad model is one line at start, not a dead thread later
        self.interface_source = None
        if interface:
            from packetclip.detect.live import InterfaceSource

            self.interface_source = InterfaceSource(interface).open()   # no rights / no such interface: now
        self.store, self.rates, self.timelines = store, rates, timelines
        self.model_name = "default" if model is None else Path(model).name
        self.captures = [Path(c) for c in captures]
        self.interface = interface
        self.speed = float(speed)
        self.fpr = fpr
        self.interval_s = float(interval_s)
        self.stop_event = threading.Event()
        self.state = "idle"
        self.error: str | None = None
        self.warnings: list[str] = []
        self._threads: list[threading.Thread] = []

    def status(self) -> dict:
        return {"state": self.state, "error": self.error, "warnings": list(self.warnings[-20:]),
                "sources": [c.name for c in self.captures] or [f"interface {self.interface}"],
                "speed": self.speed, "model": self.model_name}

    def start(self) -> "LiveDetection":
        for target in (self._run, self._sample):
            t = threading.Thread(target=target, name=f"console-{target.__name__}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        for t in self._threads:
            t.join(timeout)

    def _sample(self) -> None:
        while not self.stop_event.wait(1.0):
            self.rates.sample(self.store.counts()["per_mission"])

    def _on_event(self, event) -> None:
        from packetclip.traffic.stream import FlowExpiry, FlowUpdate

        if isinstance(event, FlowUpdate):
            b = event.batch
            self.rates.count(packets=len(b))
            self.timelines.update(np.asarray(event.flow_id), np.asarray(b.ts_ns), np.asarray(b.wirelen),
                                  np.asarray(event.direction))
        elif isinstance(event, FlowExpiry):
            self.rates.count(flows=len(event.flow_ids))

    def _run(self) -> None:
        from packetclip.detect.pipeline import Detector

        self.state = "running"
        try:
            if self.interface_source is not None:
                sources = [_Stoppable(self.interface_source, self.stop_event)]
            else:
                sources = [ReplaySource(c, speed=self.speed, stop=self.stop_event) for c in self.captures]
            detector = Detector(self.scorer, sinks=[ConsoleSink(self.store)], fpr=self.fpr,
                                interval_s=self.interval_s, batch_packets=1024, model_name=self.model_name)

            def on_end(s):
                if s.error or s.truncated_at is not None:
                    self.warnings.append(f"{s.path}: {s.error or f'damaged from offset {s.truncated_at}'}")

            detector.run(sources, on_source_end=on_end, on_event=self._on_event)
            self.state = "stopped" if self.stop_event.is_set() else "finished"
        except PacketClipError as err:
            self.state, self.error = "failed", err.one_line()
        except Exception as err:  # shown on the page; the server keeps serving what it has
            self.state, self.error = "failed", f"{type(err).__name__}: {err}"


class _Stoppable:
    """A packet source that ends at the next batch once ``stop`` is set (a live interface has no end)."""

    def __init__(self, source, stop: threading.Event):
        self.source, self.stop = source, stop
        self.name = getattr(source, "name", "source")

    def __getattr__(self, item):
        return getattr(self.source, item)

    def __iter__(self):
        for batch in self.source:
            if self.stop.is_set():
                return
            yield batch
