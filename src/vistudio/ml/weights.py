"""The one model-weights policy, shared by every model family (CLIP, torchvision backbones, and the
detectors, face and caption models to come).

Weights come from the usual caches (torch hub, Hugging Face), a local file the user names, or are
downloaded on first use, as Immich, Ultralytics and open_clip do. The exception is an offline
workspace (``VISTUDIO_OFFLINE=1``, or ``HF_HUB_OFFLINE=1``): then a missing file is at once a
``ModelUnavailable`` naming the setting to change.

Without network a download must fail within seconds, not after the ≈45 s of connection retries the
HTTP clients make: before any download a plain TCP connect to the weights host, bounded by
``probe_timeout``, decides, and the Hugging Face client is called with a short ETag timeout.

A library module: plain inputs and outputs, no database, no web; torch and huggingface_hub are
imported only when a download actually happens.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from vistudio.errors import ModelUnavailable

if TYPE_CHECKING:
    from vistudio.config import Settings

OFFLINE_ENV = "VISTUDIO_OFFLINE"
HF_OFFLINE_ENV = "HF_HUB_OFFLINE"
HF_TOKEN_ENV = "VISTUDIO_HF_TOKEN"  # a Hugging Face access token, for gated weights (DINOv3)
EMBED_DOWNLOAD_ENV = "VISTUDIO_EMBED__DOWNLOAD"  # deprecated: "false" still means no CLIP downloads
PROBE_TIMEOUT_S = 3.0  # a connect to a reachable host takes milliseconds; 3 s forgives a slow link
DEFAULT_HF_ENDPOINT = "https://huggingface.co"
TRUTHY = frozenset({"1", "true", "yes", "on"})


def env_flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment variable ``name`` is set to a truthy value (1, true, yes, on)."""
    env = os.environ if environ is None else environ
    return env.get(name, "").strip().lower() in TRUTHY


def hf_endpoint(environ: Mapping[str, str] | None = None) -> str:
    """The Hugging Face endpoint downloads go to (``HF_ENDPOINT`` points at a mirror)."""
    env = os.environ if environ is None else environ
    return env.get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT


