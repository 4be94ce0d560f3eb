"""`--backend kafka` interoperates with a third-party Kafka client (confluent-kafka, that is
librdkafka): what tidegate writes is what a native consumer reads, byte for byte and at the
same partition, offset and timestamp; what a native producer writes comes out of every
tidegate transport in the SPEC's encodings; group offsets are Kafka's own in both
directions; and a gateway killed with SIGKILL loses no acknowledged record.

Every test runs against the suite's broker (TIDEGATE_TEST_KAFKA_BOOTSTRAP) with a topic and
group prefix of its own, so native clients use the prefixed names."""

import base64
import json
import tempfile
import threading
import time

import pytest
import requests
from confluent_kafka import (OFFSET_BEGINNING, TIMESTAMP_LOG_APPEND_TIME, Consumer,
                             ConsumerGroupTopicPartitions, Producer, TopicPartition)
from confluent_kafka.admin import AdminClient
from websockets.sync.client import connect

from conftest import Server, fetch_all, kafka_flags, kafka_prefix

# ---- helpers


def create_topic(server, name: str, partitions: int) -> None:
    created = server.request("POST", "/v1/topics", json={"name": name, "partitions": partitions})
    assert created.status_code == 201, created.text


def publish_raw(server, topic: str, body: str) -> list[dict]:
    """Publishes a request body as typed, so the JSON text of each value is exactly ours."""
    published = server.request("POST", f"/v1/topics/{topic}/records", data=body.encode(),
                               headers={"Authorization": f"Bearer {server.admin_token}",
                                        "Content-Type": "application/json"})
    assert published.status_code == 200, published.text
    return published.json()["offsets"]


def native_consumer(bootstrap: str, **settings) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": f"py-reader-{time.time_ns()}",
                     "enable.auto.commit": False, "isolation.level": "read_committed",
                     "auto.offset.reset": "earliest", **settings})


def read_natively(bootstrap: str, kafka_topic: str, partitions: int, count: int,
                  timeout: float = 30) -> list:
    """`count` messages of a topic through a native read_committed consumer assigned every
    partition by hand from the beginning (no group membership, nothing committed)."""
    consumer = native_consumer(bootstrap)
    try:
        consumer.assign([TopicPartition(kafka_topic, p, OFFSET_BEGINNING)
                         for p in range(partitions)])
        messages, deadline = [], time.monotonic() + timeout
        while len(messages) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            messages.append(message)
        assert len(messages) == count, f"a native consumer read {len(messages)} of {count}"
        return messages
    finally:
        consumer.close()


