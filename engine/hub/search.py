"""Search the Hugging Face hub and describe what each result would give a user."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime

from engine.hub import describe
from engine.hub.errors import GatedModelError, HubError, hub_error
from engine.hub.files import select_files
from engine.hub.net import ensure_reachable

SORTS = {
    "downloads": "downloads",
    "likes": "likes",
    "recent": "last_modified",
    "created": "created_at",
    "trending": "trending_score",
}
EXPAND = [
    "author",
    "downloads",
    "likes",
    "lastModified",
    "createdAt",
    "gated",
    "private",
    "library_name",
    "pipeline_tag",
    "tags",
    "safetensors",
    "siblings",
    "config",
    "cardData",
    "usedStorage",
]


@dataclass(frozen=True)
class HubModel:
    """One hub repo as the model browser shows it (plain values only)."""

    id: str
    author: str = ""
    downloads: int = 0
    likes: int = 0
    last_modified: datetime | None = None
    created_at: datetime | None = None
    task: str = ""  # pipeline tag, e.g. "text-generation"
    library: str = ""
    tags: tuple[str, ...] = ()
    license: str = ""
    gated: str = ""  # "" | "auto" | "manual": gated repos need a token with access
    private: bool = False
    model_type: str = ""
    size_bytes: int | None = None  # weights, from safetensors metadata (estimate)
    quantization: str = ""  # "4-bit", "bf16", ...
    parameters: int | None = None
    mtp: str = ""  # main models: "weights" (carries MTP), "declared" (config only), ""
    decoder: str = ""  # "mtp" (an MTP decoder repo), "draft" (a draft model), ""
    is_mlx: bool = False
    # Only from model_details (one repo at a time):
    commit: str = ""
    download_bytes: int | None = None  # what `pull` fetches: the files MLX needs
    files: tuple[str, ...] = ()


def search_models(
    query: str = "",
    *,
    mlx_only: bool = True,
    author: str | None = None,
    task: str | None = None,
    sort: str = "downloads",
    limit: int = 30,
    token: str | None = None,
) -> list[HubModel]:
    """Models matching ``query``, best first by ``sort`` (a key of SORTS).

    Blocks on the network; call it off the GUI thread.
    """
    from huggingface_hub import HfApi

    if sort not in SORTS:
        raise HubError(f"unknown sort {sort!r}; use one of {', '.join(SORTS)}")
    if limit < 1:
        raise HubError("the result limit must be at least 1")
    ensure_reachable()
    try:
        infos = HfApi(token=token).list_models(
            search=query.strip() or None,
            author=author or None,
            filter=["mlx"] if mlx_only else None,
            pipeline_tag=task or None,
            sort=SORTS[sort],
            limit=limit,
            expand=EXPAND,
        )
        return [from_info(info) for info in infos]
    except Exception as e:
        raise hub_error(e, query or "the hub") from None


def from_info(info) -> HubModel:
    """A HubModel from huggingface_hub's ModelInfo (listing or model_info)."""
    config = info.config if isinstance(info.config, dict) else {}
    tags = tuple(info.tags or ())
    files = tuple(s.rfilename for s in info.siblings or ())
    dtypes = dict(info.safetensors.parameters) if info.safetensors else None
    quant = describe.quantization(config, info.id, dtypes)
    decoder = describe.decoder_kind(config, info.id, tags)
    card = info.card_data.to_dict() if info.card_data is not None else None
    size = describe.weights_bytes(dtypes) if dtypes else (info.used_storage or None)
    return HubModel(
        id=info.id,
        author=info.author or (info.id.split("/", 1)[0] if "/" in info.id else ""),
        downloads=int(info.downloads or 0),
        likes=int(info.likes or 0),
        last_modified=info.last_modified,
        created_at=info.created_at,
        task=info.pipeline_tag or "",
        library=info.library_name or "",
        tags=tags,
        license=describe.license_of(card, tags),
        gated=info.gated if isinstance(info.gated, str) else "",
        private=bool(info.private),
        model_type=str(config.get("model_type") or ""),
        size_bytes=size,
        quantization=quant,
        parameters=describe.parameter_count(dtypes, quant, info.id),
        mtp="" if decoder else describe.mtp_status(config, info.id, files),
        decoder=decoder,
        is_mlx=info.library_name == "mlx" or "mlx" in tags,
        commit=info.sha or "",
    )


def model_details(repo_id: str, revision: str | None = None, token: str | None = None) -> HubModel:
    """One repo in full: exact download size, and MTP read from its own config.json.

    Blocks on the network (two or three small requests).
    """
    from huggingface_hub import HfApi

    from engine.hub.download import check_repo_id
    from engine.hub.transfer import fetch_bytes

    repo_id = check_repo_id(repo_id)
    ensure_reachable()
    try:
        info = HfApi(token=token).model_info(repo_id, revision=revision, files_metadata=True)
    except Exception as e:
        raise hub_error(e, repo_id, revision) from None
    model = from_info(info)
    sizes = {s.rfilename: s.size or 0 for s in info.siblings or ()}
    needed = select_files(list(sizes))
    config = _remote_json(repo_id, info.sha, "config.json", sizes, token, fetch_bytes)
    weight_names: list[str] = []
    for index in (n for n in needed if n.endswith(".safetensors.index.json")):
        data = _remote_json(repo_id, info.sha, index, sizes, token, fetch_bytes)
        weight_names += list((data.get("weight_map") or {}).keys())
    decoder = describe.decoder_kind(config, repo_id, model.tags) if config else model.decoder
    mtp = ""
    if not decoder:
        mtp = describe.mtp_status(config, repo_id, tuple(sizes))
        if mtp == "declared" and describe.has_mtp_weight_names(weight_names, config):
            mtp = "weights"
    return replace(
        model,
        model_type=str(config.get("model_type") or model.model_type),
        quantization=describe.quantization(config, repo_id) or model.quantization,
        decoder=decoder,
        mtp=mtp,
        commit=info.sha or "",
        download_bytes=sum(sizes[n] for n in needed),
        files=tuple(needed),
    )


def _remote_json(repo_id, commit, name, sizes, token, fetch) -> dict:
    if name not in sizes or sizes[name] > 50_000_000:  # a sane index is far smaller
        return {}
    try:
        data = json.loads(fetch(repo_id, commit, name, token))
    except GatedModelError:
        return {}  # the listing is public even when the files are gated
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
