"""`tidegate export --to-kafka`: a deployment moves from the embedded store to Kafka and its
clients notice nothing. The same records at the same offsets (including a partition whose
head retention had removed), the same committed group offsets and lag, and a WebSocket
cursor taken on redb resumes exactly after it on Kafka. An interrupted export finishes on a
second run without duplicates; a topic of the same name with other records is refused."""

import json
import subprocess
import tempfile
import time

from websockets.sync.client import connect

from conftest import Server, binary, fetch_all, kafka_flags, kafka_prefix


def export(data_dir: str, bootstrap: str, prefix: str, *extra: str,
           timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([binary(), "export", "--to-kafka", bootstrap, "--data-dir", data_dir,
                           "--kafka-topic-prefix", prefix, *extra],
                          capture_output=True, text=True, timeout=timeout)


def publish(server: Server, topic: str, records: list[dict]) -> list[dict]:
    response = server.request("POST", f"/v1/topics/{topic}/records", json={"records": records})
    assert response.status_code == 200, response.text
    return response.json()["offsets"]


def all_records(server: Server, topic: str, partition: int) -> list[tuple]:
    """Every stored record of a partition as (offset, timestamp, key, value, headers)."""
    return [(r["offset"], r["timestamp"], r.get("key"), json.dumps(r["value"]), r.get("headers"))
            for r in fetch_all(server, topic, partition)]


def bounds(server: Server, topic: str) -> list[tuple[int, int]]:
    described = server.request("GET", f"/v1/topics/{topic}").json()
    return [(p["log_start_offset"], p["high_watermark"]) for p in described["partition_offsets"]]


def committed(server: Server, group: str) -> list[tuple]:
    described = server.request("GET", f"/v1/groups/{group}").json()
    return sorted((p["topic"], p["partition"], p["committed_offset"], p["lag"])
                  for p in described["partitions"])


def embedded_source(data_dir: str) -> tuple[Server, str]:
    """A redb server with two topics: `orders` (3 partitions, keys and headers) and
    `trimmed`, whose head retention removed; a group with committed offsets; and a
    WebSocket cursor taken at the end of `orders`, with 30 records published after it."""
    server = Server("--retention-check-interval-ms", "100", data_dir=data_dir)
    try:
        return fill_source(server)
    except BaseException:
        server.stop()
        raise


def fill_source(server: Server) -> tuple[Server, str]:
    created = server.request("POST", "/v1/topics", json={"name": "orders", "partitions": 3})
    assert created.status_code == 201, created.text
    for batch in range(6):
        publish(server, "orders", [{"key": f"user-{i}", "value": {"n": batch * 50 + i},
                                    "headers": {"batch": str(batch)}} for i in range(50)])
    created = server.request("POST", "/v1/topics", json={"name": "trimmed", "partitions": 1})
    assert created.status_code == 201, created.text
    for n in range(40):
        publish(server, "trimmed", [{"value": {"n": n, "pad": "x" * 200}}])
    patched = server.request("PATCH", "/v1/topics/trimmed", json={"retention_bytes": 2000})
    assert patched.status_code == 200, patched.text
    deadline = time.monotonic() + 20
    while bounds(server, "trimmed")[0][0] == 0:
        assert time.monotonic() < deadline, "retention never advanced the log start"
        time.sleep(0.1)
    ends = [end for _, end in bounds(server, "orders")]
    assert all(end > 30 for end in ends), ends
    offsets = [{"topic": "orders", "partition": p, "offset": 20 + p} for p in range(3)]
    polled = server.request("POST", "/v1/groups/billing/commit", json={"offsets": offsets})
    assert polled.status_code in (200, 204), polled.text
    with connect(server.url.replace("http", "ws") + "/v1/ws?access_token=" + server.admin_token) as ws:
        ws.send(json.dumps({"op": "subscribe", "req": "1", "topic": "orders",
                            "from": {"offsets": {"0": 10, "1": 10, "2": 10}}}))
        cursor, seen, total = None, 0, sum(end for _, end in bounds(server, "orders"))
        while seen < total - 30:
            message = json.loads(ws.recv(timeout=10))
            if message["type"] == "records":
                cursor, seen = message["cursor"], seen + len(message["records"])
    # Records after the cursor, which a resumed subscription must get exactly.
    publish(server, "orders", [{"key": f"late-{i}", "value": {"late": i}} for i in range(30)])
    return server, cursor


def delivered_after(server: Server, cursor: str) -> list[tuple[int, int]]:
    """The (partition, offset) of every record delivered from `cursor` until the stream
    goes quiet."""
    delivered = []
    with connect(server.url.replace("http", "ws") + "/v1/ws?access_token=" + server.admin_token) as ws:
        ws.send(json.dumps({"op": "subscribe", "req": "1", "topic": "orders",
                            "from": {"cursor": cursor}}))
        while True:
            try:
                message = json.loads(ws.recv(timeout=3))
            except TimeoutError:
                break
            assert message["type"] != "error", message
            if message["type"] == "records":
                delivered += [(r["partition"], r["offset"]) for r in message["records"]]
    return sorted(delivered)


def test_export_keeps_offsets_groups_and_cursors_and_resumes(kafka_bootstrap, start_server):
    with tempfile.TemporaryDirectory() as data_dir:
        source, cursor = embedded_source(data_dir)
        try:
            expected = {(t, p): all_records(source, t, p)
                        for t, n in (("orders", 3), ("trimmed", 1)) for p in range(n)}
            expected_bounds = {t: bounds(source, t) for t in ("orders", "trimmed")}
            expected_groups = committed(source, "billing")
            expected_resume = delivered_after(source, cursor)
            assert expected_resume, "the cursor was taken before the end"
        finally:
            source.stop()

        prefix = kafka_prefix()
        # An interrupted first run: only one topic, then the process killed mid-copy
        # would leave the same state as this partial copy of `orders`' first pages.
        partial = export(data_dir, kafka_bootstrap, prefix, "--topics", "trimmed")
        assert partial.returncode == 0, partial.stderr
        killed = subprocess.Popen([binary(), "export", "--to-kafka", kafka_bootstrap,
                                   "--data-dir", data_dir, "--kafka-topic-prefix", prefix],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # Killed as soon as it reports progress on `orders`: some records are in the cluster.
        for line in killed.stderr:
            if line.startswith("export: orders/"):
                killed.kill()
                break
        killed.wait(timeout=60)
        finished = export(data_dir, kafka_bootstrap, prefix)
        assert finished.returncode == 0, finished.stderr
        assert "export: " in finished.stderr, "progress goes to stderr"
        again = export(data_dir, kafka_bootstrap, prefix)
        assert again.returncode == 0, again.stderr
        assert "0 records" in again.stdout, f"a complete export writes nothing again: {again.stdout}"

        target = start_server(*kafka_flags(kafka_bootstrap, prefix))
        target.wait_until_ready()
        for (topic, partition), records in expected.items():
            assert all_records(target, topic, partition) == records, \
                f"{topic}/{partition}: the records or their offsets differ after the export"
        for topic, topic_bounds in expected_bounds.items():
            assert bounds(target, topic) == topic_bounds, f"{topic}: bounds differ"
        assert bounds(target, "trimmed")[0][0] > 0, "the cluster's log start was advanced"
        assert committed(target, "billing") == expected_groups, "committed offsets and lag"
        assert delivered_after(target, cursor) == expected_resume, \
            "a cursor taken on redb resumes exactly where it did there"
        # The moved topic is served as the gateway's own: new records get the broker's time.
        offsets = publish(target, "trimmed", [{"value": {"after": True}}])
        assert offsets[0]["offset"] >= expected_bounds["trimmed"][0][1]


def test_export_refuses_a_topic_with_other_records(kafka_bootstrap, start_server):
    with tempfile.TemporaryDirectory() as data_dir:
        source = Server(data_dir=data_dir)
        try:
            assert source.request("POST", "/v1/topics",
                                  json={"name": "orders", "partitions": 1}).status_code == 201
            publish(source, "orders", [{"value": {"embedded": n}} for n in range(5)])
        finally:
            source.stop()
        prefix = kafka_prefix()
        other = start_server(*kafka_flags(kafka_bootstrap, prefix))
        other.wait_until_ready()
        assert other.request("POST", "/v1/topics",
                             json={"name": "orders", "partitions": 1}).status_code == 201
        for n in range(2):
            publish(other, "orders", [{"value": {"other": n}}])
        refused = export(data_dir, kafka_bootstrap, prefix)
        assert refused.returncode != 0, refused.stdout
        assert "topic 'orders'" in refused.stderr and "refusing to mix" in refused.stderr, \
        refused.stderr
        records = all_records(other, "orders", 0)
        assert [json.loads(r[3]) for r in records] == [{"other": 0}, {"other": 1}], \
            "nothing was written into the refused topic"
