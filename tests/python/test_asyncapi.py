"""The AsyncAPI document describes what the WebSocket really says: a live session's
messages, both ways, validate against the schemas of the served `/asyncapi.json`, and carry
no field the schema does not name (so a field added in code but not documented fails)."""

import json

import jsonschema
import pytest
from websockets.sync.client import connect


class Protocol:
    """The served AsyncAPI document, as validators per message name."""

    def __init__(self, document: dict):
        self.document = document
        self.messages = document["components"]["messages"]

    def resolve(self, schema: dict) -> dict:
        while "$ref" in schema:
            path = schema["$ref"].removeprefix("#/").split("/")
            schema = self.document
            for part in path:
                schema = schema[part]
        return schema

    def check(self, name: str, message: dict) -> None:
        payload = self.messages[name]["payload"]
        # The whole document is the root, so the schemas' own `$ref`s resolve in it.
        root = dict(self.document, **{"allOf": [payload]})
        jsonschema.Draft202012Validator(root).validate(message)
        self.no_undocumented_fields(payload, message, name)

    def properties(self, schema: dict) -> dict:
        """The properties a schema names, its `allOf` parts' included."""
        schema = self.resolve(schema)
        named = dict(schema.get("properties", {}))
        for part in schema.get("allOf", []):
            named.update(self.properties(part))
        return named

    def no_undocumented_fields(self, schema: dict, value, where: str) -> None:
        schema = self.resolve(schema)
        properties = self.properties(schema)
        if isinstance(value, dict) and properties:
            undocumented = set(value) - set(properties)
            assert not undocumented, f"{where}: fields {undocumented} are not in the document"
            for field, child in value.items():
                self.no_undocumented_fields(properties[field], child, f"{where}.{field}")
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for item in value:
                self.no_undocumented_fields(schema["items"], item, f"{where}[]")
        for alternative in schema.get("oneOf", []) + schema.get("anyOf", []):
            alternative = self.resolve(alternative)
            if alternative.get("type") == "object" and isinstance(value, dict):
                self.no_undocumented_fields(alternative, value, where)


@pytest.fixture
def protocol(server):
    return Protocol(server.request("GET", "/asyncapi.json").json())


def ws_url(server) -> str:
    return server.url.replace("http://", "ws://") + "/v1/ws"


def exchange(socket, protocol: Protocol, sent: list, received: list, message: dict):
    protocol.check(message["op"], message)
    sent.append(message["op"])
    socket.send(json.dumps(message))


def receive(socket, protocol: Protocol, received: list) -> dict:
    message = json.loads(socket.recv(timeout=10))
    protocol.check(message["type"], message)
    received.append(message["type"])
    return message


def receive_until(socket, protocol, received, kind: str) -> dict:
    for _ in range(20):
        message = receive(socket, protocol, received)
        if message["type"] == kind:
            return message
    raise AssertionError(f"no {kind} message; got {received}")


def test_every_message_of_a_session_matches_the_document(server, protocol):
    assert server.request("POST", "/v1/topics", json={"name": "orders", "partitions": 2}).ok
    sent, received = [], []
    headers = {"Authorization": f"Bearer {server.token('publish:orders subscribe:orders group:billing')}"}
    with connect(ws_url(server), additional_headers=headers) as socket:
        step = lambda message: exchange(socket, protocol, sent, received, message)  # noqa: E731
        step({"op": "auth", "req": 1, "token": server.token("publish:orders subscribe:orders group:billing")})
        receive_until(socket, protocol, received, "authenticated")

        step({"op": "publish", "req": "p1", "topic": "orders", "records": [
            {"key": "a", "value": {"n": 1}, "headers": {"h": "v"}},
            {"value": "two", "partition": 1},
        ], "idempotency_key": "once"})
        published = receive_until(socket, protocol, received, "published")
        assert published["req"] == "p1" and len(published["offsets"]) == 2

        step({"op": "subscribe", "req": "s1", "topic": "orders", "from": "earliest"})
        subscribed = receive_until(socket, protocol, received, "subscribed")
        records = receive_until(socket, protocol, received, "records")
        assert records["sub"] == subscribed["sub"]

        step({"op": "subscribe", "req": "s2", "topic": "orders", "from": {"cursor": records["cursor"]}})
        resumed = receive_until(socket, protocol, received, "subscribed")
        step({"op": "unsubscribe", "req": "u", "sub": resumed["sub"]})
        step({"op": "subscribe", "req": "s3", "topic": "orders", "from": {"offsets": {"0": 0}}})
        receive_until(socket, protocol, received, "subscribed")

        step({"op": "subscribe", "req": "g", "topic": "orders", "group": "billing", "from": "earliest"})
        member = receive_until(socket, protocol, received, "subscribed")
        assignment = receive_until(socket, protocol, received, "assignment")
        assert assignment["sub"] == member["sub"]
        step({"op": "commit", "req": "c", "sub": member["sub"],
              "offsets": [{"partition": assignment["partitions"][0], "offset": 1}]})
        receive_until(socket, protocol, received, "committed")

        # Refusals are `error` messages on the open socket.
        step({"op": "subscribe", "req": "no", "topic": "secret"})
        refused = receive_until(socket, protocol, received, "error")
        assert refused["req"] == "no" and refused["error"]["code"] == "forbidden"
        socket.send("not json")
        receive_until(socket, protocol, received, "error")

    names = {name for name in protocol.messages if name != "event"}
    assert set(sent) | set(received) == names, f"the session covered {set(sent) | set(received)}"
