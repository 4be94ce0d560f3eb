"""The OpenAPI document is valid OpenAPI 3.1, committed and served alike, and a client
generated from it (openapi-python-client) talks to a live server."""

import importlib
import json
import subprocess
import sys
from pathlib import Path

from openapi_spec_validator import validate
from openapi_spec_validator.versions.shortcuts import get_spec_version

from conftest import ROOT

COMMITTED = ROOT / "openapi" / "openapi.json"


def test_the_committed_document_is_valid_openapi_3_1():
    document = json.loads(COMMITTED.read_text())
    assert str(get_spec_version(document)) == "OpenAPIV3.1"
    validate(document)


def test_the_served_document_is_valid_and_states_this_servers_limits(start_server):
    server = start_server("--max-fetch-records", "77", "--max-records-per-request", "5")
    document = server.request("GET", "/openapi.json").json()
    validate(document)
    fetch = document["paths"]["/v1/topics/{topic}/partitions/{partition}/records"]["get"]
    limit = next(p for p in fetch["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 77
    records = document["components"]["schemas"]["PublishRequest"]["properties"]["records"]
    assert records["maxItems"] == 5 and records["minItems"] == 1


def generated_client(tmp_path: Path):
    """Generates a client package from the committed document and imports it."""
    config = tmp_path / "generator.json"
    config.write_text(json.dumps({"post_hooks": []}))
    output = tmp_path / "client"
    generated = subprocess.run(
        [str(Path(sys.executable).parent / "openapi-python-client"), "generate",
         "--path", str(COMMITTED), "--output-path", str(output), "--meta", "none",
         "--config", str(config)],
        capture_output=True, text=True)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    sys.path.insert(0, str(output.parent))
    try:
        return importlib.import_module("client")
    finally:
        sys.path.remove(str(output.parent))


def test_a_generated_client_works_against_a_live_server(server, tmp_path):
    package = generated_client(tmp_path).__name__

    def module(name):
        return importlib.import_module(f"{package}.{name}")

    models = module("models")
    create_topic = module("api.topics.create_topic")
    list_topics = module("api.topics.list_topics")
    describe_topic = module("api.topics.describe_topic")
    publish = module("api.records.publish")
    fetch = module("api.records.fetch")
    client = module("client").AuthenticatedClient(base_url=server.url, token=server.admin_token)

    created = create_topic.sync_detailed(
        client=client, body=models.CreateTopic(name="generated", partitions=2))
    assert created.status_code == 201, created.content
    assert created.parsed.partitions == 2

    record = models.PublishRecord(key="k", value={"n": 1}, partition=1)
    published = publish.sync_detailed(
        topic="generated", client=client, body=models.PublishRequest(records=[record]))
    assert published.status_code == 200, published.content
    assert [(o.partition, o.offset) for o in published.parsed.offsets] == [(1, 0)]

    fetched = fetch.sync_detailed(topic="generated", partition=1, offset=0, client=client)
    assert fetched.status_code == 200, fetched.content
    assert json.loads(fetched.content)["records"][0]["value"] == {"n": 1}

    listed = list_topics.sync(client=client)
    assert [t.name for t in listed.topics] == ["generated"]

    missing = describe_topic.sync_detailed(topic="nope", client=client)
    assert missing.status_code == 404
    assert missing.parsed.error.code.value == "topic_not_found"
