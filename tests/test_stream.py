"""The packet stream (packetclip.traffic.stream): same flows as ingest, bounded state, plugins, sources.

One lab capture (synthetic, 90 s, fixed seed) is generated for the module; a few real nDPI captures check
several sources in one stream.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from packetclip.lab.synth import SynthLab
from packetclip.traffic.context import HostContextPlugin, host_context
from packetclip.traffic.ingest import IngestSettings, ingest_captures
from packetclip.traffic.pcap import open_capture
from packetclip.traffic.stream import (CaptureSource, FlowExpiry, FlowStream, FlowUpdate, PacketSource, SourceEnd, StreamSettings,
                                       ViewsPlugin)
from packetclip.traffic.workspace import Workspace

NDPI = Path(__file__).resolve().parents[2] / "shared" / "data" / "ndpi" / "pcap"


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lab")
    return SynthLab(duration_s=90.0, seed=5).generate(out, progress=False, ingest=False).pcap


@pytest.fixture(scope="module")
def workspace(capture, tmp_path_factory) -> Workspace:
    out = tmp_path_factory.mktemp("ws") / "ws"
    return ingest_captures([capture], out, settings=IngestSettings(view_packets=None), progress=False)


def _run(stream: FlowStream) -> tuple[pd.DataFrame, list[int], list]:
    """Flows of the stream, its tracked-flow count after every event, and the events' extras."""
    tables, tracked, events = [], [], []
    for event in stream:
        if isinstance(event, FlowExpiry):
            tables.append(event.flows.to_pandas())
        events.append(event)
        tracked.append(stream.tracked_flows)
    return pd.concat(tables, ignore_index=True), tracked, events


def test_stream_gives_the_flow_table_of_ingest_and_frees_every_flow(capture, workspace):
    flows, tracked, events = _run(FlowStream(capture, IngestSettings(), [ViewsPlugin(first_k=8)]))
    pd.testing.assert_frame_equal(flows, workspace.flows())          # every column, every row, same order
    assert len(flows) > 500 and max(tracked) > 50
    assert tracked[-1] == 0                                           # nothing held after the last expiry
    last_expiry = max(i for i, e in enumerate(events) if isinstance(e, FlowExpiry))
    assert all(t == 0 for t in tracked[last_expiry:])
    assert isinstance(events[-1], SourceEnd) and events[-1].summary.flows == len(flows)


def test_several_sources_one_stream_and_a_damaged_one(tmp_path):
    names = ["dns_exfiltration.pcap", "ssh.pcap", "mqtt.pcap"]
    paths = [NDPI / n for n in names if (NDPI / n).is_file()]
    if len(paths) < 2:
        pytest.skip("../shared/data/ndpi not available")
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture at all")
    sources = [paths[0], bad, *paths[1:]]
    ws = ingest_captures(sources, tmp_path / "ws", progress=False)
    stream = FlowStream(sources, IngestSettings())
    flows = stream.flows().to_pandas()
    pd.testing.assert_frame_equal(flows, ws.flows())
    assert flows["flow_id"].is_unique and stream.tracked_flows == 0
    assert [s.error is not None for s in stream.summaries] == [False, True] + [False] * (len(paths) - 1)


def test_views_plugin_hands_over_the_first_k_views_of_each_expired_flow(capture, workspace):
    k = 4
    plugin = ViewsPlugin(first_k=k, hold=True)
    stream = FlowStream(capture, IngestSettings(), [plugin])
    got = {}
    for event in stream:
        if isinstance(event, FlowUpdate):
            fv = event.extras["views"]
            assert len(fv) <= np.count_nonzero(event.flow_id >= 0)
        elif isinstance(event, FlowExpiry):
            fv = event.extras["views"]
            assert set(np.unique(fv.flow_id)) <= set(event.flow_ids.tolist())
            for fid in np.unique(fv.flow_id):
                got[int(fid)] = fv.views[fv.flow_id == fid]
    assert plugin.tracked_flows == 0 and stream.tracked_flows == 0
    expected = workspace.packet_views(first_k=k)
    assert sum(len(v) for v in got.values()) == len(expected)
    for fid in np.unique(expected.flow_id)[::7]:
        np.testing.assert_array_equal(got[int(fid)], expected.views[expected.flow_id == fid])


