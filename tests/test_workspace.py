"""The workspace layer: damage found by check(), derived files never served stale, the embedding store,
nDPI labels, and describing an unlabelled capture. Real captures come from ../shared/data/ndpi."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from packetclip.errors import PacketClipError
from packetclip.traffic.workspace import StaleFileError, Workspace, WorkspaceError

NDPI = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ndpi"
CAPTURE = NDPI / "pcap" / "kerberos.pcap"        # 36 flows: Kerberos, LDAP, SMBv23 and 2 nDPI could not name


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> Path:
    if not CAPTURE.is_file():
        pytest.skip("../shared/data/ndpi not present")
    from packetclip.traffic.ingest import ingest_captures

    out = tmp_path_factory.mktemp("ws") / "kerberos"
    ingest_captures([CAPTURE], out, progress=False)
    return out


@pytest.fixture
def ws(ingested, tmp_path) -> Workspace:
    """A private copy of the ingested workspace (tests damage and relabel it)."""
    copy = tmp_path / "ws"
    shutil.copytree(ingested, copy)
    return Workspace.open(copy)


def _rewrite_flows(ws: Workspace) -> None:
    """Same rows, new file: what a re-ingest does to everything derived from the old table."""
    flows = ws.flows()
    ws.write_flows(flows)


def _one_line(err: pytest.ExceptionInfo) -> str:
    line = err.value.one_line()
    assert "\n" not in str(err.value)
    return line


# -- check(): the files, not the manifest -----------------------------------------------------------


def test_check_counts_match_the_manifest(ws):
    counts = ws.check()
    totals = ws.manifest["totals"]
    assert counts["flows.parquet"] == totals["flows"] == len(ws.flow_ids()) == 36
    assert counts["packets.parquet"] == totals.get("stored_packets", totals["flow_packets"]) > 0
    rows = dict(ws.summary_rows())
    assert rows["kind"] == "capture" and rows["flows"] == "36" and "TCP" in rows["flows by protocol"]


def test_check_reports_a_deleted_packet_table(ws):
    ws.path("packets").unlink()
    assert ws.kind == "capture"             # still an ingested workspace, not mistaken for a CSV import
    with pytest.raises(WorkspaceError) as err:
        ws.check()
    assert "packets.parquet is missing" in _one_line(err)


def test_check_reports_a_truncated_flow_table(ws):
    path = ws.path("flows")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WorkspaceError) as err:
        ws.check()
    assert "flows.parquet is damaged" in _one_line(err)
    with pytest.raises(WorkspaceError) as err:
        ws.flows()                          # reading it is one line too, never a pyarrow traceback
    assert "not a readable Parquet table" in _one_line(err)


# -- derived files are never served stale ------------------------------------------------------------


def test_splits_older_than_their_flows_are_refused(ws):
    from packetclip.traffic.splits import split_workspace

    written, _ = split_workspace(ws, by="flow", seed=0)
    assert ws.splits().equals(written.reset_index(drop=True)) and ws.has_splits()
    assert ws.inputs_of("splits.parquet").keys() == {"flows.parquet"}
    _rewrite_flows(ws)
    assert ws.is_stale("splits.parquet") and not ws.has_splits()
    with pytest.raises(StaleFileError) as err:
        ws.splits()
    assert "older than the flows" in _one_line(err) and "packetclip split" in _one_line(err)


def test_descriptions_older_than_their_flows_are_refused(ws):
    from packetclip.language.describe import Describer
    from packetclip.language.workspace import describe_workspace

    describe_workspace(ws, Describer("rules", per_flow=1, seed=0))
    assert len(ws.descriptions()) == 36
    _rewrite_flows(ws)
    with pytest.raises(StaleFileError) as err:
        ws.descriptions()
    assert "older than the flows" in _one_line(err) and "packetclip describe" in _one_line(err)


def test_labels_appearing_later_make_descriptions_stale(ws):
    from packetclip.language.describe import Describer
    from packetclip.language.workspace import describe_workspace
    from packetclip.traffic.datasets import label_ndpi

    describe_workspace(ws, Describer("rules", per_flow=1, seed=0))
    assert not ws.is_stale("descriptions.parquet")
    label_ndpi(ws, NDPI / "result", progress=False)
    assert ws.is_stale("descriptions.parquet")


# -- the embedding store ------------------------------------------------------------------------------


class CountingEncoder:
    """A stand-in encoder: mean of each flow's first k views; counts what it is asked to compute."""

    def __init__(self, fingerprint: str):
        self.fingerprint = fingerprint
        self.calls: list[np.ndarray] = []

    def compute(self, ws: Workspace, k: int):
        def run(flow_ids: np.ndarray) -> np.ndarray:
            self.calls.append(np.asarray(flow_ids).copy())
            views = ws.packet_views(flow_ids, first_k=k)
            out = np.zeros((len(flow_ids), views.views.shape[1]), np.float32)
            row = np.searchsorted(flow_ids, views.flow_id)
            np.add.at(out, row, views.views.astype(np.float32))
            return out / np.maximum(np.bincount(row, minlength=len(flow_ids)), 1)[:, None]
        return run

    def embed(self, ws: Workspace, flow_ids, k: int = 4) -> np.ndarray:
        return ws.embeddings(self.fingerprint, flow_ids, self.compute(ws, k), first_k=k)


