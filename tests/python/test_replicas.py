"""Several gateway replicas in front of one broker, as behind a load balancer (SPEC
"Scale-out", issue 22): any request of a group member may reach any replica, a partition
belongs to one member of a generation, and a replica's death costs only its WebSocket
connections. Every replica runs with the same `--cluster-secret` and topic prefix."""

import contextlib
import json
import tempfile
import threading
import time
from collections import defaultdict

import pytest
import requests
from websockets.sync.client import connect

from conftest import Server, fetch_all, kafka_flags, kafka_prefix

CLUSTER_SECRET = "python-replicas-cluster-secret-0123"


class Replicas:
    """`count` replicas of one deployment, each with a data directory of its own that
    outlives a kill (so a restart keeps its replica id)."""

    def __init__(self, bootstrap: str, count: int):
        self.flags = kafka_flags(bootstrap, kafka_prefix(), "--cluster-secret", CLUSTER_SECRET,
                                 "--kafka-timeout-ms", "5000")
        self.dirs = [tempfile.TemporaryDirectory() for _ in range(count)]
        self.servers = [Server(*self.flags, data_dir=d.name) for d in self.dirs]
        for server in self.servers:
            server.wait_until_ready(timeout=60)

    def restart(self, index: int) -> Server:
        self.servers[index] = Server(*self.flags, data_dir=self.dirs[index].name)
        self.servers[index].wait_until_ready(timeout=60)
        return self.servers[index]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        for directory in self.dirs:
            directory.cleanup()


@pytest.fixture
def replicas(kafka_bootstrap):
    started = []

    def start(count: int) -> Replicas:
        started.append(Replicas(kafka_bootstrap, count))
        return started[-1]

    yield start
    for running in started:
        running.stop()


def create_topic(server: Server, name: str, partitions: int) -> None:
    created = server.request("POST", "/v1/topics", json={"name": name, "partitions": partitions})
    assert created.status_code == 201, created.text


def publish(server: Server, topic: str, values: list) -> list:
    answer = server.request("POST", f"/v1/topics/{topic}/records",
                            json={"records": [{"key": f"k{v}", "value": v} for v in values]})
    assert answer.status_code == 200, answer.text
    return answer.json()["offsets"]


def poll(server: Server, group: str, body: dict) -> requests.Response:
    return server.request("POST", f"/v1/groups/{group}/poll", json=body)


def test_records_published_through_one_replica_reach_subscribers_of_another(replicas):
    a, b = replicas(2).servers
    create_topic(a, "orders", 2)
    with connect(b.url.replace("http://", "ws://") + "/v1/ws",
                 additional_headers={"Authorization": f"Bearer {b.admin_token}"}) as ws:
        ws.send(json.dumps({"op": "subscribe", "req": "s", "topic": "orders", "from": "earliest"}))
        events = requests.get(b.url + "/v1/topics/orders/events?from=earliest", stream=True,
                              headers={"Authorization": f"Bearer {b.admin_token}"}, timeout=30)
        publish(a, "orders", list(range(10)))
        pushed = []
        deadline = time.monotonic() + 20
        while len(pushed) < 10 and time.monotonic() < deadline:
            message = json.loads(ws.recv(timeout=20))
            if message["type"] == "records":
                pushed += [r["value"] for r in message["records"]]
        assert sorted(pushed) == list(range(10))
        streamed = []
        for line in events.iter_lines(decode_unicode=True):
            if line.startswith("data:"):
                streamed.append(json.loads(line[5:])["value"])
                if len(streamed) == 10:
                    break
        events.close()
        assert sorted(streamed) == list(range(10))


