"""The Hugging Face hub: search, resumable verified downloads, the cache on disk.

Everything here blocks on the network or the disk; front ends call it off their GUI
thread. Failures are EngineError subclasses with one-line messages (engine.hub.errors).

- ``search_models(query, mlx_only=, author=, task=, sort=, limit=) -> list[HubModel]``
- ``model_details(repo_id, revision=None) -> HubModel`` (exact download size, MTP)
- ``download_model(repo_id, revision=None, on_progress=, cancel=) -> DownloadResult``
- ``pending_downloads() -> list[PendingDownload]`` (resume one by downloading again)
"""

from __future__ import annotations

from engine.hub.download import DownloadPlan, DownloadResult, download_model, plan_download
from engine.hub.errors import (
    CorruptDownload,
    DownloadCancelled,
    DownloadInterrupted,
    GatedModelError,
    HubError,
)
from engine.hub.progress import DownloadProgress
from engine.hub.search import SORTS, HubModel, model_details, search_models
from engine.hub.state import PendingDownload, pending_downloads

__all__ = [
    "SORTS",
    "CorruptDownload",
    "DownloadCancelled",
    "DownloadInterrupted",
    "DownloadPlan",
    "DownloadProgress",
    "DownloadResult",
    "GatedModelError",
    "HubError",
    "HubModel",
    "PendingDownload",
    "download_model",
    "model_details",
    "pending_downloads",
    "plan_download",
    "search_models",
]
