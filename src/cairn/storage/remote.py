"""The artifact store at a fsspec URL (``s3://bucket/prefix``, ``gs://...``, ``memory://...``): same layout and
guarantees as the local store, published the way object stores allow.

Object stores have no rename, but a single PUT (or the completion of a multipart upload) is atomic: the key
shows the whole object or nothing. So nothing is sent before the digest is known:

    write ... write      hash while spooling locally (memory, then a temporary file past SPOOL_MAX_BYTES)
    commit               digest known ─▶ the object's key already holds that many bytes? done (content addressing)
                         ─▶ one upload to objects/ab/cdef... ─▶ read back its size ─▶ (digest, size)
    abort / a failure    the local spool is removed; nothing was sent to the final key

Filesystems that are not object stores (sftp, hdfs, ...) get the bytes under ``tmp/<host>-<pid>-<id>.part``
first and a move into place, the staging key removed on failure. Unfinished uploads (an S3 multipart upload
of a killed writer, a stale staging key) are listed by `stale_uploads` for `cairn gc`, which reaches them,
like `quarantine`, through the `cairn.storage.base.StoreMaintenance` port.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Container, Iterator, Mapping
from datetime import datetime
from typing import IO, Any

from cairn.errors import CairnError, ConfigError, StoreError, did_you_mean
from cairn.hashing import PREFIX
from cairn.storage.artifacts import (
    DIGEST_PATTERN,
    HashingWriter,
    check_digest,
    missing_object,
    temp_name,
    verify_object,
)

# Bytes a writer keeps in memory before it spills to a local temporary file.
SPOOL_MAX_BYTES = 16 * 1024 * 1024
# Filesystems on which one upload call is atomic at the destination key (one PUT, or a multipart upload that
# becomes visible only when completed). The others stage under tmp/ and move.
ATOMIC_PUT_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})
S3_PROTOCOLS = ("s3", "s3a")
S3_INSTALL_HINT = "pip install 'cairn[s3]'"
# Options of fsspec itself that s3fs passes on, plus the botocore session's profile.
_S3_EXTRA_OPTIONS = ("use_listings_cache", "listings_expiry_time", "max_paths", "skip_instance_cache", "profile")
_S3_REFUSED_OPTIONS = ("asynchronous", "loop", "session")
_UPLOAD_ID = "?uploadId="


class _UploadWriter(HashingWriter):
    """Hashes and spools bytes locally; on commit the store uploads them to the digest's key."""

    def __init__(self, store: FsspecArtifactStore) -> None:
        super().__init__()
        self._store = store
        self._memory = bytearray()
        self._file: IO[bytes] | None = None
        self._path: str | None = None

    def _write_raw(self, data: memoryview) -> None:
        if self._file is None and len(self._memory) + data.nbytes > SPOOL_MAX_BYTES:
            fd, self._path = tempfile.mkstemp(prefix="cairn-upload-", suffix=".part")
            self._file = os.fdopen(fd, "wb")
            self._file.write(self._memory)
            self._memory = bytearray()
        if self._file is not None:
            self._file.write(data)
        else:
            self._memory += data

    def _publish(self, digest: str, size: int) -> None:
        if self._file is not None:
            self._file.close()
        source: bytes | str = bytes(self._memory) if self._path is None else self._path
        try:
            self._store.publish(digest, size, source)
        finally:
            self._discard()

    def _discard(self) -> None:
        self._memory = bytearray()
        if self._file is not None:
            self._file.close()
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._path)
            self._path = None


