"""Pretrained weights: a card's published file, downloaded once into a cache, atomically, resumably and checked.

``create_model(name, pretrained=True)`` calls :func:`download_weights` and loads the file through the checkpoint
path (:mod:`.checkpoint`, ``torch.load(weights_only=True)``), so every official layout loads as it does from disk.

- Cache: ``$GHOSTNETS_CACHE`` (default ``~/.cache/ghostnets``), one file per published name; a file already there
  (and matching the card's sha256, when known) is used without touching the network.
- Download: streamed into ``<cache>/<file>.partial``, renamed to ``<file>`` only when complete (and checked); an
  interrupted download resumes (``Range: bytes=<size>-``) on the next try, within the call or in a later one.
- Mirror: ``GHOSTNETS_WEIGHTS_MIRROR=URL`` fetches ``URL/<file name>`` instead of the official URL (an ``http(s)://``
  or ``file://`` folder).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from http.client import HTTPException
from pathlib import Path

from tqdm.auto import tqdm

from .errors import DownloadError, NoWeightsError
from .models.family import Weights
from .registry import is_torchvision, list_models, model_info

CACHE_ENV = "GHOSTNETS_CACHE"
MIRROR_ENV = "GHOSTNETS_WEIGHTS_MIRROR"
TIMEOUT_S = 30.0  # per connection attempt and per read: a stalled server fails instead of hanging
RESUME_ATTEMPTS = 5  # an interrupted transfer that made progress is resumed this many times within one call
_CHUNK = 1 << 16
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def cache_dir() -> Path:
    """Where downloaded weights are kept: ``$GHOSTNETS_CACHE``, else ``~/.cache/ghostnets``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ghostnets").expanduser()


def pretrained_names() -> list[str]:
    """Registered names that have a published weight file, sorted."""
    return [n for n in list_models() if model_info(n).weights is not None]


def weights_for(name: str) -> Weights:
    """The published weight file of ``name``; a clear error listing the names that have one if it has none."""
    if not is_torchvision(name):
        weights = model_info(name).weights  # unknown names: UnknownModelError with close matches
        if weights is not None:
            return weights
    raise NoWeightsError(
        f"{name} has no published weights (pretrained=True downloads only published files). Names with weights: "
        f"{', '.join(pretrained_names())} (`ghostnets list --pretrained`). For your own file pass "
        "checkpoint_path=... instead.")


def weights_url(weights: Weights) -> str:
    """The URL fetched for ``weights``: ``$GHOSTNETS_WEIGHTS_MIRROR/<file name>`` when the mirror is set."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    return f"{mirror.rstrip('/')}/{weights.file_name}" if mirror else weights.url


def cached_path(weights: Weights) -> Path:
    """Where ``weights`` is (or will be) in the cache; a file placed there by hand is used as is."""
    return cache_dir() / weights.file_name


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_weights(name_or_weights: str | Weights, *, progress: bool = True) -> Path:
    """The local path of a published weight file (a model name or its :class:`Weights`), downloaded if needed.

    A cached file is used without the network. Otherwise the file is streamed (tqdm progress bar unless
    ``progress=False``) into ``<file>.partial`` and renamed when complete; an interrupted transfer resumes. A file
    whose sha256 differs from the card's is deleted and :class:`DownloadError` says so; so does every network
    failure, naming the URL tried, the cache path to place the file by hand, and ``GHOSTNETS_WEIGHTS_MIRROR``.
    """
    weights = weights_for(name_or_weights) if isinstance(name_or_weights, str) else name_or_weights
    target = cached_path(weights)
    if _cached(target, weights):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create the weights cache {target.parent} ({e}); set {CACHE_ENV} to a "
                            "writable folder") from None
    with _exclusive(target):
        if not _cached(target, weights, warn=False):  # another process (a DDP rank) may have fetched it meanwhile
            _download(weights_url(weights), target, weights, progress=progress)
    return target


def _cached(target: Path, weights: Weights, *, warn: bool = True) -> bool:
    """Whether ``target`` is there and matches the card's sha256 (a mismatching file is removed, with a warning)."""
    if not target.is_file():
        return False
    if weights.sha256 is None or sha256_of(target) == weights.sha256.lower():
        return True
    if warn:
        warnings.warn(f"{target} does not match the published sha256 {weights.sha256}: downloading it again",
                      stacklevel=3)
    target.unlink()
    return False


