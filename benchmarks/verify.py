"""`cairn verify` throughput against raw BLAKE3 over the same bytes (~1 GB of objects by default).

    python benchmarks/verify.py [--repeat N] [--size-mb MB] [--keep]

Builds a local artifact store and a SQLite metadata database in a temporary folder: objects of mixed sizes
(half the bytes in 128 MB objects, 3/8 in 4 MB ones, 1/8 in 128 KB ones), each referenced by one recorded
materialization. Then, each repetition, in this process and with a warm page cache (the files were just
written; nothing here drops caches):

* raw BLAKE3, plain: read each object file and hash it with ``blake3(data)`` (one thread): what a simple loop
  over the files costs;
* raw BLAKE3, best: ``blake3(max_threads=AUTO).update_mmap(path)`` per file: the hash alone, all cores;
* cairn verify: `cairn.engine.integrity.verify` (metadata queries, manifest expansion, every object hashed and
  checked against its name and recorded size, the report).

Prints each figure in MB/s (median and range over the repetitions) and verify's ratio to both raw figures.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common as C
from blake3 import blake3

from cairn.core.records import EXECUTED, RUNNING, Materialization, RunRecord, StepRecord
from cairn.engine.integrity import verify
from cairn.storage.artifacts import LocalArtifactStore
from cairn.storage.metadata import MetadataStore, open_metadata

MB = 1_000_000
CHUNK = 16 * 1024 * 1024


def build(root: Path, size_mb: int) -> tuple[LocalArtifactStore, MetadataStore, int, int]:
    """Write the objects and record one materialization per object; returns the stores, objects and bytes."""
    total = size_mb * MB
    layout = [(128 * MB, total // 2), (4 * MB, total * 3 // 8), (128 * 1000, total // 8)]
    store = LocalArtifactStore(root / "artifacts")
    meta = open_metadata("sqlite:///cairn.db", root)
    meta.create_run(RunRecord("bench", RUNNING, "*", time.time()))
    written = 0
    n = 0
    for size, share in layout:
        for _ in range(max(1, share // size)):
            with store.writer() as writer:
                left = size
                while left:
                    part = min(left, CHUNK)
                    writer.write(os.urandom(part))
                    left -= part
                digest, stored = writer.commit()
            n += 1
            mat = Materialization(
                f"a{n}", "", f"k{n}", digest, stored, "bytes", "bytes", "bench", 1, "b3:code", created_at=time.time()
            )
            step = StepRecord("bench", mat.asset, "", EXECUTED, "bench", mat.cache_key, digest, 1, 0.0)
            meta.commit_materialization(mat, step, None)
            written += stored
    C.progress(f"wrote {n} objects, {written / MB:.0f} MB")
    return store, meta, n, written


def raw_plain(store: LocalArtifactStore) -> int:
    hashed = 0
    for digest in store.digests():
        with open(store.object_path(digest), "rb") as fh:
            data = fh.read()
        if "b3:" + blake3(data).hexdigest() != digest:
            raise SystemExit(f"raw hash mismatch for {digest}")
        hashed += len(data)
    return hashed


def raw_best(store: LocalArtifactStore) -> int:
    hashed = 0
    for digest in store.digests():
        path = store.object_path(digest)
        hasher = blake3(max_threads=blake3.AUTO)
        hasher.update_mmap(path)
        if "b3:" + hasher.hexdigest() != digest:
            raise SystemExit(f"raw hash mismatch for {digest}")
        hashed += os.path.getsize(path)
    return hashed


def main() -> None:
    parser = C.parser(__doc__.splitlines()[0], default_repeat=3)
    parser.add_argument("--size-mb", type=int, default=1024, help="total bytes of objects in MB (default 1024)")
    args = parser.parse_args()
    C.header("cairn verify vs raw BLAKE3", args.repeat)
    with C.workspace("verify", keep=args.keep) as root:
        store, meta, count, written = build(root, args.size_mb)
        try:
            times: dict[str, list[float]] = {"raw BLAKE3, plain": [], "raw BLAKE3, best": [], "cairn verify": []}
            for i in range(args.repeat):
                C.progress(f"repetition {i + 1}/{args.repeat}")
                for name, fn in (("raw BLAKE3, plain", raw_plain), ("raw BLAKE3, best", raw_best)):
                    seconds, hashed = C.timed(lambda fn=fn: fn(store))
                    assert hashed == written
                    times[name].append(seconds)
                seconds, report = C.timed(lambda: verify(meta, store))
                if not report.ok or report.bytes != written:
                    raise SystemExit(f"verify disagrees: ok={report.ok}, {report.bytes} of {written} bytes")
                times["cairn verify"].append(seconds)
        finally:
            meta.close()
    table = C.Table(
        f"Hashing {written / MB:.0f} MB in {count} objects",
        ["method", "seconds", "MB/s", "verify / this"],
    )
    rate = {name: written / MB / C.median(ts) for name, ts in times.items()}
    for name, ts in times.items():
        table.add(name, C.spread(ts, 3), f"{rate[name]:.0f}", f"{rate['cairn verify'] / rate[name]:.2f}x")
    table.notes.append(
        f"{os.cpu_count()} cores; warm page cache (objects just written). 'verify / this' > 1 means verify hashes "
        "faster than that method."
    )
    table.print()


if __name__ == "__main__":
    main()
