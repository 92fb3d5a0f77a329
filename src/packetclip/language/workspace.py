"""``packetclip describe``'s library side: a workspace's flows in, its descriptions table out.

Labels come from :meth:`Workspace.labelled_flows` (the same place ``split`` reads them). A workspace without
labels is described too: the texts are then label-free (readings and host context only, no "A network
traffic of ..." opening and no mission concepts), since analysts have unlabelled traffic and detection
explains flows it has never seen a label for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from packetclip.errors import DatasetFormatError, PacketClipError
from packetclip.language.context import add_host_context


def _workspace(workspace):
    from packetclip.traffic.workspace import Workspace

    return workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)


def load_labelled_flows(workspace, *, label_col: str = "label", require_labels: bool = True) -> pd.DataFrame:
    """The workspace's flows with their labels (its own ``label`` column, else its labels table joined on
    ``flow_id``). ``require_labels=False`` returns an unlabelled workspace's flows unchanged."""
    ws = _workspace(workspace)
    flows = ws.labelled_flows(label_col)
    if require_labels and label_col not in flows.columns:
        raise DatasetFormatError(f"the flows have no {label_col!r} column and the workspace has no labels; "
                                 "label it first (e.g. `packetclip label ndpi`)", path=str(ws.root))
    return flows


def balanced_sample(flows: pd.DataFrame, limit: int | None, *, seed: int = 0, label_col: str = "label") -> pd.DataFrame:
    """At most ``limit`` flows, spread as evenly as the labels allow (seeded); all flows when ``limit`` is None.

    Without a ``label_col`` column (an unlabelled workspace) the sample is a seeded uniform one. Rows keep
    their table order either way.
    """
    if limit is None or limit >= len(flows):
        return flows
    if limit < 1:
        raise PacketClipError(f"--limit must be at least 1, not {limit}")
    rng = np.random.default_rng(seed)
    if label_col not in flows.columns:
        return flows.iloc[np.sort(rng.choice(len(flows), size=limit, replace=False))]
    groups = {k: rng.permutation(idx) for k, idx in flows.groupby(label_col, sort=True, dropna=True).indices.items()}
    take: list[int] = []
    quota = {k: 0 for k in groups}
    remaining = limit
    while remaining > 0:
        open_groups = [k for k in groups if quota[k] < len(groups[k])]
        if not open_groups:
            break
        if remaining < len(open_groups):
            # fewer seats than labels: a seeded draw decides which labels get one, never the alphabet
            for i in rng.choice(len(open_groups), size=remaining, replace=False):
                quota[open_groups[int(i)]] += 1
            break
        share = remaining // len(open_groups)
        for k in open_groups:
            n = min(share, len(groups[k]) - quota[k])
            quota[k] += n
            remaining -= n
    for k, n in quota.items():
        take.extend(groups[k][:n].tolist())
    return flows.iloc[sorted(take)]


def describe_workspace(workspace, describer, *, limit: int | None = None, out: str | Path | None = None,
                       progress: Callable[[int], None] | None = None,
                       on_total: Callable[[int], None] | None = None) -> tuple[Path, pd.DataFrame]:
    """Describe a workspace's flows and write its descriptions table; returns (path, table).

    The table always goes into the workspace (through :meth:`Workspace.write_descriptions`, which records
    the flow and label tables it came from, so later stages refuse it once those change). ``out`` is a
    folder for what the run produces beside it: a copy of the table is written there, and
    :func:`figures_dir` puts the figures there. ``limit`` spreads over labels (:func:`balanced_sample`).
    """
    ws = _workspace(workspace)
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise PacketClipError("--out must be a folder (descriptions stay in the workspace; figures and a copy "
                              "of the table go there)", path=str(out))
    flows = load_labelled_flows(ws, label_col=describer.label_col, require_labels=False)
    if getattr(describer, "host_context", True):
        # Before sampling: a flow's context is what its source and destination did in the whole table.
        flows = add_host_context(flows)
    flows = balanced_sample(flows, limit, seed=describer.seed, label_col=describer.label_col)
    table = describer.describe(flows, progress=progress, on_total=on_total)
    target = ws.write_descriptions(table)
    if out is not None:
        from packetclip.traffic.workspace import DESCRIPTIONS

        folder = Path(out)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            table.to_parquet(folder / DESCRIPTIONS, index=False)
        except OSError as err:
            raise PacketClipError(f"cannot write descriptions: {err.strerror or err}", path=str(folder)) from None
    return target, table


def figures_dir(workspace, out: str | Path | None = None) -> Path:
    """Where ``describe --figures`` draws: under ``out`` when given, else the workspace's figures folder."""
    if out is not None:
        return Path(out)
    return _workspace(workspace).path("figures")
