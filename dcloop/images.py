"""Images: fetch by url, cache by content, decode once, and materialize class folders.

A row's url is a local path (relative to the project folder or absolute), a file:// url or an
http(s) url. Bytes are stored once per content hash under .dcloop/cache/blobs; decoded, resized
pixels are kept in one array per image size, so an image is decoded once, not once per epoch.

Every url is untrusted: a shared sheet's editor may name any file or host. What a url may reach
is an Access; whatever goes wrong with one url becomes that url's error, never an exception.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

import numpy as np

from .config import STATE_DIR
from .errors import UnsafePath
from .fsutil import atomic_write_bytes, inside, is_safe_name, private_folder, sha256_bytes
from .history import read_cache_json, write_json

if TYPE_CHECKING:  # Pillow is imported where an image is read: a no-change sync reads none
    from PIL import Image

MAX_IMAGE_BYTES = 50 * 1024 * 1024
HTTP_TIMEOUT_S = 15
HTTP_ATTEMPTS = 3
HTTP_WORKERS = 8
HOST_FAILURE_LIMIT = 3  # failed attempts on one host before its other urls are skipped this cycle
REVALIDATE_DAYS = 7.0

OUTSIDE_ROOTS = "local path outside the allowed folders"
PRIVATE_HOST = "host resolves to a private address"
NOT_REGULAR = "not a regular file"
MISSING = "missing file"


@dataclass(frozen=True)
class Fetched:
    """Where an image's bytes are cached, or why it could not be had."""

    sha: str = ""
    path: Path | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass
class Seen:
    """What a fetch found, for dcloop.unchanged to tell later whether anything can have changed.

    ``local``: each local file's path as stat'ed, and what the stat said: its stat_text (see
    ``observed``), or "!" and why it was unreadable. ``due_at``: when the first cached http image falls
    due for revalidation (inf: never by age). ``complete``: False when a url could not even be turned
    into a path to look at, or an http image had to be fetched.
    """

    local: dict[str, str] = field(default_factory=dict)
    due_at: float = float("inf")
    complete: bool = True


def observed(path: str, max_bytes: int = MAX_IMAGE_BYTES) -> str:
    """What a look at a local file says, as Seen.local records it: the stat_text of a regular file
    within the limit, "!" and the reason for a file a sync flags unreadable by its stat alone, "!?" else."""
    try:
        st = stat_regular(path, max_bytes)
    except Unreadable as e:
        return f"!{e}"
    except (OSError, ValueError):
        return "!?"
    return stat_text(st)


def stat_text(st: os.stat_result) -> str:
    """A readable file's "size|mtime_ns|inode|ctime_ns": the local-file cache's key and what Seen.local
    records, one format.

    Size and mtime alone miss a file replaced by another of the same size with its mtime put back
    (``cp -p``, a sync tool, ``os.utime``): the ctime cannot be set, so a rewrite in place changes it,
    and a save by rename gives another inode. Where a filesystem has no inode numbers (st_ino 0: FAT,
    some network shares) the ctime alone tells; on Windows it is the creation time, so there a file
    rewritten in place with its size and mtime kept still goes unnoticed. Whatever else changes the
    ctime or inode (chmod, a new hard link, a restore from a backup) and a cache of the older
    "size|mtime_ns" keys cost one more read of the file, never a training: its content hash, which
    the training key is made of, is the same. dcloop.unchanged's stat of an image covers all of these.
    """
    return f"{st.st_size}|{st.st_mtime_ns}|{st.st_ino}|{st.st_ctime_ns}"


@dataclass(frozen=True)
class Access:
    """What a table's urls may reach. The defaults trust the table, as for a CSV file on one's own disk.

    ``roots``: the folders local urls may read (resolved), or None for any path.
    ``private_hosts``: whether http urls may reach loopback, private or link-local addresses.
    """

    roots: tuple[Path, ...] | None = None
    private_hosts: bool = True