def produce_natively(bootstrap: str, kafka_topic: str, messages: list[dict],
                     **settings) -> list:
    """Produces with a native producer (acks=all) and returns the delivered messages, in
    the order given."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                         **settings})
    delivered: list = [None] * len(messages)
    failures = []

    def on_delivery(index):
        def report(err, message):
            if err is not None:
                failures.append(err)
            delivered[index] = message
        return report

    for index, message in enumerate(messages):
        producer.produce(kafka_topic, on_delivery=on_delivery(index), **message)
    assert producer.flush(30) == 0, "the native producer could not deliver everything"
    assert not failures, failures
    return delivered


def kafka_admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---- 1. tidegate writes, a native consumer reads


def test_records_tidegate_wrote_are_what_a_native_consumer_reads(kafka_server, kafka_bootstrap):
    """The bytes on the broker are the API's record: UTF-8 key, the value's JSON text as the
    client sent it (spacing, number spelling and non-ASCII text kept), headers, at the
    partition and offset the publish answered, with the broker's LogAppendTime as the
    timestamp tidegate shows."""
    server, topic = kafka_server, "interop"
    create_topic(server, topic, 4)
    # JSON texts typed by hand: verbatim means these bytes, not a re-serialisation.
    values = [
        '{"id": 1,  "amount": 12.50, "note": "caf\u00e9 \\u00e9"}',
        '[1, 2.0, 3e2, null, true]',
        '"just a string"',
        '-0.0',
        '{"nested": {"deep": [{"x": "y"}]}, "empty": {}}',
        '1e400',
    ]
    records = [f'{{"key": "user-{i}", "value": {v}, '
               f'"headers": {{"trace": "t-{i}", "\u00fc": "\u00e4"}}}}'
               for i, v in enumerate(values)]
    records.append('{"key": "no-headers", "value": {"k": "v"}}')
    records.append('{"value": "keyless"}')
    answer = publish_raw(server, topic, '{"records": [' + ", ".join(records) + "]}")
    assert len(answer) == len(records)

    messages = read_natively(kafka_bootstrap, server.prefix + topic, 4, len(records))
    by_position = {(m.partition(), m.offset()): m for m in messages}
    assert len(by_position) == len(records)
    fetched = {p: {r["offset"]: r for r in fetch_all(server, topic, p)} for p in range(4)}

    expected = [(f"user-{i}".encode(), v.encode(),
                 {"trace": f"t-{i}".encode(), "ü": "ä".encode()}) for i, v in enumerate(values)]
    expected.append((b"no-headers", b'{"k": "v"}', {}))
    expected.append((None, b'"keyless"', {}))
    for (key, value, headers), place in zip(expected, answer):
        message = by_position.get((place["partition"], place["offset"]))
        assert message is not None, f"nothing natively at the answered {place}"
        assert message.key() == key
        assert message.value() == value, f"not verbatim at {place}"
        assert dict(message.headers() or []) == headers
        assert len(message.headers() or []) == len(headers)
        kind, timestamp = message.timestamp()
        assert kind == TIMESTAMP_LOG_APPEND_TIME, "tidegate's topics are LogAppendTime"
        record = fetched[place["partition"]][place["offset"]]
        assert record["timestamp"] == timestamp
        assert record["key"] == (key.decode() if key is not None else None)
        assert json.dumps(record["value"]) == json.dumps(json.loads(value))
        assert record["headers"] == {k: v.decode() for k, v in headers.items()}
    assert sum(map(len, fetched.values())) == len(records), "no record more than published"


def test_keys_land_where_a_native_murmur2_producer_puts_them(kafka_server, kafka_bootstrap):
    """For the same key on the same topic, tidegate's partition is librdkafka's with
    `partitioner=murmur2_random` (the Java client's default partitioner)."""
    server, topic, partitions = kafka_server, "placed", 7
    create_topic(server, topic, partitions)
    # The SPEC's murmur2 vectors, non-ASCII keys, and enough others to reach every partition.
    keys = ["21", "foobar", "a-little-bit-long-string", "a-little-bit-longer-string",
            "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", "abc", "", "é", "日本語",
            *[f"user-{i}" for i in range(60)]]
    answer = server.request("POST", f"/v1/topics/{topic}/records",
                            json={"records": [{"key": k, "value": i} for i, k in enumerate(keys)]})
    assert answer.status_code == 200, answer.text
    tidegate = [o["partition"] for o in answer.json()["offsets"]]

    delivered = produce_natively(kafka_bootstrap, server.prefix + topic,
                                 [{"key": k.encode(), "value": b"0"} for k in keys],
                                 partitioner="murmur2_random")
    native = [m.partition() for m in delivered]
    mismatches = [(k, t, n) for k, t, n in zip(keys, tidegate, native) if t != n]
    assert not mismatches, f"(key, tidegate, native murmur2): {mismatches}"
    assert set(native) == set(range(partitions)), "the keys should reach every partition"


# ---- 2. a native producer writes, every transport reads


def native_records():
    """What other Kafka clients write, and the record the SPEC says each is shown as
    (partition, offset and timestamp are added from the broker's answer)."""
    return [
        ({"key": b"json", "value": b'{"n": 1,  "s": "x\xc3\xa9"}'},
         {"key": "json", "value": {"n": 1, "s": "xé"}, "headers": {}},
         '{"n": 1,  "s": "x\u00e9"}'),
        ({"key": b"text", "value": "plain text, not JSON: caf\u00e9 {".encode()},
         {"key": "text", "value": "plain text, not JSON: café {", "value_encoding": "text",
          "headers": {}}, None),
        ({"key": b"binary", "value": b"\xff\x00\x01\xfebin"},
         {"key": "binary", "value": b64(b"\xff\x00\x01\xfebin"), "value_encoding": "base64",
          "headers": {}}, None),
        ({"key": b"headers", "value": b"7",
          "headers": [("bin", b"\xff\xfe\x00"), ("txt", "h\u00e9llo".encode())]},
         {"key": "headers", "value": 7, "headers": {"bin": b64(b"\xff\xfe\x00"), "txt": "héllo"},
          "headers_base64": ["bin"]}, None),
        ({"key": b"tombstone", "value": None},
         {"key": "tombstone", "value": None, "headers": {}}, None),
        ({"key": None, "value": b'"keyless"'},
         {"key": None, "value": "keyless", "headers": {}}, None),
        ({"key": b"\xfe\xff\x00k", "value": b"[true]"},
         {"key": b64(b"\xfe\xff\x00k"), "key_encoding": "base64", "value": [True],
          "headers": {}}, None),
    ]


def ws_records(server, topic: str, count: int, timeout: float = 20) -> tuple[list, list]:
    """A WebSocket subscription from earliest: the first `count` records and the raw text
    of the frames that carried them."""
    url = server.url.replace("http://", "ws://") + "/v1/ws"
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    records, frames, deadline = [], [], time.monotonic() + timeout
    with connect(url, additional_headers=headers) as socket:
        socket.send(json.dumps({"op": "subscribe", "req": "s", "topic": topic,
                                "from": "earliest"}))
        while len(records) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"the WebSocket delivered {len(records)} of {count}: {frames}"
            frame = socket.recv(timeout=left)
            message = json.loads(frame)
            assert message["type"] in ("subscribed", "records"), message
            if message["type"] == "records":
                assert message["topic"] == topic
                records += message["records"]
                frames.append(frame)
    return records, frames


def sse_records(server, topic: str, count: int, timeout: float = 20) -> tuple[list, list]:
    """An SSE stream from earliest: the first `count` records and their raw `data` texts."""
    records, texts, deadline = [], [], time.monotonic() + timeout
    with requests.get(server.url + f"/v1/topics/{topic}/events", params={"from": "earliest"},
                      headers={"Authorization": f"Bearer {server.admin_token}",
                               "Accept": "text/event-stream"},
                      stream=True, timeout=10) as stream:
        assert stream.status_code == 200, stream.text
        assert stream.headers["content-type"].startswith("text/event-stream")
        event = {}
        for line in stream.iter_lines(decode_unicode=False):
            assert time.monotonic() < deadline, f"SSE delivered {len(records)} of {count}"
            line = line.decode()
            if line == "":
                if "data" in event:
                    assert event.get("event", "message") == "message", event
                    texts.append(event["data"])
                    records.append(json.loads(event["data"]))
                    if len(records) == count:
                        break
                event = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                event[field] = event[field] + "\n" + value if field in event else value
    return records, texts


def test_records_a_native_producer_wrote_come_out_of_every_transport(kafka_server,
                                                                      kafka_bootstrap):
    """JSON values are spliced verbatim; other UTF-8 text is a JSON string with
    `value_encoding: "text"`; other bytes are base64 with `value_encoding: "base64"` (keys
    likewise with `key_encoding`); non-UTF-8 header values are base64 and named in
    `headers_base64`; a tombstone is `null`. Fetch, WebSocket and SSE say the same, and a
    field not needed is absent rather than null."""
    server, topic = kafka_server, "foreign"
    create_topic(server, topic, 1)
    cases = native_records()
    delivered = produce_natively(kafka_bootstrap, server.prefix + topic, [c[0] for c in cases])
    expected = []
    for (_, shown, _), message in zip(cases, delivered):
        kind, timestamp = message.timestamp()
        assert kind == TIMESTAMP_LOG_APPEND_TIME
        expected.append({"partition": 0, "offset": message.offset(), "timestamp": timestamp,
                         **shown})
    verbatim = [text for _, _, text in cases if text is not None]

    fetched = server.request("GET", f"/v1/topics/{topic}/partitions/0/records",
                             params={"offset": 0})
    assert fetched.status_code == 200, fetched.text
    assert fetched.json()["records"] == expected, "HTTP fetch"
    for text in verbatim:
        assert text in fetched.text, f"fetch did not splice {text!r} verbatim"

    records, frames = ws_records(server, topic, len(expected))
    assert records == expected, "WebSocket"
    for text in verbatim:
        assert any(text in frame for frame in frames), f"WebSocket re-serialised {text!r}"

    records, texts = sse_records(server, topic, len(expected))
    assert records == expected, "SSE"
    for text in verbatim:
        assert any(text in data for data in texts), f"SSE re-serialised {text!r}"


# ---- 3. group offsets are Kafka's, both ways


def group_offsets_natively(bootstrap: str, kafka_group: str) -> dict:
    """What Kafka's AdminClient lists as the group's committed offsets."""
    admin = kafka_admin(bootstrap)  # kept alive until its future is done
    futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(kafka_group)],
                                                request_timeout=15)
    answer = futures[kafka_group].result(timeout=30)
    return {(tp.topic, tp.partition): tp.offset for tp in answer.topic_partitions
            if tp.offset >= 0}


