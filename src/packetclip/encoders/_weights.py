"""Strict safetensors + JSON persistence shared by the flow-table and ET-BERT models.

A checkpoint that does not match the model it is loaded into (missing or extra tensors, wrong shapes, a
config that is not JSON) is a user error: it becomes one :class:`CheckpointError` line, never a traceback
and never a silently half-initialised model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import torch

from packetclip.errors import CheckpointError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def _names(keys, limit: int = 6) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def check_tensors(expected: Mapping[str, tuple], got: Mapping[str, torch.Tensor], path) -> None:
    """Raise CheckpointError unless ``got`` has exactly the names and shapes of ``expected``."""
    missing = set(expected) - set(got)
    extra = set(got) - set(expected)
    problems = []
    if missing:
        problems.append(f"missing keys: {_names(missing)}")
    if extra:
        problems.append(f"unexpected keys: {_names(extra)}")
    if problems:
        raise CheckpointError("checkpoint does not match the model: " + "; ".join(problems), path=str(path))
    for name, shape in expected.items():
        have = tuple(got[name].shape)
        if have != tuple(shape):
            raise CheckpointError(
                f"wrong shape for {name}: checkpoint has {list(have)}, model expects {list(shape)}", path=str(path)
            )


def save_module(module: torch.nn.Module, directory: Path, config: dict, extra_metadata: dict | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (parameters and persistent buffers) into ``directory``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    state = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    meta = {"format": "pt"}
    meta.update({k: str(v) for k, v in (extra_metadata or {}).items()})
    save_file(state, str(directory / WEIGHTS_NAME), metadata=meta)
    return directory


def read_config(directory: Path) -> dict:
    """Read ``config.json`` of a saved model directory (CheckpointError if absent or not a JSON object)."""
    path = Path(directory) / CONFIG_NAME
    if not Path(directory).is_dir():
        raise CheckpointError("not a saved model directory", path=str(directory))
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"no {CONFIG_NAME} in model directory", path=str(directory)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"unreadable config: {err}", path=str(path)) from None
    if not isinstance(config, dict):
        raise CheckpointError("config is not a JSON object", path=str(path))
    return config


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Load every tensor of a safetensors file (CheckpointError on a missing or corrupt file)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError("weights file not found", path=str(path))
    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"corrupt safetensors file: {' '.join(str(err).split())[:200]}", path=str(path)) from None


def load_module(module: torch.nn.Module, directory: Path) -> torch.nn.Module:
    """Load ``model.safetensors`` from ``directory`` into ``module`` with strict name and shape checks."""
    path = Path(directory) / WEIGHTS_NAME
    tensors = read_safetensors(path)
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    check_tensors(expected, tensors, path)
    module.load_state_dict(tensors, strict=True)
    return module
