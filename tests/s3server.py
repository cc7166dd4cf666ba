"""A pytest plugin: an S3-compatible server (moto's standalone server) on a loopback port, and a bucket per test.

The server runs in its own process for the whole session, started on first use; ``s3_bucket`` gives each test
a fresh bucket and removes it afterwards. `StallingProxy` sits between a client and the server to cut an
upload off half-way, for the tests of interrupted writes.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

START_TIMEOUT_S = 60.0
_LISTENING = re.compile(r"Running on (http://127\.0\.0\.1:\d+)")


@dataclass
class S3Server:
    """A running S3-compatible server and the storage options that reach it."""

    endpoint: str
    log: Path
    _fs: Any = None

    def options(self, **extra: Any) -> dict[str, Any]:
        """fsspec storage options for this server (test credentials; the server accepts any)."""
        return {
            "endpoint_url": self.endpoint,
            "key": "cairn-test",
            "secret": "cairn-test-secret",
            "client_kwargs": {"region_name": "us-east-1"},
            **extra,
        }

    def filesystem(self) -> Any:
        """An s3fs filesystem on this server that sees every change at once (no listing cache)."""
        import fsspec

        if self._fs is None:
            self._fs = fsspec.filesystem("s3", skip_instance_cache=True, use_listings_cache=False, **self.options())
        return self._fs


def start_server(log: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``python -m moto.server`` on a free loopback port (the OS picks it); return it and its endpoint."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        found = _LISTENING.search(log.read_text(errors="replace"))
        if found:
            return process, found.group(1)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise RuntimeError(f"the S3 test server did not start; its output:\n{log.read_text(errors='replace')}")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's standalone S3 server on a free loopback port, for the whole session."""
    log = tmp_path_factory.mktemp("s3server") / "moto.log"
    process, endpoint = start_server(log)
    try:
        yield S3Server(endpoint, log)
    finally:
        stop_server(process)


@pytest.fixture(scope="session")
def s3_server_denying_all(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A second server that checks credentials and knows none: every request is refused (403)."""
    log = tmp_path_factory.mktemp("s3server-auth") / "moto.log"
    process, endpoint = start_server(log, {"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        yield S3Server(endpoint, log)
    finally:
        stop_server(process)


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> Iterator[str]:
    """A new, empty bucket on the session's server; removed with its contents after the test."""
    fs = s3_server.filesystem()
    name = f"cairn-test-{uuid.uuid4().hex[:16]}"
    fs.call_s3("create_bucket", Bucket=name)
    yield name
    with contextlib.suppress(FileNotFoundError):
        for upload in fs.call_s3("list_multipart_uploads", Bucket=name).get("Uploads", []):
            fs.call_s3("abort_multipart_upload", Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
        fs.rm(name, recursive=True)


class StallingProxy:
    """A loopback TCP proxy to ``upstream`` that stops forwarding a request after ``stall_after`` bytes.

    Requests up to that size pass through; a bigger one (an upload) is held half-sent: `stalled` is set and,
    with ``drop=True``, the connection is cut, else it stays open until the client goes away. The server
    never receives the rest of the body.
    """

    def __init__(self, upstream: str, stall_after: int, drop: bool = False) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self._upstream = (host, int(port))
        self._stall_after = stall_after
        self._drop = drop
        self.stalled = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._closing = True
        self._listener.close()

    def __enter__(self) -> StallingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client, socket.create_connection(self._upstream) as server:
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()
            sent = 0
            while chunk := _recv(client):
                if sent + len(chunk) > self._stall_after:
                    server.sendall(chunk[: self._stall_after - sent])
                    self.stalled.set()
                    if not self._drop:
                        while _recv(client):
                            pass  # hold the request half-sent until the client goes away
                    return
                server.sendall(chunk)
                sent += len(chunk)

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := _recv(source):
                target.sendall(chunk)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""
