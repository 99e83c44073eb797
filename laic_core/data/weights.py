"""Where an open_clip pretrained tag's weights are, and whether they can be fetched now.

open_clip downloads a tag's weights from the Hugging Face hub on first use and
reads them from its cache after that. Without a network, the hub client
retries every request for about a minute, printing a warning per retry, even
when the file is already cached. So `load_clip` asks here first: weights in
the cache load with the hub client offline (no request at all); weights
absent with no network stop at once with what to do.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

HUB_TIMEOUT_SECONDS = 3.0
_TRUE = ("1", "true", "yes", "on")


def hub_files(model_name: str, tag: str) -> tuple[str, list[str]] | None:
    """(hub repository, file names open_clip tries, safetensors first) for a tag, None if not on the hub."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model_name, tag) or {}
    hub = cfg.get("hf_hub", "")
    if not hub:
        return None
    repo, filename = os.path.split(hub)  # as open_clip reads it: "org/model/" has the default file name
    filename = filename or "open_clip_pytorch_model.bin"
    if filename.endswith(".safetensors"):
        return repo, [filename]
    return repo, [filename.rsplit(".", 1)[0] + ".safetensors", filename]


def cached_weights(model_name: str, tag: str) -> Path | None:
    """The tag's weights in the local Hugging Face cache, None when they are not there (or not on the hub)."""
    files = hub_files(model_name, tag)
    if files is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    repo, names = files
    for name in names:
        found = try_to_load_from_cache(repo, name)
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


def offline_asked() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hub_reachable(timeout: float = HUB_TIMEOUT_SECONDS) -> bool:
    """Can this machine open a connection to the hub (or has a proxy been set, which we cannot judge)?"""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """The hub client makes no request inside: cached files are read, nothing is fetched."""
    from huggingface_hub import constants

    before_env, before = os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before
        if before_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before_env
