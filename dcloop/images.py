"""Images: fetch by url, cache by content, decode once, and materialize class folders.

A row's url is a local path (relative to the project folder or absolute), a file:// url or an
http(s) url. Bytes are stored once per content hash under .dcloop/cache/blobs; decoded, resized
pixels are kept in one array per image size, so an image is decoded once, not once per epoch.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import requests
from PIL import Image, UnidentifiedImageError

from .fsutil import atomic_write_bytes, sha256_bytes
from .history import read_cache_json, write_json

MAX_IMAGE_BYTES = 50 * 1024 * 1024
HTTP_TIMEOUT_S = 15
HTTP_ATTEMPTS = 3
HTTP_WORKERS = 8
HOST_FAILURE_LIMIT = 3  # failed attempts on one host before its other urls are skipped this cycle


@dataclass(frozen=True)
class Fetched:
    """Where an image's bytes are cached, or why it could not be had."""

    sha: str = ""
    path: Path | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def is_http(url: str) -> bool:
    return url[:8].lower().startswith(("http://", "https://"))


def local_path(url: str, root: Path) -> Path:
    if url[:5].lower() == "file:":
        return Path(unquote(urlparse(url).path))
    path = Path(os.path.expanduser(url) if url.startswith("~") else url)
    return path if path.is_absolute() else root / path


class ImageStore:
    """The content-addressed image cache of one project."""

    def __init__(self, root: Path, cache: Path, progress=None, timeout_s: float = HTTP_TIMEOUT_S,
                 attempts: int = HTTP_ATTEMPTS, max_bytes: int = MAX_IMAGE_BYTES):
        self.root = Path(root)
        self.timeout_s, self.attempts, self.max_bytes = timeout_s, attempts, max_bytes
        self.blobs = Path(cache) / "blobs"
        self.blobs_prefix = str(self.blobs) + os.sep
        self.stat_index_path = Path(cache) / "local-files.json"
        self.url_index_path = Path(cache) / "urls.json"
        self.cache = Path(cache)
        self.progress = progress or (lambda msg: None)

    def fetch(self, urls: list[str]) -> dict[str, Fetched]:
        """Fetch every distinct url once; errors become Fetched(error=...), never exceptions."""
        distinct = sorted(set(u for u in urls if u))
        local = [u for u in distinct if not is_http(u)]
        remote = [u for u in distinct if is_http(u)]
        out = self._fetch_local(local)
        out.update(self._fetch_remote(remote))
        return out

    def _fetch_local(self, urls: list[str]) -> dict[str, Fetched]:
        # (path, size, mtime) -> hash: an unchanged file is not read again.
        index = read_cache_json(self.stat_index_path, {}, self.progress)
        stored = self.stored() if urls else set()
        fresh, out = {}, {}
        for url in urls:
            path = local_path(url, self.root)
            try:
                st = os.stat(path)
            except OSError:
                out[url] = Fetched(error=f"missing file {path}")
                continue
            key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
            sha = index.get(key)
            if sha is None or sha not in stored:
                if st.st_size > self.max_bytes:
                    out[url] = Fetched(error=f"file over {self.max_bytes / 2**20:g} MiB")
                    continue
                sha = self.store(path.read_bytes())
                stored.add(sha)
            fresh[key] = sha
            out[url] = Fetched(sha, self.blob_path(sha))
        if fresh != index:
            write_json(self.stat_index_path, fresh)
        return out

    def _fetch_remote(self, urls: list[str]) -> dict[str, Fetched]:
        index = read_cache_json(self.url_index_path, {}, self.progress)
        todo = [u for u in urls if u not in index or not self.blob_path(index[u]).exists()]
        if todo:
            self.progress(f"fetching {len(todo)} image(s) over http")
            failures = HostFailures()
            with ThreadPoolExecutor(HTTP_WORKERS) as pool, requests.Session() as session:
                results = dict(zip(todo, pool.map(lambda u: self._download(session, u, failures), todo)))
            for url, result in results.items():
                if isinstance(result, str):
                    index.pop(url, None)
                else:
                    index[url] = result.sha
            write_json(self.url_index_path, index)
        else:
            results = {}
        out = {}
        for url in urls:
            result = results.get(url)
            if isinstance(result, str):
                out[url] = Fetched(error=result)
            else:
                out[url] = Fetched(index[url], self.blob_path(index[url]))
        return out

    def _download(self, session: requests.Session, url: str, failures: HostFailures):
        """Fetched on success, else the last error as a string; retries with backoff.

        A 4xx answer and a body over the size limit are final. Once HOST_FAILURE_LIMIT urls of
        a host could not be reached this cycle, its other urls are not tried: a host that is
        down costs a few timeouts, not a few per url.
        """
        error = ""
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(min(4.0, 0.25 * 2 ** attempt) * (0.5 + random.random()))
            if failures.given_up(url):
                return error or f"skipped: {urlparse(url).netloc} could not be reached for {failures.limit} urls"
            try:
                data = read_limited(session, url, self.timeout_s, self.max_bytes)
                return Fetched(self.store(data), None)
            except TooLarge as e:
                return str(e)
            except requests.HTTPError as e:
                error = f"http {e.response.status_code}"
                if e.response.status_code < 500 and e.response.status_code != 429:
                    return error
            except (requests.ConnectionError, requests.Timeout) as e:
                error = f"fetch failed: {type(e).__name__}: {e}"[:200]
                failures.add(url)
            except (requests.RequestException, ValueError) as e:
                error = f"fetch failed: {type(e).__name__}: {e}"[:200]
        return error

    def store(self, data: bytes) -> str:
        sha = sha256_bytes(data)
        path = self.blob_path(sha)
        if not path.exists():
            atomic_write_bytes(path, data)
        return sha

    def blob_path(self, sha: str) -> Path:
        return Path(f"{self.blobs_prefix}{sha[:2]}{os.sep}{sha}")

    def stored(self) -> set[str]:
        """The hashes of every cached blob: one directory listing per prefix, not one stat per row."""
        if not self.blobs.is_dir():
            return set()
        return {entry.name for prefix in os.scandir(self.blobs) if prefix.is_dir()
                for entry in os.scandir(prefix.path)}


