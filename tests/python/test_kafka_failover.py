"""`--backend kafka` through a broker failover (issue 22, SPEC "Scale-out", "Faults"): on a
three-node KRaft cluster (replication factor 3, min.insync.replicas=2) the broker leading
partition 0 is killed with SIGKILL while clients publish. No acknowledged record is lost,
publishing resumes by itself once the cluster has elected new leaders, and every refusal
meanwhile is a 503 `kafka_unavailable` within `--kafka-timeout-ms` (never a hang). Then a
second broker is killed: with one in-sync replica left no write can be durable, so every
publish is refused within the timeout and none is answered 200.

`/readyz` must tell the truth about this gateway: 503 `kafka_unavailable` only while it
cannot publish (its producer starts over after a transaction it could not abort), 200 again
once publishing has resumed on two brokers of three, and 503 within a few timeouts once
only one broker is left.

The failover window (from the kill to the first success on the killed leader's partition,
and the longest pause between successes) is printed (`pytest -s`) and, when
TIDEGATE_FAILOVER_REPORT names a file, written there as JSON.

The cluster is this test's own (`scripts/kafka start-cluster`), since it kills brokers; it
is gated on the suite's broker setting all the same (TIDEGATE_TEST_KAFKA_BOOTSTRAP says
this machine runs Kafka tests)."""

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from confluent_kafka.admin import AdminClient

from conftest import (ROOT, fetch_all, kafka_flags, kafka_prefix, processes_naming,
                      stop_brokers)

NODES = 3
TIMEOUT_MS = 3000
# What a refusal may take beyond the timeout on a busy 2-core machine with three brokers.
MARGIN_S = 2.0
PUBLISHERS = 3
TOPIC, PARTITIONS = "failover", 3
# The longest the cluster may take to move the killed broker's partitions elsewhere: its
# heartbeat session (broker.session.timeout.ms, 9 s by default) plus, when the killed node
# was also the active controller, a controller election.
RECOVERY_LIMIT_S = 40
# How long publishing goes on after it resumed, and at least after the second kill.
AFTER_RECOVERY_S = 3
AFTER_SECOND_KILL_S = 6
# By when /readyz must say 503 after the second kill. The gateway learns that the cluster
# takes no more writes from its producer (a transaction times out, its abort too, and the
# producer starts over), so it takes a few timeouts.
UNREADY_WITHIN_S = 5 * TIMEOUT_MS / 1000


# ---- the cluster


class Cluster:
    """Three brokers of `scripts/kafka start-cluster` in a fresh directory; node K is
    Kafka node id K, its pid in DIR/nodeK/pid."""

    SCRIPT = ROOT / "scripts" / "kafka"

    def __init__(self):
        self.parent = tempfile.TemporaryDirectory(prefix="tidegate-cluster-")
        self.dir = Path(self.parent.name) / "cluster"
        self.pids: dict[int, int] = {}
        self.bootstrap = ""

    def start(self) -> None:
        started = subprocess.run([str(self.SCRIPT), "start-cluster", str(self.dir), str(NODES)],
                                 capture_output=True, text=True, timeout=240)
        if started.returncode != 0:
            raise RuntimeError(f"scripts/kafka start-cluster failed: {started.stderr[-3000:]}")
        line = next(l for l in started.stdout.splitlines() if l.startswith("KAFKA_BOOTSTRAP="))
        self.bootstrap = line.removeprefix("KAFKA_BOOTSTRAP=")
        for node in range(1, NODES + 1):
            self.pids[node] = int((self.dir / f"node{node}" / "pid").read_text())

    def kill(self, node: int) -> None:
        """SIGKILL: the broker crashes, with no controlled shutdown. Returns once it is
        gone."""
        pid = self.pids[node]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pid in self.running() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pid not in self.running(), f"broker {node} (pid {pid}) survived SIGKILL"

    def running(self) -> list[int]:
        """Live processes whose command line names a server.properties of this cluster."""
        return processes_naming(str(self.dir).encode() + b"/node")

    def stop(self) -> None:
        # Safe when start failed half-way: stop-cluster goes by the node dirs' pid files.
        stop_brokers("stop-cluster", self.dir, self.running)
        self.parent.cleanup()


@pytest.fixture
def cluster(kafka_bootstrap):
    running = Cluster()
    try:
        running.start()
        yield running
    finally:
        running.stop()


