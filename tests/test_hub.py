"""Pretrained downloads (ghostnets.hub) against a local HTTP server on 127.0.0.1: download and load through
create_model(pretrained=True), the cache, sha256 checks, resumed transfers, clear offline errors, and the CLI.

No test reaches the internet: every URL is the server's (through GHOSTNETS_WEIGHTS_MIRROR or a card's Weights
replaced with monkeypatch), or a closed local port.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import random
import re
import socket
import threading
import warnings
from pathlib import Path

import pytest
import torch

import ghostnets
from conftest import randomize_bn
from ghostnets import hub, registry
from ghostnets.cli import main
from ghostnets.cli import models as cli_models
from ghostnets.errors import DownloadError, NoWeightsError
from ghostnets.models.family import Weights

TINY = "ghost_resnet56_cifar_s2"  # 0.44M parameters: a real registered model with a small file


class _Server:
    """Serves ``files`` (name -> bytes); records each request's path and Range header. ``drop_after`` (bytes)
    closes the connection after that many bytes of the body, for the next ``drops`` answers; ``ignore_range``
    answers every request in full (200); unknown names get the bytes of the name repeated (``default=True``)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.drop_after, self.drops, self.ignore_range, self.default = 0, 0, False, False
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                name = self.path.rsplit("/", 1)[-1]
                server.requests.append((name, self.headers.get("Range")))
                body = server.files.get(name, name.encode() * 1000 if server.default else None)
                if body is None:
                    self.send_error(404)
                    return
                start, found = 0, re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if found and not server.ignore_range:
                    start = int(found.group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if server.drops:
                    server.drops -= 1
                    self.wfile.write(body[start:start + server.drop_after])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body[start:])

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/weights"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch, tmp_path):
    """A local weights server as the mirror, and an empty cache in ``tmp_path / 'cache'``."""
    srv = _Server()
    monkeypatch.setenv(hub.MIRROR_ENV, srv.url)
    monkeypatch.setenv(hub.CACHE_ENV, str(tmp_path / "cache"))
    yield srv
    srv.close()


def _with_weights(monkeypatch, name: str, weights: Weights) -> None:
    """Give ``name``'s card ``weights`` for this test."""
    monkeypatch.setitem(registry._CARDS, name, dataclasses.replace(registry.model_info(name), weights=weights))


def _blob(n: int = 300_000) -> bytes:
    return random.Random(1).randbytes(n)


def _cache_listing(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "cache").iterdir() if not p.name.startswith("."))  # not .locks