class TooLarge(ValueError):
    """A body over the size limit: not worth another attempt."""


class HostFailures:
    """Urls per host that could not be reached this fetch (timeouts, refused or reset connections).

    Shared by the download threads. An HTTP error status does not count: the host is up.
    """

    def __init__(self, limit: int = HOST_FAILURE_LIMIT):
        self.limit, self.urls, self.lock = limit, {}, threading.Lock()

    def add(self, url: str) -> None:
        with self.lock:
            self.urls.setdefault(urlparse(url).netloc, set()).add(url)

    def given_up(self, url: str) -> bool:
        with self.lock:
            return len(self.urls.get(urlparse(url).netloc, ())) >= self.limit


def read_limited(session: requests.Session, url: str, timeout_s: float = HTTP_TIMEOUT_S,
                 max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """The body of a GET, refused past ``max_bytes`` (a server may send an endless body).

    ``timeout_s`` bounds the connection and each wait for data; the whole body must arrive
    within four times that, so a server that trickles bytes cannot hold a fetch forever.
    """
    deadline = time.monotonic() + 4 * timeout_s
    with session.get(url, stream=True, timeout=timeout_s) as response:
        response.raise_for_status()
        chunks, size = [], 0
        for chunk in response.iter_content(64 * 1024):
            size += len(chunk)
            if size > max_bytes:
                raise TooLarge(f"body over {max_bytes / 2**20:g} MiB")
            if time.monotonic() > deadline:
                raise ValueError(f"body still arriving after {4 * timeout_s:g}s")
            chunks.append(chunk)
        return b"".join(chunks)


def decode_one(path: Path, size: int) -> np.ndarray:
    """RGB uint8 pixels, shape (3, size, size), resized as the Keras recipe does.

    Bilinear without antialiasing and without keeping the aspect ratio, like
    tf.keras.utils.image_dataset_from_directory; raises ValueError for a bad image.
    """
    import torch
    import torch.nn.functional as F

    try:
        with Image.open(path) as image:
            image.load()
            rgb = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"unreadable image ({type(e).__name__}: {str(e)[:80]})") from e
    tensor = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float()
    resized = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    return resized[0].round().clamp(0, 255).to(torch.uint8).numpy()


def decode_many(paths: list[Path], size: int):
    """decode_one over many files, in order: pixels, or the error as a string.

    One torch thread per image and one image per core: these ops are too small to split, and
    split ones run many times slower when other processes keep the cores busy.
    """
    import torch

    def attempt(path: Path):
        try:
            return decode_one(path, size)
        except ValueError as e:
            return str(e)

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
            yield from pool.map(attempt, paths)
    finally:
        torch.set_num_threads(previous)