@contextlib.contextmanager
def _exclusive(target: Path) -> Iterator[None]:
    """One download of ``target`` at a time across processes (every DDP rank asks for the same weights); the lock
    files stay in ``<cache>/.locks`` (removing one would race with a process about to take it)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock
        yield
        return
    locks = target.parent / ".locks"
    locks.mkdir(exist_ok=True)
    with open(locks / (target.name + ".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _download(url: str, target: Path, weights: Weights, *, progress: bool) -> None:
    """Fetch ``url`` into ``target``'s ``.partial`` (resuming an interrupted transfer), check it, rename it."""
    partial = _partial(target)
    for attempt in range(RESUME_ATTEMPTS + 1):
        try:
            _fetch(url, target, progress=progress)
            break
        except _Interrupted as e:
            if not e.received or attempt == RESUME_ATTEMPTS:  # no progress: a retry would fail the same way
                raise DownloadError(_unreachable(url, target, f"the transfer was interrupted ({e}); "
                                                 f"{partial} keeps what arrived and the next try resumes it")) from None
    _check_and_commit(partial, target, weights, url)


def _partial(target: Path) -> Path:
    return target.with_name(target.name + ".partial")


class _Interrupted(Exception):
    """A transfer that stopped before its end (connection dropped, timed out): resumable. ``received``: the bytes
    this attempt added."""

    def __init__(self, message: str, received: int) -> None:
        super().__init__(message)
        self.received = received


def _fetch(url: str, target: Path, *, progress: bool) -> None:
    """Stream ``url`` into ``target``'s ``.partial``, appending when the server honours a Range request for what is
    there already."""
    partial = _partial(target)
    offset = partial.stat().st_size if partial.is_file() else 0
    headers = {"User-Agent": "ghostnets (python urllib)"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing after what is there: complete already, or not this file
            if e.headers.get("Content-Range", "").strip() == f"bytes */{offset}":
                return None
            partial.unlink()
            return _fetch(url, target, progress=progress)
        raise DownloadError(_unreachable(url, target, f"the server answered HTTP {e.code} {e.reason}")) from None
    except (urllib.error.URLError, HTTPException, OSError, ValueError) as e:
        raise DownloadError(_unreachable(url, target, _why(getattr(e, "reason", None) or e))) from None
    with response:
        status = getattr(response, "status", None) or 200  # file:// answers without a status
        start = _resumed_from(response) if status == 206 else 0
        if start != offset:  # a full answer (200) or a range we did not ask for: start over
            offset, mode = 0, "wb"
        else:
            mode = "ab"
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        received = offset
        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=target.name, disable=not progress, leave=False)
        with bar, open(partial, mode) as f:  # a disk error (full, read-only) is the system's own OSError
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except (HTTPException, OSError) as e:  # connection reset, read timed out
                    raise _Interrupted(f"{type(e).__name__}: {e}", received - offset) from None
                if not chunk:
                    break
                f.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())
    if total is not None and received < total:
        raise _Interrupted(f"{received:,} of {total:,} bytes arrived", received - offset)


def _resumed_from(response) -> int:
    """The first byte of a 206 answer (``Content-Range: bytes START-END/TOTAL``), or -1 if it does not say."""
    found = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    return int(found.group(1)) if found else -1


def _check_and_commit(partial: Path, target: Path, weights: Weights, url: str) -> None:
    """Check the complete ``partial`` against the card's sha256 and rename it to ``target`` (one rename)."""
    if weights.sha256 is not None:
        found = sha256_of(partial)
        if found != weights.sha256.lower():
            partial.unlink()
            raise DownloadError(
                f"the file downloaded from {url} is not the published one: sha256 {found}, expected "
                f"{weights.sha256}. It was deleted. Try again (a proxy or mirror may have served another file: check "
                f"{MIRROR_ENV}), or place the right file by hand at {target}.")
    os.replace(partial, target)


def _why(reason: object) -> str:
    """A network failure in words (the offline cases first), with the system's own message."""
    if isinstance(reason, socket.gaierror):
        return f"the host name does not resolve: no network, or no DNS ({reason})"
    if isinstance(reason, ConnectionRefusedError):
        return f"the connection was refused: nothing serves that address ({reason})"
    if isinstance(reason, TimeoutError):
        return f"no answer within {TIMEOUT_S:g} s ({reason})"
    return f"{type(reason).__name__}: {reason}"


def _unreachable(url: str, target: Path, why: str) -> str:
    return (f"cannot download {url}: {why}. Place the file by hand at {target} (fetched on another machine; the "
            f"cache folder is ${CACHE_ENV}, default ~/.cache/ghostnets), or set {MIRROR_ENV}=URL to fetch "
            f"URL/{target.name} from a mirror instead; checkpoint_path=... loads any local copy.")
