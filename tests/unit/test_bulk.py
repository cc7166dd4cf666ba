"""`cairn.core.bulk`: automatic garbage collection is paused while large structures are built, and what they
built is frozen only within `keeping_what_is_built` (the one-shot CLI commands)."""

from __future__ import annotations

import gc

from cairn.core.bulk import collector_paused, keeping_what_is_built


def test_collection_is_paused_inside_and_resumes_after_the_outermost_block_only() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_collection_resumes_after_an_error_inside() -> None:
    try:
        with collector_paused():
            raise KeyError("x")
    except KeyError:
        pass
    assert gc.isenabled()


def test_a_block_entered_with_collection_off_leaves_it_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_what_was_built_is_frozen_only_within_keeping_what_is_built() -> None:
    before = gc.get_freeze_count()
    try:
        with collector_paused():
            outside = [[i] for i in range(1000)]
        assert gc.get_freeze_count() == before
        with keeping_what_is_built(), collector_paused():
            inside = [[i] for i in range(1000)]
        assert gc.get_freeze_count() >= before + 1000
        frozen = gc.get_freeze_count()
        with collector_paused():
            after = [[i] for i in range(1000)]
        assert gc.get_freeze_count() == frozen
        assert len(outside) == len(inside) == len(after) == 1000
    finally:
        gc.unfreeze()