class DecodedCache:
    """Decoded pixels of every image seen, one uint8 array per size, keyed by content hash."""

    def __init__(self, cache: Path, size: int):
        self.path = Path(cache) / f"decoded-{size}.npz"
        self.size = size

    def load(self, progress=None) -> tuple[dict[str, int], np.ndarray]:
        """What is cached; nothing when absent or unreadable (a cache: decoding again rebuilds it)."""
        empty = {}, np.zeros((0, 3, self.size, self.size), np.uint8)
        if not self.path.exists():
            return empty
        try:
            with np.load(self.path, allow_pickle=False) as data:
                hashes, pixels = list(data["hashes"]), data["pixels"]
            if pixels.shape[1:] != empty[1].shape[1:] or len(hashes) != len(pixels):
                raise ValueError(f"pixels of shape {pixels.shape} for {len(hashes)} hashes")
        except Exception as e:  # noqa: BLE001 - any damage means the same: decode again
            (progress or (lambda m: None))(f"{self.path}: unreadable cache ({type(e).__name__}); rebuilding it")
            return empty
        return {h: i for i, h in enumerate(hashes)}, pixels

    def get(self, blobs: dict[str, Path], progress=None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """{sha: pixels} for every decodable blob and {sha: error} for the rest."""
        position, pixels = self.load(progress)
        todo = [sha for sha in blobs if sha not in position]
        decoded, errors = [], {}
        for n, (sha, result) in enumerate(zip(todo, decode_many([blobs[s] for s in todo], self.size)), 1):
            if progress and (n % 500 == 0 or n == len(todo)):
                progress(f"decoding images {n}/{len(todo)}")
            if isinstance(result, str):
                errors[sha] = result
            else:
                decoded.append((sha, result))
        if decoded:
            start = len(pixels)
            pixels = np.concatenate([pixels, np.stack([p for _, p in decoded])])
            position.update({sha: start + i for i, (sha, _) in enumerate(decoded)})
            self.save(position, pixels)
        return {sha: pixels[position[sha]] for sha in blobs if sha in position}, errors

    def save(self, position: dict[str, int], pixels: np.ndarray) -> None:
        hashes = np.array(sorted(position, key=position.get))
        buffer = io.BytesIO()
        np.savez(buffer, hashes=hashes, pixels=pixels)
        atomic_write_bytes(self.path, buffer.getvalue())


def suffix_of(url: str) -> str:
    """The file extension a materialized copy gets: the url's own, else .img."""
    suffix = Path(urlparse(url).path).suffix.lower()
    return suffix if 1 < len(suffix) <= 6 else ".img"


def materialize(folder: Path, rows: list[tuple[str, str, str, Path, str]], link: bool = True) -> int:
    """Lay out ``folder/<split>/<class>/<id><ext>`` as hard links (copies where links fail).

    ``rows`` are (id, split, label, blob path, url). Returns how many files were placed.
    ``link=False`` copies: for folders handed to people, where an edit must not reach the cache.
    """
    placed = 0
    for row_id, split, label, blob, url in rows:
        target = folder / split / label / f"{row_id}{suffix_of(url)}"
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if not (link and try_link(blob, target)):
            copy_whole(blob, target)
        placed += 1
    return placed


def copy_whole(source: Path, target: Path) -> None:
    """Copy under a temporary name, then rename: a killed copy never leaves a truncated image."""
    temporary = target.with_name(f".{target.name}.copy.tmp")
    shutil.copyfile(source, temporary)
    os.replace(temporary, target)


def try_link(source: Path, target: Path) -> bool:
    try:
        os.link(source, target)
        return True
    except OSError:
        return False


def image_sizes(blobs: dict[str, Path], cache: Path) -> dict[str, tuple[int, int]]:
    """{sha: (width, height)} of the original images, read from their headers and cached by content."""
    path = Path(cache) / "sizes.json"
    known = read_cache_json(path, {})
    todo = [sha for sha in blobs if sha not in known]
    for sha in todo:
        try:
            with Image.open(blobs[sha]) as image:
                known[sha] = list(image.size)
        except (UnidentifiedImageError, OSError, SyntaxError):
            known[sha] = [0, 0]
    if todo:
        write_json(path, known)
    return {sha: tuple(known[sha]) for sha in blobs}