def alter_group_offsets_natively(bootstrap: str, kafka_group: str,
                                 offsets: dict[tuple[str, int], int]) -> None:
    """Sets a group's committed offsets with Kafka's AdminClient."""
    admin = kafka_admin(bootstrap)
    futures = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(
        kafka_group, [TopicPartition(t, p, o) for (t, p), o in offsets.items()])],
        request_timeout=15)
    answer = futures[kafka_group].result(timeout=30)
    failed = [tp for tp in answer.topic_partitions if tp.error is not None]
    assert not failed, failed


def test_group_offsets_are_kafkas_group_offsets_both_ways(kafka_server, kafka_bootstrap):
    """A tidegate commit is what Kafka's AdminClient lists for the prefixed group id, and an
    offset the AdminClient sets on the empty group is the `committed_offset` tidegate shows."""
    server, topic, group = kafka_server, "ledger", "billing"
    create_topic(server, topic, 2)
    for partition, count in ((0, 3), (1, 5)):
        published = server.request("POST", f"/v1/topics/{topic}/records", json={
            "records": [{"value": {"p": partition, "n": n}, "partition": partition}
                        for n in range(count)]})
        assert published.status_code == 200, published.text

    delivered: dict[int, list[int]] = {0: [], 1: []}
    member = None
    deadline = time.monotonic() + 30
    while sum(map(len, delivered.values())) < 8:
        assert time.monotonic() < deadline, f"the poll delivered {delivered}"
        poll = server.request("POST", f"/v1/groups/{group}/poll", json={
            "topics": [topic], "member_id": member, "auto_offset_reset": "earliest",
            "wait_ms": 1000})
        assert poll.status_code == 200, poll.text
        body = poll.json()
        member, generation = body["member_id"], body["generation"]
        for record in body["records"]:
            delivered[record["partition"]].append(record["offset"])
    # Partition 1 committed only part of the way, so "everything read" is not the answer.
    commit = {0: delivered[0][-1] + 1, 1: delivered[1][2]}
    committed = server.request("POST", f"/v1/groups/{group}/commit", json={
        "member_id": member, "generation": generation,
        "offsets": [{"topic": topic, "partition": p, "offset": o} for p, o in commit.items()]})
    assert committed.status_code == 204, committed.text

    kafka_topic, kafka_group = server.prefix + topic, server.prefix + group
    assert group_offsets_natively(kafka_bootstrap, kafka_group) == {
        (kafka_topic, p): o for p, o in commit.items()}

    # Empty the group, then move its offsets with Kafka's own admin API.
    left = server.request("DELETE", f"/v1/groups/{group}/members/{member}")
    assert left.status_code == 204, left.text
    altered = {0: 1, 1: delivered[1][-1] + 1}
    alter_group_offsets_natively(kafka_bootstrap, kafka_group,
                                 {(kafka_topic, p): o for p, o in altered.items()})
    assert group_offsets_natively(kafka_bootstrap, kafka_group) == {
        (kafka_topic, p): o for p, o in altered.items()}

    described = server.request("GET", f"/v1/groups/{group}")
    assert described.status_code == 200, described.text
    shown = {p["partition"]: p["committed_offset"] for p in described.json()["partitions"]
             if p["topic"] == topic}
    assert shown == altered
    # A group tidegate never touched, set up by Kafka's tools alone, shows up as well.
    fresh = "set-by-kafka-tools"
    alter_group_offsets_natively(kafka_bootstrap, server.prefix + fresh, {(kafka_topic, 1): 4})
    described = server.request("GET", f"/v1/groups/{fresh}")
    assert described.status_code == 200, described.text
    shown = {(p["topic"], p["partition"]): p["committed_offset"]
             for p in described.json()["partitions"]}
    assert shown.get((topic, 1)) == 4, shown