def probe(url: str, *, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """A TCP connect to ``url``'s host and port within ``timeout`` seconds: ``None`` when it
    answers, otherwise why not (one line). Sends no data."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return f"not a URL: {url[:200]}"
    port = parts.port or (80 if parts.scheme == "http" else 443)
    # behind a proxy (HTTPS_PROXY, …, NO_PROXY honoured) the download goes through it: check that
    proxy = _proxy_for(parts.scheme, host)
    if proxy is not None:
        host, port = proxy
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except TimeoutError:
        return f"{host}:{port} did not answer within {timeout:g} s"
    except OSError as exc:
        return f"{host}:{port} cannot be reached ({exc.strerror or exc})"


def _proxy_for(scheme: str, host: str) -> tuple[str, int] | None:
    """The (host, port) of the proxy the HTTP clients would use for ``scheme://host``, if any."""
    from urllib.request import getproxies, proxy_bypass

    proxy = getproxies().get(scheme or "https")
    if not proxy or proxy_bypass(host):
        return None
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


@dataclass(frozen=True)
class WeightsPolicy:
    """Whether weights may be downloaded, where they are cached, and how long a network check waits.

    ``offline_because`` names what made the workspace offline (``VISTUDIO_OFFLINE`` or
    ``HF_HUB_OFFLINE``), for the error messages.
    """

    offline: bool = False
    offline_because: str | None = None  # e.g. "VISTUDIO_OFFLINE=1", for the error messages
    cache_dir: Path | None = None  # the Hugging Face / open_clip cache (None: theirs)
    probe_timeout: float = PROBE_TIMEOUT_S
    # a Hugging Face access token for gated repositories; None: the Hub client's own (HF_TOKEN, or
    # the token saved by `hf auth login`)
    hf_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, embed: bool = False, environ: Mapping[str, str] | None = None
    ) -> WeightsPolicy:
        """The policy of a workspace: its ``offline`` setting, or ``HF_HUB_OFFLINE`` in the
        environment. ``embed``: the policy for CLIP, which also honours the deprecated
        ``VISTUDIO_EMBED__DOWNLOAD=false``."""
        because = None
        if settings.offline:
            because = f"{OFFLINE_ENV}=1"
        elif env_flag(HF_OFFLINE_ENV, environ):
            because = f"{HF_OFFLINE_ENV}=1"
        elif embed and not settings.embed.download:
            because = f"{EMBED_DOWNLOAD_ENV}=false"
        return cls(
            offline=because is not None,
            offline_because=because,
            cache_dir=settings.embed.cache_dir,
            hf_token=settings.hf_token.get_secret_value() if settings.hf_token else None,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WeightsPolicy:
        """The policy from the environment alone, for code that has no workspace settings at hand
        (a training child process, a library call)."""
        env = os.environ if environ is None else environ
        name = next((n for n in (OFFLINE_ENV, HF_OFFLINE_ENV) if env_flag(n, environ)), None)
        return cls(
            offline=name is not None,
            offline_because=f"{name}=1" if name else None,
            hf_token=env.get(HF_TOKEN_ENV) or None,
        )

    @property
    def allow_download(self) -> bool:
        return not self.offline

    def locations(self) -> dict[str, str]:
        """Where weights are looked up: the torch hub and Hugging Face caches (for the settings page)."""
        torch_home = os.environ.get("TORCH_HOME") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch"
        )
        hf = self.cache_dir or Path(
            os.environ.get("HF_HUB_CACHE")
            or os.path.join(os.environ.get("HF_HOME") or os.path.expanduser("~/.cache/huggingface"), "hub")
        )
        return {"torch_hub": str(Path(torch_home) / "hub" / "checkpoints"), "huggingface": str(hf)}

    def offline_error(
        self, what: str, *, settings: list[tuple[str, str]], details: dict[str, Any] | None = None
    ) -> ModelUnavailable:
        """``what`` is not on this machine and may not be downloaded. ``settings`` are (key, how to
        set it) of the alternatives: a local file, another model."""
        because = self.offline_because or f"{OFFLINE_ENV}=1"
        if because.startswith(HF_OFFLINE_ENV):
            fix = f"unset {HF_OFFLINE_ENV}"
        elif because.startswith(EMBED_DOWNLOAD_ENV):
            fix = f"unset {EMBED_DOWNLOAD_ENV} (deprecated)"
        else:
            fix = f"turn offline mode off (setting offline, {OFFLINE_ENV})"
        others = "; or ".join(how for _, how in settings)
        return ModelUnavailable(
            f"{what} not in the local cache, and downloads are off ({because}): {fix} so that weights "
            f"download on first use; or {others}",
            details={
                **(details or {}),
                "setting": "offline",
                "settings": ["offline", *(k for k, _ in settings)],
            },
        )

    def require_network(
        self, url: str, *, what: str, settings: list[tuple[str, str]], details: dict[str, Any] | None = None
    ) -> None:
        """Before downloading ``what`` from ``url``: refuse when offline, and fail within
        ``probe_timeout`` seconds when the host cannot be reached."""
        if self.offline:
            raise self.offline_error(what, settings=settings, details=details)
        problem = probe(url, timeout=self.probe_timeout)
        if problem is not None:
            others = "; or ".join(how for _, how in settings)
            raise ModelUnavailable(
                f"{what} not in the local cache and cannot be downloaded: {problem}. Check the network "
                f"(proxy settings), or work offline ({OFFLINE_ENV}=1) and {others}",
                details={
                    **(details or {}),
                    "url": url,
                    "setting": "offline",
                    "settings": ["offline", *(k for k, _ in settings)],
                },
            )

    def hf_download(
        self,
        repo: str,
        filenames: list[str],
        *,
        what: str,
        settings: list[tuple[str, str]],
        details: dict[str, Any] | None = None,
        licence_url: str | None = None,
    ) -> Path:
        """The first of ``filenames`` that the Hugging Face repo ``repo`` has, downloaded into its
        cache (network checked first); its local path. A missing file moves on to the next name;
        any other failure ends the attempt at once (no retry loop). ``licence_url``: the page of a
        gated repository, named when the Hub refuses this user (401/403)."""
        endpoint = hf_endpoint()
        self.require_network(endpoint, what=what, settings=settings, details=details)
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        more = {**(details or {}), "setting": "offline", "settings": ["offline", *(k for k, _ in settings)]}
        for name in filenames:
            try:
                path = hf_hub_download(
                    repo,
                    name,
                    cache_dir=str(self.cache_dir) if self.cache_dir else None,
                    etag_timeout=self.probe_timeout,
                    token=self.hf_token,
                )
            except EntryNotFoundError:
                continue
            except Exception as exc:
                if _refused(exc):
                    raise gated_error(what, repo=repo, licence_url=licence_url, details=more) from None
                raise ModelUnavailable(
                    f"could not download {what} from {endpoint} ({repo}/{name}): {_first_line(exc)}",
                    details=more,
                ) from None
            return Path(path)
        raise ModelUnavailable(
            f"could not download {what}: {repo} on {endpoint} has none of {', '.join(filenames)}",
            details=more,
        )

    def url_download(
        self,
        url: str,
        dest: Path,
        *,
        what: str,
        settings: list[tuple[str, str]],
        details: dict[str, Any] | None = None,
    ) -> Path:
        """``url`` saved at ``dest`` (network checked first; torch hub writes it atomically and,
        when the file name carries a hash prefix as torchvision's do, checks the content)."""
        self.require_network(url, what=what, settings=settings, details=details)
        import torch

        dest.parent.mkdir(parents=True, exist_ok=True)
        named = torch.hub.HASH_REGEX.search(dest.name)
        try:
            torch.hub.download_url_to_file(
                url, str(dest), hash_prefix=named.group(1) if named else None, progress=False
            )
        except Exception as exc:
            raise ModelUnavailable(
                f"could not download {what} from {url}: {_first_line(exc)}",
                details={
                    **(details or {}),
                    "setting": "offline",
                    "settings": ["offline", *(k for k, _ in settings)],
                },
            ) from None
        return dest


def _refused(exc: BaseException) -> bool:
    """Whether the Hub refused access (a gated repository, a missing or invalid token)."""
    from huggingface_hub.errors import GatedRepoError

    if isinstance(exc, GatedRepoError):
        return True
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None) in (401, 403)


def gated_error(
    what: str, *, repo: str, licence_url: str | None, details: dict[str, Any] | None = None
) -> ModelUnavailable:
    """The Hub refused ``repo`` to this user: name the licence page and the token settings."""
    page = licence_url or f"{hf_endpoint()}/{repo}"
    return ModelUnavailable(
        f"{what} gated on Hugging Face: accept the licence at {page} with your Hugging Face "
        f"account, then give an access token of that account (HF_TOKEN or {HF_TOKEN_ENV}, or "
        "`hf auth login`); or train from scratch (pretrained: false), or give a local copy of the "
        "weights (pretrained: FOLDER)",
        details={
            **(details or {}),
            "licence": page,
            "setting": "hf_token",
            "settings": ["hf_token", "offline", "pretrained"],
        },
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
