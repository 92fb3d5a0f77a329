"""Packet-embedding throughput on this CPU: our default Lens encoder vs an ET-BERT-shaped encoder.

Same inputs, same run, same torch thread count. The inputs are **distinct** masked packet views (duplicates
removed first), so embed()'s deduplication of identical views cannot contribute to the ratio; its effect
on a real capture (floods repeat views) is measured separately and reported as ``dedup_speedup``.

- ours: ``LensModel(LensConfig())`` (the default ``tiny`` size; weights do not change the cost) or
  ``--checkpoint``, called through ``LensModel.embed`` (tokenisation, batching, pooling included).
- ET-BERT architecture: ``transformers.BertModel`` with 12 layers x 768, 12 heads, vocabulary 60,005,
  random weights; each view becomes ``[CLS]`` + the stride-1 bigrams of its bytes (up to the packet's end),
  as ET-BERT tokenises packets; mean-pooled last hidden states. Both sides sort inputs by length and run
  the same batch size under ``torch.inference_mode``.

Each side is timed in alternating rounds and the median rate is kept, so a load spike from another process
does not hit one side only. Views come from the ndpi captures in ../shared/data (ingested here) or, without
them, from a short ``packetclip lab synth`` capture. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NDPI_PCAP = ROOT.parent / "shared" / "data" / "ndpi" / "pcap"


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def workspace_views(work: Path) -> tuple[np.ndarray, str]:
    """All packet views (capture order) of the ndpi captures, or of a lab capture without them."""
    from packetclip.encoders.data import load_views
    from packetclip.traffic.ingest import expand_capture_paths, ingest_captures
    from packetclip.traffic.workspace import Workspace

    if NDPI_PCAP.is_dir():
        ws = work / "ndpi"
        if not Workspace(ws).manifest:
            ingest_captures(expand_capture_paths([NDPI_PCAP]), ws, progress=False)
        return load_views(ws)[0], "ndpi captures"
    from packetclip.lab.synth import SynthLab

    ws = work / "lab_speed"
    if not Workspace(ws).has("labels"):
        SynthLab(duration_s=120, seed=3).generate(ws, progress=False, overwrite=True)
    return load_views(ws)[0], "lab synth capture (120 s)"


class EtBertShaped:
    """BERT-base (ET-BERT's shape) with ET-BERT-style bigram tokens, random weights."""

    def __init__(self, seq_len: int = 128, device: str = "cpu"):
        import torch
        from transformers import BertConfig, BertModel

        torch.manual_seed(0)
        self.model = BertModel(BertConfig(vocab_size=60005, hidden_size=768, num_hidden_layers=12,
                                          num_attention_heads=12, intermediate_size=3072,
                                          max_position_embeddings=512)).eval().to(device)
        self.seq_len = seq_len
        self.device = torch.device(device)

    def tokens(self, views: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from packetclip.encoders.data import packet_lengths

        v = views.astype(np.int64)
        bigrams = (v[:, :-1] << 8) | v[:, 1:]
        ids = np.concatenate([np.full((len(v), 1), 1), 5 + bigrams % 60000], axis=1)[:, : self.seq_len]
        lengths = np.minimum(packet_lengths(views), self.seq_len)   # [CLS] + (bytes - 1) bigrams
        return ids, lengths

    def embed(self, views: np.ndarray, batch_size: int) -> np.ndarray:
        import torch

        ids, lengths = self.tokens(views)
        order = np.argsort(lengths, kind="stable")
        out = np.zeros((len(views), 768), np.float32)
        with torch.inference_mode():
            for s in range(0, len(order), batch_size):
                idx = order[s: s + batch_size]
                width = int(lengths[idx].max())
                mask = torch.from_numpy((np.arange(width)[None, :] < lengths[idx, None]).astype(np.int64))
                mask = mask.to(self.device)
                hidden = self.model(input_ids=torch.from_numpy(ids[idx, :width]).to(self.device),
                                    attention_mask=mask).last_hidden_state
                m = mask.unsqueeze(-1).float()
                out[idx] = ((hidden * m).sum(1) / m.sum(1)).cpu().numpy()
        return out


def rate(fn, views: np.ndarray, budget_s: float) -> float:
    """Views per second of ``fn`` over as many passes of ``views`` chunks as fit in ``budget_s`` (>= 1 chunk)."""
    done, t0 = 0, time.perf_counter()
    chunk = 0
    while True:
        part = views[chunk: chunk + 256] if len(views) > 256 else views
        fn(part)
        done += len(part)
        chunk = (chunk + 256) % max(len(views), 1)
        if time.perf_counter() - t0 >= budget_s:
            return done / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", type=Path, help="Our encoder to time (default: the default tiny config).")
    ap.add_argument("--distinct", type=int, default=4096, help="Distinct views to embed.")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=15.0, help="Time per side per round.")
    ap.add_argument("--threads", type=int, default=0, help="torch threads for both sides (0: torch's default).")
    ap.add_argument("--device", default="cpu", help="torch device for both sides (cpu, cuda).")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "packetclip-bench-encoder")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from packetclip.encoders.lens import LensConfig, LensModel

    args.work.mkdir(parents=True, exist_ok=True)
    views, source = workspace_views(args.work)
    distinct = np.unique(views, axis=0)
    rng = np.random.default_rng(0)
    sample = distinct[rng.permutation(len(distinct))[: args.distinct]]
    log(f"{len(views):,} views from {source}, {len(distinct):,} distinct; timing on {len(sample):,} distinct views, "
        f"{torch.get_num_threads()} torch threads")

    ours = (LensModel.from_pretrained(args.checkpoint, device=args.device) if args.checkpoint
            else LensModel(LensConfig(), seed=0).to(args.device))
    bert = EtBertShaped(device=args.device)
    # warm-up both (first calls allocate)
    ours.embed(sample[:64], batch_size=args.batch_size)
    bert.embed(sample[:8], batch_size=args.batch_size)
    ours_rates, bert_rates = [], []
    for r in range(args.rounds):
        ours_rates.append(rate(lambda v: ours.embed(v, batch_size=args.batch_size), sample, args.seconds))
        bert_rates.append(rate(lambda v: bert.embed(v, batch_size=args.batch_size), sample, args.seconds))
        log(f"round {r + 1}: ours {ours_rates[-1]:,.0f} pkts/s, ET-BERT-shaped {bert_rates[-1]:,.1f} pkts/s")
    ours_rate, bert_rate = float(np.median(ours_rates)), float(np.median(bert_rates))

    # dedup on a real stream: the capture's packets in order, floods and all
    stream = views[: min(len(views), 50_000)]
    t0 = time.perf_counter()
    ours.embed(stream, batch_size=args.batch_size, dedup=True)
    with_dedup = time.perf_counter() - t0
    forward_rows = ours.last_embed_stats["forward_rows"]
    t0 = time.perf_counter()
    ours.embed(stream, batch_size=args.batch_size, dedup=False)
    without = time.perf_counter() - t0
    log(f"dedup on {len(stream):,} packets in capture order: {forward_rows:,} distinct, "
        f"{without:.1f} s without -> {with_dedup:.1f} s with dedup")

    print(json.dumps({
        "ours_pkts_per_s": round(ours_rate, 1),
        "etbert_arch_pkts_per_s": round(bert_rate, 2),
        "ratio": round(ours_rate / bert_rate, 1),
        "threads": torch.get_num_threads(),
        "device": str(ours.device),
        "distinct_views": int(len(sample)),
        "ours_params": ours.num_parameters(),
        "etbert_arch_params": int(sum(p.numel() for p in bert.model.parameters())),
        "dedup_stream_packets": int(len(stream)),
        "dedup_unique_fraction": round(forward_rows / max(len(stream), 1), 4),
        "dedup_speedup": round(without / with_dedup, 2),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