# ---- 4. native members hold the group


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_commit_while_native_consumers_hold_the_group_is_409(kafka_server, kafka_bootstrap,
                                                               protocol):
    """A group is tidegate's or native consumers', not both: while a native consumer is an
    active member of the prefixed group id (either rebalance protocol: classic, and KIP-848's
    `consumer`), a tidegate commit is refused with 409 `group_in_use_by_kafka_consumers`;
    once it has left, the same commit is accepted."""
    server, topic, group = kafka_server, "contested", "shared"
    create_topic(server, topic, 2)
    published = server.request("POST", f"/v1/topics/{topic}/records",
                               json={"records": [{"value": n, "partition": n % 2}
                                                 for n in range(4)]})
    assert published.status_code == 200, published.text

    assigned = threading.Event()
    consumer = native_consumer(kafka_bootstrap, **{"group.id": server.prefix + group,
                                                   "group.protocol": protocol})
    try:
        consumer.subscribe([server.prefix + topic],
                           on_assign=lambda c, partitions: partitions and assigned.set())
        deadline = time.monotonic() + 30
        while not assigned.is_set():
            assert time.monotonic() < deadline, "the native consumer never got an assignment"
            message = consumer.poll(0.2)
            assert message is None or message.error() is None, message.error()

        offsets = [{"topic": topic, "partition": p, "offset": 1} for p in range(2)]
        refused = server.request("POST", f"/v1/groups/{group}/commit", json={"offsets": offsets})
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "group_in_use_by_kafka_consumers", refused.text

        # A tidegate member of the same group id: its coordinator takes it, the broker not.
        poll = server.request("POST", f"/v1/groups/{group}/poll",
                              json={"topics": [topic], "auto_offset_reset": "earliest"})
        assert poll.status_code == 200, poll.text
        body = poll.json()
        assert body["assignment"], body
        refused = server.request("POST", f"/v1/groups/{group}/commit", json={
            "member_id": body["member_id"], "generation": body["generation"],
            "offsets": [{"topic": a["topic"], "partition": a["partition"], "offset": 1}
                        for a in body["assignment"]]})
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "group_in_use_by_kafka_consumers", refused.text
        left = server.request("DELETE", f"/v1/groups/{group}/members/{body['member_id']}")
        assert left.status_code == 204, left.text
    finally:
        consumer.close()

    # The native member left (close sends LeaveGroup): the group is free for tidegate.
    deadline = time.monotonic() + 30
    while True:
        accepted = server.request("POST", f"/v1/groups/{group}/commit", json={"offsets": offsets})
        if accepted.status_code == 204 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert accepted.status_code == 204, accepted.text
    assert group_offsets_natively(kafka_bootstrap, server.prefix + group) == {
        (server.prefix + topic, p): 1 for p in range(2)}


