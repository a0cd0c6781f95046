"""Event streams are capped per daemon (issue 18, item 12): held streams cannot lock the other
clients out; the one past the cap gets a JSON 429, and a flood of refusals is one log line."""

from __future__ import annotations

import http.client
import json
import logging
from collections.abc import Generator
from pathlib import Path

import pytest

from service.daemon.broker import Broker, StreamsFull
from service.daemon.logfmt import Occasional
from tests.support.clocks import ManualClock
from tests.support.daemon import Daemon


def test_the_broker_refuses_subscriptions_past_its_cap_and_frees_them_on_exit() -> None:
    broker = Broker(max_subscribers=2)
    with broker.subscribe(), broker.subscribe("job1"):
        with pytest.raises(StreamsFull, match="2 event streams are open"):
            broker.subscribe()
        assert broker.subscriber_count == 2
    with broker.subscribe():  # both left: room again
        assert broker.subscriber_count == 1


def test_a_flood_of_events_is_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    refused = Occasional(logging.getLogger("test.flood"), "refused", interval_seconds=60.0,
                         clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.flood"):
        for _ in range(1000):
            refused.happened(limit=4)
        clock.advance(60.0)
        refused.happened(limit=4)
    assert [r.getMessage() for r in caplog.records] == [
        "refused limit=4 times=1", "refused limit=4 times=1000"]


@pytest.mark.process
def test_streams_past_the_cap_get_429_and_the_api_stays_open(tmp_path: Path) -> None:
    d = Daemon(tmp_path, env={"NOTARYD_MAX_EVENT_STREAMS": "4"}).start()
    try:
        held: list[Generator[tuple[str, str], None, None]] = []
        for _ in range(4):
            stream = d.events()
            assert next(stream) == ("open", "")
            held.append(stream)
        refusals = [open_stream(d) for _ in range(3)]
        for status, body in refusals:
            assert status == 429
            assert "4 event streams are open" in body["error"]
            assert "NOTARYD_MAX_EVENT_STREAMS" in body["hint"]
        status, _ = d.request("GET", "/v1/jobs")  # other clients still get answers
        assert status == 200
        job = d.submit(d.archive("App.zip"))
        assert d.wait_for(job["id"], "accepted")["state"] == "accepted"
        for stream in held:
            stream.close()
    finally:
        d.stop()
    log = d.log()
    assert log.count("event streams at their cap") == 1, log
    assert "max_event_streams=4 times=1" in log
    assert "Traceback" not in log and "exc=" not in log


def open_stream(d: Daemon) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
    try:
        conn.request("GET", "/v1/events", headers={"Authorization": f"Bearer {d.token}"})
        response = conn.getresponse()
        assert response.getheader("Content-Type", "").startswith("application/json")
        return response.status, json.loads(response.read())
    finally:
        conn.close()
