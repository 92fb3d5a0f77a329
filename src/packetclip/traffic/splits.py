"""Leakage-safe train/val/test splits: whole capture files or whole flows, never single packets.

Packets of one flow are near-copies of each other (same addresses, sizes, timing); putting some in
train and others in test measures memory, not detection. So rows are grouped — by capture file
(strictest: nothing of a test capture was seen in training) or by flow — and every group goes to one
split. Within that constraint the assignment is stratified: groups are placed one by one (largest
first, ties in seeded random order) into the split whose per-class shares move closest to the
targets. The result depends only on the data and the seed.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from packetclip.errors import DatasetFormatError, PacketClipError

SPLITS: tuple[str, ...] = ("train", "val", "test")
CAPTURE_COLUMNS: tuple[str, ...] = ("capture", "file_index")
FLOW_COLUMN = "flow_id"


class SplitWarning(UserWarning):
    """A split could not be fully stratified (a class has too few groups)."""


def group_keys(df: pd.DataFrame, by: str) -> pd.Series:
    """The group each row belongs to: its capture file (``by="capture"``) or its flow (``by="flow"``).

    Flow groups include the capture when the table has one, so per-capture flow ids stay distinct.
    """
    capture_col = next((c for c in CAPTURE_COLUMNS if c in df.columns), None)
    if by == "capture":
        if capture_col is None:
            raise DatasetFormatError(
                f"cannot split by capture: the table has none of the columns {', '.join(CAPTURE_COLUMNS)}"
            )
        return df[capture_col].astype(str)
    if by == "flow":
        if FLOW_COLUMN not in df.columns:
            raise DatasetFormatError(f"cannot split by flow: the table has no '{FLOW_COLUMN}' column")
        flow = df[FLOW_COLUMN].astype(str)
        return flow if capture_col is None else df[capture_col].astype(str) + "/" + flow
    raise PacketClipError(f"--by must be 'capture' or 'flow', not {by!r}")


def group_split(
    df: pd.DataFrame,
    *,
    by: str = "capture",
    label_col: str | None = "label",
    test_size: float = 0.2,
    val_size: float = 0.1,
    seed: int = 0,
) -> pd.Series:
    """Assign every row to ``"train"``, ``"val"`` or ``"test"`` with whole groups per split.

    ``label_col`` (if present in ``df``) is stratified on; without it, only row counts are balanced.
    ``val_size=0`` gives train/test only. Warns (:class:`SplitWarning`) when a class lives in fewer
    groups than there are splits, since it then cannot appear in all of them.
    """
    if not (0 <= test_size < 1 and 0 <= val_size < 1 and test_size + val_size < 1):
        raise PacketClipError(f"--test-size and --val-size must be in [0, 1) with a sum below 1, "
                              f"got {test_size} and {val_size}")
    fractions = np.array([1.0 - test_size - val_size, val_size, test_size])
    active = fractions > 0
    groups = group_keys(df, by)
    if df.empty:
        return pd.Series([], index=df.index, dtype=object, name="split")

    labelled = label_col is not None and label_col in df.columns
    labels = df[label_col].astype(object).where(df[label_col].notna(), "<none>").astype(str) if labelled \
        else pd.Series("<all>", index=df.index)
    group_codes, group_names = pd.factorize(groups, sort=True)
    class_codes, class_names = pd.factorize(labels, sort=True)
    n_groups, n_classes = len(group_names), len(class_names)
    counts = np.zeros((n_groups, n_classes), dtype=np.float64)
    np.add.at(counts, (group_codes, class_codes), 1.0)

    n_active = int(active.sum())
    if n_groups < n_active:
        warnings.warn(
            f"only {n_groups} {by} group(s) for {n_active} splits: some splits will be empty", SplitWarning,
            stacklevel=2,
        )
    if labelled:
        groups_per_class = (counts > 0).sum(axis=0)
        thin = [f"{class_names[c]} ({groups_per_class[c]})" for c in range(n_classes)
                if groups_per_class[c] < n_active]
        if thin:
            warnings.warn(
                f"classes in fewer {by} groups than the {n_active} splits, so not in every split: "
                + ", ".join(thin), SplitWarning, stacklevel=2,
            )

    if n_groups > _GREEDY_MAX_GROUPS:
        assignment = _assign_groups_by_class(counts, fractions, seed)
    else:
        assignment = _assign_groups(counts, fractions, seed)
    split_of_group = np.array(SPLITS, dtype=object)[assignment]
    return pd.Series(split_of_group[group_codes], index=df.index, dtype=object, name="split")


_GREEDY_MAX_GROUPS = 5000


def _assign_groups_by_class(counts: np.ndarray, fractions: np.ndarray, seed: int) -> np.ndarray:
    """Many small groups (e.g. flows): within each group's majority class, cut a seeded shuffle of the
    groups at the target fractions of that class's rows. Vectorised; as good as greedy when every
    group is a small part of its class."""
    rng = np.random.default_rng(seed)
    n_groups = counts.shape[0]
    majority = counts.argmax(axis=1)
    sizes = counts.sum(axis=1)
    order = rng.permutation(n_groups)
    order = order[np.argsort(majority[order], kind="stable")]
    sorted_sizes = sizes[order]
    sorted_class = majority[order]
    cumulative = np.cumsum(sorted_sizes)
    class_start = np.zeros(counts.shape[1] + 1)
    totals = np.bincount(sorted_class, weights=sorted_sizes, minlength=counts.shape[1])
    class_start[1:] = np.cumsum(totals)
    # Position of each group's middle within its class, as a fraction of the class's rows.
    within = (cumulative - sorted_sizes / 2.0 - class_start[sorted_class]) / np.maximum(totals[sorted_class], 1.0)
    edges = np.cumsum(fractions)[:-1]
    split_sorted = np.searchsorted(edges, within, side="right")
    assignment = np.empty(n_groups, dtype=np.int64)
    assignment[order] = split_sorted
    return assignment


def _assign_groups(counts: np.ndarray, fractions: np.ndarray, seed: int) -> np.ndarray:
    """Greedy stratified placement of groups (rows of ``counts``) into splits; returns split per group."""
    n_groups, n_classes = counts.shape
    rng = np.random.default_rng(seed)
    sizes = counts.sum(axis=1)
    shuffled = rng.permutation(n_groups)
    order = shuffled[np.argsort(-sizes[shuffled], kind="stable")]

    class_total = counts.sum(axis=0)
    scale = 1.0 / np.maximum(class_total, 1.0)
    targets = fractions[:, None] * class_total[None, :]          # splits x classes
    size_targets = fractions * sizes.sum()
    size_scale = 1.0 / max(sizes.sum(), 1.0)
    filled = np.zeros_like(targets)
    size_filled = np.zeros(len(fractions))
    allowed = fractions > 0
    assignment = np.zeros(n_groups, dtype=np.int64)

    for g in order:
        row = counts[g]
        before = ((filled - targets) * scale) ** 2
        after = ((filled + row - targets) * scale) ** 2
        delta = (after - before).sum(axis=1)
        size_before = ((size_filled - size_targets) * size_scale) ** 2
        size_after = ((size_filled + sizes[g] - size_targets) * size_scale) ** 2
        delta = delta + (size_after - size_before)
        delta[~allowed] = np.inf
        best = int(np.argmin(delta))
        assignment[g] = best
        filled[best] += row
        size_filled[best] += sizes[g]

    # A requested split left empty while another holds several groups gets that split's smallest group.
    for split in np.flatnonzero(allowed):
        if (assignment == split).any():
            continue
        per_split = np.bincount(assignment, minlength=len(fractions))
        donor = int(np.argmax(per_split))
        if per_split[donor] < 2:
            break
        members = np.flatnonzero(assignment == donor)
        smallest = members[np.argmin(sizes[members])]
        assignment[smallest] = split
    return assignment


def split_summary(split: pd.Series, labels: pd.Series | None = None) -> pd.DataFrame:
    """Rows per label (rows of the result) and split (columns), with a ``total`` row and column."""
    if labels is None:
        labels = pd.Series("(all)", index=split.index)
    table = pd.crosstab(labels.astype(object).fillna("<none>"), split)
    table = table.reindex(columns=[s for s in SPLITS if s in table.columns], fill_value=0)
    table.loc["total"] = table.sum(axis=0)
    table["total"] = table.sum(axis=1)
    table.index.name = "label"
    return table


def propagate_split(packets: pd.DataFrame, flow_splits: pd.DataFrame) -> pd.Series:
    """The split of each packet, taken from its flow's split (so a flow never straddles splits).

    ``flow_splits`` has ``flow_id`` and ``split`` (as in ``splits.parquet``) plus ``capture`` and/or
    ``file_index`` when flow ids are per capture; every such column the two tables share is matched.
    Packets whose flow has no split (e.g. non-IP packets with no flow) get ``<NA>``.
    """
    if FLOW_COLUMN not in packets.columns or FLOW_COLUMN not in flow_splits.columns:
        raise DatasetFormatError(f"both tables need a '{FLOW_COLUMN}' column to propagate a split")
    if "split" not in flow_splits.columns:
        raise DatasetFormatError("the flow split table has no 'split' column")
    keys = [c for c in (*CAPTURE_COLUMNS, FLOW_COLUMN) if c in packets.columns and c in flow_splits.columns]
    lookup = flow_splits[keys + ["split"]].drop_duplicates()
    if lookup.duplicated(keys).any():
        raise DatasetFormatError("a flow has two different splits in the split table")
    merged = packets[keys].merge(lookup, on=keys, how="left")
    return pd.Series(merged["split"].to_numpy(), index=packets.index, name="split", dtype=object)


def split_workspace(
    workspace,
    *,
    by: str = "capture",
    test_size: float = 0.2,
    val_size: float = 0.1,
    seed: int = 0,
    label_col: str = "label",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a workspace's flows and write its splits table (through :class:`Workspace`, with the flow table
    it was computed from recorded, so a re-ingest makes it stale instead of silently wrong).

    Labels come from :meth:`Workspace.labelled_flows`, the same place ``describe`` reads them. Returns the
    written table (``flow_id``, the capture columns, ``split``) and the summary (:func:`split_summary`).
    Unlabelled workspaces are split by row counts only. ``by="capture"`` is refused, with a hint to use
    ``by="flow"``, when the flows have no capture column (an imported CSV: its files are cut per class or
    day, so they are not captures) or come from a single capture (every flow would land in train).
    """
    from packetclip.traffic.workspace import Workspace

    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)
    flows = ws.labelled_flows(label_col, columns=[FLOW_COLUMN, *CAPTURE_COLUMNS])
    if FLOW_COLUMN not in flows.columns:
        raise DatasetFormatError(f"the flow table has no '{FLOW_COLUMN}' column", path=str(ws.flows_path))
    if by == "capture":
        capture_col = next((c for c in CAPTURE_COLUMNS if c in flows.columns), None)
        if capture_col is None:
            raise DatasetFormatError("cannot split by capture: these flows have no capture column (imported CSV "
                                     "files are cut per class or day, not per capture); use --by flow",
                                     path=str(ws.root))
        n_captures = flows[capture_col].nunique()
        if n_captures < 2:
            raise DatasetFormatError(f"cannot split by capture: the workspace holds {n_captures} capture, so every "
                                     "flow would land in one split; use --by flow", path=str(ws.root))
    labelled = label_col in flows.columns
    split = group_split(flows, by=by, label_col=label_col if labelled else None,
                        test_size=test_size, val_size=val_size, seed=seed)
    keys = [c for c in (*CAPTURE_COLUMNS, FLOW_COLUMN) if c in flows.columns]
    out = flows[keys].copy()
    out["split"] = split.astype(str).to_numpy()
    out_path = ws.write_splits(out)
    summary = split_summary(split, flows[label_col] if labelled else None)
    summary.attrs["groups_per_split"] = (
        pd.Series(group_keys(flows, by).to_numpy()).groupby(split.to_numpy()).nunique().to_dict()
    )
    summary.attrs["path"] = str(out_path)
    return out, summary
