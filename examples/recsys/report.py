"""Print the report of the latest model artifact after checking its checksum (run after `cairn run`).

    python report.py            # from this folder, or: python examples/recsys/report.py

It reads the artifact the way a serving system would: `cairn.load` verifies the stored files against their
recorded BLAKE3 data versions, and the model file is checked against the SHA-256 of its model card before
anything trusts it. Exit code 1 when the checksum does not match or no model was trained yet.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import cairn

HERE = Path(__file__).resolve().parent


def main() -> int:
    try:
        folder = cairn.load("model", project=HERE)
    except cairn.CairnError as exc:
        print(f"no model to report on: {exc}", file=sys.stderr)
        return 1
    card = json.loads((folder / "model_card.json").read_text(encoding="utf-8"))
    digest = hashlib.sha256((folder / card["artifact"]["file"]).read_bytes()).hexdigest()
    print((folder / "report.md").read_text(encoding="utf-8"))
    if digest != card["artifact"]["sha256"]:
        print(f"checksum MISMATCH: model.pkl hashes to {digest}, the card says {card['artifact']['sha256']}")
        return 1
    print(f"checksum ok: model.pkl sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
