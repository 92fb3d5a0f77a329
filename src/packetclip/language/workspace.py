"""``packetclip describe``'s library side: labelled flows of a workspace in, descriptions.parquet out."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from packetclip.errors import DatasetFormatError, PacketClipError
from packetclip.language.context import add_host_context

FLOWS = "flows.parquet"
LABELS = "labels.parquet"
DESCRIPTIONS = "descriptions.parquet"


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as err:
        raise DatasetFormatError(f"not a readable Parquet table ({type(err).__name__}: {str(err)[:120]})",
                                 path=path) from None


def load_labelled_flows(workspace: str | Path, *, label_col: str = "label") -> pd.DataFrame:
    """``WORKSPACE/flows.parquet`` with its labels; labels come from its own ``label`` column, else from
    ``WORKSPACE/labels.parquet`` joined on ``flow_id``."""
    root = Path(workspace)
    if not root.is_dir():
        raise PacketClipError("workspace folder not found", path=root)
    flows_path = root / FLOWS
    if not flows_path.is_file():
        raise PacketClipError(f"workspace has no {FLOWS}; create it with `packetclip ingest`, "
                              "`packetclip lab synth` or `packetclip import-csv`", path=root)
    flows = _read_parquet(flows_path)
    if label_col in flows.columns:
        return flows
    labels_path = root / LABELS
    if not labels_path.is_file():
        raise DatasetFormatError(f"flows have no {label_col!r} column and the workspace has no {LABELS}; "
                                 "describe needs labelled flows", path=flows_path)
    labels = _read_parquet(labels_path)
    for column in ("flow_id", label_col):
        for name, table in (("flows", flows), ("labels", labels)):
            if column == label_col and name == "flows":
                continue
            if column not in table.columns:
                raise DatasetFormatError(f"{name} table has no {column!r} column",
                                         path=flows_path if name == "flows" else labels_path)
    extra = [c for c in labels.columns if c not in flows.columns or c == "flow_id"]
    return flows.merge(labels[extra].drop_duplicates("flow_id"), on="flow_id", how="left")


def balanced_sample(flows: pd.DataFrame, limit: int | None, *, seed: int = 0, label_col: str = "label") -> pd.DataFrame:
    """At most ``limit`` flows, spread as evenly as the labels allow (seeded); all flows when ``limit`` is None."""
    if limit is None or limit >= len(flows):
        return flows
    if limit < 1:
        raise PacketClipError(f"limit must be at least 1, not {limit}")
    rng = np.random.default_rng(seed)
    groups = {k: rng.permutation(idx) for k, idx in flows.groupby(label_col, sort=True, dropna=True).indices.items()}
    take: list[int] = []
    quota = {k: 0 for k in groups}
    remaining = limit
    while remaining > 0:
        open_groups = [k for k in groups if quota[k] < len(groups[k])]
        if not open_groups:
            break
        share = max(1, remaining // len(open_groups))
        for k in open_groups:
            n = min(share, len(groups[k]) - quota[k], remaining)
            quota[k] += n
            remaining -= n
            if remaining == 0:
                break
    for k, n in quota.items():
        take.extend(groups[k][:n].tolist())
    return flows.iloc[sorted(take)]


def describe_workspace(workspace: str | Path, describer, *, limit: int | None = None,
                       out: str | Path | None = None, progress: Callable[[int], None] | None = None,
                       on_total: Callable[[int], None] | None = None) -> tuple[Path, pd.DataFrame]:
    """Describe a workspace's labelled flows and write ``descriptions.parquet`` (or ``out``)."""
    flows = load_labelled_flows(workspace, label_col=describer.label_col)
    if getattr(describer, "host_context", True):
        # Before sampling: a flow's context is what its source and destination did in the whole table.
        flows = add_host_context(flows)
    flows = balanced_sample(flows, limit, seed=describer.seed, label_col=describer.label_col)
    table = describer.describe(flows, progress=progress, on_total=on_total)
    target = Path(out) if out is not None else Path(workspace) / DESCRIPTIONS
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(target, index=False)
    except OSError as err:
        raise PacketClipError(f"cannot write descriptions: {err.strerror or err}", path=target) from None
    return target, table