def test_viewer_state_is_freed_as_flows_expire(capture):
    plugin = ViewsPlugin(first_k=8)
    stream = FlowStream(capture, IngestSettings(idle_timeout=5.0), [plugin])
    held = []
    for event in stream:
        if isinstance(event, FlowExpiry):
            held.append(plugin.viewer.tracked_flows)
    total = stream.flows_emitted
    assert plugin.viewer.tracked_flows == 0 and plugin.viewer._base == total
    # with a 5 s idle timeout far fewer flows are held at any time than the capture has
    assert max(held) < total / 2


def test_host_context_on_the_stream_equals_the_batch_context(capture, workspace):
    plugin = HostContextPlugin(window_s=10.0)
    parts = []
    stream = FlowStream(capture, IngestSettings(), [plugin])
    during = []
    for event in stream:
        if isinstance(event, (FlowExpiry, SourceEnd)):
            parts.append(event.extras["host_context"])
            if isinstance(event, FlowExpiry):
                during.append(len(event.extras["host_context"]))
    incremental = pd.concat(parts, ignore_index=True)
    assert incremental["flow_id"].is_unique and plugin.tracked_flows == 0
    batch = host_context(workspace.flows(), window_s=10.0)
    assert len(incremental) == len(batch)
    incremental = incremental.set_index("flow_id").loc[batch["flow_id"]].reset_index()
    pd.testing.assert_frame_equal(incremental.astype("float64"), batch.astype("float64"))
    assert sum(during) > len(batch) // 2            # most windows were finalised while the stream ran


class ListSource:
    """A PacketSource from batches in memory (what a live interface would look like)."""

    def __init__(self, path: Path):
        self.name = path.name
        self.batches = list(open_capture(path, batch_packets=1000))

    def __iter__(self):
        return iter(self.batches)


def test_any_iterable_of_batches_is_a_source(capture, workspace):
    source = ListSource(capture)
    assert isinstance(source, PacketSource)
    flows = FlowStream(source, StreamSettings()).flows().to_pandas()
    pd.testing.assert_frame_equal(flows, workspace.flows())


def test_a_stream_needs_a_source_and_runs_once(capture):
    from packetclip.errors import PacketClipError

    with pytest.raises(PacketClipError):
        FlowStream([])
    stream = FlowStream(capture)
    assert sum(1 for _ in stream) > 0
    with pytest.raises(PacketClipError, match="once"):
        next(iter(stream))


def test_views_with_state_freed_equal_views_with_all_state_kept(capture):
    """Freeing and compacting the viewer's per-flow TCP state (many expiries with a 5 s idle timeout) changes
    no view: compare with one viewer that keeps every flow's state for the whole capture."""
    from packetclip.traffic.views import PacketViewer

    keep_all = PacketViewer()
    plugin = ViewsPlugin(first_k=None)
    stream = FlowStream(CaptureSource(capture, batch_packets=500), IngestSettings(idle_timeout=5.0), [plugin])
    compared, moved = 0, 0
    for event in stream:
        if isinstance(event, FlowUpdate):
            moved = max(moved, plugin.viewer._base)            # state below the oldest open flow was dropped
            fv = event.extras["views"]
            rows = np.flatnonzero(event.flow_id >= 0)
            np.testing.assert_array_equal(fv.rows, rows)
            np.testing.assert_array_equal(fv.views, keep_all.views(event.batch, event.flow_id, event.direction,
                                                                   rows=rows))
            compared += len(rows)
    assert compared > 10_000 and moved > 100 and plugin.tracked_flows == 0