def access_of(root: Path, config) -> Access:
    """The Access a project's [images] settings give; a Google Sheet's editors get the narrow one."""
    images, backend = config.images, config.table.backend
    roots = None
    if not images.local_paths_anywhere(backend):
        listed = [Path(os.path.expanduser(r)) for r in images.local_roots]
        roots = tuple(Path(os.path.realpath(Path(root) / r)) for r in [Path("."), *listed])
    return Access(roots, images.private_hosts_allowed(backend))


class Unreadable(ValueError):
    """A url's final answer: the text becomes the row's flag, and another attempt would not help."""


def is_http(url: str) -> bool:
    return url[:8].lower().startswith(("http://", "https://"))


def local_path(url: str, root: Path) -> Path:
    """The path a local url names; never raises (urlparse would, on file://[::1)."""
    if url[:5].lower() == "file:":
        rest = url[5:].split("#")[0].split("?")[0]
        if rest.startswith("//"):  # file://host/path: the host is not ours to reach
            rest = rest[2:][len(rest[2:].split("/")[0]):]
        path = Path(unquote(rest))
    else:
        path = Path(os.path.expanduser(url) if url.startswith("~") else url)
    return path if path.is_absolute() else root / path


def plain_path(url: str, root_prefix: str) -> str | None:
    """``str(local_path(url, root))`` without building a Path, for a url that is a plain path (most are);
    None for any other (file:, ~, or text a Path would normalize: //, /./, ./ or a trailing /).

    ``root_prefix`` is the project folder with a trailing separator. A no-change sync of 10,000
    rows stats every file: a Path per row cost more than the stat.
    """
    if (url[:5].lower() == "file:" or url.startswith(("~", "./")) or url == "." or "//" in url or "/./" in url
            or url.endswith(("/", "/."))):
        return None
    return url if url.startswith("/") else root_prefix + url


def allowed_path(url: str, root: Path, roots: tuple[Path, ...] | None) -> Path:
    """The file a local url names; outside ``roots`` (unless None), refused with the same text
    whether it exists or not (symlinks and .. resolved first, nothing opened)."""
    path = local_path(url, root)
    if roots is None:
        return path
    real = Path(os.path.realpath(path))
    if not any(real.is_relative_to(r) for r in roots):
        raise Unreadable(OUTSIDE_ROOTS)
    return real


def over_limit(max_bytes: int) -> str:
    return f"{max_bytes / 2**20:g} MiB"


