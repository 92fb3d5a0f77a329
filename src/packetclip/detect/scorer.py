"""What the detector asks of a model, and the flow-feature model it ships with.

:class:`Scorer` is the contract: ``score(decisions) -> Scores`` over a batch of decision points
(:class:`~packetclip.detect.features.Decisions`), plus ``classes`` (fine classes), ``class_mission`` and
per-mission ``thresholds`` calibrated for a target false-positive rate. Any model that meets it plugs in
(the reasoning bundle through an adapter; the packet encoder behind a cascade).

:class:`EarlyFlowScorer` is the cheap first stage: a small ensemble of two-layer MLPs over log-scaled
early-decision features, multi-class over the fine classes. A mission's score is the tempered mean log-odds of
its classes (not a summed probability: those sit at 1.0 for any confident decision, benign or not), and it is 0
where the decision lacks the host evidence the mission needs (:data:`EVIDENCE`: volume for a DoS, breadth for a
scan, floors chosen on validation flows). Inference is a few numpy matrix products per batch (~1 µs per
decision and member; gradient-boosted trees cost ~40 µs per decision here and were the bottleneck). Saved as a
folder: ``config.json`` (features, classes, evidence floors, thresholds per target FPR, validation figures) and
``model.safetensors``.

Thresholds are never written in code: :func:`calibrate` takes, on validation flows that are benign, the
highest mission probability each flow reached over all its decisions, and stores for each target FPR of
:data:`FPR_GRID` the quantile that lets that share of benign flows alert (the flow share is what an analyst
sees: one false alert per flow, whatever the number of decisions).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from packetclip.errors import PacketClipError
from packetclip.detect.features import FEATURES

#: Target false-positive rates (share of benign validation flows) a bundle stores thresholds for.
DEFAULT_MODEL = Path(__file__).with_name("model")
FPR_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
DEFAULT_FPR = 1e-3
SCORER_TYPE = "packetclip-early-flow-mlp"
#: Mission scores are sigmoid(log-odds / TEMPERATURE): only a resolution, the ranking is the log-odds'.
TEMPERATURE = 8.0


class ModelBundleError(PacketClipError):
    """A detector model folder is missing, incomplete, or does not match this version."""


@dataclass
class Scores:
    """Per decision: fine-class probabilities [n, C] and mission probabilities [n, M] (``missions`` order)."""

    fine: np.ndarray
    mission: np.ndarray


@runtime_checkable
class Scorer(Protocol):
    classes: tuple[str, ...]
    missions: tuple[str, ...]
    class_mission: dict[str, str]

    def score(self, decisions) -> Scores: ...

    def thresholds(self, fpr: float) -> dict[str, float]: ...


def _lse(z: np.ndarray) -> np.ndarray:
    """log-sum-exp over the last axis (no underflow however far apart the logits)."""
    m = z.max(axis=-1)
    return m + np.log(np.exp(z - m[..., None]).sum(axis=-1))


def mission_matrix(classes, missions, class_mission) -> np.ndarray:
    m = np.zeros((len(classes), len(missions)), np.float32)
    for i, c in enumerate(classes):
        m[i, missions.index(class_mission[c])] = 1.0
    return m


def transform(X: np.ndarray) -> np.ndarray:
    """Counts and rates span nine orders of magnitude: log1p of the (non-negative) features."""
    return np.log1p(np.maximum(np.asarray(X, np.float32), 0.0))


@dataclass
class EarlyFlowScorer:
    """A small MLP over log features (see the module doc); numpy at inference, one batch per call."""

    classes: tuple[str, ...]
    class_mission: dict[str, str]
    weights: dict = field(default_factory=dict)        # mean, std, w0, b0, w1, b1, w2, b2 (numpy)
    calibration: dict = field(default_factory=dict)     # {str(fpr): {mission: threshold}}
    info: dict = field(default_factory=dict)
    window_s: float = 10.0
    evidence: dict = field(default_factory=dict)        # {mission: {"features": [...], "min": float}}
    temperature: float = TEMPERATURE

    def __post_init__(self):
        self.classes = tuple(str(c) for c in self.classes)
        self.missions = tuple(dict.fromkeys(["Benign", *[self.class_mission[c] for c in self.classes]]))
        self._m = mission_matrix(self.classes, self.missions, self.class_mission)
        self._inside = self._m.astype(np.float64)

    def _short(self, X: np.ndarray) -> dict[int, np.ndarray]:
        """Per gated mission (column), the decisions whose host context lacks the evidence it needs
        (:data:`EVIDENCE`)."""
        return {self.missions.index(m): evidence_of(X, spec["features"]) < float(spec["min"])
                for m, spec in self.evidence.items() if m in self.missions}

    def logits(self, X: np.ndarray) -> np.ndarray:
        """Class logits of every member [members, n, classes]."""
        w = self.weights
        x = (transform(X) - w["mean"]) / w["std"]
        out = []
        for k in range(len(w["w0"])):          # plain 2-D products (BLAS); stacked ones ran ~10x slower
            h = np.maximum(x @ w["w0"][k] + w["b0"][k], 0.0)
            h = np.maximum(h @ w["w1"][k] + w["b1"][k], 0.0)
            out.append(h @ w["w2"][k] + w["b2"][k])
        return np.stack(out)

    def score(self, decisions) -> Scores:
        """Fine: the members' mean class probabilities. Mission: ``sigmoid(odds / temperature)`` where ``odds``
        is the members' mean log-odds of the mission's classes against all other classes; 0 where the decision
        lacks the mission's host evidence. (Softmax probabilities of a confident model sit at 1.0 in float32 for
        attacks and for the odd real benign flow alike, so low-FPR thresholds fell on ties at 1.0; tempered
        odds keep the ranking, and averaging members damps the one member that is wrongly sure.)"""
        X = decisions.X if hasattr(decisions, "X") else np.asarray(decisions, np.float32)
        if not len(X):
            return Scores(np.zeros((0, len(self.classes)), np.float32), np.zeros((0, len(self.missions)), np.float32))
        X = np.asarray(X, np.float32)
        z = self.logits(X).astype(np.float64)
        e = np.exp(z - z.max(axis=2, keepdims=True))      # float64: no underflow below a logit gap of ~700
        total = e.sum(axis=2, keepdims=True)
        p = (e / total).mean(axis=0)
        inside = e @ self._inside                          # [members, n, missions]: mass of each mission's classes
        outside = e @ (1.0 - self._inside)                 # the rest, summed as such (total - inside rounds to 0)
        with np.errstate(divide="ignore"):                 # log-odds: the mission's classes against all others
            mission = (np.log(inside) - np.log(outside)).mean(axis=0)
        mission = 1.0 / (1.0 + np.exp(-np.clip(mission / self.temperature, -50, 50)))
        mission[:, self.missions.index("Benign")] = p[:, self.classes.index("Benign")]
        for j, short in self._short(X).items():
            mission[short, j] = 0.0
        return Scores(p.astype(np.float32), mission.astype(np.float32))

    def thresholds(self, fpr: float | None = None) -> dict[str, float]:
        """Per attack mission, the calibrated threshold for target FPR ``fpr`` (one of the stored grid)."""
        if not self.calibration:
            raise ModelBundleError("the model has no calibrated thresholds (train it with validation data)")
        keys = {float(k): k for k in self.calibration}
        if fpr is None:      # the default rate, or the lowest one the validation flows could calibrate
            fpr = DEFAULT_FPR if DEFAULT_FPR in keys else min(keys)
        fpr = float(fpr)
        match = [k for k in keys if abs(k - fpr) <= 1e-9 * max(1.0, fpr)]
        if not match:
            grid = ", ".join(f"{k:g}" for k in sorted(keys))
            raise ModelBundleError(f"--fpr {fpr:g} is not calibrated in this model; choose one of {grid}")
        return dict(self.calibration[keys[match[0]]])

    # -- persistence ----------------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: np.ascontiguousarray(v, np.float32) for k, v in self.weights.items()},
                  str(folder / "model.safetensors"))
        config = {"model_type": SCORER_TYPE, "features": list(FEATURES), "classes": list(self.classes),
                  "class_mission": self.class_mission, "calibration": self.calibration,
                  "window_s": self.window_s, "hidden": int(self.weights["w0"].shape[-1]), "info": self.info,
                  "evidence": self.evidence, "members": int(self.weights["w0"].shape[0]),
                  "temperature": self.temperature}
        (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "EarlyFlowScorer":
        from safetensors.numpy import load_file

        folder = Path(folder)
        cfg_path = folder / "config.json"
        if not cfg_path.is_file() or not (folder / "model.safetensors").is_file():
            raise ModelBundleError(f"{folder}: not a detector model folder (needs config.json and model.safetensors)")
        try:
            cfg = json.loads(cfg_path.read_text())
        except (OSError, ValueError) as err:
            raise ModelBundleError(f"{cfg_path}: unreadable config ({err})") from None
        if cfg.get("model_type") != SCORER_TYPE:
            raise ModelBundleError(f"{folder}: model_type {cfg.get('model_type')!r} is not {SCORER_TYPE!r}")
        if list(cfg.get("features", [])) != list(FEATURES):
            raise ModelBundleError(f"{folder}: trained on other features than this version computes")
        weights = load_file(str(folder / "model.safetensors"))
        h, n_in, n_out = int(cfg["hidden"]), len(FEATURES), len(cfg["classes"])
        if "members" not in cfg:         # scores of an earlier version: its thresholds mean something else
            raise ModelBundleError(f"{folder}: a detector model of an earlier version (retrain it)")
        k = int(cfg["members"])
        shapes = {"mean": (n_in,), "std": (n_in,), "w0": (k, n_in, h), "b0": (k, h), "w1": (k, h, h), "b1": (k, h),
                  "w2": (k, h, n_out), "b2": (k, n_out)}
        if set(weights) != set(shapes) or any(tuple(weights[k].shape) != v for k, v in shapes.items()):
            raise ModelBundleError(f"{folder}: weights do not match config.json (missing, extra or misshapen)")
        return cls(tuple(cfg["classes"]), dict(cfg["class_mission"]), weights, cfg.get("calibration", {}),
                   cfg.get("info", {}), float(cfg.get("window_s", 10.0)), dict(cfg.get("evidence", {})),
                   float(cfg.get("temperature", TEMPERATURE)))


def calibrate(flow_id: np.ndarray, mission_p: np.ndarray, is_benign: np.ndarray, missions, *,
              grid=FPR_GRID) -> dict:
    """Per target FPR and attack mission: the threshold that the given share of benign flows' highest
    probability exceeds (strictly above the threshold alerts)."""
    out = {}
    b = is_benign.astype(bool)
    if not b.any():
        raise ModelBundleError("calibration needs benign validation flows")
    fids = flow_id[b]
    uniq, inv = np.unique(fids, return_inverse=True)
    for fpr in grid:
        if fpr * len(uniq) < 1:          # fewer benign flows than 1/fpr: that rate cannot be calibrated
            continue
        th = {}
        for j, m in enumerate(missions):
            if m == "Benign":
                continue
            best = np.full(len(uniq), -np.inf)
            np.maximum.at(best, inv, mission_p[b, j])
            # the (1 - fpr) quantile of benign flows' maxima: at most fpr of them lie strictly above it
            th[m] = float(np.quantile(best, 1.0 - fpr, method="higher"))
        out[f"{fpr:g}"] = th
    return out


#: Host evidence a mission needs before the model may name it: the largest of these context quantities (over
#: the current and previous window) must reach a floor chosen on validation flows (:func:`choose_evidence`).
#: A denial of service needs volume: packets from its source or to its victim (without it, 60 one-packet
#: service-location queries from 50 hosts to one server looked like a spoofed UDP flood). A scan needs breadth:
#: many ports on one host, many hosts per port, or many probes per port (without it, a peer-to-peer client
#: opening one connection to each of 500 peers, each on its own port, looked like a scan).
EVIDENCE = {"DoS": ("dst_pkts", "src_pkts"),
            "Reconnaissance": ("pair_ports", "src_dsts_per_port", "pair_flows_per_port")}
#: Candidate floors; the largest that keeps ``EVIDENCE_RECALL`` of the validation flows of the mission is kept.
EVIDENCE_GRID = (2, 3, 5, 10, 20, 50, 100, 200, 500, 1000)
EVIDENCE_RECALL = 0.99
_DERIVED = {"src_dsts_per_port": ("src_dsts", "src_ports"), "pair_flows_per_port": ("pair_flows", "pair_ports")}


def evidence_of(X: np.ndarray, names) -> np.ndarray:
    """Per decision, the largest of the named context quantities (feature columns or :data:`_DERIVED` ratios)."""
    X = np.asarray(X, np.float32)
    cols = []
    for name in names:
        if name in _DERIVED:
            a, b = (X[:, FEATURES.index(f)] for f in _DERIVED[name])
            cols.append(a / np.maximum(b, 1.0))
        else:
            cols.append(X[:, FEATURES.index(name)])
    return np.max(np.stack(cols, axis=1), axis=1)


def choose_evidence(X: np.ndarray, labels: np.ndarray, flow_id: np.ndarray, class_mission: dict) -> dict:
    """Per mission of :data:`EVIDENCE`: the largest floor of :data:`EVIDENCE_GRID` that at least
    ``EVIDENCE_RECALL`` of the mission's validation flows reach at one of their decisions (no floor when
    the validation rows hold no flow of the mission)."""
    out = {}
    for mission, feats in EVIDENCE.items():
        rows = np.array([class_mission.get(c) == mission for c in labels], bool)
        if not rows.any():
            continue
        ev = evidence_of(np.asarray(X, np.float32)[rows], feats)
        uniq, inv = np.unique(flow_id[rows], return_inverse=True)
        best = np.zeros(len(uniq))
        np.maximum.at(best, inv, ev)
        ok = [v for v in EVIDENCE_GRID if (best >= v).mean() >= EVIDENCE_RECALL]
        if ok:
            out[mission] = {"features": list(feats), "min": float(max(ok))}
    return out


def fit_early_scorer(X: np.ndarray, labels: np.ndarray, flow_id: np.ndarray, *, class_mission: dict[str, str],
                     seed: int = 0, hidden: int = 64, epochs: int = 30, val_share: float = 0.25,
                     window_s: float = 10.0, val: np.ndarray | None = None, members: int = 1) -> EarlyFlowScorer:
    """Fit ``members`` MLPs (seeds ``seed``, ``seed + 1`` …) on decision rows (features ``X``, fine
    ``labels``); choose the evidence floors and calibrate the thresholds on the validation rows. Classes are
    balanced by weight (floods would otherwise outvote a 50-flow dictionary attack).

    ``val``: a row mask of validation rows given by the caller — whole benign captures never fitted, so that
    thresholds see real traffic unlike the training traffic (a random split of flows put flows of the
    training captures in validation, and thresholds calibrated on them let 4 % of unseen captures' flows
    alert); None → a random ``val_share`` of the flows."""
    import torch

    labels = np.asarray(labels).astype(str)
    classes = tuple(sorted({str(c) for c in labels}, key=lambda c: (c != "Benign", c)))
    if "Benign" not in classes or len(classes) < 2:
        raise PacketClipError("training needs benign flows and at least one attack class")
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[c] for c in labels], np.int64)
    rng = np.random.default_rng(seed)
    if val is None:
        uniq = np.unique(flow_id)
        val = np.isin(flow_id, uniq[rng.random(len(uniq)) < val_share])
    val = np.asarray(val, bool)
    tr = ~val
    T = transform(X)
    mean, std = T[tr].mean(axis=0), T[tr].std(axis=0) + 1e-3
    n_in, n_out = X.shape[1], len(classes)
    xt = torch.from_numpy((T[tr] - mean) / std)
    yt = torch.from_numpy(y[tr])
    counts = np.bincount(y[tr], minlength=n_out).astype(np.float32)
    cw = torch.from_numpy((counts.sum() / np.maximum(counts, 1) / n_out).astype(np.float32))
    fitted = [_fit_member(xt, yt, cw, seed + k, hidden, epochs) for k in range(int(members))]
    weights = {k: np.stack([f[k] for f in fitted]) for k in fitted[0]}
    weights.update(mean=mean.astype(np.float32), std=std.astype(np.float32))
    scorer = EarlyFlowScorer(classes, {c: class_mission[c] for c in classes}, weights, window_s=window_s)
    scorer.evidence = choose_evidence(X[val], labels[val], flow_id[val], class_mission)
    sc = scorer.score(X[val])
    is_benign = labels[val] == "Benign"
    scorer.calibration = calibrate(flow_id[val], sc.mission, is_benign, scorer.missions)
    # validation figures at the default FPR: flow-level recall per mission (a flow counts once it alerts)
    th = scorer.thresholds(None)
    info = {"calibrated_fprs": sorted(float(k) for k in scorer.calibration), "train_rows": int(tr.sum()),
            "val_rows": int(val.sum()), "val_flows": int(len(np.unique(flow_id[val]))),
            "val_benign_flows": int(len(np.unique(flow_id[val][is_benign]))), "seed": seed, "hidden": hidden, "members": int(members),
            "epochs": epochs, "recall_at_default_fpr": {}}
    info["default_fpr"] = DEFAULT_FPR if DEFAULT_FPR in info["calibrated_fprs"] else min(info["calibrated_fprs"])
    vm = labels[val]
    for j, m in enumerate(scorer.missions):
        if m == "Benign":
            continue
        rows = np.array([class_mission.get(c) == m for c in vm])
        if rows.any():
            f = flow_id[val][rows]
            hit = sc.mission[rows, j] > th[m]
            info["recall_at_default_fpr"][m] = float(len(np.unique(f[hit])) / len(np.unique(f)))
    scorer.info = info
    return scorer


def _fit_member(xt, yt, cw, seed: int, hidden: int, epochs: int) -> dict:
    """One two-layer MLP (numpy weights) trained with class weights ``cw``; all randomness from ``seed``."""
    import torch

    g = torch.Generator().manual_seed(seed)
    n_in, n_out = xt.shape[1], len(cw)

    def param(*shape, fan_in):
        return torch.nn.Parameter(torch.randn(*shape, generator=g) * (2.0 / fan_in) ** 0.5)

    params = {"w0": param(n_in, hidden, fan_in=n_in), "b0": torch.nn.Parameter(torch.zeros(hidden)),
              "w1": param(hidden, hidden, fan_in=hidden), "b1": torch.nn.Parameter(torch.zeros(hidden)),
              "w2": param(hidden, n_out, fan_in=hidden), "b2": torch.nn.Parameter(torch.zeros(n_out))}
    opt = torch.optim.AdamW(params.values(), lr=3e-3, weight_decay=1e-4)
    batch = 512
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for k in range(0, len(perm), batch):
            i = perm[k:k + batch]
            h = torch.relu(xt[i] @ params["w0"] + params["b0"])
            h = torch.relu(h @ params["w1"] + params["b1"])
            loss = torch.nn.functional.cross_entropy(h @ params["w2"] + params["b2"], yt[i], weight=cw)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return {k: v.detach().numpy().astype(np.float32) for k, v in params.items()}


def load_scorer(path: str | Path | None = None):
    """The detector model in folder ``path`` (an early-flow model or a reasoning bundle, which scores flows at
    expiry: :mod:`packetclip.detect.bundle_scorer`); None → the default model shipped in the package."""
    folder = DEFAULT_MODEL if path is None else Path(path)
    if path is None and not (folder / "config.json").is_file():
        raise ModelBundleError("no default model is installed; train one with "
                               "`python -m packetclip.detect.train --out MODEL` and pass --model MODEL")
    if not folder.is_dir():
        raise ModelBundleError("no such model folder", path=str(folder))
    if (folder / "bundle.json").is_file():
        from packetclip.detect.bundle_scorer import BundleScorer

        return BundleScorer.load(folder)
    return EarlyFlowScorer.load(folder)
