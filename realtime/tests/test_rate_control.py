"""The rate controller every transport of a process shares: the ceiling, the cut on 429, the recovery,
the in-flight bound, and what the settings make of `REALTIME_MAX_POSTS_PER_SECOND`.

Time is a number the tests pass in, so nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import pytest
from chalice_realtime import RealtimeSettings
from chalice_realtime.settings import ConfigurationError
from chalice_realtime.transports import transport_for
from chalice_realtime.transports.rate import RateController, process_rate


def posts_started(
    controller: RateController, seconds: float, *, start: float = 0.0, step: float = 0.001
) -> int:
    """Posts a sender with an endless queue starts in `seconds`, asking for tokens every `step`."""
    started, now = 0, start
    while now < start + seconds:
        started += controller.take(1_000_000, now)
        now += step
    return started


def test_without_429s_posts_start_at_the_ceiling_and_never_faster() -> None:
    controller = RateController(ceiling=2_000)
    started = posts_started(controller, 10.0)
    assert 19_000 <= started <= 20_050  # 2,000/s for 10 s, plus the first small burst


def test_an_idle_process_saves_a_small_burst_only() -> None:
    controller = RateController(ceiling=1_000)
    controller.take(1, 0.0)
    assert controller.take(1_000_000, 60.0) <= 20  # 20 ms of the rate, not a minute's worth


def test_a_429_cuts_the_rate_and_the_429s_of_the_same_round_trip_cut_it_once() -> None:
    controller = RateController(ceiling=10_000)
    controller.answered(0.98, 1.0)  # 20 ms round trips
    controller.throttled(0.98, 1.0)
    for late in range(50):  # answers to posts sent before the cut
        controller.throttled(0.99, 1.0 + late / 1000)
    assert controller.rate == pytest.approx(7_000)
    assert controller.snapshot().cuts == 1
    assert controller.snapshot().throttled == 51
    controller.throttled(1.0, 1.2)  # after the hold (50 ms), but still sent before the cut
    assert controller.rate == pytest.approx((7_000 + 0.15 * 1_000) * 0.7)


def test_posts_sent_after_a_cut_and_throttled_bring_the_rate_down_to_what_was_admitted() -> None:
    controller = RateController(ceiling=10_000)
    controller.answered(0.98, 1.0)
    controller.throttled(0.98, 1.0)  # 10,000 -> 7,000: still far over what API Gateway lets through
    for n in range(40):  # sent in the 80 ms after the cut: 40 admitted, 100 refused (500/s admitted)
        controller.answered(1.0 + n * 0.002, 1.02 + n * 0.002)
    for n in range(100):  # all within the hold: they cut nothing by themselves
        controller.throttled(1.0 + n * 0.0003, 1.02 + n * 0.0003)
    controller.throttled(1.08, 1.1)
    assert controller.rate == pytest.approx(40 / 0.08 * 0.95)


def test_after_the_cut_the_rate_climbs_back_to_the_ceiling() -> None:
    controller = RateController(ceiling=10_000)  # recovers by a tenth of the ceiling per second
    controller.take(1, 0.0)
    controller.throttled(0.0, 0.0)
    controller.throttled(0.0, 0.05)  # right at the end of the hold
    assert controller.rate == pytest.approx(4_900)
    controller.take(1, 1.1)  # a second after the hold
    assert controller.rate == pytest.approx(5_900)
    controller.take(1, 100.0)
    assert controller.rate == 10_000


def test_the_rate_never_drops_below_the_floor() -> None:
    controller = RateController(ceiling=100, floor=10)
    for n in range(100):  # a 429 after each hold of 50 ms: cut after cut
        controller.throttled(n * 0.05, n * 0.05)
    assert controller.rate == 10
    assert posts_started(controller, 1.0, start=5.0) >= 9


def test_a_sender_under_a_throttle_settles_near_the_allowed_rate_with_few_429s() -> None:
    """API Gateway's bucket (1,000/s, burst 500) against the controller, round trips of 20 ms."""
    controller = RateController(ceiling=10_000)
    tokens, answers, delivered, throttled = 500.0, [], 0, 0
    now, step, last = 0.0, 0.001, 0.0
    while now < 20.0:
        tokens = min(500.0, tokens + (now - last) * 1_000)
        last = now
        for _ in range(controller.take(1_000_000, now)):
            admitted = tokens >= 1
            tokens -= admitted
            answers.append((now + 0.02, admitted))
        due = [a for a in answers if a[0] <= now]
        answers = [a for a in answers if a[0] > now]
        for _, admitted in due:
            if admitted:
                delivered += 1
                controller.answered(now - 0.02, now)
            else:
                throttled += 1
                controller.throttled(now - 0.02, now)
        now += step
    assert delivered >= 0.9 * (500 + 20 * 1_000)  # within 10% of all the bucket allowed
    assert throttled <= 0.1 * delivered


def test_the_in_flight_bound_follows_rate_times_latency() -> None:
    controller = RateController(ceiling=10_000, min_in_flight=64, max_in_flight=512)
    assert controller.in_flight_limit() == 64  # nothing answered yet
    controller.answered(0.0, 0.02)
    assert controller.in_flight_limit() == 300  # 10,000/s x 20 ms, with half again for jitter
    slow = RateController(ceiling=10_000, min_in_flight=64, max_in_flight=512)
    slow.answered(0.0, 1.0)
    assert slow.in_flight_limit() == 512
    fast = RateController(ceiling=10_000, min_in_flight=64)
    fast.answered(0.0, 0.001)
    assert fast.in_flight_limit() == 64


def test_a_lower_ceiling_applies_at_once() -> None:
    controller = RateController(ceiling=10_000)
    controller.set_ceiling(500)
    assert controller.rate == 500
    assert posts_started(controller, 2.0, start=1.0) <= 1_020


@pytest.mark.parametrize("bad", [{"ceiling": 0}, {"ceiling": -5}, {"decrease": 1.0}, {"decrease": 0}])
def test_nonsense_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RateController(**bad)


def test_the_setting_defaults_to_the_account_limit_and_refuses_nonsense() -> None:
    assert RealtimeSettings.from_env({}).max_posts_per_second == 10_000
    assert RealtimeSettings.from_env({"REALTIME_MAX_POSTS_PER_SECOND": "2500"}).max_posts_per_second == 2_500
    for bad in ("0", "-1", "fast", "1.5"):
        with pytest.raises(ConfigurationError, match="REALTIME_MAX_POSTS_PER_SECOND"):
            RealtimeSettings.from_env({"REALTIME_MAX_POSTS_PER_SECOND": bad})


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("curl", marks=pytest.mark.requires_extra("fast")),
        pytest.param("aiohttp", marks=pytest.mark.requires_extra("aiohttp")),
        "boto3",
    ],
)
def test_every_transport_of_the_process_shares_one_controller_under_the_ceiling(kind: str) -> None:
    first = transport_for(kind, "http://127.0.0.1:9", max_posts_per_second=3_000)
    second = transport_for("boto3", "http://127.0.0.1:9", max_posts_per_second=3_000)
    shared = process_rate(3_000)
    assert shared.ceiling == 3_000
    assert first.rate is shared  # type: ignore[attr-defined]
    assert second.rate is shared  # type: ignore[attr-defined]
