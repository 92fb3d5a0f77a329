"""Connecting to Ray: a local one started for the run, a running cluster by address, or ``auto``."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from packetclip.errors import PacketClipError


class RayError(PacketClipError):
    """Ray is missing, cannot be reached, or a task failed for good."""


def require_ray():
    """The ``ray`` module, or one clear line telling how to install it."""
    try:
        import ray
    except ImportError:
        raise RayError("Ray is not installed; `pip install 'packetclip[ray]'`") from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None,
                start_attempts: int = 3) -> Iterator[object]:
    """Ray for the duration of a block.

    ``address`` None or ``"local"``: start a local Ray with ``num_cpus`` (default: every core) and stop it after;
    ``"auto"``: the cluster this machine belongs to (``ray start`` ran here); ``"HOST:PORT"``: that cluster. A
    session already initialised by the caller (a test, a notebook) is reused and left running. Ray gives a
    node 30 s to register; on an overloaded machine that can run out, so starting is tried ``start_attempts``
    times.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict = {"log_to_driver": False, "configure_logging": False}
    if address in (None, "", "local"):
        kwargs.update(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False)
    else:
        kwargs["address"] = address
    for attempt in range(start_attempts):
        try:
            ray.init(**kwargs)
            break
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise RayError(f"cannot connect to Ray at {address!r}: {' '.join(str(err).split())[:300]}") from None
        except Exception as err:  # noqa: BLE001 (Ray raises a bare Exception when a node misses its start deadline)
            ray.shutdown()
            if attempt + 1 == start_attempts or "timed out during startup" not in str(err):
                raise RayError(f"Ray did not start: {' '.join(str(err).split())[:300]}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def task_failure(err: BaseException) -> str:
    """One line for a failed Ray task (its cause when it was ours, else Ray's reason)."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, PacketClipError):
        return cause.one_line()
    text = " ".join(str(cause or err).split())
    return f"{type(err).__name__}: {text[:300]}"


#: Options taking an optional Ray address: alone they mean a local Ray.
RAY_FLAGS = ("--ray",)


def looks_like_ray_address(word: str) -> bool:
    """``local``, ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``; a capture path or another option is not."""
    return word in ("local", "auto") or (":" in word and not word.startswith("-"))


def expand_ray_flag(argv: list[str]) -> list[str]:
    """``--ray`` with an optional ADDRESS, for a CLI library whose options cannot make their value optional:
    ``--ray`` followed by an address becomes ``--ray=ADDRESS``; ``--ray`` followed by anything else (a capture,
    another option, nothing) becomes ``--ray=local``. Words after ``--`` are left alone."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            out.extend(argv[i:])
            break
        if word in RAY_FLAGS:
            following = argv[i + 1] if i + 1 < len(argv) else None
            if following is not None and looks_like_ray_address(following):
                out.append(f"{word}={following}")
                i += 2
                continue
            out.append(f"{word}=local")
        else:
            out.append(word)
        i += 1
    return out
