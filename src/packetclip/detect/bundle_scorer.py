"""A reasoning bundle (``packetclip train``) as the detector's model: the mission GNN scores each flow when it
ends, and its alerts carry the GNN's mission, the concepts that carried the decision (with ATT&CK ids) and
its explanation sentence.

The bundle reads flow-table rows (CICFlowMeter columns, :meth:`Bundle.embed_rows`), which exist only once a
flow has ended, so this scorer makes no early decisions: a flood or a scan is reported when its flows expire
(idle timeout, TCP close, eviction at the flow cap, end of capture). Limits of this first adapter, each said
where it matters:

* host context (bundles trained with ``host_context``) is computed over the flows that ended together
  (one expiry event), not over every flow of their 10-s window as in training;
* past-only windows (time steps ``src``/``dst``/``global``) span the flows of one expiry event; the default
  time step, ``flow``, needs none;
* the bundle stores one threshold (1 % FPR on its validation flows): ``--fpr`` accepts only that rate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from packetclip.detect.scorer import ModelBundleError, Scores
from packetclip.errors import PacketClipError


class BundleScorer:
    """``BundleScorer.load(folder)``; the :class:`~packetclip.detect.scorer.Scorer` contract at flow expiry.

    Mission scores: the bundle's attack score (``1 - p(Benign)``) in the column of its most likely attack
    mission, 0 elsewhere, so that the detector's per-mission threshold test is the bundle's own rule."""

    needs_flow_rows = True

    def __init__(self, bundle, name: str = "bundle"):
        from packetclip.traffic.labels import mission_of

        self.bundle = bundle
        self.name = name
        self.missions = tuple(bundle.missions)
        fine = [c for c in bundle.fine_classes if c != "Benign"]
        # each mission is also a class of its own: the fine class when the GNN's fine head names a class of
        # another mission than the one it alerts for
        self.classes = tuple(dict.fromkeys(["Benign", *fine, *[m for m in self.missions if m != "Benign"]]))
        self.class_mission = {c: (c if c in self.missions else (mission_of(c) or "Benign")) for c in self.classes}
        self.window_s = 10.0
        self.info = {"bundle": str(name), "threshold": bundle.threshold, "default_fpr": 0.01}

    @classmethod
    def load(cls, folder: str | Path) -> "BundleScorer":
        from packetclip.reasoning.bundle import Bundle

        bundle = Bundle.load(folder)
        if bundle.meta.get("traffic") != "flow":
            raise ModelBundleError("detect reads flow-table bundles only (this one embeds packets; train it "
                                   "with the default flow-table encoder)", path=str(folder))
        return cls(bundle, Path(folder).name)

    def thresholds(self, fpr: float | None = None) -> dict[str, float]:
        target = float(self.bundle.meta.get("calibration", {}).get("target_fpr", 0.01)) \
            if isinstance(self.bundle.meta.get("calibration"), dict) else 0.01
        if fpr is not None and abs(float(fpr) - target) > 1e-9:
            raise ModelBundleError(f"--fpr {fpr:g} is not calibrated in this bundle; it holds one threshold, "
                                   f"for {target:g}")
        return {m: float(self.bundle.threshold) for m in self.missions if m != "Benign"}

    def score(self, decisions) -> Scores:
        """Early decisions: the bundle makes none (every probability 0, no alert)."""
        n = len(decisions)
        return Scores(np.zeros((n, len(self.classes)), np.float32), np.zeros((n, len(self.missions)), np.float32))

    def score_rows(self, rows) -> tuple[Scores, np.ndarray]:
        """Scores of ended flows (a pandas frame of flow-table rows) and their raw embeddings (for
        :meth:`explain`)."""
        b = self.bundle
        if not len(rows):
            z = np.zeros((0, 0), np.float32)
            return self.score(z), z
        try:
            emb = b.embed_rows(rows)
        except PacketClipError:
            raise
        times = rows["first_ts_ns"].to_numpy(np.int64)
        table = b.score(emb, keys=b.sequence_keys(rows), times_ns=times)
        p = table[[f"p_{m}" for m in self.missions]].to_numpy(np.float32)
        score = table["score"].to_numpy(np.float32)
        attack = p.copy()
        if "Benign" in self.missions:
            attack[:, self.missions.index("Benign")] = -1.0
        best = attack.argmax(axis=1)
        mission = np.zeros_like(p)
        mission[np.arange(len(p)), best] = score
        fine = np.zeros((len(p), len(self.classes)), np.float32)
        index = {c: i for i, c in enumerate(self.classes)}
        fine_names = table["fine_class"].to_numpy(object)
        for r, (f, j) in enumerate(zip(fine_names, best)):
            m = self.missions[j]
            if f in index and self.class_mission[f] == m:
                fine[r, index[f]] = 1.0
            else:
                fine[r, index.get(m, 0)] = 1.0
        return Scores(fine, mission), emb

    def explain(self, embedding: np.ndarray, mission: str) -> tuple[list[dict], str]:
        """The GNN's concepts (with ATT&CK ids) and sentence for one flow's alert."""
        concepts, sentence = self.bundle.explain(embedding, mission=mission)
        out = [{"concept": str(w), "attack_id": _technique(t)} for w, t, _ in concepts]
        return out or [{"concept": mission, "attack_id": None}], sentence


def _technique(t) -> str | None:
    """An ATT&CK technique id as the EVE schema wants it (``T1234`` or ``T1234.001``), else None."""
    import re

    if t is None:
        return None
    m = re.search(r"T\d{4}(\.\d{3})?", str(t))
    return m.group(0) if m else None
