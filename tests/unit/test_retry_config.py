"""Retry backoff, circuit breakers, and cairn.toml validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from cairn.config import parse_settings
from cairn.core.retry import BreakerPolicy, CircuitBreaker, Retry
from cairn.errors import ConfigError


def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    policy = Retry(max_attempts=5, backoff=1.0, factor=2.0, max_delay=5.0)
    assert [policy.delay(n, 1.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    assert [policy.delay(n, 0.0) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert Retry(backoff=1.0, jitter=False).delay(2, 0.0) == 2.0


def test_breaker_opens_after_n_failures_then_admits_one_trial() -> None:
    breaker = CircuitBreaker(BreakerPolicy(failures=2, cooldown=10.0))
    assert breaker.admit(0.0) == "yes"
    breaker.record(False, 1.0)
    assert breaker.admit(1.0) == "yes"
    breaker.record(False, 2.0)
    assert breaker.admit(3.0) == "wait"
    assert breaker.wait_time(3.0) == pytest.approx(9.0)
    assert breaker.admit(12.5) == "yes"  # the trial
    assert breaker.admit(12.6) == "wait"  # only one trial at a time
    breaker.record(False, 13.0)
    assert breaker.admit(13.1) == "fail"


def test_breaker_closes_after_a_successful_trial() -> None:
    breaker = CircuitBreaker(BreakerPolicy(failures=1, cooldown=1.0))
    breaker.record(False, 0.0)
    assert breaker.admit(2.0) == "yes"
    breaker.record(True, 2.5)
    assert breaker.admit(2.6) == "yes" and breaker.state == "closed"


ROOT = Path("/tmp/project")


def test_defaults_fill_everything() -> None:
    s = parse_settings({}, ROOT)
    assert (s.name, s.modules, s.executor, s.database) == (
        "project",
        ("pipeline",),
        "process",
        "sqlite:///.cairn/cairn.db",
    )
    assert s.worker_count() >= 1


def test_full_config_is_parsed() -> None:
    s = parse_settings(
        {
            "project": {"name": "recsys", "modules": ["pipeline", "features"], "seed": 42},
            "executor": {"kind": "thread", "workers": 3},
            "defaults": {"retry": {"max_attempts": 3, "backoff": 0.5}, "timeout": 30},
            "profiles": {"bigger": {"train": {"num_trees": 1600}}},
            "pools": {"warehouse": 2},
            "circuit_breakers": {"warehouse": {"failures": 3, "cooldown": 10}},
        },
        ROOT,
    )
    assert s.retry == Retry(max_attempts=3, backoff=0.5)
    assert s.profiles["bigger"]["train"]["num_trees"] == 1600
    assert s.pools == {"warehouse": 2} and s.breakers["warehouse"] == BreakerPolicy(3, 10.0)
    assert s.timeout == 30.0 and s.workers == 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"projcet": {}}, r"unknown section \[projcet\]. Did you mean 'project'"),
        ({"executor": {"kind": "proces"}}, "kind = 'proces' is not one of.*Did you mean 'process'"),
        ({"executor": {"workers": -1}}, r"\[executor\] workers must be an integer >= 0"),
        ({"storage": {"artefacts": "x"}}, "unknown key 'artefacts' in \\[storage\\]. Did you mean 'artifacts'"),
        ({"defaults": {"retry": {"attempts": 3}}}, "unknown key 'attempts'.*Did you mean 'max_attempts'"),
        ({"defaults": {"retry": {"max_attempts": 0}}}, "max_attempts"),
        ({"profiles": {"p": {"train": 5}}}, r"\[profiles.p\] must map asset names to param tables"),
        ({"pools": {"db": 0}}, r"\[pools\] db must be an integer >= 1"),
        ({"project": {"modules": "x y"}}, r"\[project\] modules must be a list of module names"),
        ({"project": {"modules": ["../evil"]}}, r"\[project\] modules must be a list of module names"),
        ({"project": {"seed": "42"}}, r"\[project\] seed must be an integer"),
        ({"profiles": {"../x": {}}}, "profile name '../x' is not allowed"),
    ],
)
def test_malformed_config_names_the_fix(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_settings(data, ROOT)