def test_embedding_store_computes_once_and_never_serves_a_stale_entry(ws):
    ids = ws.flow_ids()[::-1][:20]                  # any order: rows come back in the order asked
    enc = CountingEncoder("enc-a")
    first = enc.embed(ws, ids)
    assert len(enc.calls) == 1 and first.shape[0] == 20 and first.dtype == np.float32
    second = enc.embed(ws, ids)
    assert len(enc.calls) == 1                      # the second call was served by the store
    np.testing.assert_array_equal(first, second)
    more = enc.embed(ws, ws.flow_ids())             # only the 16 flows not stored yet are computed
    assert len(enc.calls) == 2 and len(enc.calls[1]) == 36 - 20
    np.testing.assert_array_equal(more[np.searchsorted(ws.flow_ids(), ids)], first)

    other = CountingEncoder("enc-b")                # another encoder (fingerprint) is never served enc-a's rows
    other.embed(ws, ids)
    assert len(other.calls) == 1
    enc.embed(ws, ids, k=2)                         # another view setting neither
    assert len(enc.calls) == 3

    _rewrite_flows(ws)                              # changed flows: the stored entries are dropped
    again = enc.embed(ws, ids)
    assert len(enc.calls) == 4 and len(enc.calls[3]) == 20
    np.testing.assert_array_equal(again, first)


# -- nDPI labels and unlabelled captures -----------------------------------------------------------------


def test_label_ndpi_writes_the_workspace_labels_that_split_and_describe_read(ws):
    from packetclip.language.describe import Describer
    from packetclip.language.workspace import describe_workspace
    from packetclip.traffic.datasets import label_ndpi
    from packetclip.traffic.splits import SplitWarning, split_workspace

    assert not ws.is_labelled()
    path, table = label_ndpi(ws, NDPI / "result", progress=False)
    assert path == ws.path("labels") and table.attrs["packetclip_report"]["flows_matched"] == 36
    assert table["label"].value_counts().to_dict() == {"Kerberos": 24, "LDAP": 7, "SMBv23": 3, "Unknown": 2}
    assert ws.labels()["label"].value_counts().to_dict() == table["label"].value_counts().to_dict()
    with pytest.warns(SplitWarning, match=r"Unknown \(2\)"):     # 2 flows cannot fill 3 splits
        _, summary = split_workspace(ws, by="flow", seed=0)
    assert summary.loc["Kerberos", "total"] == 24
    _, descriptions = describe_workspace(ws, Describer("rules", per_flow=1, seed=0), limit=8)
    assert set(descriptions["label"]) == {"Kerberos", "LDAP", "SMBv23", "Unknown"}     # --limit spreads
    assert descriptions["text"].str.startswith("A network traffic of ").all()
    _rewrite_flows(ws)                              # labels name flows by id: an older table's are refused
    with pytest.raises(StaleFileError):
        ws.labels()
    assert dict(ws.summary_rows())["labels"].startswith("stale")     # `info` says so instead of failing
    with pytest.raises(PacketClipError, match="--level"):
        label_ndpi(ws, NDPI / "result", level="flavour", progress=False)
    with pytest.raises(PacketClipError, match="kerberos.pcap.out"):
        label_ndpi(ws, NDPI / "pcap", progress=False)


def test_unlabelled_capture_is_described_without_labels(ws, tmp_path):
    from packetclip.language.describe import Describer
    from packetclip.language.workspace import describe_workspace

    assert not ws.is_labelled()
    path, table = describe_workspace(ws, Describer("rules", per_flow=2, seed=0), out=tmp_path / "report")
    assert path == ws.path("descriptions") and len(table) == 2 * 36
    assert (table["label"] == "").all() and table["mission"].isna().all()
    texts = table["text"]
    assert texts.str.len().min() > 20
    assert not texts.str.contains("network traffic of|Concepts:", regex=True).any()
    pd.testing.assert_frame_equal(ws.descriptions(), table)
    assert (tmp_path / "report" / "descriptions.parquet").is_file()


def test_relabelling_a_lab_or_capture_workspace_keeps_it_checkable(ws):
    from packetclip.traffic.datasets import label_ndpi

    label_ndpi(ws, NDPI / "result", progress=False)
    ws.update_manifest(note="labelled once")         # the manifest is rewritten while labels exist
    label_ndpi(ws, NDPI / "result", level="category", progress=False)
    assert ws.check()["flows.parquet"] == 36 and ws.is_labelled()


def test_any_derived_file_can_record_its_inputs(ws):
    """What other stages (the alignment search index) use for their own files."""
    name = "search/index.bin"
    with ws.atomic(name) as tmp:
        tmp.write_bytes(b"vectors")
    ws.record_inputs(name)
    assert set(ws.inputs_of(name)) == {"flows.parquet", "packets.parquet"} and not ws.is_stale(name)
    _rewrite_flows(ws)
    assert ws.is_stale(name)
