"""The workspace: the one module that knows the files of a workspace folder.

Every stage reads and writes through :class:`Workspace`, so file names, atomic writes and staleness rules live
in one place. A workspace is written by ``packetclip ingest`` (captures), ``packetclip lab synth|live`` (a
labelled capture, ingested) or ``packetclip import-csv`` (flow rows only, no packets); all three have a
manifest and open the same way.

Two rules hold for every file written here:

- **Atomic**: a table is written to a hidden temporary name and renamed into place when complete, so a killed
  process leaves the previous file (or none), never a truncated one.
- **Never stale**: a derived file (splits, descriptions, embeddings, search index) records the fingerprints
  (size + mtime) of the files it was computed from; reading it after those inputs changed raises
  :class:`StaleFileError` instead of serving it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from packetclip.errors import DatasetFormatError, PacketClipError

# The only place these names are spelled out (tests/test_workspace_names.py checks that).
MANIFEST = "manifest.json"
FLOWS = "flows.parquet"
PACKETS = "packets.parquet"
LABELS = "labels.parquet"
SPLITS = "splits.parquet"
DESCRIPTIONS = "descriptions.parquet"
PACKET_LABELS = "packet_labels.parquet"
EPISODES = "episodes.parquet"
LAB_META = "lab.json"
CAPTURE = "capture.pcap"
EMBEDDINGS = "embeddings"          # folder: one safetensors file per (encoder fingerprint, view settings)
SEARCH_INDEX = "search"            # folder: persisted search indexes
FIGURES = "figures"

FILES = {
    "manifest": MANIFEST, "flows": FLOWS, "packets": PACKETS, "labels": LABELS, "splits": SPLITS,
    "descriptions": DESCRIPTIONS, "packet_labels": PACKET_LABELS, "episodes": EPISODES, "lab_meta": LAB_META,
    "capture": CAPTURE, "embeddings": EMBEDDINGS, "search": SEARCH_INDEX, "figures": FIGURES,
}
SPLIT_NAMES = ("train", "val", "test")
PACKET_COLUMNS = ("flow_id", "direction", "ts_ns", "file_index", "view")


class StaleFileError(PacketClipError):
    """A derived file was computed from inputs that have changed since."""


class WorkspaceError(PacketClipError):
    """A workspace folder is missing, incomplete or damaged."""


@dataclass
class PacketViews:
    """Packet views of a workspace, in capture order (a stable sort by flow gives each flow's packets in time
    order). ``views`` is ``uint8 [n, view_bytes]``."""

    views: np.ndarray
    flow_id: np.ndarray
    direction: np.ndarray
    ts_ns: np.ndarray
    file_index: np.ndarray

    def __len__(self) -> int:
        return len(self.flow_id)


def file_fingerprint(path: Path) -> str:
    """Cheap identity of a file's content version: size and modification time (ns)."""
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


