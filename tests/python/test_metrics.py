"""`/metrics` parses with the Prometheus project's own Python text-format parser, and every
family the README lists is there with the type it documents."""

from prometheus_client.parser import text_string_to_metric_families

# Family names as the parser reports them (counters without `_total`), with their types.
FAMILIES = {
    "tidegate_http_requests": "counter",
    "tidegate_http_request_duration_seconds": "histogram",
    "tidegate_records_in": "counter",
    "tidegate_record_bytes_in": "counter",
    "tidegate_records_out": "counter",
    "tidegate_record_bytes_out": "counter",
    "tidegate_commit_batch_requests": "histogram",
    "tidegate_commit_duration_seconds": "histogram",
    "tidegate_fsyncs": "counter",
    "tidegate_retention_deleted_batches": "counter",
    "tidegate_retention_deleted_records": "counter",
    "tidegate_retention_deleted_bytes": "counter",
    "tidegate_websocket_connections": "gauge",
    "tidegate_websocket_subscriptions": "gauge",
    "tidegate_websocket_slow_consumer_closes": "counter",
    "tidegate_sse_streams": "gauge",
    "tidegate_group_members": "gauge",
    "tidegate_group_rebalances": "counter",
    "tidegate_group_lag": "gauge",
    "process_resident_memory_bytes": "gauge",
    "process_open_fds": "gauge",
}


def test_metrics_parse_and_name_every_documented_family(server):
    assert server.request("POST", "/v1/topics", json={"name": "scraped", "partitions": 2}).ok
    published = server.request("POST", "/v1/topics/scraped/records",
                               json={"records": [{"key": "k", "value": {"n": 1}}]})
    assert published.ok
    poll = server.request("POST", "/v1/groups/scrapers/poll",
                          json={"topics": ["scraped"], "auto_offset_reset": "earliest"}).json()
    committed = server.request("POST", "/v1/groups/scrapers/commit", json={
        "member_id": poll["member_id"], "generation": poll["generation"],
        "offsets": [{"topic": a["topic"], "partition": a["partition"], "offset": 0}
                    for a in poll["assignment"]],
    })
    assert committed.status_code == 204

    response = server.request("GET", "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    types = {name: families[name].type for name in FAMILIES if name in families}
    assert types == FAMILIES

    def sample(family: str, suffix: str = "", **labels) -> float:
        return next(s.value for s in families[family].samples
                    if s.name == family + suffix and s.labels == labels)

    assert sample("tidegate_records_in", "_total", topic="scraped") == 1
    assert sample("tidegate_group_members", group="scrapers") == 1
    lags = [s for s in families["tidegate_group_lag"].samples if s.labels["group"] == "scrapers"]
    assert sum(s.value for s in lags) == 1