def _logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Equal state dicts (the tiny models' stand-in for equal logits: a CIFAR ResNet-56 forward is slow on 2 cores)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_pretrained_downloads_the_official_layout_and_loads_it(server, tmp_path):
    source = randomize_bn(ghostnets.create_model("ghostnet_100")).eval()
    buffer = tmp_path / "ghostnet_1x.pth"
    torch.save(source.state_dict(), buffer)  # the official file is a bare state dict
    server.files["ghostnet_1x.pth"] = buffer.read_bytes()
    x = torch.randn(1, 3, 32, 32)

    model = ghostnets.create_model("ghostnet_100", pretrained=True)
    assert torch.equal(_logits(model, x), _logits(source, x))
    assert server.requests == [("ghostnet_1x.pth", None)]
    assert _cache_listing(tmp_path) == ["ghostnet_1x.pth"]  # no .partial left behind

    with pytest.warns(UserWarning, match="classifier re-initialised"):  # cache hit: no second request
        ten = ghostnets.create_model("ghostnet_100", pretrained=True, num_classes=10)
    assert len(server.requests) == 1
    assert ten.num_classes == 10
    backbone = {k: v for k, v in source.state_dict().items() if not k.startswith("classifier.")}
    assert all(torch.equal(ten.state_dict()[k], v) for k, v in backbone.items())


def test_pretrained_takes_the_cards_state_dict_unless_told(server, monkeypatch, tmp_path):
    raw = ghostnets.create_model(TINY).eval()
    ema = randomize_bn(ghostnets.create_model(TINY)).eval()
    path = tmp_path / "tiny.pth.tar"
    torch.save({"epoch": 3, "state_dict": raw.state_dict(), "state_dict_ema": ema.state_dict(), "metric": 9.5}, path)
    server.files["tiny.pth.tar"] = path.read_bytes()
    _with_weights(monkeypatch, TINY, Weights(url="https://example.invalid/tiny.pth.tar", top1=9.5, use_ema=True))
    assert _same_weights(ghostnets.create_model(TINY, pretrained=True), ema)
    assert _same_weights(ghostnets.create_model(TINY, pretrained=True, use_ema=False), raw)
    assert len(server.requests) == 1


def test_a_saved_ghostnets_file_and_its_sha256(server, monkeypatch, tmp_path):
    source = randomize_bn(ghostnets.create_model(TINY)).eval()
    data = ghostnets.save_checkpoint(source, tmp_path / "tiny.safetensors").read_bytes()
    server.files["tiny.safetensors"] = data
    sha = hashlib.sha256(data).hexdigest()
    _with_weights(monkeypatch, TINY, Weights(url="https://example.invalid/tiny.safetensors", top1=1.0, sha256=sha))
    assert _same_weights(ghostnets.create_model(TINY, pretrained=True), source)
    assert hub.download_weights(TINY).read_bytes() == data
    assert len(server.requests) == 1  # the checked cached file is a hit

    (tmp_path / "cache" / "tiny.safetensors").write_bytes(b"damaged")  # a cached file that does not match
    with pytest.warns(UserWarning, match="does not match the published sha256"):
        assert hub.download_weights(TINY, progress=False).read_bytes() == data
    assert len(server.requests) == 2


def test_a_corrupt_download_is_deleted_and_named(server, tmp_path):
    server.files["blob.bin"] = _blob()
    expected = hashlib.sha256(b"another file").hexdigest()
    weights = Weights(url="https://example.invalid/blob.bin", top1=1.0, sha256=expected)
    with pytest.raises(DownloadError) as info:
        hub.download_weights(weights, progress=False)
    message = str(info.value)
    assert expected in message and hashlib.sha256(server.files["blob.bin"]).hexdigest() in message
    assert f"{server.url}/blob.bin" in message and "deleted" in message
    assert _cache_listing(tmp_path) == []


def test_an_interrupted_download_resumes_in_the_same_call(server, tmp_path):
    data = server.files["blob.bin"] = _blob()
    server.drop_after, server.drops = 100_000, 2
    path = hub.download_weights(Weights(url="https://example.invalid/blob.bin", top1=1.0), progress=False)
    assert path.read_bytes() == data
    assert server.requests == [("blob.bin", None), ("blob.bin", "bytes=100000-"), ("blob.bin", "bytes=200000-")]
    assert _cache_listing(tmp_path) == ["blob.bin"]


def test_a_partial_file_left_by_an_earlier_run_is_resumed_or_restarted(server, tmp_path):
    data = server.files["blob.bin"] = _blob()
    weights = Weights(url="https://example.invalid/blob.bin", top1=1.0, sha256=hashlib.sha256(data).hexdigest())
    partial = tmp_path / "cache" / "blob.bin.partial"
    partial.parent.mkdir()
    partial.write_bytes(data[:123_456])
    assert hub.download_weights(weights, progress=False).read_bytes() == data
    assert server.requests == [("blob.bin", "bytes=123456-")]

    hub.cached_path(weights).unlink()
    partial.write_bytes(b"x" * 1000)
    server.ignore_range = True  # a server that answers 200 to a Range request: start over
    assert hub.download_weights(weights, progress=False).read_bytes() == data
    assert server.requests[-1] == ("blob.bin", "bytes=1000-") and _cache_listing(tmp_path) == ["blob.bin"]


def test_a_transfer_that_keeps_failing_keeps_the_partial_for_later(server, monkeypatch, tmp_path):
    data = server.files["blob.bin"] = _blob()
    weights = Weights(url="https://example.invalid/blob.bin", top1=1.0)
    server.drop_after, server.drops = 50_000, 1
    partial = tmp_path / "cache" / "blob.bin.partial"
    partial.parent.mkdir()
    partial.write_bytes(data[:10])
    attempts = hub.RESUME_ATTEMPTS
    monkeypatch.setattr(hub, "RESUME_ATTEMPTS", 0)
    with pytest.raises(DownloadError, match="interrupted.*next try resumes"):
        hub.download_weights(weights, progress=False)
    monkeypatch.setattr(hub, "RESUME_ATTEMPTS", attempts)
    assert partial.stat().st_size == 50_010 and not hub.cached_path(weights).exists()
    assert hub.download_weights(weights, progress=False).read_bytes() == data
    assert server.requests[-1] == ("blob.bin", "bytes=50010-")


def test_concurrent_processes_download_once_and_a_file_mirror_works(server, monkeypatch, tmp_path):
    data = server.files["blob.bin"] = _blob()
    weights = Weights(url="https://example.invalid/blob.bin", top1=1.0)
    paths: list[Path] = []
    threads = [threading.Thread(target=lambda: paths.append(hub.download_weights(weights, progress=False)))
               for _ in range(3)]  # like DDP ranks: one downloads, the others wait for its file
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(paths) == 3 and all(p.read_bytes() == data for p in paths) and len(server.requests) == 1

    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "other.bin").write_bytes(b"from a shared folder")
    monkeypatch.setenv(hub.MIRROR_ENV, (tmp_path / "mirror").as_uri())
    path = hub.download_weights(Weights(url="https://example.invalid/other.bin", top1=1.0), progress=False)
    assert path.read_bytes() == b"from a shared folder" and _cache_listing(tmp_path) == ["blob.bin", "other.bin"]