def stat_regular(path: str | Path, max_bytes: int) -> os.stat_result:
    """The stat of a regular file within the size limit; Unreadable for anything else."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise Unreadable(MISSING) from None
    if not stat.S_ISREG(st.st_mode):
        raise Unreadable(NOT_REGULAR)
    if st.st_size > max_bytes:
        raise Unreadable(f"file over {over_limit(max_bytes)}")
    return st


def read_regular(path: str | Path, max_bytes: int) -> bytes:
    """A regular file's bytes, at most ``max_bytes``: /proc files report size 0 and may be endless.

    Opened non-blocking and checked again on the open file, so a FIFO put in its place after
    the stat cannot hold the sync.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Unreadable(NOT_REGULAR)
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, min(2**20, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            raise Unreadable(f"file over {over_limit(max_bytes)}")
        return b"".join(chunks)
    finally:
        os.close(fd)


class ImageStore:
    """The content-addressed image cache of one project.

    ``revalidate_days``: a cached http image older than this is asked for again with a
    conditional GET (0: never by age); ``refetch`` asks for every one.
    """

    def __init__(self, root: Path, cache: Path, progress=None, timeout_s: float = HTTP_TIMEOUT_S,
                 attempts: int = HTTP_ATTEMPTS, max_bytes: int = MAX_IMAGE_BYTES, access: Access = Access(),
                 revalidate_days: float = REVALIDATE_DAYS, refetch: bool = False, clock=time.time):
        self.root = Path(root)
        self.timeout_s, self.attempts, self.max_bytes = timeout_s, attempts, max_bytes
        self.access, self.revalidate_s, self.refetch, self.clock = access, revalidate_days * 86400, refetch, clock
        self.blobs = Path(cache) / "blobs"
        self.root_prefix = "" if str(self.root) == "." else os.path.join(str(self.root), "")  # as Path joins
        self.prefix_folders: dict[str, Path] = {}
        self.stat_index_path = Path(cache) / "local-files.json"
        self.url_index_path = Path(cache) / "urls.json"
        self.cache = Path(cache)
        self.progress = progress or (lambda msg: None)
        self.seen = Seen()

    @classmethod
    def of_project(cls, root: Path, config, progress=None, refetch: bool = False) -> ImageStore:
        """The store of the project at ``root``, with its [images] settings."""
        images = config.images
        return cls(root, Path(root) / STATE_DIR / "cache", progress, images.timeout_s, images.attempts,
                   access=access_of(root, config), revalidate_days=images.revalidate_days, refetch=refetch)

    def fetch(self, urls: list[str]) -> dict[str, Fetched]:
        """Fetch every distinct url once; errors become Fetched(error=...), never exceptions."""
        distinct = sorted(set(u for u in urls if u))
        local = [u for u in distinct if not is_http(u)]
        remote = [u for u in distinct if is_http(u)]
        for folder in (self.cache, self.blobs):
            if folder.is_dir():
                private_folder(folder)  # older projects made them world-readable
        out = self._fetch_local(local)
        out.update(self._fetch_remote(remote))
        return out

    def _fetch_local(self, urls: list[str]) -> dict[str, Fetched]:
        # "path|stat_text" -> hash: an unchanged file is not read again.
        index = read_cache_json(self.stat_index_path, {}, self.progress)
        stored = self.stored() if urls else set()
        fresh, out = {}, {}
        seen = self.seen.local
        for url in urls:
            path = None
            try:
                path = self.local_file(url)
                st = stat_regular(path, self.max_bytes)
                seen[path] = stat_text(st)
                key = f"{path}|{seen[path]}"
                sha = index.get(key)
                if sha is None or sha not in stored:
                    sha = self.store(read_regular(path, self.max_bytes))
                    stored.add(sha)
            except Unreadable as e:
                out[url] = Fetched(error=str(e))
                self.saw_unreadable(path, str(e))
                continue
            except (OSError, ValueError) as e:  # a NUL byte, a folder, EIO from /proc/self/mem
                out[url] = Fetched(error=f"cannot read file ({getattr(e, 'strerror', None) or e})")
                self.saw_unreadable(path, "?")
                continue
            fresh[key] = sha
            out[url] = Fetched(sha, self.blob_path(sha))
        if fresh != index:
            write_json(self.stat_index_path, fresh)
        return out

    def saw_unreadable(self, path: str | None, why: str) -> None:
        if path is None:  # refused before there was a path to look at
            self.seen.complete = False
        else:
            self.seen.local[path] = f"!{why}"

    def allowed_path(self, url: str) -> Path:
        return allowed_path(url, self.root, self.access.roots)

    def local_file(self, url: str) -> str:
        """The file a local url names, as text: allowed_path's, with no Path for a plain path anyone may read."""
        plain = plain_path(url, self.root_prefix) if self.access.roots is None else None
        return str(self.allowed_path(url)) if plain is None else plain

    def _fetch_remote(self, urls: list[str]) -> dict[str, Fetched]:
        index = read_url_index(self.url_index_path, self.clock(), self.progress)
        stored = self.stored() if urls else set()  # one listing per prefix folder, not one stat per url
        missing = [u for u in urls if u not in index or index[u]["sha"] not in stored]
        absent = set(missing)
        due = [u for u in urls if u not in absent and self.is_due(index[u])]
        if missing or due:
            self.seen.complete = False
        elif urls and self.revalidate_s > 0:
            self.seen.due_at = min(self.seen.due_at, min(index[u]["fetched"] for u in urls) + self.revalidate_s)
        results = {}
        if missing or due:
            if missing:
                self.progress(f"fetching {len(missing)} image(s) over http")
            from . import image_http as web  # requests only when an image is fetched
            failures = web.HostFailures()
            with ThreadPoolExecutor(HTTP_WORKERS) as pool, web.http_session(self.access.private_hosts) as session:
                results = dict(zip(missing + due, pool.map(
                    lambda u: web.download(self, session, u, failures, index.get(u) if u in due else None),
                    missing + due)))
            changed = sum(not isinstance(results[u], str) and results[u]["sha"] != index[u]["sha"] for u in due)
            kept = sum(isinstance(results[u], str) for u in due)
            for url, result in results.items():
                if not isinstance(result, str):
                    index[url] = result
                elif url in missing:
                    index.pop(url, None)
            if due:
                self.progress(f"revalidated {len(due)} cached http image(s): {changed} changed at their url"
                              + (f"; {kept} could not be checked, their cached copy kept" if kept else ""))
            write_json(self.url_index_path, index)
        out = {}
        for url in urls:
            result = results.get(url)
            if isinstance(result, str) and url in missing:
                out[url] = Fetched(error=result)
            else:
                out[url] = Fetched(index[url]["sha"], self.blob_path(index[url]["sha"]))
        return out

    def is_due(self, entry: dict) -> bool:
        """Whether a cached http image should be asked for again."""
        return self.refetch or (self.revalidate_s > 0 and self.clock() - entry["fetched"] >= self.revalidate_s)

    def store(self, data: bytes) -> str:
        """Cache bytes under their hash, readable by the owner only: they may come from anywhere."""
        sha = sha256_bytes(data)
        path = self.blob_path(sha)
        if not path.exists():
            for folder in (self.cache, self.blobs, path.parent):
                private_folder(folder)
            atomic_write_bytes(path, data, mode=0o600)
        return sha

    def blob_path(self, sha: str) -> Path:
        folder = self.prefix_folders.get(sha[:2])
        if folder is None:
            folder = self.prefix_folders[sha[:2]] = self.blobs / sha[:2]
        return folder / sha  # a child of a known Path: half the cost of parsing the whole path

    def stored(self) -> set[str]:
        """The hashes of every cached blob: one directory listing per prefix, not one stat per row."""
        if not self.blobs.is_dir():
            return set()
        return {entry.name for prefix in os.scandir(self.blobs) if prefix.is_dir()
                for entry in os.scandir(prefix.path)}


def read_url_index(path: Path, now: float, progress=None) -> dict[str, dict]:
    """{url: {sha, etag, modified, fetched}} from urls.json (a cache: unreadable entries are dropped).

    The older format mapped url -> sha; such entries count as fetched ``now``, so an upgrade
    does not fetch every image again at once.
    """
    index = read_cache_json(path, {}, progress)
    return {url: {"sha": entry, "etag": "", "modified": "", "fetched": now} if isinstance(entry, str) else entry
            for url, entry in index.items() if isinstance(entry, str) or (isinstance(entry, dict) and "sha" in entry)}


def cached_urls(cache: Path) -> dict[str, str]:
    """{url: content hash} of every http image in the cache, without any network."""
    return {url: entry["sha"] for url, entry in read_url_index(Path(cache) / "urls.json", 0.0).items()}


def rgb_pixels(image: Image.Image) -> np.ndarray:
    """RGB uint8 pixels of an image in any mode, shape (H, W, 3).

    16-bit greyscale (I;16*) is scaled by its range (divided by 257). 32-bit integer (I) and
    float (F) greyscale have no fixed range, so each image is stretched from its own minimum
    to its maximum (a flat image becomes black); Pillow's own convert would clip them to
    all-white or all-black.
    """
    if not (image.mode.startswith("I;16") or image.mode in ("I", "F")):
        return np.asarray(image.convert("RGB"))
    values = np.asarray(image).astype(np.float64)
    if image.mode.startswith("I;16"):
        grey = values / 257
    else:
        finite = np.isfinite(values)
        low, high = (values[finite].min(), values[finite].max()) if finite.any() else (0.0, 0.0)
        grey = np.where(finite, values - low, 0) * (255 / (high - low) if high > low else 0)
    return np.repeat(grey.round().clip(0, 255).astype(np.uint8)[..., None], 3, axis=2)


def decode_one(path: Path, size: int) -> np.ndarray:
    """RGB uint8 pixels, shape (3, size, size), resized as the Keras recipe does.

    Bilinear without antialiasing and without keeping the aspect ratio, like
    tf.keras.utils.image_dataset_from_directory; raises ValueError for a bad image, including
    one over Pillow's pixel limit (a decompression bomb: a small file that decodes to gigabytes).
    """
    import torch
    import torch.nn.functional as F
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.width * image.height > Image.MAX_IMAGE_PIXELS:
                raise Image.DecompressionBombError("over the pixel limit")
            image.load()
            rgb = rgb_pixels(image)
    except Image.DecompressionBombError as e:
        raise ValueError(f"image too large to decode (over {Image.MAX_IMAGE_PIXELS} pixels)") from e
    except Exception as e:  # Pillow raises many kinds on a broken file; each is about this file only
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


THUMB_PX = 160  # big enough to tell a label from a glance, small enough that thousands cost little disk


def thumbnail_file(state: Path, sha: str, blob: Path, size: int = THUMB_PX) -> Path | None:
    """A PNG of the cached image ``blob`` (content hash ``sha``) at most ``size`` pixels a side, made once.

    It lives under ``state``/thumbs/<sha[:2]>/<sha>.png, private like the cache: a file a spreadsheet
    program or a file browser opens with a click, which the extensionless blob is not. None when the
    image cannot be decoded (the sync flags that row already).
    """
    path = Path(state) / "thumbs" / sha[:2] / f"{sha}.png"
    if path.exists():
        return path
    from PIL import Image

    try:
        with Image.open(blob) as image:
            image.thumbnail((size, size))
            picture = image.convert("RGBA" if "A" in image.getbands() or image.mode == "P" else "RGB")
        out = io.BytesIO()
        picture.save(out, format="PNG")  # optimize=True: twice the time for 7% fewer bytes
    except Exception:  # a file Pillow cannot read, whatever the error
        return None
    private_folder(path.parent.parent)
    atomic_write_bytes(path, out.getvalue())
    return path


def suffix_of(url: str) -> str:
    """The file extension a materialized copy gets: the url's own if it is letters and digits, else .img."""
    try:
        suffix = Path(urlparse(url).path).suffix.lower()
    except ValueError:  # e.g. 'http://[::1': such a row is flagged unreadable anyway
        return ".img"
    return suffix if 1 < len(suffix) <= 6 and suffix[1:].isascii() and suffix[1:].isalnum() else ".img"


def materialize(folder: Path, rows: list[tuple[str, str, str, Path, str]], link: bool = True) -> int:
    """Lay out ``folder/<split>/<class>/<id><ext>`` as hard links (copies where links fail).

    ``rows`` are (id, split, label, blob path, url). Returns how many files were placed.
    ``link=False`` copies: for folders handed to people, where an edit must not reach the cache.
    Ids and class names were checked at validation; each path is checked again to stay in ``folder``.
    """
    placed = 0
    for row_id, split, label, blob, url in rows:
        if not is_safe_name(row_id):
            raise UnsafePath(f"{folder}: refused to name a file after the id {row_id!r}.")
        target = inside(folder, split, label, f"{row_id}{suffix_of(url)}")
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
    from PIL import Image

    path = Path(cache) / "sizes.json"
    known = read_cache_json(path, {})
    todo = [sha for sha in blobs if sha not in known]
    for sha in todo:
        try:
            with Image.open(blobs[sha]) as image:
                known[sha] = list(image.size)
        except Exception:  # a broken file or a decompression bomb: no size, not a failed sync
            known[sha] = [0, 0]
    if todo:
        write_json(path, known)
    return {sha: tuple(known[sha]) for sha in blobs}
