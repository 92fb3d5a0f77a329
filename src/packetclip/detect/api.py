"""``packetclip detect`` as one library call: model, sources, sinks, run, summary lines."""

from __future__ import annotations

import sys
from pathlib import Path

from packetclip.errors import PacketClipError
from packetclip.detect.alerts import AlertSink
from packetclip.detect.pipeline import Detector, DetectResult
from packetclip.detect.scorer import load_scorer


class NothingReadableError(PacketClipError):
    """None of the captures could be read."""


def run_detect(captures=(), *, model: str | Path | None = None, alerts: str | Path | None = None, eve: bool = False,
               interface: str | None = None, duration_s: float | None = None, fpr: float | None = None,
               interval_s: float = 60.0, batch_packets: int = 2048, summary: bool = False, warn=None,
               record: bool = False) -> DetectResult:
    """Detect on captures (paths) or a live interface; alerts to ``alerts`` (appended) and/or stdout (``eve``).

    A damaged capture is reported through ``warn(line)`` and the run goes on; alerts raised before the damage
    are already written. Raises :class:`NothingReadableError` when no capture yielded a packet."""
    if bool(captures) == bool(interface):
        raise PacketClipError("give capture files or --interface, not both" if captures else
                              "give capture files or --interface IF")
    scorer = load_scorer(model)
    if interface:
        from packetclip.detect.live import InterfaceSource

        sources = [InterfaceSource(interface, duration_s=duration_s).open()]
    else:
        sources = [Path(c) for c in captures]
        for p in sources:
            if not p.is_file():
                raise PacketClipError("no such capture file", path=str(p))
    sinks = []
    if alerts is not None:
        sinks.append(AlertSink(alerts))
    if eve:
        sinks.append(AlertSink(stream=sys.stdout))
    detector = Detector(scorer, sinks=sinks, fpr=fpr, interval_s=interval_s, batch_packets=batch_packets,
                        summary=summary, record=record,
                        model_name="default" if model is None else Path(model).name)

    def on_end(s):
        if warn is None:
            return
        if s.error:
            warn(f"{s.path}: {s.error} (alerts raised before the damage were written)")
        elif s.truncated_at is not None:
            warn(f"{s.path}: damaged capture, unreadable from offset {s.truncated_at} "
                 f"({s.packets:,} packets read; alerts raised before the damage were written)")

    try:
        result = detector.run(sources, on_source_end=on_end)
    finally:
        for s in sinks:
            s.close()
    if not interface and result.packets == 0 and all(s.error for s in result.summaries):
        first = result.summaries[0].error if result.summaries else "no packets"
        raise NothingReadableError(f"none of the {len(result.summaries)} capture(s) could be read; first: {first}")
    return result


def summary_line(result: DetectResult) -> str:
    missions = ", ".join(f"{m} {n}" for m, n in sorted(result.per_mission.items())) or "none"
    rate = result.packets / result.elapsed_s if result.elapsed_s > 0 else 0.0
    return (f"{result.packets:,} packets, {result.flows:,} flows, {result.alerts:,} alerts ({missions}), "
            f"{result.lines:,} EVE lines; {rate:,.0f} packets/s")
