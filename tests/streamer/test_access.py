"""Who may talk to the servers (streamer.access): loopback names, Host and Origin headers, tokens,
and the throttle on token guesses."""
import asyncio
import time

import pytest

from streamer.access import GuessThrottle, is_loopback, loopback_host, loopback_origin, request_refusal, same_token


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("LOCALHOST", True), ("0.0.0.0", False), ("192.168.1.5", False), ("127.evil.example", False),
    ("127.0.0.1.evil.example", False), ("0x7f.0.0.1", False), ("", False),
])
def test_loopback_is_an_ip_literal_of_this_machine_or_localhost(host, loopback):
    assert is_loopback(host) == loopback


def test_origins_and_hosts():
    assert loopback_origin("http://127.0.0.1:8080") and loopback_origin("https://localhost")
    assert loopback_origin("http://[::1]:8765")
    for origin in ("null", "file://", "http://127.0.0.1.evil.example", "ws://127.0.0.1", "http://[::1", ""):
        assert not loopback_origin(origin), origin
    assert loopback_host("127.0.0.1:8765") and loopback_host("localhost") and loopback_host("[::1]:80")
    assert not loopback_host("rebind.evil.example:8765") and not loopback_host("")


def test_request_refusal():
    ok = ["127.0.0.1:8765"]
    assert request_refusal(ok, [], None) is None
    assert request_refusal(ok, ["http://localhost:8080"], None) is None
    assert "need the server's token" in request_refusal(ok, ["https://evil.example"], None)
    assert "is not this machine" in request_refusal(["evil.example"], [], None)
    assert "is not this machine" in request_refusal([], [], None)
    assert "more than one" in request_refusal(ok, ["http://127.0.0.1", "http://127.0.0.1"], None)
    assert "more than one" in request_refusal(ok * 2, [], "s3cret")
    assert request_refusal(["studio-pc.lan:8765"], ["https://dashboard.example"], "s3cret") is None


def test_same_token():
    assert same_token("s3cret", "s3cret")
    for presented in ("s3cre", "s3cret ", None, 42, ["s3cret"], "s3cret\udc80"):
        assert not same_token(presented, "s3cret")


class Fast(GuessThrottle):
    FIRST_WAIT_S = 0.02
    MAX_WAIT_S = 0.08
    MAX_ADDRESSES = 3


def test_each_wrong_guess_doubles_the_next_wait_and_a_right_token_clears_it():
    throttle = Fast()
    waits = []
    for _ in range(5):
        waits.append(throttle.wait_s("10.0.0.7"))
        throttle.record("10.0.0.7", False)
    assert waits == [0.0, 0.02, 0.04, 0.08, 0.08]
    assert throttle.wait_s("10.0.0.8") == 0.0  # another address is not slowed
    throttle.record("10.0.0.7", True)
    assert throttle.wait_s("10.0.0.7") == 0.0
    for address in ("a", "b", "c", "d"):
        throttle.record(address, False)
    assert list(throttle._failures) == ["b", "c", "d"]  # the oldest address forgotten


def test_guesses_from_one_address_wait_their_turn():
    """Parallel guesses cannot share one wait: they are answered one after another."""
    throttle = Fast()

    async def guess(address: str) -> float:
        async with throttle.turn(address):
            throttle.record(address, False)
        return time.perf_counter()

    async def main():
        start = time.perf_counter()
        done = await asyncio.gather(*(guess("10.0.0.7") for _ in range(4)), guess("10.0.0.8"))
        return [t - start for t in done]

    times = asyncio.run(main())
    assert max(times[:4]) >= 0.02 + 0.04 + 0.08 - 0.005  # the waits of guesses 2, 3 and 4, in turn
    assert not throttle._turns  # nothing kept once the checks are done
