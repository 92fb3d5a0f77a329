"""What the detector asks of a model, and the flow-feature model it ships with.

:class:`Scorer` is the contract: ``score(decisions) -> Scores`` over a batch of decision points
(:class:`~packetclip.detect.features.Decisions`), plus ``classes`` (fine classes), ``class_mission`` and
per-mission ``thresholds`` calibrated for a target false-positive rate. Any model that meets it plugs in
(the reasoning bundle through an adapter; the packet encoder behind a cascade).

:class:`EarlyFlowScorer` is the cheap first stage: a two-layer MLP over log-scaled early-decision features,
one multi-class model of the fine classes; mission probabilities are sums of their classes'. Inference is
three numpy matrix products per batch (~1 µs per decision; gradient-boosted trees cost ~40 µs per decision
here and were the bottleneck). Saved as a folder: ``config.json`` (features, classes, thresholds per target
FPR, validation figures) and ``model.safetensors``.

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

    def __post_init__(self):
        self.classes = tuple(str(c) for c in self.classes)
        self.missions = tuple(dict.fromkeys(["Benign", *[self.class_mission[c] for c in self.classes]]))
        self._m = mission_matrix(self.classes, self.missions, self.class_mission)

    def logits(self, X: np.ndarray) -> np.ndarray:
        w = self.weights
        h = (transform(X) - w["mean"]) / w["std"]
        h = np.maximum(h @ w["w0"] + w["b0"], 0.0)
        h = np.maximum(h @ w["w1"] + w["b1"], 0.0)
        return h @ w["w2"] + w["b2"]

    def score(self, decisions) -> Scores:
        X = decisions.X if hasattr(decisions, "X") else np.asarray(decisions, np.float32)
        if not len(X):
            return Scores(np.zeros((0, len(self.classes)), np.float32), np.zeros((0, len(self.missions)), np.float32))
        z = self.logits(X)
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        return Scores(p, p @ self._m)

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
                  "window_s": self.window_s, "hidden": int(self.weights["w0"].shape[1]), "info": self.info}
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
        shapes = {"mean": (n_in,), "std": (n_in,), "w0": (n_in, h), "b0": (h,), "w1": (h, h), "b1": (h,),
                  "w2": (h, n_out), "b2": (n_out,)}
        if set(weights) != set(shapes) or any(tuple(weights[k].shape) != v for k, v in shapes.items()):
            raise ModelBundleError(f"{folder}: weights do not match config.json (missing, extra or misshapen)")
        return cls(tuple(cfg["classes"]), dict(cfg["class_mission"]), weights, cfg.get("calibration", {}),
                   cfg.get("info", {}), float(cfg.get("window_s", 10.0)))


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


def fit_early_scorer(X: np.ndarray, labels: np.ndarray, flow_id: np.ndarray, *, class_mission: dict[str, str],
                     seed: int = 0, hidden: int = 64, epochs: int = 30, val_share: float = 0.25,
                     window_s: float = 10.0) -> EarlyFlowScorer:
    """Fit on decision rows (features ``X``, fine ``labels``) with a split by flow; calibrate on the held-out
    flows. Classes are balanced by weight (floods would otherwise outvote a 50-flow dictionary attack)."""
    import torch

    labels = np.asarray(labels).astype(str)
    classes = tuple(sorted({str(c) for c in labels}, key=lambda c: (c != "Benign", c)))
    if "Benign" not in classes or len(classes) < 2:
        raise PacketClipError("training needs benign flows and at least one attack class")
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[c] for c in labels], np.int64)
    rng = np.random.default_rng(seed)
    uniq = np.unique(flow_id)
    val_flows = uniq[rng.random(len(uniq)) < val_share]
    val = np.isin(flow_id, val_flows)
    tr = ~val
    T = transform(X)
    mean, std = T[tr].mean(axis=0), T[tr].std(axis=0) + 1e-3
    g = torch.Generator().manual_seed(seed)
    n_in, n_out = X.shape[1], len(classes)

    def param(*shape, fan_in):
        return torch.nn.Parameter(torch.randn(*shape, generator=g) * (2.0 / fan_in) ** 0.5)

    params = {"w0": param(n_in, hidden, fan_in=n_in), "b0": torch.nn.Parameter(torch.zeros(hidden)),
              "w1": param(hidden, hidden, fan_in=hidden), "b1": torch.nn.Parameter(torch.zeros(hidden)),
              "w2": param(hidden, n_out, fan_in=hidden), "b2": torch.nn.Parameter(torch.zeros(n_out))}
    xt = torch.from_numpy((T[tr] - mean) / std)
    yt = torch.from_numpy(y[tr])
    counts = np.bincount(y[tr], minlength=n_out).astype(np.float32)
    cw = torch.from_numpy(counts.sum() / np.maximum(counts, 1) / n_out)
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
    weights = {k: v.detach().numpy().astype(np.float32) for k, v in params.items()}
    weights.update(mean=mean.astype(np.float32), std=std.astype(np.float32))
    scorer = EarlyFlowScorer(classes, {c: class_mission[c] for c in classes}, weights, window_s=window_s)
    sc = scorer.score(X[val])
    is_benign = labels[val] == "Benign"
    scorer.calibration = calibrate(flow_id[val], sc.mission, is_benign, scorer.missions)
    # validation figures at the default FPR: flow-level recall per mission (a flow counts once it alerts)
    th = scorer.thresholds(None)
    info = {"calibrated_fprs": sorted(float(k) for k in scorer.calibration), "train_rows": int(tr.sum()),
            "val_rows": int(val.sum()), "val_flows": int(len(np.unique(flow_id[val]))),
            "val_benign_flows": int(len(np.unique(flow_id[val][is_benign]))), "seed": seed, "hidden": hidden,
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