class Deliveries:
    """What each member got, per generation, to check that no partition went to two
    members of one generation and no record to two members of one generation."""

    def __init__(self):
        self.lock = threading.Lock()
        self.owners = defaultdict(dict)  # generation -> {(topic, partition): member}
        self.records = defaultdict(dict)  # generation -> {(partition, offset): member}
        self.values = set()
        self.errors = []
        # Broken promises seen by a member thread (an assertion there would go unseen).
        self.violations = []

    def took(self, answer: dict) -> None:
        member, generation = answer["member_id"], answer["generation"]
        with self.lock:
            for part in answer["assignment"]:
                key = (part["topic"], part["partition"])
                owner = self.owners[generation].setdefault(key, member)
                assert owner == member, f"{key} went to {owner} and {member} in {generation}"
            for record in answer["records"]:
                key = (record["partition"], record["offset"])
                got = self.records[generation].setdefault(key, member)
                assert got == member, f"{key} delivered to {got} and {member} in {generation}"
                self.values.add(record["value"])


def member_loop(servers: list, group: str, deliveries: Deliveries, stop: threading.Event,
                name: str) -> None:
    try:
        poll_through(servers, group, deliveries, stop, name)
    except AssertionError as err:
        deliveries.violations.append(f"{name}: {err}")


def poll_through(servers: list, group: str, deliveries: Deliveries, stop: threading.Event,
                 name: str) -> None:
    """One HTTP member that sends every poll through the next replica, committing what it
    got (auto_commit), riding out 503s while ownership moves."""
    member = None
    turn = 0
    while not stop.is_set():
        server = servers[turn % len(servers)]
        turn += 1
        body = {"topics": ["orders"], "wait_ms": 200, "auto_commit": True,
                "auto_offset_reset": "earliest", "session_timeout_ms": 10000}
        if member:
            body["member_id"] = member
        try:
            answer = poll(server, group, body)
        except requests.RequestException as err:
            deliveries.errors.append(f"{name}: {err!r}")
            time.sleep(0.2)
            continue
        if answer.status_code == 200:
            body = answer.json()
            member = body["member_id"]
            deliveries.took(body)
        elif answer.status_code == 404 and answer.json()["error"]["code"] == "member_not_found":
            member = None
        else:
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] == "kafka_unavailable"
            time.sleep(0.2)