def test_offline_names_the_url_the_cache_path_and_the_mirror_variable(monkeypatch, tmp_path):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(hub.MIRROR_ENV, f"http://127.0.0.1:{port}/mirror/")
    monkeypatch.setenv(hub.CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(DownloadError) as info:
        ghostnets.create_model("ghostnet_100", pretrained=True)
    message = str(info.value)
    assert f"http://127.0.0.1:{port}/mirror/ghostnet_1x.pth" in message
    assert str(tmp_path / "cache" / "ghostnet_1x.pth") in message
    assert hub.MIRROR_ENV in message and "refused" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no urllib traceback chained


def test_http_errors_are_download_errors(server):
    with pytest.raises(DownloadError, match=r"HTTP 404.*Place the file by hand"):
        hub.download_weights("ghostnetv2_100", progress=False)


def test_names_without_weights_and_conflicting_arguments_are_refused(tmp_path):
    with pytest.raises(NoWeightsError, match=r"ghostnet_050 has no published weights.*ghostnet_100, ghostnetv2_100"):
        ghostnets.create_model("ghostnet_050", pretrained=True)
    with pytest.raises(NoWeightsError, match="no published weights"):
        ghostnets.create_model("tv:resnet18", pretrained=True)
    with pytest.raises(ValueError, match="pass one of them"):
        ghostnets.create_model("ghostnet_100", pretrained=True, checkpoint_path=tmp_path / "mine.pth")
    with pytest.raises(ghostnets.UnknownModelError, match="Did you mean"):
        ghostnets.create_model("ghostnet_10", pretrained=True)


def test_cards_name_their_published_files():
    names = hub.pretrained_names()
    assert {"ghostnet_100", "ghostnetv2_100", "ghostnetv2_130", "ghostnetv2_160"} <= set(names)
    assert {n for n in names if n.startswith("repghostnet_")} == set(ghostnets.list_models("repghostnet_*"))
    assert hub.weights_for("ghostnet_100").file_name == "ghostnet_1x.pth"
    assert hub.weights_for("ghostnet_100").top1 == 73.98
    rep = hub.weights_for("repghostnet_111")
    assert rep.file_name == "repghostnet_1_11x_170M_75.07.pth.tar" and rep.top1 == 75.07 and rep.use_ema


def test_cli_download_and_list_pretrained(server, tmp_path, capsys):
    server.default = True
    assert main(["download", "ghostnet_100", "ghostnetv2_130", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"ghostnet_100  {tmp_path / 'cache' / 'ghostnet_1x.pth'}" in out
    assert (tmp_path / "cache" / "ck_ghostnetv2_13.pth.tar").read_bytes() == b"ck_ghostnetv2_13.pth.tar" * 1000

    assert main(["list", "--pretrained"]) == 0
    out = capsys.readouterr().out
    assert "ghostnet_1x.pth" in out and "73.98" in out and not re.search(r"^ghostnet_050 ", out, re.M)
    assert re.search(r"ghostnet_100 .* yes", out) and re.search(r"ghostnetv2_100 .* no", out)

    assert main(["download", "--all", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == len(hub.pretrained_names())
    assert _cache_listing(tmp_path) == sorted(hub.weights_for(n).file_name for n in hub.pretrained_names())
    assert len(server.requests) == len(hub.pretrained_names())  # the two fetched before were cache hits

    assert main(["download", "ghostnet_050", "ghostnet_100"]) == 2  # one failure, the other still done
    captured = capsys.readouterr()
    assert "ghostnet_050 has no published weights" in captured.err and "ghostnet_100" in captured.out
    assert main(["download"]) == 2


def test_cli_info_shows_the_weights(monkeypatch, capsys):
    monkeypatch.setattr(cli_models, "count_madds", lambda *args, **kwargs: 0)  # counted by test_cards; slow here
    assert main(["info", TINY]) == 0
    assert "none published" in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["info", "repghostnet_050"]) == 0
    out = capsys.readouterr().out
    assert "repghostnet_0_5x_43M_66.95.pth.tar" in out and "66.95" in out and "EMA" in out
    assert "https://github.com/ChengpengChen/RepGhost/releases/download/RepGhost/" in out