def leaders(cluster: Cluster, kafka_topic: str) -> dict[int, tuple[int, list[int]]]:
    """Each partition's leader and in-sync replicas, as the cluster's metadata says now."""
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    topic = admin.list_topics(kafka_topic, timeout=10).topics[kafka_topic]
    assert topic.error is None, f"metadata of {kafka_topic}: {topic.error}"
    assert all(len(p.replicas) == NODES for p in topic.partitions.values()), \
        f"--kafka-replication-factor {NODES} was not applied: " \
        f"{[(p.id, p.replicas) for p in topic.partitions.values()]}"
    return {p.id: (p.leader, sorted(p.isrs)) for p in topic.partitions.values()}


def watch_election(cluster: Cluster, kafka_topic: str, victim: int, found: dict) -> None:
    """Polls the metadata until partition 0 has a leader other than the killed broker and
    puts when into found["at"] (for the report: the cluster's share of the window)."""
    deadline = time.monotonic() + RECOVERY_LIMIT_S
    while time.monotonic() < deadline:
        try:
            leader = leaders(cluster, kafka_topic)[0][0]
        except Exception:  # a metadata request meeting the dead broker; ask again
            leader = victim
        if leader not in (victim, -1):
            found["at"] = time.monotonic()
            return
        time.sleep(0.1)


def gateway_placement(server) -> dict[int, tuple[int, list[int]]]:
    """Each partition's leader and ISR as the gateway's topic description shows them."""
    described = server.request("GET", f"/v1/topics/{TOPIC}")
    assert described.status_code == 200, described.text
    return {p["partition"]: (-1 if p["leader"] is None else p["leader"], sorted(p["isr"]))
            for p in described.json()["partition_offsets"]}


def assert_gateway_agrees(server, cluster: Cluster, kafka_topic: str, within: float) -> dict:
    """Waits until the gateway's topic description and `/v1/cluster` show what Kafka's own
    admin API shows (the gateway caches its view for a second): leaders, ISR, and the
    partitions whose ISR is short of their replicas. Returns `/v1/cluster`."""
    deadline = time.monotonic() + within
    while True:
        try:
            kafka = leaders(cluster, kafka_topic)
        except Exception:  # a metadata request meeting a dead broker; ask again
            kafka = None
        ours = gateway_placement(server)
        view = server.request("GET", "/v1/cluster").json()
        short = sorted(p for p, (_, isr) in (kafka or {}).items() if len(isr) < NODES)
        ours_short = sorted(u["partition"] for u in view["under_replicated"]
                            if u["topic"] == TOPIC)
        if kafka is not None and ours == kafka and ours_short == short:
            return view
        assert time.monotonic() < deadline, \
            f"the gateway shows {ours} and {view}; Kafka's admin API {kafka}"
        time.sleep(0.3)


def console_cluster_page(server, expect_short: int) -> dict:
    """What the console's cluster page shows in headless Chromium (tests/browser's
    cluster-page.mjs); it also saves the page as docs/console-cluster-kafka.png."""
    shown = subprocess.run(
        ["node", "cluster-page.mjs", server.url, server.admin_token, str(expect_short),
         str(ROOT / "docs" / "console-cluster-kafka.png")],
        cwd=ROOT / "tests" / "browser", capture_output=True, text=True, timeout=90)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout.strip().splitlines()[-1])


def active_controller(cluster: Cluster) -> int | None:
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    try:
        return admin.describe_cluster(request_timeout=10).result(timeout=15).controller.id
    except Exception:  # only for the report
        return None


# ---- publishers and readiness probes


@dataclass
class Attempt:
    publisher: int
    value: str
    partition: int
    began: float
    ended: float
    status: int | None  # None: no answer (the client's own timeout or a dropped connection)
    code: str | None = None
    offset: int | None = None

    @property
    def took(self) -> float:
        return self.ended - self.began


