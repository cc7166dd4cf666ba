"""Names, step identities, cache keys and seeds: the canonical, tagged hashes of DESIGN §4."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from cairn.errors import DefinitionError
from cairn.hashing import encode, encoded_str, encoded_triples, hash_encoded, hash_struct

STEP_KEY_TAG = "cairn.step/1"
CODE_TAG = "cairn.code/1"
SEED_TAG = "cairn.seed/1"
SOURCE_TAG = "cairn.source/1"
_STEP_KEY_HEAD = encoded_str(STEP_KEY_TAG)
_SEED_HEAD = encoded_str(SEED_TAG)

# `\Z`, not `$`: `$` also matches before a trailing newline, which would let "name\n" through.
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_PARTITION_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:|+-]{0,255}\Z")


class StepId(NamedTuple):
    """One step of a run: an asset and one of its partitions ("" when the asset is unpartitioned)."""

    asset: str
    partition: str = ""

    def __str__(self) -> str:
        return step_label(self.asset, self.partition)


def step_label(asset: str, partition: str) -> str:
    """How a step is named to people and in commands: ``asset@partition``, or the asset alone."""
    return f"{asset}@{partition}" if partition else asset


def validate_name(name: str, what: str = "asset") -> str:
    """Return `name` if it is a safe name (it becomes a path and a URL part), else raise."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or name in {".", ".."} or ".." in name:
        raise DefinitionError(
            f"{what} name {name!r} is not allowed: use letters, digits, '_', '.' and '-' "
            "(at most 128 characters, not starting with '.' or '-', no '..')"
        )
    return name


def validate_partition(key: str) -> str:
    """Return `key` if it is a safe partition key, else raise."""
    if key == "":
        return key
    if not isinstance(key, str) or not _PARTITION_RE.match(key) or ".." in key:
        raise DefinitionError(
            f"partition key {key!r} is not allowed: use letters, digits and '_ . - : | +' (no '..', no '/')"
        )
    return key


def parse_step(text: str) -> StepId:
    """Parse ``asset`` or ``asset@partition``."""
    asset, _, partition = text.partition("@")
    return StepId(validate_name(asset), validate_partition(partition))


def cache_key(
    step: StepId,
    code_version: str,
    params: Mapping[str, Any],
    seed: int,
    inputs: Sequence[tuple[str, str, str]],
    env: Mapping[str, str],
) -> str:
    """The hash of everything that determines a materialization (DESIGN §4): `hash_struct` of
    ``[STEP_KEY_TAG, asset, partition, code_version, params, seed, sorted(inputs), env]``, its parts encoded
    here directly (one key per step, 20,000 per plan of 20,000 steps)."""
    return hash_encoded(
        [
            _STEP_KEY_HEAD,
            encoded_str(step.asset),
            encoded_str(step.partition),
            encoded_str(code_version),
            encode(dict(params)),
            b"i%d;" % seed if type(seed) is int else encode(seed),
            encoded_triples(sorted(inputs)),
            encode(dict(env)) if env else b"d0:",
        ]
    )


def source_key(step: StepId, data_version: str) -> str:
    """The cache key of an observed source: it is fully determined by the observed bytes."""
    return hash_struct([SOURCE_TAG, step.asset, step.partition, data_version])


def derive_seed(project_seed: int, step: StepId) -> int:
    """A deterministic 31-bit seed per asset partition, derived from the project seed."""
    digest = hash_encoded(
        [
            _SEED_HEAD,
            b"i%d;" % project_seed if type(project_seed) is int else encode(project_seed),
            encoded_str(step.asset),
            encoded_str(step.partition),
        ]
    )
    return int(digest[3:11], 16) & 0x7FFFFFFF