def test_http_members_alternating_replicas_share_one_group(replicas):
    cluster = replicas(3)
    a, b, c = cluster.servers
    create_topic(a, "orders", 4)
    published = publish(a, "orders", list(range(0, 100))) + publish(b, "orders", list(range(100, 200)))
    assert len(published) == 200
    deliveries, stop = Deliveries(), threading.Event()
    threads = [threading.Thread(target=member_loop,
                                args=(servers, "billing", deliveries, stop, name))
               for name, servers in (("m1", [a, b, c]), ("m2", [c, a, b]))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(deliveries.values) < 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    # Both members hold partitions of one generation, reported alike by every replica.
    described = [s.request("GET", "/v1/groups/billing").json() for s in (a, b, c)]
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert not deliveries.violations, deliveries.violations
    assert deliveries.values == set(range(200)), deliveries.errors
    assert len({d["generation"] for d in described}) == 1, described
    assert len(described[0]["members"]) == 2
    owners = [m["assignment"] for m in described[0]["members"]]
    assert all(owners) and sorted(sum(([p["partition"] for p in o] for o in owners), [])) == [0, 1, 2, 3]
    newest = max(deliveries.owners)
    assert len(set(deliveries.owners[newest].values())) == 2
    # Committed through whichever replica took the poll, the same on every replica: all
    # read (a lag of 1 is the transaction marker after a partition's last record, which a
    # position steps over only on the next read; docs/scale-out.md, part 1).
    lags = [[p["lag"] for p in s.request("GET", "/v1/groups/billing").json()["partitions"]]
            for s in (a, b, c)]
    assert lags[0] == lags[1] == lags[2] and all(lag in (0, 1) for lag in lags[0]), lags
    listed = b.request("GET", "/v1/groups").json()
    assert [g["group"] for g in listed["groups"]] == ["billing"], listed


def test_a_websocket_member_and_an_http_member_share_one_group(replicas):
    a, b = replicas(2).servers
    create_topic(a, "orders", 2)
    with connect(a.url.replace("http://", "ws://") + "/v1/ws",
                 additional_headers={"Authorization": f"Bearer {a.admin_token}"}) as ws:
        ws.send(json.dumps({"op": "subscribe", "req": "g", "topic": "orders",
                            "group": "mixed", "from": "earliest"}))
        first = poll(b, "mixed", {"topics": ["orders"], "wait_ms": 0})
        assert first.status_code == 200, first.text
        member = first.json()["member_id"]
        # The WebSocket member follows the rebalance the HTTP member's join caused.
        deadline = time.monotonic() + 20
        ws_partitions, generation = None, None
        while time.monotonic() < deadline:
            answer = poll(b, "mixed", {"topics": ["orders"], "member_id": member, "wait_ms": 0}).json()
            message = json.loads(ws.recv(timeout=20))
            if message["type"] == "assignment" and message["generation"] == answer["generation"]:
                ws_partitions, generation = message["partitions"], message["generation"]
                http_partitions = [p["partition"] for p in answer["assignment"]]
                break
        assert generation is not None, "no assignment of the HTTP member's generation"
        assert len(ws_partitions) == 1 and len(http_partitions) == 1
        assert sorted(ws_partitions + http_partitions) == [0, 1]
        # A commit through the other replica with the WebSocket member's stale view fails.
        stale = b.request("POST", "/v1/groups/mixed/commit", json={
            "member_id": member, "generation": generation - 1,
            "offsets": [{"topic": "orders", "partition": http_partitions[0], "offset": 0}]})
        assert stale.status_code == 409, stale.text
        described = a.request("GET", "/v1/groups/mixed").json()
        assert len(described["members"]) == 2 and described["generation"] == generation


def metric(server: Server, name: str) -> float:
    text = server.request("GET", "/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def test_killing_the_replica_that_runs_a_group(replicas):
    cluster = replicas(3)
    a = cluster.servers[0]
    create_topic(a, "orders", 4)
    deliveries, stop = Deliveries(), threading.Event()
    acknowledged, publish_errors = [], []

    def publisher(index: int) -> None:
        n = 0
        while not stop.is_set():
            server = cluster.servers[(index + n) % 3]
            value = index * 1_000_000 + n
            n += 1
            try:
                answer = server.request("POST", "/v1/topics/orders/records",
                                        json={"records": [{"value": value}]})
            except requests.RequestException as err:
                publish_errors.append(repr(err))
                continue
            if answer.status_code == 200:
                acknowledged.append(value)
            time.sleep(0.02)

    # Members and publishers go through every replica, as behind a balancer: the one
    # killed below answers nothing from then on, and they go on with the next.
    threads = [threading.Thread(target=member_loop,
                                args=(cluster.servers[::step], "billing", deliveries, stop, f"m{step}"))
               for step in (1, -1)]
    threads += [threading.Thread(target=publisher, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while not deliveries.owners or len(set(deliveries.owners[max(deliveries.owners)].values())) < 2:
        assert time.monotonic() < deadline, f"the members never shared the group: {deliveries.errors[-5:]}"
        time.sleep(0.2)
    owners = [i for i, s in enumerate(cluster.servers)
              if metric(s, "tidegate_cluster_groups_owned") >= 1]
    assert len(owners) == 1, f"replicas that say they run the group: {owners}"
    owner = owners[0]
    survivors = [s for i, s in enumerate(cluster.servers) if i != owner]
    time.sleep(3)
    generation_before = max(deliveries.owners)
    killed_at = time.monotonic()
    cluster.servers[owner].kill()
    # The group goes on at a new owner, with a generation above every earlier one.
    settled = None
    while time.monotonic() - killed_at < 40:
        newest = max(deliveries.owners)
        if newest > generation_before and len(set(deliveries.owners[newest].values())) == 2:
            settled = time.monotonic() - killed_at
            break
        time.sleep(0.2)
    assert settled is not None, f"the group did not settle after the kill; {deliveries.errors[-5:]}"
    time.sleep(2)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert not deliveries.violations, deliveries.violations
    # Nothing acknowledged is lost: every record is there, and the members got them all.
    survivor = survivors[0]
    stored = [r["value"] for p in range(4) for r in fetch_all(survivor, "orders", p)]
    assert set(acknowledged) <= set(stored)
    deadline = time.monotonic() + 20
    # The members stopped; one more member drains what they had not reached.
    rest = poll(survivor, "billing", {"topics": ["orders"], "wait_ms": 0})
    while rest.status_code == 200 and time.monotonic() < deadline:
        deliveries.took(rest.json())
        if set(acknowledged) <= deliveries.values:
            break
        rest = poll(survivor, "billing", {"topics": ["orders"], "member_id": rest.json()["member_id"],
                                          "wait_ms": 500, "auto_commit": True})
    assert set(acknowledged) <= deliveries.values
    print(f"settled {settled:.1f} s after the kill; {len(acknowledged)} acknowledged")
    # A restarted replica rejoins and takes a share of the groups back.
    restarted = cluster.restart(owner)
    deadline = time.monotonic() + 30
    while metric(restarted, "tidegate_cluster_shares_owned") < 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert metric(restarted, "tidegate_cluster_shares_owned") >= 1
    assert poll(restarted, "billing", {"topics": ["orders"], "wait_ms": 0}).status_code == 200


def keyed_publish(server: Server, key: str, value) -> requests.Response:
    return server.request("POST", "/v1/topics/orders/records",
                          headers={"Authorization": f"Bearer {server.admin_token}",
                                   "Idempotency-Key": key},
                          json={"records": [{"value": value}]})


def test_an_idempotency_key_holds_across_replicas(replicas):
    cluster = replicas(3)
    a, b, c = cluster.servers
    create_topic(a, "orders", 3)
    first = keyed_publish(a, "order-1", 1)
    assert first.status_code == 200, first.text
    for server in (b, c, a):
        retry = keyed_publish(server, "order-1", 1)
        assert retry.status_code == 200, retry.text
        assert retry.headers.get("Idempotency-Replayed") == "true"
        assert retry.json()["offsets"] == first.json()["offsets"]
    reused = keyed_publish(c, "order-1", 2)
    assert reused.status_code == 422 and reused.json()["error"]["code"] == "idempotency_key_reused"

    # Attempts racing through every replica at once: one append, one answer for all.
    answers = {}

    def attempt(index: int, key: str) -> None:
        answers[(index, key)] = keyed_publish(cluster.servers[index], key, key)

    keys = [f"race-{n}" for n in range(10)]
    threads = [threading.Thread(target=attempt, args=(i, key)) for key in keys for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for key in keys:
        offsets = {json.dumps(answers[(i, key)].json()["offsets"]) for i in range(3)}
        assert all(answers[(i, key)].status_code == 200 for i in range(3))
        assert len(offsets) == 1, f"{key}: {offsets}"
    stored = [r["value"] for p in range(3) for r in fetch_all(a, "orders", p)]
    assert sorted(stored, key=str) == sorted([1] + keys, key=str), stored

    # A replica dies; the shares it owned move, and their new owners still know every
    # answer given (a publish meanwhile is 503 within the timeout, never a second append).
    c.kill()
    deadline = time.monotonic() + 40
    for key, value in [("order-1", 1)] + [(key, key) for key in keys]:
        while True:
            retry = keyed_publish(a if key == "order-1" else b, key, value)
            if retry.status_code == 200:
                break
            assert retry.status_code == 503 and time.monotonic() < deadline, retry.text
            time.sleep(0.5)
        assert retry.headers.get("Idempotency-Replayed") == "true", key
    assert len([r for p in range(3) for r in fetch_all(a, "orders", p)]) == 11


def test_the_internal_route_needs_the_cluster_secret(replicas, kafka_bootstrap):
    a, = replicas(1).servers
    call = {"describe": {"group": "billing"}}
    for headers in ({}, {"Authorization": f"Bearer {a.admin_token}"},
                    {"Authorization": "Bearer not-the-cluster-secret"}):
        refused = requests.post(a.url + "/internal/v1/groups", json=call, headers=headers, timeout=10)
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["code"] == "invalid_token"
    bad = requests.post(a.url + "/internal/v1/groups", data="{", timeout=10,
                        headers={"Authorization": f"Bearer {CLUSTER_SECRET}"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_body"
    # A lone gateway has no internal route at all.
    lone = Server(*kafka_flags(kafka_bootstrap, kafka_prefix()))
    try:
        answer = requests.post(lone.url + "/internal/v1/groups", json=call, timeout=10,
                               headers={"Authorization": f"Bearer {CLUSTER_SECRET}"})
        assert answer.status_code == 404, answer.text
    finally:
        lone.stop()


@pytest.mark.parametrize("flags, message", [
    (("--cluster-secret", CLUSTER_SECRET), "--cluster-secret needs --backend kafka"),
    (("--backend", "kafka", "--kafka-bootstrap", "127.0.0.1:1", "--cluster-secret", "short"),
     "at least 16 characters"),
    (("--advertise-url", "http://10.0.0.1:8080"), "--advertise-url needs --cluster-secret"),
])
def test_cluster_flags_are_checked_at_start(flags, message):
    with pytest.raises(RuntimeError, match=message):
        Server(*flags)


class GroupSocket:
    """A WebSocket group member, read on a thread of its own: its newest assignment and the
    values it got, and any error the server sent."""

    def __init__(self, server: Server, group: str, sockets: contextlib.ExitStack):
        self.ws = sockets.enter_context(connect(
            server.url.replace("http://", "ws://") + "/v1/ws",
            additional_headers={"Authorization": f"Bearer {server.admin_token}"}))
        self.ws.send(json.dumps({"op": "subscribe", "req": "g", "topic": "orders",
                                 "group": group, "from": "earliest"}))
        self.assignment, self.values, self.errors = (0, []), [], []
        self.thread = threading.Thread(target=self.read, daemon=True)
        self.thread.start()

    def read(self) -> None:
        try:
            for text in self.ws:
                message = json.loads(text)
                if message["type"] == "assignment":
                    self.assignment = (message["generation"], message["partitions"])
                elif message["type"] == "records":
                    self.values += [r["value"] for r in message["records"]]
                elif message["type"] == "error":
                    self.errors.append(message)
        except Exception as err:  # the socket closed: a killed replica's member
            self.errors.append(repr(err))


def test_websocket_members_of_survivors_follow_their_group_to_a_new_owner(replicas):
    cluster = replicas(3)
    create_topic(cluster.servers[0], "orders", 2)
    with contextlib.ExitStack() as sockets:
        members = [GroupSocket(server, "follow", sockets) for server in cluster.servers]
        follow_the_owner_move(cluster, members)


def follow_the_owner_move(cluster: Replicas, members: list) -> None:

    def settled(sockets: list, above: int = -1) -> bool:
        generations = {m.assignment[0] for m in sockets}
        partitions = sorted(p for m in sockets for p in m.assignment[1])
        return len(generations) == 1 and generations.pop() > above and partitions == [0, 1]

    deadline = time.monotonic() + 20
    while not settled(members):
        assert time.monotonic() < deadline, [m.assignment for m in members]
        time.sleep(0.2)
    owners = [i for i, s in enumerate(cluster.servers)
              if metric(s, "tidegate_cluster_groups_owned") >= 1]
    assert len(owners) == 1, owners
    before = members[0].assignment[0]
    cluster.servers[owners[0]].kill()
    survivors = [m for i, m in enumerate(members) if i != owners[0]]
    # The new owner learns both survivors' members again under their ids, and the killed
    # replica's member is gone: one partition each, in a generation above the old owner's.
    deadline = time.monotonic() + 40
    while not (settled(survivors, before)
               and all(len(m.assignment[1]) == 1 for m in survivors)):
        assert time.monotonic() < deadline, [m.assignment for m in survivors]
        time.sleep(0.2)
    assert not any(m.errors for m in survivors), [m.errors for m in survivors]
    alive = [s for i, s in enumerate(cluster.servers) if i != owners[0]]
    publish(alive[0], "orders", list(range(20)))
    deadline = time.monotonic() + 20
    while sorted(v for m in survivors for v in m.values) != list(range(20)):
        assert time.monotonic() < deadline, [m.values for m in survivors]
        time.sleep(0.2)
    described = alive[1].request("GET", "/v1/groups/follow").json()
    assert len(described["members"]) == 2 and described["generation"] == survivors[0].assignment[0]