class FsspecArtifactStore:
    """An artifact store at any fsspec URL (``s3://bucket/prefix``, ``gs://...``, ``memory://name``, ...).

    Args:
        url: the store's root URL.
        storage_options: passed on to the fsspec filesystem (endpoint, credentials, region, ...). Without
            them the filesystem's own defaults apply: for S3 the ``AWS_*`` environment variables
            (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ...) and
            fsspec's ``FSSPEC_S3_*`` ones.

    Raises:
        ConfigError: the URL's scheme is unknown, its filesystem package is not installed, or an option is
            not one the filesystem takes.
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        import fsspec  # here, not on top: the start-up budget (DESIGN §5)

        protocol = url.split("://", 1)[0].lower() if "://" in url else "file"
        options = dict(storage_options or {})
        if protocol in S3_PROTOCOLS:
            options = _s3_options(url, options)
        try:
            fs, base = fsspec.core.url_to_fs(url, **options)
        except ImportError as exc:
            if protocol in S3_PROTOCOLS:
                raise ConfigError(
                    f"artifact store {url!r} needs s3fs, which is not installed. Install it with `{S3_INSTALL_HINT}`."
                ) from exc
            raise ConfigError(
                f"artifact store {url!r} needs a filesystem package that is not installed ({exc}). Install "
                f"it, e.g. `{S3_INSTALL_HINT}` for s3:// or `pip install gcsfs` for gs://."
            ) from exc
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"artifact store {url!r} cannot be opened: {exc}. Use a local path or an fsspec URL such as "
                "s3://bucket/prefix, and check [storage] artifacts_options."
            ) from exc
        self.url = url
        self.fs: Any = fs
        self.root = str(base).rstrip("/")  # the store's root path on the filesystem (for S3: bucket/prefix)
        self._atomic_put = protocol in ATOMIC_PUT_PROTOCOLS
        self._bucket: str | None = None
        if protocol in S3_PROTOCOLS:
            self._bucket = self.root.split("/", 1)[0]
            if not self._bucket:
                raise ConfigError(f"artifact store {url!r} names no bucket; use s3://bucket or s3://bucket/prefix.")
        self._endpoint = (
            options.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        )
        self._checked = False

    def __repr__(self) -> str:
        return f"FsspecArtifactStore({self.url!r})"

    def object_key(self, digest: str) -> str:
        """The filesystem key of the object named ``digest``."""
        hex_digest = check_digest(digest)
        return f"{self.root}/objects/{hex_digest[:2]}/{hex_digest[2:]}"

    def writer(self) -> HashingWriter:
        """A writer for one new object."""
        return _UploadWriter(self)

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        """Store ``data``; return ``(digest, size)``."""
        with self.writer() as writer:
            writer.write(data)
            return writer.commit()

    def publish(self, digest: str, size: int, source: bytes | str) -> None:
        """Upload ``source`` (the bytes, or a local file holding them) as the object ``digest`` of ``size`` bytes.

        Nothing is sent when the object is already there with that size. A failed upload leaves nothing at
        the object's key; an upload whose stored size differs is removed again.

        Raises:
            StoreError: the upload failed or did not arrive whole.
        """
        key = self.object_key(digest)
        with self._remote(f"write object {digest}"):
            if _remote_size(self.fs, key) == size:
                return
            if self._atomic_put:
                self._upload(source, key)
            else:
                self._staged_upload(source, key)
            self.fs.invalidate_cache(key)
            uploaded = _remote_size(self.fs, key)
            if uploaded != size:
                if uploaded is not None:
                    self.fs.rm_file(key)  # never leave a partial object under a content address
                raise StoreError(
                    f"upload of object {digest} to {self.url} did not arrive whole: {uploaded or 0} of {size} "
                    "bytes were stored (and removed again). Check the connection and the store's quota, then retry."
                )

    def read_bytes(self, digest: str, size: int | None = None) -> bytes:
        """Read an object and verify its size and hash; raise `MissingObject` or `CorruptObject`."""
        key = self.object_key(digest)
        where = f"{self.url} ({key})"
        try:
            with self._remote(f"read object {digest}"):
                data = bytes(self.fs.cat_file(key))
        except FileNotFoundError:
            raise missing_object(digest, where) from None
        return verify_object(digest, data, size, where)

    def exists(self, digest: str) -> bool:
        return self.size(digest) is not None

    def size(self, digest: str) -> int | None:
        key = self.object_key(digest)
        with self._remote(f"look up object {digest}"):
            return _remote_size(self.fs, key)

    def delete(self, digest: str) -> None:
        """Remove an object; removing a missing object does nothing."""
        key = self.object_key(digest)
        with contextlib.suppress(FileNotFoundError), self._remote(f"delete object {digest}"):
            self.fs.rm_file(key)

    def digests(self) -> Iterator[str]:
        """Every stored object's digest, in sorted order."""
        found = []
        with self._remote("list objects"):
            try:
                paths = self.fs.find(f"{self.root}/objects")
            except FileNotFoundError:
                paths = []
        for path in paths:
            shard, name = str(path).rstrip("/").split("/")[-2:]
            digest = f"{PREFIX}{shard}{name}"
            if DIGEST_PATTERN.fullmatch(digest):
                found.append(digest)
        yield from sorted(found)

    def local_path(self, digest: str) -> str | None:
        """Always None: objects of a fsspec store are not local files."""
        check_digest(digest)
        return None

    def quarantine(self, digest: str, folder: str) -> str:
        """Move an object to ``<root>/<folder>/<hex>``, out of the store's objects; return where it went."""
        key = self.object_key(digest)
        target = f"{self.root}/{folder}/{check_digest(digest)}"
        with self._remote(f"move object {digest} to {folder}/"):
            self.fs.mv(key, target)
        return f"{self.url} ({target})"

    def stale_uploads(self, before: float) -> list[tuple[str, int]]:
        """Unfinished uploads started before ``before`` (epoch seconds), as ``(name, bytes)`` pairs.

        On S3 these are multipart uploads under the store's prefix that a killed writer never completed (they
        are invisible but billed); elsewhere, staging files under ``tmp/``. `remove_upload` takes the names.
        """
        with self._remote("list unfinished uploads"):
            if self._bucket is not None:
                return self._stale_multipart_uploads(before)
            return self._stale_staging_keys(before)

    def remove_upload(self, name: str) -> None:
        """Abort or remove one unfinished upload named by `stale_uploads`.

        Raises:
            StoreError: the name is not an upload of this store.
        """
        key, _, upload_id = name.partition(_UPLOAD_ID)
        inside = f"{self.root}/objects/" if upload_id else f"{self.root}/tmp/"
        if not key.startswith(inside) or ".." in key.split("/"):
            raise StoreError(f"{name!r} is not an unfinished upload of {self.url}; take names from `cairn gc`.")
        with contextlib.suppress(FileNotFoundError), self._remote(f"remove unfinished upload {name}"):
            if upload_id:
                bucket, _, object_key = key.partition("/")
                self.fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=object_key, UploadId=upload_id)
            else:
                self.fs.rm_file(key)

    def stale_caches(self, keep: Container[str], before: float) -> list[tuple[str, int]]:
        """None: `cairn.Files` are rebuilt in a local temporary folder, not in the store."""
        return []

    def remove_cache(self, name: str) -> None:
        """Refuse: the store holds no caches.

        Raises:
            StoreError: always.
        """
        raise StoreError(f"{name!r} is not a cache of {self.url}: it holds none.")

    def tidy(self) -> None:
        """Nothing: object stores keep no empty folders, and on other filesystems empty shards are harmless."""

    def _upload(self, source: bytes | str, key: str) -> None:
        if isinstance(source, str):
            self.fs.put_file(source, key)
        else:
            self.fs.pipe_file(key, source)

    def _staged_upload(self, source: bytes | str, key: str) -> None:
        staging = f"{self.root}/tmp/{temp_name()}"
        try:
            self._upload(source, staging)
            self.fs.mv(staging, key)
        except BaseException:
            with contextlib.suppress(Exception):
                self.fs.rm_file(staging)
            raise

    def _stale_multipart_uploads(self, before: float) -> list[tuple[str, int]]:
        bucket = self._bucket
        assert bucket is not None
        prefix = self.root.partition("/")[2]
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": f"{prefix}/objects/" if prefix else "objects/"}
        found: list[tuple[str, int]] = []
        while True:
            try:
                page = self.fs.call_s3("list_multipart_uploads", **params)
            except PermissionError:
                return found  # may not list them (s3:ListBucketMultipartUploads): a lifecycle rule must do it
            for upload in page.get("Uploads", []):
                if _epoch(upload["Initiated"]) < before:
                    size = self._parts_size(bucket, upload["Key"], upload["UploadId"])
                    found.append((f"{bucket}/{upload['Key']}{_UPLOAD_ID}{upload['UploadId']}", size))
            if not page.get("IsTruncated"):
                return found
            params.update(KeyMarker=page["NextKeyMarker"], UploadIdMarker=page["NextUploadIdMarker"])

    def _parts_size(self, bucket: str, key: str, upload_id: str) -> int:
        params: dict[str, Any] = {"Bucket": bucket, "Key": key, "UploadId": upload_id}
        total = 0
        while True:
            page = self.fs.call_s3("list_parts", **params)
            total += sum(int(part["Size"]) for part in page.get("Parts", []))
            if not page.get("IsTruncated"):
                return total
            params["PartNumberMarker"] = page["NextPartNumberMarker"]

    def _stale_staging_keys(self, before: float) -> list[tuple[str, int]]:
        try:
            entries = self.fs.ls(f"{self.root}/tmp", detail=True)
        except FileNotFoundError:
            return []
        found = []
        for entry in entries:
            name = str(entry["name"]).rstrip("/")
            try:
                modified = _epoch(self.fs.modified(name))
            except (NotImplementedError, FileNotFoundError):
                continue  # age unknown: never remove what may be an upload in progress
            if modified < before:
                found.append((name, int(entry.get("size") or 0)))
        return found

    @contextlib.contextmanager
    def _remote(self, action: str) -> Iterator[None]:
        """Check the store once, then turn the filesystem's errors (other than a missing key) into `StoreError`."""
        self._check()
        try:
            yield
        except (FileNotFoundError, CairnError):
            raise
        except PermissionError as exc:
            raise StoreError(
                f"artifact store {self.url}: permission denied to {action} ({exc}). Check the credentials and "
                "what they may do: reading, writing, listing and deleting under the store's prefix."
            ) from exc
        except Exception as exc:
            raise StoreError(
                f"artifact store {self.url}: cannot {action}: {type(exc).__name__}: {exc}. Check that the store "
                f"is reachable{self._at_endpoint()}, then retry."
            ) from exc

    def _check(self) -> None:
        """Before the first operation on S3: is the bucket there and may these credentials use it?

        Without this a missing bucket would look like missing objects, and a wrong key like a broken network.
        """
        if self._checked or self._bucket is None:
            return
        try:
            self.fs.call_s3("head_bucket", Bucket=self._bucket)
        except FileNotFoundError as exc:
            raise ConfigError(
                f"artifact store {self.url}: bucket '{self._bucket}' does not exist{self._at_endpoint()}. Create "
                f"it (e.g. `aws s3 mb s3://{self._bucket}`), or point [storage] artifacts in cairn.toml at an "
                "existing bucket."
            ) from exc
        except PermissionError as exc:
            raise ConfigError(
                f"artifact store {self.url}: access to bucket '{self._bucket}' was denied ({exc}). Check the "
                "credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or key and secret "
                "in [storage] artifacts_options. They need s3:ListBucket on the bucket and s3:GetObject, "
                "s3:PutObject and s3:DeleteObject under the prefix."
            ) from exc
        except Exception as exc:
            raise StoreError(
                f"artifact store {self.url}: cannot reach the object store{self._at_endpoint()}: "
                f"{type(exc).__name__}: {exc}. Check the endpoint (AWS_ENDPOINT_URL, or endpoint_url in "
                "[storage] artifacts_options) and the network, then retry."
            ) from exc
        self._checked = True

    def _at_endpoint(self) -> str:
        return f" at {self._endpoint}" if self._endpoint else ""


