"""`--backend kafka` without a reachable cluster: the gateway says so (`/readyz` 503
`kafka_unavailable`), answers every request within `--kafka-timeout-ms` with 503 and that
code instead of hanging, and recovers by itself, with no restart, once a broker is there.

The broker is this test's own, started on a port picked before the gateway starts, so the
suite's shared broker is never disturbed; it is gated on the suite's broker setting all the
same (TIDEGATE_TEST_KAFKA_BOOTSTRAP says this machine runs Kafka tests)."""

import json
import time

import requests
from websockets.sync.client import connect

from conftest import free_port, kafka_flags, kafka_prefix

TIMEOUT_MS = 2000
# What a refusal may take beyond the timeout on a busy 2-core machine.
MARGIN_S = 2.0


def timed(call):
    began = time.monotonic()
    result = call()
    return result, time.monotonic() - began


def assert_unavailable(response: requests.Response, elapsed: float, what: str) -> None:
    assert response.status_code == 503, f"{what}: {response.status_code} {response.text}"
    assert response.json()["error"]["code"] == "kafka_unavailable", f"{what}: {response.text}"
    assert elapsed < TIMEOUT_MS / 1000 + MARGIN_S, f"{what} took {elapsed:.2f}s"


def until_ok(call, what: str, within: float = 15) -> requests.Response:
    """The first 200 of a repeated call: once the gateway is ready again, any request may
    still meet the cluster's first moments, but only for a bounded while."""
    deadline = time.monotonic() + within
    while True:
        response = call()
        if response.status_code == 200 or time.monotonic() > deadline:
            assert response.status_code == 200, \
                f"{what} still fails {within}s after /readyz said ready: {response.text}"
            return response
        time.sleep(0.25)


def gateway_without_broker(start_server):
    """A gateway pointed at a loopback port nothing listens on, and that port."""
    port = free_port()
    server = start_server(*kafka_flags(f"127.0.0.1:{port}", kafka_prefix(),
                                       "--kafka-timeout-ms", str(TIMEOUT_MS)))
    return server, port


# start_broker before start_server: fixtures end in reverse, so the gateway stops while
# its broker is still there.
def test_no_broker_is_503_within_the_timeout_and_recovers_without_restart(kafka_bootstrap,
                                                                          start_broker,
                                                                          start_server):
    """Readiness, topic routes, publish, fetch, SSE, group poll and WebSocket ops all say
    503 `kafka_unavailable` (WebSocket: an `error`) within the timeout; then a broker comes
    up on the port and the same gateway gets ready and serves."""
    server, port = gateway_without_broker(start_server)

    ready, elapsed = timed(lambda: requests.get(server.url + "/readyz", timeout=30))
    assert_unavailable(ready, elapsed, "GET /readyz")
    requests_to_refuse = [
        ("GET", "/v1/topics", None),
        ("POST", "/v1/topics", {"name": "later", "partitions": 2}),
        ("GET", "/v1/topics/later", None),
        ("POST", "/v1/topics/later/records", {"records": [{"key": "k", "value": 1}]}),
        ("GET", "/v1/topics/later/partitions/0/records?offset=0", None),
        ("GET", "/v1/topics/later/events?from=earliest", None),
        ("POST", "/v1/groups/g/poll", {"topics": ["later"]}),
        ("GET", "/v1/groups", None),
    ]
    for method, path, body in requests_to_refuse:
        response, elapsed = timed(lambda: server.request(method, path, json=body))
        assert_unavailable(response, elapsed, f"{method} {path}")

    # WebSocket ops are refused with an `error` on the open socket, just as fast.
    url = server.url.replace("http://", "ws://") + "/v1/ws"
    with connect(url, additional_headers={"Authorization": f"Bearer {server.admin_token}"}) as ws:
        for op in ({"op": "publish", "req": "p", "topic": "later", "records": [{"value": 1}]},
                   {"op": "subscribe", "req": "s", "topic": "later", "from": "earliest"}):
            reply, elapsed = timed(lambda: (ws.send(json.dumps(op)),
                                            json.loads(ws.recv(timeout=30)))[1])
            assert reply["type"] == "error" and reply["req"] == op["req"], reply
            assert reply["error"]["code"] == "kafka_unavailable", reply
            assert elapsed < TIMEOUT_MS / 1000 + MARGIN_S, f"WS {op['op']} took {elapsed:.2f}s"

    # The broker comes up where the gateway has been looking all along.
    start_broker(port=port)
    server.wait_until_ready(timeout=60)
    created = server.request("POST", "/v1/topics", json={"name": "later", "partitions": 2})
    assert created.status_code == 201, created.text
    published = server.request("POST", "/v1/topics/later/records", json={
        "records": [{"key": "k", "value": {"n": 1}, "partition": 1},
                    {"value": "two", "partition": 1}]})
    assert published.status_code == 200, published.text
    offsets = published.json()["offsets"]
    fetched = until_ok(lambda: server.request("GET", "/v1/topics/later/partitions/1/records",
                                              params={"offset": 0}), "fetch")
    records = fetched.json()["records"]
    assert [(r["partition"], r["offset"], r["key"], r["value"]) for r in records] == [
        (1, offsets[0]["offset"], "k", {"n": 1}), (1, offsets[1]["offset"], None, "two")]
    listed = server.request("GET", "/v1/topics")
    assert listed.status_code == 200, listed.text
    assert [t["name"] for t in listed.json()["topics"]] == ["later"]


def test_reading_group_offsets_during_an_outage_does_not_bring_the_gateway_down(
        kafka_bootstrap, start_broker, start_server):
    """`GET /v1/groups/{g}` asks the group coordinator for committed offsets; while there is
    no broker it is 503 `kafka_unavailable` within the timeout, and once a broker is back
    the gateway (not restarted) gets ready and reads and writes group offsets."""
    server, port = gateway_without_broker(start_server)
    response, elapsed = timed(lambda: server.request("GET", "/v1/groups/g"))
    assert_unavailable(response, elapsed, "GET /v1/groups/g")

    start_broker(port=port)
    server.wait_until_ready(timeout=60)
    created = server.request("POST", "/v1/topics", json={"name": "later", "partitions": 1})
    assert created.status_code == 201, created.text
    committed = server.request("POST", "/v1/groups/g/commit", json={
        "offsets": [{"topic": "later", "partition": 0, "offset": 0}]})
    assert committed.status_code == 204, committed.text
    described = server.request("GET", "/v1/groups/g")
    assert described.status_code == 200, described.text
    assert [(p["topic"], p["partition"], p["committed_offset"])
            for p in described.json()["partitions"]] == [("later", 0, 0)]
    assert server.process.poll() is None, f"tidegate exited: {server.stderr_tail()}"
