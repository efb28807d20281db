"""Hub failures as one-line messages a person can act on."""

from __future__ import annotations

from engine.errors import EngineError


class HubError(EngineError):
    """The hub could not answer (unreachable, refused, unknown repo)."""


class GatedModelError(HubError):
    """A gated or private repo that needs a token with access."""


class DownloadInterrupted(HubError):
    """The transfer stopped; what arrived is kept and the next pull resumes."""


class DownloadCancelled(HubError):
    """Cancelled on request; what arrived is kept and the next pull resumes."""


class CorruptDownload(HubError):
    """A file arrived but its checksum is wrong; the bad bytes were deleted."""


def endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


def have_token() -> bool:
    from huggingface_hub import get_token

    try:
        return bool(get_token())
    except Exception:  # a broken token store is the same as none here
        return False


def token_hint() -> str:
    return "set HF_TOKEN=hf_... or run `huggingface-cli login` (`hf auth login`)"


def hub_error(exc: BaseException, repo_id: str, revision: str | None = None) -> EngineError:
    """Translate a huggingface_hub / HTTP exception into an EngineError."""
    import httpx2
    from huggingface_hub import errors as hf

    page = f"{endpoint()}/{repo_id}"
    if isinstance(exc, EngineError):
        return exc
    if isinstance(exc, hf.GatedRepoError):
        if have_token():
            return GatedModelError(
                f"{repo_id} is gated and your token has no access yet: request it at {page}, "
                f"then retry (the token comes from HF_TOKEN or `huggingface-cli login`)"
            )
        return GatedModelError(
            f"{repo_id} is gated: accept its terms at {page}, then {token_hint()}"
        )
    if isinstance(exc, hf.RevisionNotFoundError):
        return HubError(f"{repo_id} has no revision {revision!r} on the hub")
    if isinstance(exc, hf.RemoteEntryNotFoundError):
        return HubError(f"a file of {repo_id} is missing on the hub ({_status_line(exc)})")
    if isinstance(exc, hf.RepositoryNotFoundError):
        hint = "" if have_token() else f"; a private repo needs a token: {token_hint()}"
        return HubError(f"no model {repo_id!r} on the hub (check the name{hint})")
    if isinstance(exc, hf.OfflineModeIsEnabled):
        return HubError("the hub is switched off here (HF_HUB_OFFLINE is set)")
    if isinstance(exc, hf.HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "?"
        if status in (401, 403):
            return GatedModelError(
                f"the hub refused access to {repo_id} ({status}): {token_hint()}"
            )
        return HubError(f"the hub answered {status} for {repo_id}: {_status_line(exc)}")
    if isinstance(exc, (httpx2.ConnectError, httpx2.ConnectTimeout)):
        return HubError(f"cannot reach the hub at {endpoint()} ({_short(exc)})")
    if isinstance(exc, httpx2.TransportError):
        return DownloadInterrupted(f"the connection to {endpoint()} broke ({_short(exc)})")
    if isinstance(exc, OSError):
        return HubError(f"disk error while handling {repo_id}: {exc.strerror or exc}")
    return HubError(f"{repo_id}: {_short(exc)}")


def _status_line(exc: BaseException) -> str:
    return _short(exc).split("\n", 1)[0]


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < 200 else text[:197] + "..."
