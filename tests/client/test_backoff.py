"""Reconnect delays (docs/channels.md, Reconnecting), with a chosen "random"."""

from __future__ import annotations

import pytest

from legato.client.backoff import Backoff


def test_full_jitter_grows_base_times_two_to_the_attempt_up_to_max() -> None:
    backoff = Backoff(0.5, 30.0, rng=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_full_jitter_draws_between_zero_and_the_ceiling() -> None:
    backoff = Backoff(0.5, 30.0, rng=lambda: 0.25)
    assert [backoff.next_delay() for _ in range(3)] == [0.125, 0.25, 0.5]


def test_welcome_resets_the_attempt() -> None:
    backoff = Backoff(0.5, 30.0, rng=lambda: 1.0)
    backoff.next_delay(), backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_advice_is_delay_plus_random_jitter_and_counts_as_an_attempt() -> None:
    backoff = Backoff(0.5, 30.0, rng=lambda: 0.5)
    assert backoff.advised_delay(1000, 2000) == 2.0
    assert backoff.next_delay() == 0.5 * 2 * 0.5  # the server may still be down


def test_a_server_down_for_days_does_not_overflow_the_delay() -> None:
    backoff = Backoff(0.5, 30.0, rng=lambda: 1.0)
    backoff.attempt = 10_000
    assert backoff.next_delay() == 30.0


@pytest.mark.parametrize(("base", "maximum"), [(0, 1), (-1, 1), (1, -1)])
def test_nonsense_delays_are_refused(base: float, maximum: float) -> None:
    with pytest.raises(ValueError):
        Backoff(base, maximum)