class Workspace:
    """A workspace folder. Open an existing one with :meth:`open`, start a new one with :meth:`create`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    # --- opening and creating -------------------------------------------------------------------

    @classmethod
    def open(cls, root: str | Path) -> "Workspace":
        """Open a workspace; one clear line if it is missing, incomplete or damaged."""
        root = Path(root)
        if not root.is_dir():
            raise WorkspaceError("workspace folder not found", path=str(root))
        ws = cls(root)
        if not (root / MANIFEST).is_file():
            if (root / FLOWS).is_file():
                return ws  # older workspaces (before manifests were written everywhere) still open
            raise WorkspaceError("not a packetclip workspace (no manifest.json); create one with "
                                 "`packetclip ingest`, `packetclip lab synth` or `packetclip import-csv`",
                                 path=str(root))
        return ws

    @classmethod
    def create(cls, root: str | Path, *, overwrite: bool = False, empty: bool = False) -> "Workspace":
        """A folder to write a new workspace into. A folder that already holds a workspace (or, with ``empty``,
        anything at all: a lab writes many files) is refused unless ``overwrite`` (its files are then replaced
        one by one, atomically, as the new ones complete)."""
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise WorkspaceError("exists and is not a folder", path=str(root))
        if not overwrite and root.is_dir():
            if any((root / name).exists() for name in (MANIFEST, FLOWS, PACKETS)):
                raise WorkspaceError("already holds a workspace; pass --overwrite to replace it", path=str(root))
            if empty and any(root.iterdir()):
                raise WorkspaceError("folder is not empty; pass --overwrite to write into it anyway",
                                     path=str(root))
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise WorkspaceError(f"cannot create the folder: {err.strerror or err}", path=str(root)) from None
        if not os.access(root, os.W_OK):
            raise WorkspaceError("folder is not writable", path=str(root))
        return cls(root)

    # --- paths ----------------------------------------------------------------------------------

    def path(self, name: str) -> Path:
        """Path of a workspace file by its key in :data:`FILES` (``"flows"``, ``"splits"``, ...)."""
        try:
            return self.root / FILES[name]
        except KeyError:
            raise PacketClipError(f"unknown workspace file key {name!r}") from None

    def has(self, name: str) -> bool:
        return self.path(name).exists()

    @property
    def flows_path(self) -> Path:
        return self.root / FLOWS

    @property
    def packets_path(self) -> Path:
        return self.root / PACKETS

    # --- manifest -------------------------------------------------------------------------------

    @property
    def manifest(self) -> dict:
        path = self.root / MANIFEST
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise WorkspaceError(f"manifest.json is damaged ({err})", path=str(path)) from None

    def write_manifest(self, manifest: dict) -> None:
        """Write the manifest atomically, recording the fingerprints of the primary tables it describes (flows and
        packets; labels are relabelled later, e.g. by ``packetclip label ndpi``, and carry their own provenance)."""
        manifest = dict(manifest)
        manifest["files"] = {name: file_fingerprint(self.root / name)
                             for name in (FLOWS, PACKETS) if (self.root / name).is_file()}
        with self.atomic(MANIFEST) as tmp:
            tmp.write_text(json.dumps(manifest, indent=2, default=str))

    def update_manifest(self, **fields) -> None:
        manifest = self.manifest
        manifest.update(fields)
        self.write_manifest(manifest)

    @property
    def kind(self) -> str:
        """``"capture"`` (ingest), ``"lab"`` or ``"csv"`` (import-csv, no packets)."""
        m = self.manifest
        if m.get("kind"):
            return str(m["kind"])
        if (self.root / LAB_META).is_file():
            return "lab"
        # An ingest manifest lists its captures; judging by packets.parquet alone would call a workspace
        # whose packet table was deleted a CSV import and hide the damage from check().
        return "capture" if ("captures" in m or (self.root / PACKETS).is_file()) else "csv"

    def check(self) -> dict:
        """Verify the tables against the manifest (presence, Parquet footer, key columns, row counts); returns
        row counts by file name. ``packetclip info`` runs it, so a deleted or truncated table is reported
        instead of trusting the manifest.

        Raises :class:`WorkspaceError` naming the damaged file in one line.
        """
        import pyarrow.parquet as pq

        counts = {}
        m = self.manifest
        totals = m.get("totals", {})
        expected = {FLOWS: (totals.get("flows"), ("flow_id",))}
        if self.kind != "csv" and m.get("settings", {}).get("write_packets", True):
            expected[PACKETS] = (totals.get("stored_packets", totals.get("flow_packets")), PACKET_COLUMNS)
        for name, (rows, columns) in expected.items():
            path = self.root / name
            if not path.is_file():
                raise WorkspaceError(f"{name} is missing (re-run the command that made this workspace)",
                                     path=str(self.root))
            try:
                meta = pq.ParquetFile(path).metadata
                names = set(meta.schema.to_arrow_schema().names)
            except Exception as err:  # pyarrow raises several types for a damaged file
                raise WorkspaceError(f"{name} is damaged ({' '.join(str(err).split())[:120]})",
                                     path=str(self.root)) from None
            lacking = [c for c in columns if c not in names]
            if lacking:
                raise WorkspaceError(f"{name} lacks column(s) {', '.join(lacking)}", path=str(self.root))
            counts[name] = meta.num_rows
            if rows is not None and counts[name] != rows:
                raise WorkspaceError(f"{name} has {counts[name]:,} rows but the manifest says {rows:,}",
                                     path=str(self.root))
        for name, fp in m.get("files", {}).items():
            path = self.root / name
            if not path.is_file():
                raise WorkspaceError(f"{name} is missing (re-run the command that made this workspace)",
                                     path=str(self.root))
            if file_fingerprint(path) != fp:
                raise WorkspaceError(f"{name} changed after the manifest was written (incomplete write?)",
                                     path=str(self.root))
        return counts

    def summary_rows(self) -> list[tuple[str, str]]:
        """Key figures of any workspace kind (ingest, lab, CSV import) for ``packetclip info`` and reports."""
        import pyarrow.parquet as pq

        m = self.manifest
        totals = m.get("totals", {})
        rows: list[tuple[str, str]] = [("kind", self.kind)]
        if self.kind == "csv":
            sources = m.get("sources", [])
            rows.append(("CSV files", f"{len(sources):,}"))
            rows.append(("flows", f"{totals.get('flows', 0):,}"))
        else:
            settings = m.get("settings", {})
            if "captures" in totals:
                rows.append(("captures", f"{totals['captures']:,} ({totals.get('captures_with_errors', 0)} unreadable)"))
            for key, text in (("packets", "packets"), ("flow_packets", "packets in flows"), ("flows", "flows"),
                              ("skipped_records", "skipped records"),
                              ("bad_link_packets", "packets on unsupported link types"),
                              ("truncated_captures", "captures cut short by damage")):
                if key in totals:
                    rows.append((text, f"{totals[key]:,}"))
            if "view_bytes" in settings:
                rows.append(("view bytes / masked", f"{settings['view_bytes']} / {settings.get('mask')}"))
            if "idle_timeout" in settings:
                rows.append(("timeouts idle/active",
                             f"{settings['idle_timeout']} s / {settings.get('active_timeout')} s"))
            if "elapsed_s" in m:
                rows.append(("ingest time", f"{m['elapsed_s']:.1f} s"))
        if self.flows_path.is_file():
            names = pq.read_schema(self.flows_path).names
            if "Protocol" in names:
                protos = self.flows(["Protocol"])["Protocol"].value_counts()
                rows.append(("flows by protocol", ", ".join(f"{protocol_name(k)} {v:,}" for k, v in protos.items())))
        try:
            labels = self.labels() if self.is_labelled() else None
        except StaleFileError:
            labels = None
            rows.append(("labels", "stale (the flows changed since; label the workspace again)"))
        if labels is not None and "label" in labels.columns:
            counts = labels["label"].value_counts()
            rows.append(("flows by label", ", ".join(f"{k} {v:,}" for k, v in counts.items())))
        for key, text in (("splits", "splits"), ("descriptions", "descriptions")):
            path = self.path(key)
            if path.is_file():
                rows.append((text, "stale (inputs changed)" if self.is_stale(FILES[key]) else "yes"))
        return rows

    # --- atomic writes and provenance -----------------------------------------------------------

    @staticmethod
    def file_name(name: str) -> str:
        """A file key of :data:`FILES` (``"flows"``, ``"capture"``, ...) as its file name; other names unchanged."""
        return FILES.get(name, name)

    @contextlib.contextmanager
    def atomic(self, name: str) -> Iterator[Path]:
        """Yield a temporary path beside ``name`` (a file name or a key of :data:`FILES`); rename it into place
        only if the block completes."""
        name = self.file_name(name)
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        try:
            yield tmp
            os.replace(tmp, target)
        except OSError as err:
            raise WorkspaceError(f"cannot write {name}: {err.strerror or err}", path=str(self.root)) from None
        finally:
            if tmp.exists():
                tmp.unlink()

    def write_table(self, name: str, table: pd.DataFrame, *, inputs: Sequence[str] = ()) -> Path:
        """Write a DataFrame as Parquet atomically (``name``: a file name or a key of :data:`FILES`); ``inputs``
        (file names) are recorded for staleness checks."""
        name = self.file_name(name)
        with self.atomic(name) as tmp:
            table.to_parquet(tmp, index=False)
        if inputs:
            self._record_inputs(name, inputs)
        return self.root / name

    def _provenance_path(self) -> Path:
        return self.root / ".provenance.json"

    def _provenance(self) -> dict:
        path = self._provenance_path()
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    def record_inputs(self, name: str, inputs: Sequence[str] | None = None) -> None:
        """Record what the derived file ``name`` (written with :meth:`atomic`) was computed from, so
        :meth:`is_stale` can tell once that changed. ``inputs``: file names or keys of :data:`FILES`;
        default: the flow and packet tables the workspace has."""
        if inputs is None:
            inputs = [n for n in (FLOWS, PACKETS) if (self.root / n).is_file()]
        self._record_inputs(self.file_name(name), [self.file_name(i) for i in inputs])

    def _record_inputs(self, name: str, inputs: Sequence[str]) -> None:
        prov = self._provenance()
        # An input that does not exist yet is recorded as None: its later appearance (labels added to a
        # workspace that had none) makes the derived file stale too.
        prov[name] = {"inputs": {i: file_fingerprint(self.root / i) if (self.root / i).exists() else None
                                 for i in inputs},
                      "written": file_fingerprint(self.root / name) if (self.root / name).is_file() else None}
        with self.atomic(".provenance.json") as tmp:
            tmp.write_text(json.dumps(prov, indent=2))

    def is_stale(self, name: str) -> bool:
        """True when a derived file's recorded inputs changed since it was written."""
        rec = self._provenance().get(name)
        if rec is None:
            return False
        for inp, fp in rec.get("inputs", {}).items():
            path = self.root / inp
            now = file_fingerprint(path) if path.exists() else None
            if now != fp:
                return True
        return False

    def inputs_of(self, name: str) -> dict:
        """What a derived file was computed from (file name -> fingerprint, None when absent then)."""
        return dict(self._provenance().get(name, {}).get("inputs", {}))

    def read_derived(self, name: str, *, remedy: str) -> pd.DataFrame:
        """Read a derived table, refusing it when missing or stale (``remedy`` says which command remakes it)."""
        path = self.root / name
        if not path.is_file():
            raise WorkspaceError(f"no {name}; {remedy}", path=str(self.root))
        if self.is_stale(name):
            raise StaleFileError(f"{name} is older than the flows it was computed from; {remedy}",
                                 path=str(self.root))
        return _read_parquet(path)

    # --- flows, labels, splits, descriptions ----------------------------------------------------

    def flow_columns(self) -> list[str]:
        import pyarrow.parquet as pq

        self._require(FLOWS)
        try:
            return list(pq.read_schema(self.flows_path).names)
        except Exception as err:
            raise WorkspaceError(f"{FLOWS} is damaged ({' '.join(str(err).split())[:120]})",
                                 path=str(self.root)) from None

    def flows(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The flow table (optionally only ``columns``; ones it lacks are left out)."""
        self._require(FLOWS)
        if columns is not None:
            present = set(self.flow_columns())
            columns = [c for c in columns if c in present]
        return _read_parquet(self.flows_path, columns=list(columns) if columns is not None else None)

    def flow_ids(self) -> np.ndarray:
        return self.flows(["flow_id"])["flow_id"].to_numpy(np.int64)

    def labels(self, label_col: str = "label") -> pd.DataFrame | None:
        """``flow_id`` + ``label_col`` (+ ``mission`` where known), from the flow table or labels.parquet;
        None for an unlabelled workspace."""
        cols = self.flow_columns()
        if label_col in cols:
            return self.flows(["flow_id", label_col, "mission"])
        path = self.root / LABELS
        if not path.is_file():
            return None
        if self.is_stale(LABELS):
            # flow ids are positions in the flow table: labels of an older table would name other flows
            raise StaleFileError(f"{LABELS} is older than the flows it labels; label the workspace again "
                                 "(e.g. `packetclip label ndpi`)", path=str(self.root))
        labels = _read_parquet(path)
        if "flow_id" not in labels.columns or label_col not in labels.columns:
            raise DatasetFormatError(f"{LABELS} needs 'flow_id' and {label_col!r} columns", path=str(path))
        keep = [c for c in ("flow_id", label_col, "mission") if c in labels.columns]
        return labels[keep].drop_duplicates("flow_id")

    def is_labelled(self, label_col: str = "label") -> bool:
        return label_col in self.flow_columns() or (self.root / LABELS).is_file()

    def labelled_flows(self, label_col: str = "label", columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Flows with their labels joined; unlabelled workspaces give the flows unchanged (no label column)."""
        flows = self.flows(columns)
        if label_col in flows.columns:
            return flows
        labels = self.labels(label_col)
        if labels is None:
            return flows
        extra = [c for c in labels.columns if c not in flows.columns or c == "flow_id"]
        return flows.merge(labels[extra], on="flow_id", how="left")

    def write_flows(self, flows: pd.DataFrame) -> Path:
        """The flow table, written whole (``import-csv``, labelled lab flows); ingest streams its own."""
        return self.write_table(FLOWS, flows)

    def write_labels(self, labels: pd.DataFrame) -> Path:
        """labels.parquet: one row per flow (``flow_id``, ``label``, ``mission``, ...)."""
        return self.write_table(LABELS, labels, inputs=(FLOWS,))

    def splits(self) -> pd.DataFrame:
        """``flow_id`` + ``split`` (train/val/test) as written by ``packetclip split``; refused when stale."""
        return self.read_derived(SPLITS, remedy="run `packetclip split` on this workspace")

    def has_splits(self) -> bool:
        return (self.root / SPLITS).is_file() and not self.is_stale(SPLITS)

    def split_flow_ids(self, split: str) -> np.ndarray:
        if split not in SPLIT_NAMES:
            raise PacketClipError(f"split must be one of {', '.join(SPLIT_NAMES)}, not {split!r}")
        table = self.splits()
        return table.loc[table["split"] == split, "flow_id"].to_numpy(np.int64)

    def write_splits(self, table: pd.DataFrame) -> Path:
        return self.write_table(SPLITS, table, inputs=(FLOWS,))

    def descriptions(self) -> pd.DataFrame:
        return self.read_derived(DESCRIPTIONS, remedy="run `packetclip describe` on this workspace")

    def write_descriptions(self, table: pd.DataFrame) -> Path:
        return self.write_table(DESCRIPTIONS, table, inputs=(FLOWS, LABELS))

    # --- packets --------------------------------------------------------------------------------

    def has_packets(self) -> bool:
        return self.packets_path.is_file()

    def packets(self, columns: Sequence[str] = ("packet_number", "flow_id")) -> pd.DataFrame:
        """Columns of the packet table other than the views (e.g. ``packet_number`` and ``flow_id`` to join
        per-packet labels); use :meth:`packet_views` for the views."""
        self._require(PACKETS)
        return _read_parquet(self.packets_path, columns=list(columns))

    def packet_views(self, flow_ids: Sequence[int] | np.ndarray | None = None, *,
                     first_k: int | None = None) -> PacketViews:
        """Masked packet views (optionally of ``flow_ids`` only, and only each flow's first ``first_k``)."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.dataset as ds

        path = self.packets_path
        if not path.is_file():
            raise WorkspaceError("no packets.parquet: this workspace holds flow rows only (e.g. from "
                                 "`packetclip import-csv`); packet encoders need `packetclip ingest`",
                                 path=str(self.root))
        try:
            dataset = ds.dataset(path, format="parquet")
            names = dataset.schema.names
        except Exception as err:
            raise WorkspaceError(f"{PACKETS} is damaged ({' '.join(str(err).split())[:120]})",
                                 path=str(self.root)) from None
        missing = [c for c in PACKET_COLUMNS if c not in names]
        if missing:
            raise DatasetFormatError(f"packet table lacks column(s) {', '.join(missing)}", path=str(path))
        flt = None
        if flow_ids is not None:
            flt = pc.field("flow_id").isin(pa.array(np.asarray(flow_ids, np.int64)))
        table = dataset.to_table(columns=list(PACKET_COLUMNS), filter=flt)
        column = table.column("view").combine_chunks()
        if not pa.types.is_fixed_size_binary(column.type):
            raise DatasetFormatError(f"column 'view' must be fixed-size binary, not {column.type}", path=str(path))
        width = column.type.byte_width
        n = len(column)
        if n == 0:
            views = np.zeros((0, width), np.uint8)
        else:
            views = np.frombuffer(column.buffers()[1], dtype=np.uint8, count=n * width,
                                  offset=column.offset * width).reshape(n, width)

        def col(name, dtype):
            return table.column(name).to_numpy().astype(dtype, copy=False)

        out = PacketViews(views, col("flow_id", np.int64), col("direction", np.int8), col("ts_ns", np.int64),
                          col("file_index", np.int32))
        if first_k is not None and n:
            order = np.argsort(out.flow_id, kind="stable")
            fid = out.flow_id[order]
            starts = np.r_[0, np.flatnonzero(np.diff(fid)) + 1]
            rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
            keep = np.sort(order[rank < first_k])
            out = PacketViews(out.views[keep], out.flow_id[keep], out.direction[keep], out.ts_ns[keep],
                              out.file_index[keep])
        return out

    def view_settings(self) -> dict:
        """What determines the packet views (width, masking): part of every embedding-store key."""
        s = self.manifest.get("settings", {})
        return {"view_bytes": s.get("view_bytes"), "mask": s.get("mask")}

    # --- embedding store ------------------------------------------------------------------------

    def embedding_key(self, encoder_fingerprint: str, **view_settings) -> str:
        payload = json.dumps({"encoder": encoder_fingerprint, "views": {**self.view_settings(), **view_settings}},
                             sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:24]

    def embeddings(self, encoder_fingerprint: str, flow_ids: Sequence[int] | np.ndarray,
                   compute: Callable[[np.ndarray], np.ndarray], **view_settings) -> np.ndarray:
        """Embeddings of ``flow_ids`` (rows in that order) from the store; flows not stored yet are computed
        with ``compute(missing_flow_ids) -> float32 [m, d]`` and added. Entries are keyed by the encoder's
        fingerprint and the view settings, and dropped when the flow or packet tables change."""
        from safetensors.numpy import load_file, save_file

        flow_ids = np.asarray(flow_ids, np.int64)
        key = self.embedding_key(encoder_fingerprint, **view_settings)
        name = f"{EMBEDDINGS}/{key}.safetensors"
        path = self.root / name
        stored_ids = np.zeros(0, np.int64)
        stored = None
        if path.is_file() and not self.is_stale(name):
            try:
                data = load_file(str(path))
                stored_ids, stored = data["flow_id"], data["embedding"]
            except Exception:
                stored_ids, stored = np.zeros(0, np.int64), None
        missing = np.setdiff1d(np.unique(flow_ids), stored_ids)
        if missing.size:
            new = np.asarray(compute(missing), np.float32)
            if new.shape[0] != missing.size:
                raise PacketClipError(f"encoder returned {new.shape[0]} rows for {missing.size} flows")
            all_ids = np.concatenate([stored_ids, missing])
            all_emb = new if stored is None else np.concatenate([stored, new])
            order = np.argsort(all_ids)
            stored_ids, stored = all_ids[order], np.ascontiguousarray(all_emb[order])
            with self.atomic(name) as tmp:
                save_file({"flow_id": stored_ids, "embedding": stored}, str(tmp),
                          metadata={"encoder": encoder_fingerprint, "views": json.dumps(view_settings, sort_keys=True)})
            self._record_inputs(name, [n for n in (FLOWS, PACKETS) if (self.root / n).is_file()])
        pos = np.searchsorted(stored_ids, flow_ids)
        return stored[pos]

    # --- helpers --------------------------------------------------------------------------------

    def _require(self, name: str) -> None:
        if not (self.root / name).is_file():
            raise WorkspaceError(f"workspace has no {name}; create it with `packetclip ingest`, "
                                 "`packetclip lab synth` or `packetclip import-csv`", path=str(self.root))


def _read_parquet(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    try:
        return pd.read_parquet(path, columns=columns)
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise WorkspaceError(f"not a readable Parquet table ({type(err).__name__}: "
                             f"{' '.join(str(err).split())[:120]})", path=str(path)) from None


def now_unix() -> float:
    return time.time()


_PROTOCOL_NAMES = {1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 41: "IPv6", 47: "GRE", 50: "ESP", 51: "AH",
                   58: "ICMPv6", 89: "OSPF", 103: "PIM", 112: "VRRP", 132: "SCTP"}


def protocol_name(number) -> str:
    """'TCP', 'IGMP', ... for an IP protocol number; 'proto N' for the rest (never a bare number)."""
    try:
        n = int(number)
    except (TypeError, ValueError):
        return str(number)
    return _PROTOCOL_NAMES.get(n, f"proto {n}")