def s3_option_names(url: str) -> tuple[str, ...]:
    """The storage options the ``s3://`` store at ``url`` takes: s3fs's own, plus fsspec's listing-cache ones.

    Raises:
        ConfigError: s3fs is not installed.
    """
    import inspect

    import fsspec

    try:
        cls = fsspec.get_filesystem_class("s3")
    except ImportError as exc:
        raise ConfigError(
            f"artifact store {url!r} needs s3fs, which is not installed. Install it with `{S3_INSTALL_HINT}`."
        ) from exc
    named = [
        name
        for name, param in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)
    ]
    return tuple(name for name in (*named, *_S3_EXTRA_OPTIONS) if name not in _S3_REFUSED_OPTIONS)


def _s3_options(url: str, options: dict[str, Any]) -> dict[str, Any]:
    """Check the option names (s3fs hands unknown ones to botocore, which fails late and obscurely)."""
    known = s3_option_names(url)
    for name in options:
        if name not in known:
            hint = did_you_mean(name, known)
            if name.lower() in ("region", "region_name"):
                hint = ' A region goes in client_kwargs = { region_name = "eu-west-1" }.'
            raise ConfigError(
                f"[storage] artifacts_options: {name!r} is not an option of s3:// stores ({url}).{hint} "
                f"Known options: {', '.join(sorted(known))}."
            )
    # Listings are not cached: an object written or removed by another process must be seen at once.
    options.setdefault("use_listings_cache", False)
    return options


def _remote_size(fs: Any, key: str) -> int | None:
    try:
        info = fs.info(key)
    except FileNotFoundError:
        return None
    if info.get("type") == "directory":
        return None
    return int(info["size"])


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)