class Traffic:
    """Publisher threads, each sending one record per request with a unique value to the
    partitions in turn, and a thread probing /readyz; everything is recorded with
    monotonic times."""

    def __init__(self, server):
        self.server = server
        self.attempts: list[Attempt] = []
        self.ready_probes: list[tuple[float, int | None, str | None]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.publish, args=(i,), daemon=True)
                        for i in range(PUBLISHERS)]
        self.threads.append(threading.Thread(target=self.probe_readiness, daemon=True))

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_):
        self.stopping.set()
        for thread in self.threads:
            # A publish ends within the client timeout below.
            thread.join(timeout=TIMEOUT_MS / 1000 + 30)
        assert not any(t.is_alive() for t in self.threads), "a publisher did not stop"

    def publish(self, index: int) -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {self.server.admin_token}"}
        url = f"{self.server.url}/v1/topics/{TOPIC}/records"
        n = 0
        while not self.stopping.is_set():
            value, partition = f"p{index}-{n}", (index + n) % PARTITIONS
            n += 1
            began = time.monotonic()
            try:
                # Far longer than the gateway's timeout: an answer that late is a hang.
                answer = session.post(url, headers=headers, timeout=TIMEOUT_MS / 1000 + 20,
                                      json={"records": [{"value": value,
                                                         "partition": partition}]})
            except requests.RequestException:
                attempt = Attempt(index, value, partition, began, time.monotonic(), None)
            else:
                attempt = Attempt(index, value, partition, began, time.monotonic(),
                                  answer.status_code)
                if answer.status_code == 200:
                    # An answer naming another partition shows up as a lost record.
                    [place] = answer.json()["offsets"]
                    attempt.offset = place["offset"] if place["partition"] == partition else -1
                else:
                    try:
                        attempt.code = answer.json()["error"]["code"]
                    except (ValueError, KeyError, TypeError):
                        attempt.code = f"(body {answer.text[:200]!r})"
            with self.lock:
                self.attempts.append(attempt)
            if attempt.status != 200:
                # What a client would do; it also keeps 503s from spinning.
                time.sleep(0.05)

    def probe_readiness(self) -> None:
        while not self.stopping.is_set():
            at = time.monotonic()
            try:
                ready = requests.get(self.server.url + "/readyz", timeout=TIMEOUT_MS / 1000 + 20)
                code = None if ready.status_code == 200 else ready.json()["error"]["code"]
                probe = (at, ready.status_code, code)
            except (requests.RequestException, ValueError, KeyError, TypeError) as err:
                probe = (at, None, repr(err))
            with self.lock:
                self.ready_probes.append(probe)
            time.sleep(0.2)

    def snapshot(self) -> list[Attempt]:
        with self.lock:
            return list(self.attempts)

    def wait_for(self, condition, what: str, within: float) -> float:
        """Waits until condition(attempts) holds; returns when (monotonic)."""
        deadline = time.monotonic() + within
        while not condition(self.snapshot()):
            assert time.monotonic() < deadline, \
                f"{what}: not within {within}s; {summary(self.snapshot())}; " \
                f"gateway stderr: {self.server.stderr_tail()}"
            time.sleep(0.05)
        return time.monotonic()


def summary(attempts: list[Attempt]) -> str:
    counts: dict[str, int] = {}
    for a in attempts:
        key = "200" if a.status == 200 else f"{a.status} {a.code}"
        counts[key] = counts.get(key, 0) + 1
    return f"{len(attempts)} publishes: {counts}"


def longest_gap(attempts: list[Attempt], since: float, until: float) -> float:
    """The longest time in [since, until] without a publish being answered 200."""
    times = sorted(a.ended for a in attempts if a.status == 200 and since <= a.ended <= until)
    points = [since, *times, until]
    return max(b - a for a, b in zip(points, points[1:]))


def assert_refusals_are_prompt_503s(attempts: list[Attempt], what: str) -> None:
    wrong = [a for a in attempts if a.status != 200 and
             (a.status != 503 or a.code != "kafka_unavailable")]
    assert not wrong, f"{what}: refusals other than 503 kafka_unavailable " \
                      f"(None = no answer): {wrong[:10]}"
    slow = [a for a in attempts if a.took > TIMEOUT_MS / 1000 + MARGIN_S]
    assert not slow, f"{what}: answers slower than --kafka-timeout-ms + {MARGIN_S}s: " \
                     f"{[(a.value, a.status, round(a.took, 2)) for a in slow[:10]]}"


def transitions(probes, since: float) -> list[tuple[float, str]]:
    """The /readyz answers from `since` on, as (seconds after since, answer) at each
    change."""
    changes, last = [], None
    for at, status, code in probes:
        answer = f"{status} {code}" if code else str(status)
        if at >= since and answer != last:
            changes.append((round(at - since, 2), answer))
            last = answer
    return changes


