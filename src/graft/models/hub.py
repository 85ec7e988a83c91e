"""Reaching the hubs that publish pretrained weights, or saying at once that they cannot be reached.

Left to themselves, huggingface_hub and torch.hub retry for a minute or more before they fail on a machine with
no network (108 s for ``graft inspect resnet50`` measured here, 68 s with ``HF_HUB_OFFLINE=1``). graft asks first:
weights already in the local cache are used as they are; otherwise one TCP connection to the host is tried,
with a timeout of a few seconds, once per process and host. A host that does not answer is a
:class:`~graft.errors.HubUnavailableError` that comes within that timeout.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

from graft.errors import HubUnavailableError

__all__ = ["CONNECT_TIMEOUT", "hf_cached", "require_reachable", "torch_hub_cached"]

CONNECT_TIMEOUT = 3.0  # seconds for the name lookup and the connection together
_answers: dict[str, str | None] = {}  # host -> why it cannot be reached (None: it can), once per process
HF_FILES = ("model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def _why_unreachable(host: str, port: int = 443, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """Why ``host`` cannot be reached (no name, no route, no answer in ``timeout`` s), or None. The lookup runs in a
    thread, since getaddrinfo has no timeout of its own."""
    if host in _answers:
        return _answers[host]
    result: list[str | None] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(None)
        except OSError as exc:
            result.append(f"{type(exc).__name__}: {exc.strerror or exc}")

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    answer = result[0] if result else f"no answer within {timeout:g} s"
    _answers[host] = answer
    return answer


def hf_host() -> str:
    """The Hugging Face endpoint's host (``HF_ENDPOINT`` or huggingface.co)."""
    return urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"


def hf_cached(repo_id: str) -> bool:
    """Whether the Hugging Face cache holds a weights file of ``repo_id`` (then no network is needed)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    for filename in HF_FILES:
        try:
            found = try_to_load_from_cache(repo_id.split("@")[0], filename)
        except Exception:  # noqa: BLE001 - a malformed repo id: not cached
            return False
        if isinstance(found, str) and Path(found).is_file():
            return True
    return False


def torch_hub_cached(url: str) -> bool:
    """Whether torch.hub's checkpoint folder holds the file ``url`` names (then no network is needed)."""
    import torch

    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name).is_file()


def require_reachable(host: str, what: str, fix: str) -> None:
    """A HubUnavailableError within a few seconds when ``host`` cannot be reached (``HF_HUB_OFFLINE`` set counts as
    no network for the Hugging Face host); ``what`` is what was to be downloaded, ``fix`` what to do instead."""
    offline = host == hf_host() and os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    why = "HF_HUB_OFFLINE is set" if offline else _why_unreachable(host)
    if why is not None:
        raise HubUnavailableError(f"to download {what} from {host}", f"no connection ({why}): offline?", fix)
