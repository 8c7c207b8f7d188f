"""The one model-weights policy: downloads on by default, offline refuses at once, no network fails fast.

No test here sends traffic beyond the loopback interface: a guard refuses any other address.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vistudio.config import EmbedSettings, Settings
from vistudio.errors import ModelUnavailable
from vistudio.ml import weights as weights_mod
from vistudio.ml.embed.clip import describe
from vistudio.ml.embed.encoder import ModelSpec
from vistudio.ml.models import build_model, check_pretrained_available, get_model_spec
from vistudio.ml.weights import PROBE_TIMEOUT_S, WeightsPolicy, probe

REAL_TAG = ModelSpec("ViT-B-32", "laion2b_s34b_b79k")  # a real tag whose file no test machine caches


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int, float]]]:
    """Records every connect the policy makes and refuses any address outside 127.0.0.0/8."""
    calls: list[tuple[str, int, float]] = []
    real = socket.create_connection

    def guarded(address: tuple[str, int], timeout: Any = None, *args: Any, **kwargs: Any) -> socket.socket:
        host, port = address
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:  # a name: not even resolved (no DNS traffic either)
            loopback = False
        if not loopback:
            raise AssertionError(f"a test tried to reach {host}:{port}")
        # urllib passes socket's "global default" sentinel: recorded as -1
        calls.append((host, port, float(timeout) if isinstance(timeout, int | float) else -1.0))
        return real(address, timeout, *args, **kwargs)

    monkeypatch.setattr(weights_mod.socket, "create_connection", guarded)
    monkeypatch.setenv("TORCH_HOME", "/nonexistent-torch-home")
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):  # the probe follows them
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    yield calls


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def online() -> WeightsPolicy:
    return WeightsPolicy(offline=False)


def test_downloads_are_on_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VISTUDIO_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    settings = Settings(home=tmp_path)
    assert settings.offline is False
    assert WeightsPolicy.from_settings(settings).allow_download
    assert WeightsPolicy.from_settings(settings, embed=True).allow_download
    assert WeightsPolicy.from_env().allow_download
    monkeypatch.setenv("VISTUDIO_OFFLINE", "1")
    assert Settings(home=tmp_path).offline is True and not WeightsPolicy.from_env().allow_download


def test_offline_is_model_unavailable_at_once_naming_the_setting(
    tmp_path: Path, loopback_only: list[tuple[str, int, float]]
) -> None:
    policy = WeightsPolicy.from_settings(Settings(home=tmp_path, offline=True), embed=True)
    with pytest.raises(ModelUnavailable) as exc:
        describe(REAL_TAG, weights=policy, cache_dir=tmp_path)
    err = exc.value
    assert err.status == 503 and err.code == "model_unavailable"
    assert "VISTUDIO_OFFLINE=1" in err.message and "VISTUDIO_EMBED__CHECKPOINT" in err.message
    assert err.details["setting"] == "offline" and "embed.checkpoint" in err.details["settings"]
    assert loopback_only == []  # offline: not even a connect was tried
    # the training catalog shares the decision and the wording
    with pytest.raises(ModelUnavailable, match="VISTUDIO_OFFLINE=1") as tv:
        build_model("resnet18", 3, pretrained=True, weights=policy)
    assert "--no-pretrained" in tv.value.message and tv.value.details["setting"] == "offline"
    with pytest.raises(ModelUnavailable, match="VISTUDIO_OFFLINE"):
        check_pretrained_available(get_model_spec("resnet18"), policy)
    assert loopback_only == []


def test_without_network_a_download_fails_fast_with_model_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_only: list[tuple[str, int, float]]
) -> None:
    port = closed_port()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(ModelUnavailable, match="cannot be downloaded") as exc:
        describe(REAL_TAG, weights=online(), cache_dir=tmp_path)
    assert f"127.0.0.1:{port}" in exc.value.message and "VISTUDIO_OFFLINE=1" in exc.value.message
    assert exc.value.details["setting"] == "offline"
    # one connect, bounded by a short timeout: no retry loop
    assert loopback_only == [("127.0.0.1", port, PROBE_TIMEOUT_S)] and PROBE_TIMEOUT_S <= 5
    # the same check guards Hugging Face and plain-URL downloads (torchvision weights)
    with pytest.raises(ModelUnavailable, match="cannot be reached"):
        online().hf_download("org/repo", ["w.safetensors"], what="the weights are", settings=[])
    with pytest.raises(ModelUnavailable, match="cannot be reached"):
        online().url_download(
            f"http://127.0.0.1:{port}/r18.pth", tmp_path / "r18.pth", what="the weights are", settings=[]
        )
    assert not (tmp_path / "r18.pth").exists()
    assert len(loopback_only) == 3


def test_the_probe_answers_for_a_listening_host() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert probe(f"http://127.0.0.1:{server.getsockname()[1]}/x", timeout=1) is None
    assert "cannot be reached" in (probe(f"http://127.0.0.1:{closed_port()}", timeout=1) or "")


def test_behind_a_proxy_the_probe_checks_the_proxy(
    monkeypatch: pytest.MonkeyPatch, loopback_only: list[tuple[str, int, float]]
) -> None:
    with socket.socket() as proxy:
        proxy.bind(("127.0.0.1", 0))
        proxy.listen()
        port = proxy.getsockname()[1]
        monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{port}")
        # the weights host itself is never contacted (the guard would refuse the name)
        assert probe("https://weights.example/file.pth", timeout=1) is None
        assert loopback_only[-1][:2] == ("127.0.0.1", port)
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{closed_port()}")
    assert "cannot be reached" in (probe("https://weights.example/file.pth", timeout=1) or "")
    monkeypatch.setenv("no_proxy", "weights.example")  # bypassed: the host itself is checked
    with pytest.raises(AssertionError, match=r"tried to reach weights\.example"):
        probe("https://weights.example/file.pth", timeout=1)


def test_hf_hub_offline_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VISTUDIO_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = Settings(home=tmp_path)
    assert settings.offline is False
    policy = WeightsPolicy.from_settings(settings)
    assert policy.offline and WeightsPolicy.from_env().offline
    with pytest.raises(ModelUnavailable, match="HF_HUB_OFFLINE=1") as exc:
        describe(REAL_TAG, weights=policy, cache_dir=tmp_path)
    assert "unset HF_HUB_OFFLINE" in exc.value.message
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert WeightsPolicy.from_settings(settings).allow_download


def test_the_deprecated_embed_download_false_still_stops_clip_downloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    settings = Settings(home=tmp_path, offline=False, embed=EmbedSettings(download=False))
    clip = WeightsPolicy.from_settings(settings, embed=True)
    assert clip.offline and clip.offline_because == "VISTUDIO_EMBED__DOWNLOAD=false"
    assert WeightsPolicy.from_settings(settings).allow_download  # other families are unaffected
    with pytest.raises(ModelUnavailable, match="unset VISTUDIO_EMBED__DOWNLOAD"):
        describe(REAL_TAG, weights=clip, cache_dir=tmp_path)


def test_a_download_whose_name_carries_a_hash_prefix_is_checked(tmp_path: Path) -> None:
    import hashlib
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    body = b"weights" * 1000

    class Serve(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Serve)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/w.pth"
        good = hashlib.sha256(body).hexdigest()[:8]
        path = online().url_download(url, tmp_path / f"net-{good}.pth", what="net", settings=[])
        assert path.read_bytes() == body
        with pytest.raises(ModelUnavailable, match="could not download"):
            online().url_download(url, tmp_path / "net-0badc0de.pth", what="net", settings=[])
        assert not (tmp_path / "net-0badc0de.pth").exists()  # nothing half-checked is left
    finally:
        server.shutdown()


def test_a_tags_status_is_remembered_briefly_so_pages_do_not_wait_on_the_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vistudio.services.embeddings import describe_spec
    from vistudio.studio import open_studio

    calls: list[str] = []

    def down(url: str, *, timeout: float = PROBE_TIMEOUT_S) -> str:
        calls.append(url)
        return "weights host did not answer"

    monkeypatch.setattr(weights_mod, "probe", down)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    studio = open_studio(Settings(home=tmp_path / "ws", offline=False, embed=EmbedSettings(cache_dir=tmp_path)))
    try:
        for _ in range(3):  # a page polling the model's status
            with pytest.raises(ModelUnavailable, match="did not answer"):
                describe_spec(studio, REAL_TAG)
        assert len(calls) == 1
    finally:
        studio.close()