def successes_while_unready(probes, attempts: list[Attempt]) -> list[tuple]:
    """Publishes answered 200 that began and ended between two consecutive /readyz
    probes both saying 503: readiness would have lied about this gateway then."""
    lies = []
    for (at, status, _), (then, next_status, _) in zip(probes, probes[1:]):
        if status == 503 and next_status == 503:
            lies += [(round(a.began - at, 2), a.value) for a in attempts
                     if a.status == 200 and at <= a.began and a.ended <= then]
    return lies


def transaction_aborts(server) -> float:
    text = server.request("GET", "/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("tidegate_kafka_transaction_aborts_total"))


# ---- the test


def test_broker_failover_loses_no_acknowledged_record_and_two_down_refuses_writes(
        cluster, start_server):
    """Kill -9 the leader of partition 0 while three clients publish; then kill a second
    broker."""
    prefix = kafka_prefix()
    server = start_server(*kafka_flags(cluster.bootstrap, prefix,
                                       "--kafka-replication-factor", str(NODES),
                                       "--kafka-timeout-ms", str(TIMEOUT_MS)))
    server.wait_until_ready(timeout=60)
    created = server.request("POST", "/v1/topics", json={"name": TOPIC, "partitions": PARTITIONS})
    assert created.status_code == 201, created.text

    # Every partition with a replica on each broker (--kafka-replication-factor), all in
    # sync, before anything is killed.
    kafka_topic = prefix + TOPIC
    deadline = time.monotonic() + 30
    while True:
        placement = leaders(cluster, kafka_topic)
        if len(placement) == PARTITIONS and \
                all(len(isr) == NODES for _, isr in placement.values()):
            break
        assert time.monotonic() < deadline, f"replicas not all in sync: {placement}"
        time.sleep(0.2)
    victim = placement[0][0]
    controller = active_controller(cluster)
    view = assert_gateway_agrees(server, cluster, kafka_topic, within=10)
    assert sorted(n["id"] for n in view["nodes"]) == list(range(1, NODES + 1)), view
    assert all(n["address"].startswith("127.0.0.1:") for n in view["nodes"]), view
    # Under KRaft a broker answers DescribeCluster with a random live broker as the
    # controller (the quorum's leader is not a broker-side fact), so Kafka's admin API
    # itself names a different node from one call to the next: only membership holds.
    assert view["controller"] in [n["id"] for n in view["nodes"]], view
    assert view["under_replicated"] == [], view
    victim_partitions = sorted(p for p, (leader, _) in placement.items() if leader == victim)

    with Traffic(server) as traffic:
        # Every publisher and partition working before the fault.
        traffic.wait_for(lambda attempts: {a.partition for a in attempts if a.status == 200}
                         == set(range(PARTITIONS)) and len(attempts) >= 30,
                         "publishing before the kill", within=30)
        before = traffic.snapshot()
        assert all(a.status == 200 for a in before), \
            f"publishes failed before any fault: {summary(before)}"
        aborts_before = transaction_aborts(server)

        killed_at = time.monotonic()
        cluster.kill(victim)
        dead_at = time.monotonic()
        elected: dict = {}
        watcher = threading.Thread(target=watch_election,
                                   args=(cluster, kafka_topic, victim, elected), daemon=True)
        watcher.start()

        # Publishing resumes on partition 0 (and every other partition) by itself.
        def resumed(attempts):
            return {a.partition for a in attempts
                    if a.status == 200 and a.began >= dead_at} == set(range(PARTITIONS))
        traffic.wait_for(resumed, "publishing after the leader's kill", within=RECOVERY_LIMIT_S)
        first_success = {p: min(a.ended for a in traffic.snapshot()
                                if a.status == 200 and a.began >= dead_at and a.partition == p)
                         - killed_at for p in range(PARTITIONS)}
        time.sleep(AFTER_RECOVERY_S)
        phase_one_end = time.monotonic()
        aborts_after_first_kill = transaction_aborts(server)
        watcher.join(timeout=RECOVERY_LIMIT_S)
        after_election = leaders(cluster, kafka_topic)
        # The gateway shows the new leaders and the short ISR too, the killed broker
        # gone from the nodes and from every ISR.
        view = assert_gateway_agrees(server, cluster, kafka_topic, within=15)
        assert victim not in [n["id"] for n in view["nodes"]], view
        shown = gateway_placement(server)
        assert all(victim not in isr for _, isr in shown.values()), shown
        assert shown[0][0] not in (victim, -1), shown
        short_after_kill = [(u["partition"], u["leader"], u["isr"])
                            for u in view["under_replicated"]]
        # Every partition had a replica on the killed broker: every one is short now.
        assert sorted(p for p, _, _ in short_after_kill) == list(range(PARTITIONS)), view
        # And the console's cluster page shows it: the killed node gone, every short
        # partition highlighted, their count in the navigation.
        page = console_cluster_page(server, expect_short=len(view["under_replicated"]))
        assert sorted(int(n["id"]) for n in page["nodes"]) == \
            sorted(n["id"] for n in view["nodes"]), page
        assert str(victim) not in [n["id"] for n in page["nodes"]], page
        shown_short = sorted((u["topic"], str(u["partition"]), str(u["leader"]))
                             for u in view["under_replicated"])
        assert sorted(tuple(row[:3]) for row in page["flagged"]) == shown_short, page
        assert sorted(tuple(row[:3]) for row in page["under_replicated"]) == shown_short, page
        assert all(f"out of sync: {victim}" in row[4] for row in page["flagged"]), page
        assert page["nav_count"] == str(len(view["under_replicated"])), page

        phase_one = [a for a in traffic.snapshot() if a.ended <= phase_one_end]
        ready_phase_one = [p for p in list(traffic.ready_probes) if p[0] <= phase_one_end]
        # What the partitions hold now, while two brokers serve (the publishers go on
        # meanwhile; only what was acknowledged by phase_one_end is checked against it).
        served: dict[str, list[tuple[int, int]]] = {}
        for partition in range(PARTITIONS):
            for record in fetch_all(server, TOPIC, partition, unavailable_for=30):
                served.setdefault(record["value"], []).append((partition, record["offset"]))

        # Then partition 0's new leader, leaving one broker.
        second = after_election[0][0]
        if second in (victim, -1):
            second = next(n for n in range(1, NODES + 1) if n != victim)
        second_killed_at = time.monotonic()
        cluster.kill(second)
        second_dead_at = time.monotonic()
        time.sleep(AFTER_SECOND_KILL_S)
        # Until /readyz has said so too, or for at most UNREADY_WITHIN_S.
        while time.monotonic() < second_killed_at + UNREADY_WITHIN_S and \
                not any(at >= second_dead_at and status == 503
                        for at, status, _ in list(traffic.ready_probes)):
            time.sleep(0.1)
        phase_two_end = time.monotonic()
    everything = traffic.snapshot()
    probes = list(traffic.ready_probes)
    phase_two = [a for a in everything if a.began >= second_dead_at]
    ready_phase_two = [p for p in probes if p[0] >= second_dead_at]

    # ---- what happened, for the report
    acknowledged = [a for a in phase_one if a.status == 200]
    during = [a for a in phase_one if a.began >= killed_at]
    report = {
        "killed_leader": victim,
        "killed_leader_was_active_controller": controller == victim,
        "killed_leader_led_partitions": victim_partitions,
        "under_replicated_shown_after_kill": short_after_kill,
        "leaders_before": {p: l for p, (l, _) in placement.items()},
        "leaders_after_election": {p: l for p, (l, _) in after_election.items()},
        "first_success_after_kill_s": {p: round(t, 3) for p, t in first_success.items()},
        "failover_window_s": round(first_success[0], 3),
        "cluster_elected_new_leader_after_s": round(elected["at"] - killed_at, 3)
        if "at" in elected else None,
        "longest_gap_without_success_s": round(longest_gap(phase_one, killed_at,
                                                           phase_one_end), 3),
        "publishes_after_first_kill": summary(during),
        "transaction_aborts_before_and_after_first_kill": [aborts_before,
                                                           aborts_after_first_kill],
        "slowest_refusal_s": round(max([a.took for a in during if a.status != 200],
                                       default=0), 3),
        "readyz_after_first_kill": transitions(ready_phase_one, killed_at),
        "second_killed": second,
        "publishes_after_second_kill": summary(phase_two),
        "published_with_one_broker_for_s": round(phase_two_end - second_killed_at, 3),
        "slowest_answer_after_second_kill_s": round(max([a.took for a in phase_two],
                                                        default=0), 3),
        "readyz_after_second_kill": transitions(probes, second_killed_at),
        "readyz_unready_after_second_kill_s": next(
            (round(at - second_killed_at, 3) for at, status, _ in ready_phase_two
             if status == 503), None),
    }

    # Phase one: no acknowledged record lost, at its place, once.
    lost = {a.value: (a.partition, a.offset) for a in acknowledged
            if served.get(a.value) != [(a.partition, a.offset)]}
    refused_but_written = [a.value for a in phase_one if a.status != 200 and a.value in served]
    report["acknowledged_before_second_kill"] = len(acknowledged)
    report["refused_yet_written"] = len(refused_but_written)
    print(f"\nbroker failover: {json.dumps(report, indent=2)}")
    if os.environ.get("TIDEGATE_FAILOVER_REPORT"):
        Path(os.environ["TIDEGATE_FAILOVER_REPORT"]).write_text(json.dumps(report, indent=2))

    assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged records are not " \
                     f"served once at their acknowledged place: {dict(list(lost.items())[:10])}" \
                     f" (served there: {[served.get(v) for v in list(lost)[:10]]}); " \
                     f"gateway stderr: {server.stderr_tail()}"
    twice = {v: p for v, p in served.items() if len(p) > 1}
    assert not twice, f"records served more than once: {dict(list(twice.items())[:10])}"

    # Phase one: refusals are prompt 503s; publishing resumed and stays up after.
    assert_refusals_are_prompt_503s(phase_one, "after the leader's kill")
    assert first_success[0] < RECOVERY_LIMIT_S, report
    settled = [a for a in phase_one if a.began >= killed_at + max(first_success.values())]
    assert settled and all(a.status == 200 for a in settled), \
        f"publishes still failing after every partition had resumed: {summary(settled)}; " \
        f"gateway stderr: {server.stderr_tail()}"
    # Readiness tells the truth: unready only as 503 kafka_unavailable, never while this
    # gateway publishes, and ready again once publishing has resumed, since two brokers of
    # three take writes (min.insync.replicas=2).
    wrong = [(round(t - killed_at, 2), s, c) for t, s, c in ready_phase_one
             if s != 200 and (s, c) != (503, "kafka_unavailable")]
    assert not wrong, f"/readyz answers other than 200 or 503 kafka_unavailable " \
                      f"(seconds after the kill, status, code): {wrong[:10]}"
    lies = successes_while_unready(ready_phase_one, phase_one)
    assert not lies, f"publishes succeeded while /readyz said 503 (seconds after the probe, " \
                     f"value): {lies[:10]}"
    resumed_at = killed_at + max(first_success.values())
    unready = [(round(t - killed_at, 2), s, c) for t, s, c in ready_phase_one
               if t >= resumed_at + 0.5 and s != 200]
    assert not unready, f"/readyz unready after publishing had resumed on two brokers of " \
                        f"three (seconds after the kill, status, code): {unready[:10]}"

    # Phase two: one broker left, below min.insync.replicas: nothing may be answered 200,
    # and every refusal comes within the timeout.
    assert phase_two, "no publish after the second kill"
    durable_lies = [a for a in phase_two if a.status == 200]
    assert not durable_lies, f"publishes answered 200 with one broker of three left " \
                             f"(min.insync.replicas=2): {durable_lies[:10]}; " \
                             f"gateway stderr: {server.stderr_tail()}"
    assert_refusals_are_prompt_503s(phase_two, "with two brokers down")
    # Readiness tells the truth: with no write possible, the gateway turns unready.
    wrong = [(round(t - second_killed_at, 2), s, c) for t, s, c in ready_phase_two
             if s != 200 and (s, c) != (503, "kafka_unavailable")]
    assert not wrong, f"/readyz answers other than 200 or 503 kafka_unavailable " \
                      f"(seconds after the second kill, status, code): {wrong[:10]}"
    assert report["readyz_unready_after_second_kill_s"] is not None, \
        f"/readyz still said 200 {UNREADY_WITHIN_S}s after the second kill, while no " \
        f"write could succeed: {report['readyz_after_second_kill']}"
    # The transactions the kill broke are counted, and none before it.
    assert aborts_before == 0, report
    failed_during = [a for a in during if a.status != 200]
    assert not failed_during or aborts_after_first_kill >= 1, report
    assert server.process.poll() is None, f"tidegate exited: {server.stderr_tail()}"
