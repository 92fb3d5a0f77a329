"""Flow-table encoder quality on CIC-IDS2017: linear probes on frozen embeddings.

Same run, same flow-level stratified split (each CSV row is one flow; exact duplicate rows are dropped
first so no flow appears on both sides), same linear probe (``packetclip.evaluate.probe.linear_probe``: standardised, balanced logistic regression):
  * pretrained  - our flow-table encoder, masked-feature pre-trained on the TRAIN rows only (no labels)
  * random      - the same architecture and normalisation, network left at random init
  * raw         - the raw CICFlowMeter columns, standardised (the classic baseline)
  * normalized  - the encoder's own input (signed log1p + robust scaling), no network
plus a supervised LightGBM on the raw columns as a non-linear ceiling for context.
Tasks: the 4 missions (Benign / DoS / Reconnaissance / Brute Force) and the fine CIC labels with >= 50 rows,
each probed with all training labels and with only ``--shots`` labelled flows per class (mean of
``--repeats`` draws; the probe always scores the full test split).

Last line: one JSON object (macro-F1 as fractions).
Example: .venv/bin/python benchmarks/flowtable_quality.py --arch mlp --epochs 20
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data" / "cicids2017"

# CIC-IDS2017 label -> the paper's missions; labels without a mission are left out of the mission task.
MISSION = {
    "BENIGN": "Benign",
    "DDoS": "DoS", "DoS GoldenEye": "DoS", "DoS Hulk": "DoS", "DoS Slowhttptest": "DoS", "DoS Slowloris": "DoS",
    "Portscan": "Reconnaissance", "Infiltration - Portscan": "Reconnaissance",
    "FTP-Patator": "Brute Force", "SSH-Patator": "Brute Force", "Web Attack - Brute Force": "Brute Force",
}


def load_cic():
    import pandas as pd

    files = sorted(DATA.glob("*.csv"))
    if not files:
        return None
    df = pd.concat([pd.read_csv(f, low_memory=False) for f in files], ignore_index=True)
    df.columns = [c.strip() for c in df.columns]
    df["Label"] = df["Label"].astype(str).str.strip()
    return df


def probe(train_x, train_y, test_x, test_y, seed: int) -> float:
    """macro-F1 of :func:`packetclip.evaluate.probe.linear_probe`, the probe every stage uses."""
    from packetclip.evaluate.probe import linear_probe

    return linear_probe(train_x, train_y, test_x, test_y, seed).macro_f1


def raw_matrix(df, names):
    from packetclip.encoders.flowtable import feature_matrix

    x = feature_matrix(df, names)
    x[~np.isfinite(x)] = np.nan
    med = np.nanmedian(x, axis=0)
    med = np.where(np.isfinite(med), med, 0.0)
    idx = np.where(np.isnan(x))
    x[idx] = med[idx[1]]
    return x


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="mlp", choices=["mlp", "ft_transformer"])
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--max-rows", type=int, default=None, help="subsample the pre-training rows")
    ap.add_argument("--contrastive-weight", type=float, default=None)
    ap.add_argument("--mask-ratio", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shots", type=int, default=10, help="labelled flows per class in the few-label probe")
    ap.add_argument("--repeats", type=int, default=5, help="random draws of the few-label training set")
    args = ap.parse_args(argv)

    df = load_cic()
    if df is None:
        print(f"no CIC-IDS2017 CSVs under {DATA}; nothing to measure", file=sys.stderr)
        print(json.dumps({"skipped": "cicids2017 data not found"}))
        return 0

    import torch
    from sklearn.model_selection import train_test_split

    from packetclip.encoders.flowtable import FlowTableConfig, FlowTableEncoder

    torch.manual_seed(args.seed)
    cfg_kwargs = {"arch": args.arch, "seed": args.seed}
    if args.epochs is not None:
        cfg_kwargs["epochs"] = args.epochs
    if args.max_rows is not None:
        cfg_kwargs["max_rows"] = args.max_rows
    if args.contrastive_weight is not None:
        cfg_kwargs["contrastive_weight"] = args.contrastive_weight
    if args.mask_ratio is not None:
        cfg_kwargs["mask_ratio"] = args.mask_ratio
    config = FlowTableConfig(**cfg_kwargs)
    names = config.feature_names

    n_all = len(df)
    df = df.drop_duplicates(subset=list(names) + ["Label"]).reset_index(drop=True)
    counts = df["Label"].value_counts()
    keep = df["Label"].isin(counts[counts >= 50].index)
    df = df[keep].reset_index(drop=True)
    train_idx, test_idx = train_test_split(
        np.arange(len(df)), test_size=0.3, random_state=args.seed, stratify=df["Label"].to_numpy()
    )
    train, test = df.iloc[train_idx], df.iloc[test_idx]
    print(f"{n_all} rows, {len(df)} after dropping duplicates and labels with < 50 rows; "
          f"train {len(train)} / test {len(test)} flows", file=sys.stderr)

    t0 = time.perf_counter()
    pre = FlowTableEncoder(config).fit(train, progress=sys.stderr.isatty(),
                                       on_epoch=lambda r: print(f"  epoch {r['epoch']}: " + ", ".join(
                                           f"{k}={v:.4f}" for k, v in r.items() if k != "epoch"), file=sys.stderr))
    pretrain_s = time.perf_counter() - t0
    rand_cfg = FlowTableConfig(**{**cfg_kwargs, "epochs": 0})
    rnd = FlowTableEncoder(rand_cfg).fit(train)

    views = {
        "pretrained": (pre.embed(train), pre.embed(test)),
        "random": (rnd.embed(train), rnd.embed(test)),
        "raw": (raw_matrix(train, names), raw_matrix(test, names)),
        "normalized": (pre.normalized_features(train), pre.normalized_features(test)),
    }

    result: dict[str, float | int | str] = {}
    tasks = {
        "mission": (train["Label"].map(MISSION), test["Label"].map(MISSION)),
        "label": (train["Label"], test["Label"]),
    }
    for task, (ytr, yte) in tasks.items():
        mtr, mte = ytr.notna().to_numpy(), yte.notna().to_numpy()
        for name, (xtr, xte) in views.items():
            f1 = probe(xtr[mtr], ytr[mtr].to_numpy(), xte[mte], yte[mte].to_numpy(), args.seed)
            result[f"probe_f1_{name}_{task}"] = round(f1, 4)
            print(f"{task:8s} {name:11s} macro-F1 {f1:.4f}", file=sys.stderr)
        # Few labels: the regime where pre-training should matter (k flows per class, 5 seeded draws).
        rng = np.random.default_rng(args.seed)
        ytr_m = ytr[mtr].to_numpy()
        draws = []
        for _ in range(args.repeats):
            pick = np.concatenate([
                rng.choice(np.flatnonzero(ytr_m == c), min(args.shots, int((ytr_m == c).sum())), replace=False)
                for c in np.unique(ytr_m)
            ])
            draws.append(pick)
        for name, (xtr, xte) in views.items():
            scores = [probe(xtr[mtr][p], ytr_m[p], xte[mte], yte[mte].to_numpy(), args.seed) for p in draws]
            result[f"probe_f1_{name}_{task}_{args.shots}shot"] = round(float(np.mean(scores)), 4)
            print(f"{task:8s} {name:11s} {args.shots}-shot macro-F1 {np.mean(scores):.4f} "
                  f"(+- {np.std(scores):.4f} over {len(scores)} draws)", file=sys.stderr)
        try:
            import lightgbm as lgb
            from sklearn.metrics import f1_score

            gbm = lgb.LGBMClassifier(n_estimators=200, random_state=args.seed, verbose=-1, n_jobs=2)
            xtr, xte = views["raw"]
            gbm.fit(xtr[mtr], ytr[mtr].to_numpy())
            f1 = float(f1_score(yte[mte].to_numpy(), gbm.predict(xte[mte]), average="macro"))
            result[f"lightgbm_f1_raw_{task}"] = round(f1, 4)
            print(f"{task:8s} lightgbm    macro-F1 {f1:.4f} (supervised ceiling)", file=sys.stderr)
        except ImportError:
            pass

    result.update({
        "heldout_mfm_mse_pretrained": round(pre.reconstruction_error(test), 4),
        "heldout_mfm_mse_random": round(rnd.reconstruction_error(test), 4),
        "mfm_loss_first_epoch": round(pre.loss_history_[0]["mfm"], 4) if pre.loss_history_ else None,
        "mfm_loss_last_epoch": round(pre.loss_history_[-1]["mfm"], 4) if pre.loss_history_ else None,
        "pretrain_seconds": round(pretrain_s, 1),
        "arch": config.arch, "epochs": config.epochs, "embed_dim": config.embed_dim,
        "n_features": config.n_features, "n_train": int(len(train)), "n_test": int(len(test)),
        "gain_pretrained_vs_random_mission": round(result["probe_f1_pretrained_mission"] - result["probe_f1_random_mission"], 4),
        "gain_pretrained_vs_random_mission_few_shot": round(
            result[f"probe_f1_pretrained_mission_{args.shots}shot"] - result[f"probe_f1_random_mission_{args.shots}shot"], 4),
    })
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
