"""Alignment training on N processes with PyTorch DistributedDataParallel, started by ``torchrun``::

    torchrun --nproc-per-node 2 -m packetclip.scale.ddp align WS --traffic flow --steps 3000 --out models/align-ddp
    torchrun --nnodes 4 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HEAD:29500 \\
        -m packetclip.scale.ddp align WS --encoder models/lens --traffic packet --out models/align

Without ``torchrun`` it runs as one process (world size 1), the reference the distributed run must match.

How it stays the same training as :func:`packetclip.align.train.train`:

- one global batch of ``batch_size`` pairs per step, drawn class-balanced by the same seeded
  :func:`~packetclip.align.train.batches`; a :class:`~torch.utils.data.DistributedSampler` (no shuffle) over
  that stream hands rank r the rows r, r+N, r+2N, … of every global batch, so N ranks see exactly one batch;
- InfoNCE over the whole global batch as open_clip computes it: each rank all-gathers both sides' features
  *with gradients* (``torch.distributed.nn.functional.all_gather``) and takes the loss of its own rows against
  every column (open_clip's ``local_loss``); DDP averages the gradients, so the step equals the single-process
  step on the global batch (up to floating-point summation order);
- backend ``gloo`` on CPU, ``nccl`` when CUDA is there (one GPU per local rank).

Checkpoints (``OUT/checkpoint``: the model as ``save_pretrained`` writes it, the Adam state as safetensors and
the step in JSON — no pickle) are written by rank 0 only, every ``--save-every`` steps; ``--resume`` continues
from the last one and ends where an uninterrupted run ends. The final model goes to ``OUT`` and the zero-shot
top-1 on the workspace's test split to ``OUT/ddp_log.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from packetclip.errors import PacketClipError

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"


# --- process group -------------------------------------------------------------------------------------------

def world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) when run alone."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def init_distributed() -> tuple[int, int, torch.device]:
    """Join the process group torchrun set up (gloo on CPU, nccl on GPUs); nothing when alone."""
    rank, size, local = world()
    device = torch.device("cpu")
    if torch.cuda.is_available():
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return rank, size, device


# --- the loss over the global batch --------------------------------------------------------------------------

def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Every rank's rows, in rank order, with gradients flowing back to their owners (world 1: ``x``)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def global_batch_loss(traffic: torch.Tensor, text: torch.Tensor, groups: torch.Tensor, logit_scale: torch.Tensor,
                      *, multi_positive: bool = True) -> torch.Tensor:
    """This rank's share of the symmetric InfoNCE over the global batch: its rows against all gathered columns.

    The mean over ranks (what DDP's gradient averaging takes) equals :func:`packetclip.align.loss`'s loss of
    the whole global batch: both losses are means over rows, and every rank has the same number of rows.
    """
    all_traffic, all_text = gather_with_grad(traffic), gather_with_grad(text)
    all_groups = groups
    if dist.is_initialized() and dist.get_world_size() > 1:
        parts = [torch.empty_like(groups) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, groups.contiguous())
        all_groups = torch.cat(parts)
    rank = dist.get_rank() if dist.is_initialized() else 0
    offset = rank * traffic.shape[0]
    scale = logit_scale.exp()
    per_traffic = scale * traffic @ all_text.t()     # local traffic rows x every text
    per_text = scale * text @ all_traffic.t()        # local text rows x every traffic row
    if multi_positive:
        positive = groups[:, None] == all_groups[None, :]
        neg_inf = torch.finfo(per_traffic.dtype).min

        def side(lg: torch.Tensor) -> torch.Tensor:
            return (torch.logsumexp(lg, 1) - torch.logsumexp(lg.masked_fill(~positive, neg_inf), 1)).mean()

        return 0.5 * (side(per_traffic) + side(per_text))
    target = torch.arange(traffic.shape[0], device=traffic.device) + offset
    return 0.5 * (F.cross_entropy(per_traffic, target) + F.cross_entropy(per_text, target))


class _Heads(nn.Module):
    """The trainable part behind one ``forward`` so that DDP sees every use of the parameters."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, traffic: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.project_standardised(traffic), self.model.encode_text(text)


# --- checkpoints (rank 0 writes; every rank reads) -----------------------------------------------------------

def save_checkpoint(directory: Path, model, optimizer: torch.optim.Optimizer, step: int, extra: dict) -> None:
    """Model (``save_pretrained``), Adam state (safetensors) and the step, replaced as a whole."""
    import shutil

    from safetensors.torch import save_file

    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    state = optimizer.state_dict()
    tensors = {f"{i}.{k}": (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous().clone()
               for i, s in state["state"].items() for k, v in s.items()}
    save_file(tensors, str(tmp / OPTIMIZER_FILE))
    groups = [{k: v for k, v in g.items()} for g in state["param_groups"]]
    (tmp / STATE_FILE).write_text(json.dumps({"step": step, "param_groups": groups, **extra}, indent=1) + "\n")
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(directory: Path, optimizer: torch.optim.Optimizer):
    """(model, step) from a checkpoint folder, the optimizer state loaded in place."""
    from packetclip.align.model import AlignModel
    from packetclip.encoders._weights import read_safetensors

    directory = Path(directory)
    meta = json.loads((directory / STATE_FILE).read_text())
    model = AlignModel.from_pretrained(directory)
    tensors = read_safetensors(directory / OPTIMIZER_FILE)
    state: dict = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return model, int(meta["step"])


# --- training ------------------------------------------------------------------------------------------------

def train_align_ddp(workspace: str | Path, out: str | Path, *, traffic: str = "flow", encoder: str | None = None,
                    heads: str = "both", steps: int = 3000, batch_size: int = 128, seed: int = 0, lr: float = 5e-4,
                    save_every: int = 500, resume: bool = False, log=print) -> dict:
    """Train an alignment on this process's share of every global batch; returns rank 0's log (others: {})."""
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, DistributedSampler

    from packetclip.align.api import traffic_side_for
    from packetclip.align.evaluate import zero_shot_metrics
    from packetclip.align.sides import TextSide, TrafficSide
    from packetclip.align.train import TrainSettings, adam, batches, build_pairs, new_model
    from packetclip.align.zero_shot import FINE_CLASSES
    from packetclip.traffic.workspace import Workspace

    rank, size, device = init_distributed()
    if batch_size % size:
        raise PacketClipError(f"--batch-size {batch_size} must be a multiple of the number of ranks ({size})")
    out = Path(out)
    ws = Workspace.open(workspace)
    descriptions = ws.descriptions()
    ids = np.unique(descriptions["flow_id"].to_numpy(np.int64))
    if not ws.has_splits():
        raise PacketClipError("the workspace has no split; run `packetclip split` first", path=str(ws.root))
    train_ids = np.intersect1d(ids, ws.split_flow_ids("train"))
    # rank 0 fits what is saved (a flow-table encoder without --encoder); the others load it after a barrier
    if rank == 0:
        side = traffic_side_for(traffic, ws, encoder, out, train_ids=train_ids, seed=seed)
    _barrier()
    if rank != 0:
        if encoder is None and traffic != "flow":       # what traffic_side_for chose: the shipped packet encoder
            from packetclip.encoders.pretrained import default_packet_encoder_path

            encoder = default_packet_encoder_path()
        side = TrafficSide.load(traffic, encoder or out / "flow-encoder")
    text_side = TextSide()
    t0 = time.perf_counter()
    data = build_pairs(side, text_side, ws, descriptions, train_ids)
    settings = TrainSettings(steps=steps, batch_size=batch_size, seed=seed, lr=lr)
    global_batch = min(batch_size, len(data.groups))
    if global_batch % size:
        raise PacketClipError(f"only {global_batch} training pairs: fewer than a batch divisible by {size} ranks")
    model = new_model(data, side, text_side, heads=heads, seed=seed)
    optimizer = adam(model.trainable_parameters(), settings)
    start = 0
    checkpoint = out / CHECKPOINT_DIR
    if resume and (checkpoint / STATE_FILE).is_file():
        loaded, start = load_checkpoint(checkpoint, optimizer)
        model.load_state_dict(loaded.state_dict())
        log(f"rank {rank}: resumed at step {start}")
    model.to(device)
    heads_module = _Heads(model)
    ddp = DistributedDataParallel(heads_module) if size > 1 else heads_module

    # the global stream of pair indices, step after step; rank r reads positions r, r+N, ... of it
    order = torch.from_numpy(batches(data, settings)).reshape(-1)
    sampler = DistributedSampler(range(len(order)), num_replicas=size, rank=rank, shuffle=False, drop_last=True)
    loader = DataLoader(order, batch_size=global_batch // size, sampler=sampler)
    traffic_rows = model.standardise(torch.from_numpy(np.ascontiguousarray(data.traffic, np.float32))).detach()
    text_rows = torch.from_numpy(np.ascontiguousarray(data.text, np.float32))
    flow_row, groups = torch.from_numpy(data.flow_row), torch.from_numpy(data.groups)
    history: list[dict] = []
    model.train()
    t_train = time.perf_counter()
    step = 0
    for step, idx in enumerate(loader, start=1):
        if step <= start:
            continue
        x, t = ddp(traffic_rows[flow_row[idx]].to(device), text_rows[idx].to(device))
        loss = global_batch_loss(x, t, groups[idx].to(device), model.logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.clamp_()
        if rank == 0 and (step % max(1, steps // 10) == 0 or step == steps):
            history.append({"step": step, "loss": float(loss), "seconds": time.perf_counter() - t_train})
            log(f"step {step}/{steps} loss {float(loss):.4f}")
        if rank == 0 and save_every and step % save_every == 0 and step < steps:
            save_checkpoint(checkpoint, model.cpu(), optimizer, step, {"world_size": size})
            model.to(device)
        if step >= steps:
            break
    train_s = time.perf_counter() - t_train
    model.eval()
    result: dict = {}
    if rank == 0:
        model.cpu().save_pretrained(out)
        save_checkpoint(checkpoint, model, optimizer, step, {"world_size": size})
        te = descriptions.drop_duplicates("flow_id")
        te = te[te["flow_id"].isin(ws.split_flow_ids("test")) & te["label"].astype(str).isin(FINE_CLASSES)]
        metrics = zero_shot_metrics(model, text_side, side.embed(ws, te["flow_id"].to_numpy(np.int64)),
                                    te["label"].astype(str).tolist())
        trained_steps = max(0, step - start)
        result = {"world_size": size, "steps": step, "resumed_from": start, "global_batch": global_batch,
                  "train_seconds": train_s, "steps_per_s": trained_steps / train_s if train_s > 0 else None,
                  "setup_seconds": t_train - t0, "zero_shot": metrics, "history": history,
                  "settings": asdict(settings), "backend": dist.get_backend() if dist.is_initialized() else None}
        (out / "ddp_log.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
        log(f"zero-shot top-1 {metrics['top1']:.4f} ({size} rank(s), {step} steps, {train_s:.1f} s)")
    _barrier()
    return result


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m packetclip.scale.ddp",
        description="Distributed training under torchrun (DDP: gloo on CPU, nccl on GPU).",
        epilog="Example: torchrun --nproc-per-node 2 -m packetclip.scale.ddp align ws/lab --traffic flow "
               "--steps 3000 --out models/align-ddp")
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("align", help="traffic-language alignment (InfoNCE over the global batch)")
    a.add_argument("workspace")
    a.add_argument("--out", required=True)
    a.add_argument("--traffic", default="flow", help="packet, packet+context or flow (as `packetclip align train`)")
    a.add_argument("--encoder", default=None, help="a saved traffic encoder folder or lens-tiny (default: the "
                   "shipped lens-tiny for packet sides, a flow-table encoder fitted here for flow)")
    a.add_argument("--heads", default="both", choices=["packet", "both"])
    a.add_argument("--steps", type=int, default=3000)
    a.add_argument("--batch-size", type=int, default=128, help="global batch (split over the ranks)")
    a.add_argument("--lr", type=float, default=5e-4)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--save-every", type=int, default=500)
    a.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    a.add_argument("--threads", type=int, default=1, help="torch threads per rank (entry point only)")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))     # an entry point: the one place thread counts are set
    try:
        train_align_ddp(args.workspace, args.out, traffic=args.traffic, encoder=args.encoder, heads=args.heads,
                        steps=args.steps, batch_size=args.batch_size, seed=args.seed, lr=args.lr,
                        save_every=args.save_every, resume=args.resume,
                        log=lambda m: print(m, file=sys.stderr, flush=True))
    except PacketClipError as err:
        print(f"error: {err.one_line()}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
