"""Users and the hash-chained audit log, run over every metadata store backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cairn.testing.metadata import IdentityAuditContract, StoreOpener
from tests.contract.test_metadata_store import BACKENDS


class TestIdentityAudit(IdentityAuditContract):
    @pytest.fixture(params=list(BACKENDS))
    def open_store(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreOpener]:
        url = BACKENDS[request.param] or request.getfixturevalue("postgres_url")
        with StoreOpener(url, tmp_path) as opener:
            yield opener
