"""Training on N processes with PyTorch DistributedDataParallel, started by ``torchrun``: alignment, the
mission GNN and Lens pre-training::

    torchrun --nproc-per-node 2 -m packetclip.scale.ddp align WS --traffic flow --steps 3000 --out models/align-ddp
    torchrun --nnodes 4 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HEAD:29500 \\
        -m packetclip.scale.ddp align WS --encoder models/lens --traffic packet --out models/align
    torchrun --nproc-per-node 2 -m packetclip.scale.ddp gnn WS... --out models/gnn-ddp
    torchrun --nproc-per-node 2 -m packetclip.scale.ddp lens WS... --steps 2000 --out models/lens-ddp

Without ``torchrun`` each runs as one process (world size 1), the reference the distributed run must match.
(:func:`train_gnn_ddp` and :func:`pretrain_lens_ddp` say how they split their batches.)

How alignment stays the same training as :func:`packetclip.align.train.train`:

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
EXTRA_FILE = "extra.safetensors"


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

def save_checkpoint(directory: Path, model, optimizer: torch.optim.Optimizer, step: int, extra: dict,
                    tensors: dict | None = None) -> None:
    """Model (``save_pretrained``), optimizer state and ``tensors`` (safetensors) and the step with ``extra``
    (JSON), replaced as a whole."""
    import shutil

    from safetensors.torch import save_file

    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    state = optimizer.state_dict()
    opt_tensors = {f"{i}.{k}": (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous().clone()
                   for i, s in state["state"].items() for k, v in s.items()}
    save_file(opt_tensors, str(tmp / OPTIMIZER_FILE))
    if tensors:
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(tmp / EXTRA_FILE))
    groups = [{k: v for k, v in g.items()} for g in state["param_groups"]]
    (tmp / STATE_FILE).write_text(json.dumps({"step": step, "param_groups": groups, **extra}, indent=1,
                                             default=_json_default) + "\n")
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def load_checkpoint(directory: Path, optimizer: torch.optim.Optimizer, model_cls=None):
    """(model, step) from a checkpoint folder, the optimizer state loaded in place; ``model_cls`` (default:
    :class:`~packetclip.align.model.AlignModel`) reads the model."""
    from packetclip.encoders._weights import read_safetensors

    if model_cls is None:
        from packetclip.align.model import AlignModel as model_cls

    directory = Path(directory)
    meta = json.loads((directory / STATE_FILE).read_text())
    model = model_cls.from_pretrained(directory)
    tensors = read_safetensors(directory / OPTIMIZER_FILE)
    state: dict = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return model, int(meta["step"])


def checkpoint_meta(directory: Path) -> tuple[dict, dict]:
    """(the checkpoint's JSON state, its extra tensors)."""
    from packetclip.encoders._weights import read_safetensors

    meta = json.loads((Path(directory) / STATE_FILE).read_text())
    extra = Path(directory) / EXTRA_FILE
    return meta, (read_safetensors(extra) if extra.is_file() else {})


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


# --- Lens pre-training ----------------------------------------------------------------------------------------

class _LensStep(nn.Module):
    """One pre-training step's objectives behind one ``forward`` so that DDP sees every use of the parameters."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, builder, settings, seed_step: int) -> dict:
        from packetclip.encoders.pretrain import step_losses

        return step_losses(self.model, builder, settings, seed_step)


def pretrain_lens_ddp(workspaces, out: str | Path, *, config=None, settings=None, resume: bool = False,
                      log=print) -> dict:
    """Lens pre-training (:func:`packetclip.encoders.pretrain.pretrain`'s objectives and checkpoints) on N
    processes.

    Each step's global batch (``batch_msp`` / ``batch_pop`` / ``batch_htp`` examples) is split over the ranks:
    rank r draws its 1/N share from its own seeded stream — ``step_losses`` seeded with ``step * N + r``, so
    every (step, rank) pair has a stream of its own and N=1 is exactly the one-process run — and DDP averages
    the gradients. HTP's in-batch InfoNCE uses the rank's own negatives (1/N of them). Checkpoints are
    ``pretrain``'s own format (``OUT/checkpoint``, rank 0 only, every ``save_every`` steps): ``--resume``
    continues a run (with the same number of ranks) and ``packetclip encoder pretrain --resume`` can continue
    it on one process. The model goes to ``OUT``, rank 0's log to ``OUT/ddp_log.json``.
    """
    from dataclasses import replace

    from torch.nn.parallel import DistributedDataParallel

    from packetclip.encoders.base import local_seed
    from packetclip.encoders.lens import LensConfig, LensModel
    from packetclip.encoders.pretrain import (CHECKPOINT_DIR as LENS_CHECKPOINT, BatchBuilder, PretrainSettings,
                                              load_checkpoint as load_lens_checkpoint, make_optimizer,
                                              save_checkpoint as save_lens_checkpoint, validation_losses,
                                              _val_corpus)
    from packetclip.encoders.data import TrafficCorpus

    rank, size, device = init_distributed()
    out = Path(out)
    ckpt = out / LENS_CHECKPOINT
    workspaces = [str(w) for w in workspaces]
    t0 = time.perf_counter()
    if resume:
        if not (ckpt / "trainer_state.json").is_file():
            raise PacketClipError("nothing to resume: no checkpoint/ in the output folder", path=str(out))
        model, optimizer, stored, step, history = load_lens_checkpoint(ckpt, None, device=device)
        if settings is not None:
            stored.steps = settings.steps
        settings = stored
        meta = json.loads((ckpt / "trainer_state.json").read_text())
        if meta.get("world_size", size) != size:
            raise PacketClipError(f"the checkpoint was written by {meta.get('world_size')} rank(s), not {size}")
    else:
        settings = settings or PretrainSettings()
        config = config or LensConfig()
        model = LensModel(config, seed=settings.seed).to(device)
        optimizer = make_optimizer(model, settings)
        step, history = 0, []
    for name in ("batch_msp", "batch_pop", "batch_htp"):
        if getattr(settings, name) % size:
            raise PacketClipError(f"{name} {getattr(settings, name)} must be a multiple of the ranks ({size})")
    share = replace(settings, batch_msp=settings.batch_msp // size, batch_pop=settings.batch_pop // size,
                    batch_htp=settings.batch_htp // size)
    corpus = TrafficCorpus.from_workspaces(workspaces, view_bytes=model.config.view_bytes, split="train")
    builder = BatchBuilder(model, corpus, share)
    wrapped = _LensStep(model)
    forward = DistributedDataParallel(wrapped, find_unused_parameters=True) if size > 1 else wrapped
    model.train()
    first = step
    t_train = time.perf_counter()

    def save() -> None:
        save_lens_checkpoint(ckpt, model, optimizer, settings, step, history, workspaces)
        state = json.loads((ckpt / "trainer_state.json").read_text())
        state["world_size"] = size
        (ckpt / "trainer_state.json").write_text(json.dumps(state))

    while step < settings.steps:
        with local_seed(settings.seed * 1_000_003 + step * size + rank):   # dropout: a stream per (step, rank)
            for group in optimizer.param_groups:
                group["lr"] = settings.lr_at(step)
            losses = forward(builder, share, step * size + rank)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            optimizer.step()
        names = sorted(losses)
        values = torch.stack([losses[k].detach().float().reshape(()) for k in names])
        if size > 1:
            dist.all_reduce(values)
            values /= size
        step += 1
        history.append({"step": step - 1, "lr": settings.lr_at(step - 1),
                        **{k: float(v) for k, v in zip(names, values)}})
        if rank == 0 and settings.save_every and step % settings.save_every == 0 and step < settings.steps:
            save()
    train_s = time.perf_counter() - t_train
    result: dict = {}
    if rank == 0:
        model.eval()
        save()
        model.save_pretrained(out)
        val = _val_corpus(workspaces, model.config.view_bytes)
        validation = validation_losses(model, val, settings) if val is not None and len(val) else {}
        result = {"world_size": size, "steps": step, "resumed_from": first, "train_seconds": train_s,
                  "steps_per_s": (step - first) / train_s if train_s > 0 else None,
                  "setup_seconds": t_train - t0, "final": history[-1] if history else {},
                  "validation": validation, "backend": dist.get_backend() if dist.is_initialized() else None}
        (out / "ddp_log.json").write_text(json.dumps(result, indent=1, default=_json_default) + "\n")
        log(f"Lens pre-training: {step} steps on {size} rank(s), {train_s:.1f} s; validation {validation}")
    _barrier()
    return result


# --- the mission GNN ------------------------------------------------------------------------------------------

class _GnnForward(nn.Module):
    """The GNN's two steps (per-flow graph features, then the temporal head) behind one ``forward`` for DDP."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, xb: torch.Tensor, gb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t = xb.shape[0], xb.shape[1]
        steps = self.model.step_features(xb.reshape(b * t, -1)).reshape(b, t, -1)
        return self.model.temporal(steps, gb)


def train_gnn_ddp(workspaces, out: str | Path, *, settings=None, encoder: str | None = None,
                  alignment: str | None = None, resume: bool = False, save_every: int = 1, log=print) -> dict:
    """The mission GNN of ``packetclip train`` on N processes: the same loss (``gnn_batch_loss``), each rank
    training on its share of every epoch's window batches.

    Rank 0 prepares what the GNN reads (flow-table encoder or ``encoder``, alignment trained or ``alignment``,
    the aligned vectors, the initial GNN) into ``OUT/setup`` and the other ranks load it, so every rank starts
    from the same model and data. Each epoch's batch list is drawn by the same seeded generator on every rank; a
    :class:`~torch.utils.data.DistributedSampler` (no shuffle, drop_last) over it gives rank r the batches
    r, r+N, …; DDP averages the gradients, so one step covers N batches: an epoch over a large training set has
    1/N of the steps of one process (the same data, an N times larger effective batch); ``min_batches`` stays a
    floor on the *steps* per epoch, so a small training set gets as many steps as on one process, each on N
    batches. Rank 0 scores validation mAUC each epoch, keeps
    the best epoch (as ``fit_gnn`` does) and writes ``OUT/checkpoint`` every ``save_every`` epochs (model,
    AdamW state, best state, the batch generator's state; dropout is seeded per (epoch, rank): ``--resume``
    continues exactly). At the end rank 0 writes the bundle (as ``packetclip train`` does) to ``OUT/bundle`` and
    ``OUT/ddp_log.json``.
    """
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DistributedSampler

    from packetclip.align.model import AlignModel
    from packetclip.align.sides import TextSide, TrafficSide
    from packetclip.encoders._weights import read_safetensors
    from packetclip.encoders.base import local_seed
    from packetclip.reasoning.model import MISSION_CLASSES, MissionGNN
    from packetclip.reasoning.train import (ReasoningSettings, build_gnn, calibrate_threshold, default_graphs,
                                            gnn_batch_loss, length_batches, load_flow_rows, make_flow_data, mauc,
                                            predict_proba, prepare, train_alignment_on)
    from packetclip.reasoning.windows import past_windows, train_chunks

    rank, size, device = init_distributed()
    s = settings or ReasoningSettings()
    out = Path(out)
    setup = out / "setup"
    workspaces = [str(w) for w in workspaces]
    t0 = time.perf_counter()
    if rank == 0 and not (resume and (setup / "aligned.safetensors").is_file()):
        from safetensors.torch import save_file

        data0, side = prepare(workspaces, setup, encoder=encoder, settings=s, modes=(s.time_step,))
        train0 = data0.split == "train"
        text_side = TextSide()
        if alignment is not None:
            align = AlignModel.from_pretrained(alignment)
            align.check_traffic_encoder(side.fingerprint, where=str(alignment))
        else:
            align = train_alignment_on(data0.rows, data0.embeddings, side, text_side, settings=s, train_mask=train0)
        aligned0 = align.traffic_vectors(data0.embeddings)
        gnn0 = build_gnn(default_graphs(s.seed), lambda w: align.text_vectors(text_side.embed(list(w))),
                         embed_dim=aligned0.shape[1], settings=s, fine_classes=sorted(set(data0.fine[train0].tolist())))
        gnn0.save_pretrained(setup / "gnn")
        align.save_pretrained(setup / "align")
        save_file({"aligned": torch.from_numpy(np.ascontiguousarray(aligned0, np.float32))},
                  str(setup / "aligned.safetensors"))
        (setup / "side.json").write_text(json.dumps({"kind": side.kind, "path": str(side.path)}) + "\n")
    _barrier()
    gnn = MissionGNN.from_pretrained(setup / "gnn")
    aligned = read_safetensors(setup / "aligned.safetensors")["aligned"].numpy()
    rows, _ = load_flow_rows(workspaces, seed=s.seed)
    data = make_flow_data(rows, np.zeros((len(rows), 0), np.float32), (s.time_step,))
    if len(aligned) != len(data.mission):
        raise PacketClipError("OUT/setup was prepared from other workspaces; use a new --out", path=str(setup))

    rng = np.random.default_rng(s.seed)
    keys = data.keys[s.time_step]
    _, _, gaps_np = past_windows(keys, data.times_ns, s.window)
    x, gaps, y = torch.from_numpy(aligned), torch.from_numpy(gaps_np), torch.from_numpy(data.mission)
    fine_lookup = {c: i for i, c in enumerate(gnn.config.fine_classes)}
    yf = torch.from_numpy(np.array([fine_lookup.get(f, 0) for f in data.fine], np.int64))
    train = data.split == "train"
    counts = np.bincount(data.mission[train], minlength=len(MISSION_CLASSES)).astype(np.float64)
    weights = torch.tensor(np.where(counts > 0, (counts.sum() / np.maximum(counts, 1)) ** 0.5, 0.0),
                           dtype=torch.float32)
    weights = weights / weights[weights > 0].mean()
    train_t = torch.from_numpy(train)
    val = data.split == "val"
    gnn.to(device)
    params = [p for p in gnn.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    wrapped = _GnnForward(gnn)
    forward = DistributedDataParallel(wrapped, find_unused_parameters=True) if size > 1 else wrapped
    checkpoint = out / CHECKPOINT_DIR
    start, best, best_state, history = 0, -1.0, None, []
    if resume and (checkpoint / STATE_FILE).is_file():
        loaded, start = load_checkpoint(checkpoint, opt, model_cls=MissionGNN)
        gnn.load_state_dict(loaded.state_dict())
        meta, extra = checkpoint_meta(checkpoint)
        if meta.get("world_size") != size:
            raise PacketClipError(f"the checkpoint was written by {meta.get('world_size')} rank(s), not {size}")
        rng.bit_generator.state = meta["batch_rng"]
        best, history = float(meta["best"]), list(meta["history"])
        best_state = {k[len("best."):]: v for k, v in extra.items() if k.startswith("best.")} or None
        log(f"rank {rank}: resumed after epoch {start}")
    t_train = time.perf_counter()
    steps_done = 0
    for epoch in range(start, s.epochs):
        with local_seed(s.seed * 1_000_003 + epoch * size + rank):     # dropout: a stream per (epoch, rank)
            threshold = None
            if s.pseudo_label is not None:
                a, b = (float(v) for v in s.pseudo_label)
                threshold = a + (b - a) * (epoch / max(1, s.epochs - 1))
            batches: list[np.ndarray] = []
            n_chunks = 0
            while len(batches) < max(1, s.min_batches) * size:     # min_batches: steps per epoch, at least
                chunks = train_chunks(keys, data.times_ns, s.window, offset=int(rng.integers(s.window)))
                chunks = chunks[train[np.maximum(chunks, 0)].any(1) & (chunks >= 0).any(1)]
                if not len(chunks):
                    raise PacketClipError("no training flows (the train split is empty)")
                n_chunks += len(chunks)
                batches += length_batches(chunks, s.batch_size * s.window, 4 * s.batch_size, rng)
            sampler = DistributedSampler(range(len(batches)), num_replicas=size, rank=rank, shuffle=False,
                                         drop_last=True)
            gnn.train()
            total = torch.zeros(1)
            for i in sampler:
                ch = batches[i]
                loss = gnn_batch_loss(gnn, x, gaps, ch, y, yf, train_t, weights, s, threshold, forward=forward,
                                      always=size > 1)
                if loss is None:
                    continue
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                steps_done += 1
                total += float(loss.detach()) * ch.shape[0]
            if size > 1:
                dist.all_reduce(total)
            gnn.eval()
            record = {"epoch": epoch + 1, "loss": float(total) / max(1, n_chunks),
                      "seconds": time.perf_counter() - t_train}
            if rank == 0:
                if val.any():
                    proba = predict_proba(gnn, aligned, keys, data.times_ns)
                    record["val_mauc"] = mauc(data.mission[val], proba[val])[0]
                    score = record["val_mauc"] if np.isfinite(record["val_mauc"]) else -record["loss"]
                else:
                    score = -record["loss"]
                if score > best:
                    best = score
                    best_state = {k: v.detach().clone() for k, v in gnn.state_dict().items()}
                history.append(record)
                log(f"epoch {epoch + 1}/{s.epochs} loss {record['loss']:.4f} val mAUC {record.get('val_mauc')}")
                if save_every and ((epoch + 1) % save_every == 0 or epoch + 1 == s.epochs):
                    extra = {f"best.{k}": v for k, v in (best_state or {}).items()}
                    save_checkpoint(checkpoint, gnn, opt, epoch + 1,
                                    {"world_size": size, "best": best, "history": history,
                                     "batch_rng": rng.bit_generator.state}, extra)
    train_s = time.perf_counter() - t_train
    result: dict = {}
    if rank == 0:
        from packetclip.reasoning.bundle import Bundle

        if best_state is not None:
            gnn.load_state_dict(best_state)
        gnn.eval()
        proba = predict_proba(gnn, aligned, keys, data.times_ns)
        benign_val = val & (data.mission == 0)
        threshold = calibrate_threshold(1.0 - proba[benign_val, 0]) if benign_val.any() else 0.5
        test = data.split == "test"
        side_info = json.loads((setup / "side.json").read_text())
        side = TrafficSide.load(side_info["kind"], side_info["path"])
        result = {"world_size": size, "epochs": s.epochs, "resumed_from": start, "steps": steps_done,
                  "train_seconds": train_s, "steps_per_s": steps_done / train_s if train_s > 0 else None,
                  "setup_seconds": t_train - t0,
                  "val_mauc": mauc(data.mission[val], proba[val])[0] if val.any() else None,
                  "test_mauc": mauc(data.mission[test], proba[test])[0] if test.any() else None,
                  "history": history, "backend": dist.get_backend() if dist.is_initialized() else None}
        Bundle(gnn, AlignModel.from_pretrained(setup / "align"), side, threshold=threshold,
               meta={"training": {k: v for k, v in result.items() if k != "history"}, "host_context": s.host_context},
               graphs=default_graphs(s.seed)).save(out / "bundle")
        (out / "ddp_log.json").write_text(json.dumps(result, indent=1, default=_json_default) + "\n")
        log(f"GNN val mAUC {result['val_mauc']} ({size} rank(s), {s.epochs} epochs, {train_s:.1f} s)")
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
    g = sub.add_parser("gnn", help="the mission GNN of `packetclip train` (rank-sharded window batches)")
    g.add_argument("workspaces", nargs="+")
    g.add_argument("--out", required=True)
    g.add_argument("--encoder", default=None, help="a packet encoder folder (default: a flow-table encoder fitted "
                   "on the training flows)")
    g.add_argument("--alignment", default=None, help="an alignment folder (default: one trained here, on rank 0)")
    g.add_argument("--epochs", type=int, default=12)
    g.add_argument("--batch-size", type=int, default=64, help="window chunks per batch (per rank)")
    g.add_argument("--min-batches", type=int, default=40, help="optimizer steps per epoch, at least (small data)")
    g.add_argument("--align-steps", type=int, default=1500)
    g.add_argument("--describe-flows", type=int, default=2000)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--save-every", type=int, default=1, help="epochs between checkpoints")
    g.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    g.add_argument("--threads", type=int, default=1, help="torch threads per rank (entry point only)")
    p = sub.add_parser("lens", help="Lens pre-training (each step's batch split over the ranks)")
    p.add_argument("workspaces", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--size", default="tiny", help="Lens size (as `packetclip encoder pretrain`)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-msp", type=int, default=8, help="span-prediction examples per step (all ranks)")
    p.add_argument("--batch-pop", type=int, default=16)
    p.add_argument("--batch-htp", type=int, default=16)
    p.add_argument("--save-every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank (entry point only)")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))     # an entry point: the one place thread counts are set
    try:
        if args.command == "lens":
            from packetclip.encoders.lens import LensConfig
            from packetclip.encoders.pretrain import PretrainSettings

            settings = PretrainSettings(steps=args.steps, batch_msp=args.batch_msp, batch_pop=args.batch_pop,
                                        batch_htp=args.batch_htp, save_every=args.save_every, seed=args.seed)
            pretrain_lens_ddp(args.workspaces, args.out, config=None if args.resume else LensConfig(size=args.size),
                              settings=settings, resume=args.resume,
                              log=lambda m: print(m, file=sys.stderr, flush=True))
            return 0
        if args.command == "gnn":
            from packetclip.reasoning.train import ReasoningSettings

            settings = ReasoningSettings(epochs=args.epochs, batch_size=args.batch_size, min_batches=args.min_batches,
                                         align_steps=args.align_steps, describe_flows=args.describe_flows,
                                         seed=args.seed)
            train_gnn_ddp(args.workspaces, args.out, settings=settings, encoder=args.encoder,
                          alignment=args.alignment, resume=args.resume, save_every=args.save_every,
                          log=lambda m: print(m, file=sys.stderr, flush=True))
            return 0
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