# ---- 5. kill -9 loses no acknowledged record


def test_sigkill_while_publishing_loses_no_acknowledged_record(kafka_bootstrap):
    """Four clients publish small batches for about two seconds while the gateway is killed
    with SIGKILL. A gateway restarted on the same data dir and prefix serves every record
    whose publish was answered 200, at the answered place, each once; a native
    read_committed consumer sees them too."""
    topic, partitions, prefix = "durable", 3, kafka_prefix()
    data_dir = tempfile.TemporaryDirectory()
    flags = kafka_flags(kafka_bootstrap, prefix)
    first = Server(*flags, data_dir=data_dir.name)
    second = None
    try:
        first.wait_until_ready()
        create_topic(first, topic, partitions)
        acknowledged: dict[str, tuple[int, int]] = {}
        lock, stop = threading.Lock(), threading.Event()
        counts = {"ok": 0, "refused": 0, "failed": 0}

        def client(index: int) -> None:
            session, batch = requests.Session(), 0
            headers = {"Authorization": f"Bearer {first.admin_token}"}
            while not stop.is_set():
                values = [f"c{index}-b{batch}-r{r}" for r in range(1 + batch % 4)]
                batch += 1
                try:
                    answer = session.post(first.url + f"/v1/topics/{topic}/records",
                                          headers=headers, timeout=15, json={
                                              "records": [{"key": v, "value": v} for v in values]})
                except requests.RequestException:
                    with lock:
                        counts["failed"] += 1
                    if first.process.poll() is not None:
                        return
                    continue
                with lock:
                    if answer.status_code == 200:
                        counts["ok"] += 1
                        for value, place in zip(values, answer.json()["offsets"]):
                            acknowledged[value] = (place["partition"], place["offset"])
                    else:
                        counts["refused"] += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(2)
        first.kill()
        killed_at = time.monotonic()
        for thread in threads:
            thread.join(timeout=30)
        stop.set()
        assert not any(t.is_alive() for t in threads)
        assert counts["ok"] >= 20, f"too few publishes before the kill to prove anything: {counts}"
        assert time.monotonic() - killed_at < 20

        second = Server(*flags, data_dir=data_dir.name)
        second.wait_until_ready()
        served: dict[str, list[tuple[int, int]]] = {}
        for partition in range(partitions):
            for record in fetch_all(second, topic, partition):
                served.setdefault(record["value"], []).append((partition, record["offset"]))
        lost = {v: p for v, p in acknowledged.items() if served.get(v) != [p]}
        assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged records are not " \
                         f"served once at their place: {dict(list(lost.items())[:10])}"
        twice = {v: p for v, p in served.items() if len(p) > 1}
        assert not twice, f"records served more than once: {twice}"

        messages = read_natively(kafka_bootstrap, prefix + topic, partitions, len(served))
        native = {m.value().decode(): (m.partition(), m.offset()) for m in messages}
        assert {json.dumps(v): p for v, p in acknowledged.items()}.items() <= native.items()
    finally:
        first.stop()
        if second is not None:
            second.stop()
        data_dir.cleanup()
