"""Discovery: the `bazaar` extension in every 402, the 402 body's words for people, /.well-known/x402,
/openapi.json and /llms.txt, all built from the live registry and prices.

Each document is checked against what the gateway actually does: the declared query parameters
against the route's own answers (402 or 400), the listed resources against the registry, the stated
prices against the 402s.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import jwt
import pytest
from eth_account import Account
from openapi_spec_validator import validate as validate_openapi
from openapi_spec_validator.validation import OpenAPIV31SpecValidator
from x402.extensions.payment_identifier import is_payment_identifier_required, validate_payment_identifier

from adapters import STREAMS, Point, Registry, Sharing, distance_km, recorded_points
from app.edge.discovery import Documents
from app.edge.gate import Services
from app.runtime.settings import DEFAULT_PRICE_TIERS, Settings
from app.usecases.params import QueryParam
from app.usecases.pricing import EXTENSIONS, Pricing
from payments import NetworkTerms

from .chain import unb64
from .conftest import ADMIN_SECRET, Gateway, running_gateway, with_settings

WORLD = "/v1/world"
POINT = {"lat": "40.42", "lon": "-3.7"}  # Madrid: recorded for weather and air quality
HEADER_MAX = 4096  # tests/test_gate.py explains the bound
BBOX_SAMPLE = "-10,35,30,60"
FREE_ROUTES = (
    "/v1/health",
    "/v1/streams",
    "/v1/streams/search",
    "/v1/attribution",
    "/.well-known/x402",
    "/.well-known/x402.json",
    "/discovery/resources",
    "/discovery/search",
    "/llms.txt",
)
HISTORY_AND_LIVE = ("history", "at", "live", "live/ticket", "live/renew")


def paid_paths(registry: Registry) -> list[str]:
    return [f"/v1/streams/{s.id}" for s in registry.all()] + [WORLD]


def minimal_query(path: str) -> dict[str, str]:
    """Enough for a 402: point streams and /v1/world need lat and lon (a stream with no recording near Madrid, at
    its first recorded point: upstreams are replayed)."""
    stream = next((s for s in STREAMS if s.point and path == f"/v1/streams/{s.id}"), None)
    if stream is None:
        return dict(POINT) if path == WORLD else {}
    recorded = recorded_points(stream.id) or []
    madrid = Point(float(POINT["lat"]), float(POINT["lon"]))
    if any(distance_km(madrid.lat, madrid.lon, r.lat, r.lon) <= (stream.point_within_km or 0) for r in recorded):
        return dict(POINT)
    return {"lat": f"{recorded[0].lat:.4f}", "lon": f"{recorded[0].lon:.4f}"}


async def quote(client: httpx.AsyncClient, path: str) -> tuple[httpx.Response, dict[str, Any]]:
    answer = await client.get(path, params=minimal_query(path))
    assert answer.status_code == 402, (path, answer.text)
    return answer, unb64(answer.headers["payment-required"])


@pytest.fixture
async def client(gateway: Gateway) -> Any:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        yield http


# ---- the bazaar extension in the 402 ----


async def test_every_quote_declares_bazaar_that_validates_against_its_own_schema(client: httpx.AsyncClient) -> None:
    sizes = {}
    for path in paid_paths(Registry()):
        answer, required = await quote(client, path)
        sizes[path] = len(answer.headers["payment-required"])
        assert sizes[path] < HEADER_MAX, (path, sizes[path])
        assert answer.json()["extensions"] == required["extensions"]  # the body says what the header says
        bazaar = required["extensions"]["bazaar"]
        assert set(bazaar) == {"info", "schema"}
        jsonschema.Draft202012Validator.check_schema(bazaar["schema"])
        assert bazaar["schema"]["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        jsonschema.validate(bazaar["info"], bazaar["schema"], cls=jsonschema.Draft202012Validator)
        info = bazaar["info"]
        assert info["input"]["type"] == "http" and info["input"]["method"] == "GET"
        assert info["output"]["type"] == "json" and isinstance(info["output"]["example"], dict)
        example = info["output"]["example"]
        if path == WORLD:
            assert {"weather", "air_quality", "earthquakes", "iss", "space_weather"} <= set(example)
        else:
            assert example["stream"] == path.rsplit("/", 1)[-1] and example["records"][0]["stream"] == example["stream"]
    print("PAYMENT-REQUIRED bytes per route:", json.dumps(sizes))


def query_schema_of(required: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = required["extensions"]["bazaar"]["schema"]
    return schema["properties"]["input"]["properties"]["queryParams"]  # type: ignore[no-any-return]


def candidate_queries(schema: dict[str, Any], example: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Queries around what the schema declares: the example, each required parameter missing, each parameter
    alone with the required ones at a typical value, at its bounds and just past them, and the pairs the
    rules tie together or keep apart."""
    properties: dict[str, dict[str, Any]] = schema["properties"]
    required = {name: example[name] for name in schema.get("required", [])}
    yield dict(example)
    yield {}
    for name in required:
        yield {k: v for k, v in example.items() if k != name}
    for name, rule in properties.items():
        values: list[Any] = [example.get(name, BBOX_SAMPLE if name == "bbox" else None)]
        if "minimum" in rule:
            values += [rule["minimum"], rule["minimum"] - 1]
        if "maximum" in rule:
            values += [rule["maximum"], rule["maximum"] + 1]
        if rule["type"] == "integer":
            values.append(10.5)
        if name == "bbox":
            values += ["1,2,3", "a,b,c,d"]
        for value in values:
            if value is not None:
                yield {**required, name: value}
    names = list(properties)
    for first, second in itertools.combinations(names, 2):
        yield {**required, first: example.get(first, BBOX_SAMPLE), second: example.get(second, BBOX_SAMPLE)}
    yield {**example, "radius_km": 10, "bbox": BBOX_SAMPLE}
    for refused in ("bbox", "radius_km"):  # declared refused by some routes, accepted (within rules) by others
        if refused not in properties:
            yield {**required, refused: BBOX_SAMPLE if refused == "bbox" else 10}


def as_query(values: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in values.items()}


async def test_declared_query_parameters_are_what_the_route_accepts(client: httpx.AsyncClient) -> None:
    """The declaration and the route agree on every candidate query: valid under the schema exactly when the
    route quotes (402) rather than refuses it (400); so a required parameter missing is refused and every
    declared parameter is accepted within its declared range."""
    checked = 0
    for path in paid_paths(Registry()):
        _answer, required = await quote(client, path)
        schema = query_schema_of(required)
        example = required["extensions"]["bazaar"]["info"]["input"]["queryParams"]
        validator = jsonschema.Draft202012Validator(schema)
        seen: set[str] = set()
        for values in candidate_queries(schema, example):
            key = json.dumps(values, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            answer = await client.get(path, params=as_query(values))
            if answer.status_code == 404 and answer.json()["error"] == "no_recording":
                continue  # valid, but a point the replay has no recording for: refused before any quote
            assert answer.status_code in (400, 402), (path, values, answer.text)
            declared_ok = validator.is_valid(values)
            assert declared_ok == (answer.status_code == 402), (path, values, answer.text)
            if answer.status_code == 400:
                assert answer.json()["error"] == "invalid_query" and "payment-required" not in answer.headers
            checked += 1
        point = path == WORLD or any(s.point and path.endswith("/" + s.id) for s in STREAMS)
        assert (set(schema.get("required", [])) == {"lat", "lon"}) is point, path
    assert checked > 300


async def test_the_official_sdk_reads_our_declaration(client: httpx.AsyncClient, settings: Settings) -> None:
    bazaar = pytest.importorskip("x402.extensions.bazaar")
    from x402.extensions.bazaar.types import QueryDiscoveryExtension, parse_discovery_extension
    from x402.schemas import PaymentRequired as SdkPaymentRequired

    for path in (WORLD, "/v1/streams/weather.current", "/v1/streams/quakes.usgs"):
        _answer, required = await quote(client, path)
        declared = required["extensions"]["bazaar"]
        parsed = parse_discovery_extension(declared)
        assert isinstance(parsed, QueryDiscoveryExtension)
        assert parsed.info.input.method == "GET"
        assert parsed.info.input.query_params == declared["info"]["input"]["queryParams"]
        assert bazaar.validate_discovery_extension(parsed).valid
        assert bazaar.validate_discovery_extension_spec(declared).valid
        # a facilitator catalogs it from the payment the client sends, which echoes the 402's extensions
        echoed = {
            "x402Version": 2,
            "resource": required["resource"],
            "accepted": required["accepts"][0],
            "payload": {},
            "extensions": required["extensions"],
        }
        found = bazaar.extract_discovery_info(echoed, required["accepts"][0])
        assert found is not None, path
        assert found.resource_url == required["resource"]["url"] and found.method == "GET"
        assert found.description == required["resource"]["description"]

    # the official client echoes the declaration in its payment, and that header stays under the gate's cap
    from x402 import x402Client
    from x402.http.utils import encode_payment_signature_header
    from x402.mechanisms.evm import EthAccountSigner
    from x402.mechanisms.evm.exact.register import register_exact_evm_client

    _answer, required = await quote(client, WORLD)  # the largest declaration
    sdk = x402Client()
    register_exact_evm_client(sdk, EthAccountSigner(Account.create()))
    payload = await sdk.create_payment_payload(SdkPaymentRequired.model_validate(required))
    assert payload.extensions is not None and payload.extensions["bazaar"] == required["extensions"]["bazaar"]
    header = encode_payment_signature_header(payload)
    assert len(header) < settings.payment_header_bytes_max, len(header)


# ---- the 402 body, for people ----


async def test_quote_body_explains_itself_to_a_person(client: httpx.AsyncClient, gateway: Gateway) -> None:
    catalog = {s["id"]: s for s in (await client.get("/v1/streams")).json()["streams"]}
    for path, usd, atomic in (("/v1/streams/static.capitals", "$0.001", "1000"), (WORLD, "$0.01", "10000")):
        answer, required = await quote(client, path)
        body = answer.json()
        assert "about" not in required and "hint" not in required  # people's words stay out of the header
        assert {k: v for k, v in body.items() if k not in ("hint", "about")} == required
        about = body["about"]
        assert about["price"] == {
            "usd": usd,
            "usdc": usd[1:],
            "amount_atomic": atomic,
            "asset": "USDC",
            "decimals": 6,
        }
        assert all(offer["amount"] == atomic for offer in required["accepts"])
        assert about["networks"] == [
            {"network": "eip155:84532", "name": "Base Sepolia", "schemes": ["exact"]},
            {"network": "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1", "name": "Solana devnet", "schemes": ["exact"]},
        ]
        assert [n["network"] for n in about["networks"]] == [o["network"] for o in required["accepts"]]
        assert about["description"] == required["resource"]["description"]
        assert about["how_to_pay"]["guide"] == gateway.url + "/llms.txt"
        assert "Try it as a new user" in about["how_to_pay"]["readme"]
        assert about["how_to_pay"]["header"] == "PAYMENT-SIGNATURE"
        assert f"{usd[1:]} USDC ({atomic} atomic units)" in body["hint"]  # the hint is kept as it was
    capitals = catalog["static.capitals"]
    _answer, required = await quote(client, "/v1/streams/static.capitals")
    assert required["resource"]["description"] == f"{capitals['name']}: {capitals['description']}"


async def test_a_refusal_keeps_its_extensions_in_the_header_and_no_example_data_in_its_body(
    client: httpx.AsyncClient,
) -> None:
    refused = await client.get("/v1/streams/static.capitals", headers={"PAYMENT-SIGNATURE": "bm90IGpzb24="})
    assert refused.status_code in (400, 402), refused.text
    assert "bazaar" in unb64(refused.headers["payment-required"])["extensions"]  # a client may pay again from it
    body = refused.json()
    assert body["error"] and body["message"] and body["about"]["price"]["amount_atomic"] == "1000"
    assert "extensions" not in body and "records" not in refused.text  # a refusal carries no data, not even an example


# ---- /.well-known/x402 ----


async def check_well_known(client: httpx.AsyncClient, base: str, registry: Registry) -> dict[str, Any]:
    """/.well-known/x402 (and .json) in the shape of the x402 well-known proposal: every paid resource on sale, the
    streams in registry order then /v1/world, then their history and live routes, each with the offers its 402 makes."""
    answer = await client.get("/.well-known/x402")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/json")
    twin = await client.get("/.well-known/x402.json")
    document = answer.json()
    assert twin.status_code == 200 and {**twin.json(), "updated": None} == {**document, "updated": None}
    assert document["x402Version"] == 2 and document["kind"] == "resource-server" and document["name"]
    sold = [p for p in paid_paths(registry) if p == WORLD or registry.get(p.rsplit("/", 1)[-1]).sharing == "ok"]
    urls = [item["url"] for item in document["resources"]]
    assert urls[: len(sold)] == [base + p for p in sold]  # the data routes first, in registry order, then the world
    assert len(urls) == len(set(urls))
    rest = {u.removeprefix(base) for u in urls[len(sold) :]}
    on_sale = {s.id for s in registry.all() if s.sharing == "ok"}
    assert rest and all(p.split("/")[3] in on_sale and p.split("/", 4)[4] in HISTORY_AND_LIVE for p in rest), rest
    for item in document["resources"]:
        # a complete payment description: a partial one would be read as a bare pointer
        assert {"url", "method", "description", "mimeType", "accepts"} <= set(item) and item["method"] == "GET"
    listed = {item["url"]: item for item in document["resources"]}
    for path in [*sold[:3], WORLD, next(p for p in sorted(rest) if p.endswith("/live"))]:  # /live takes no query
        item = listed[base + path]
        _answer, required = await quote(client, path)
        assert item["accepts"] == required["accepts"]  # the very offers the 402 makes
        assert item["description"] == required["resource"]["description"]
        assert item["mimeType"] == required["resource"]["mimeType"]
    assert document["discovery"] == {"resources": base + "/discovery/resources", "search": base + "/discovery/search"}
    return document


async def test_well_known_lists_exactly_what_the_registry_shares(client: httpx.AsyncClient, gateway: Gateway) -> None:
    await check_well_known(client, gateway.url, Registry())
    again = await client.get("/.well-known/x402")
    assert again.headers["cache-control"].startswith("public")


def admin_token() -> str:
    now = int(time.time())
    claims = {"sub": "ops@test", "aud": "worldgate-admin", "iat": now, "exp": now + 600}
    return jwt.encode(claims, ADMIN_SECRET, "HS256")


async def share(client: httpx.AsyncClient, stream: str, state: str) -> None:
    answer = await client.put(
        f"/admin/api/streams/{stream}/sharing",
        json={"sharing": state},
        headers={"authorization": f"Bearer {admin_token()}"},
    )
    assert answer.status_code == 200, answer.text


async def test_sharing_shapes_every_document_and_public_url_their_links(settings: Settings) -> None:
    """Settings that hide one stream and put another in maintenance, behind a public URL; then an operator's
    change at run time, which every document shows at the next request."""
    public = "https://worldgate.example"
    sharing = {"iss.position": "not_shared", "space.kp": "maintenance"}
    changed = with_settings(settings, stream_sharing=sharing, public_url=public + "/")
    registry = Registry(sharing={k: Sharing(v) for k, v in sharing.items()})
    with running_gateway(changed) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
            document = await check_well_known(client, public, registry)
            resources = {item["url"] for item in document["resources"]}
            assert public + "/v1/streams/iss.position" not in resources  # not shared: nowhere
            assert public + "/v1/streams/space.kp" not in resources  # maintenance: not for sale now
            bazaar = (await client.get("/discovery/resources", params={"limit": 100, "category": "space"})).json()
            listed = {item["metadata"]["stream"] for item in bazaar["items"]}
            assert listed and not listed & {"space.kp", "iss.position"}  # nor its history or live routes
            assert {u for u in resources if "/space.kp" in u or "/iss.position" in u} == set()
            catalog = {s["id"] for s in (await client.get("/v1/streams")).json()["streams"]}
            assert "space.kp" in catalog and "iss.position" not in catalog

            spec = (await client.get("/openapi.json")).json()
            assert spec["servers"] == [{"url": public}]
            assert "/v1/streams/iss.position" not in spec["paths"] and "/v1/streams/space.kp" not in spec["paths"]
            text = (await client.get("/llms.txt")).text
            assert "iss.position" not in text and "space.kp" not in text and f"{public}/openapi.json" in text

            try:
                await share(client, "static.volcanoes", "not_shared")
                hidden = await client.get("/.well-known/x402")
                assert public + "/v1/streams/static.volcanoes" not in {i["url"] for i in hidden.json()["resources"]}
                assert "/v1/streams/static.volcanoes" not in (await client.get("/openapi.json")).json()["paths"]
                assert "static.volcanoes" not in (await client.get("/llms.txt")).text
            finally:
                await share(client, "static.volcanoes", "ok")
            shown = await client.get("/.well-known/x402")
            assert public + "/v1/streams/static.volcanoes" in {i["url"] for i in shown.json()["resources"]}


# ---- /openapi.json ----


def response_schema(spec: dict[str, Any], ref: str) -> dict[str, Any]:
    return {"$ref": ref, "components": spec["components"]}


async def test_openapi_validates_and_states_the_prices_of_the_402s(client: httpx.AsyncClient, gateway: Gateway) -> None:
    answer = await client.get("/openapi.json")
    assert answer.status_code == 200
    spec = answer.json()
    validate_openapi(spec, cls=OpenAPIV31SpecValidator)
    assert spec["openapi"].startswith("3.1") and spec["servers"] == [{"url": gateway.url}]
    for free in FREE_ROUTES:
        operation = spec["paths"][free]["get"]
        assert "security" not in operation and "x-402-price" not in operation
    search = spec["paths"]["/v1/streams/search"]["get"]["parameters"][0]
    assert search["required"] and search["schema"]["maxLength"] == 100

    priced = [p for p in spec["paths"] if "x-402-price" in spec["paths"][p]["get"]]
    paid = [p for p in priced if p.count("/") <= 3]  # the data routes; history and live: test_discovery_routes.py
    assert paid == paid_paths(Registry())  # one path per resource on sale: its own price, rules and example
    assert all(p.split("/", 4)[4] in HISTORY_AND_LIVE for p in priced if p not in paid)
    for path in paid:
        operation = spec["paths"][path]["get"]
        _answer, required = await quote(client, path)
        price = operation["x-402-price"]
        assert [price["amount_atomic"]] * len(required["accepts"]) == [o["amount"] for o in required["accepts"]]
        assert price["usd"] in operation["description"] and price["amount_atomic"] in operation["description"]
        assert [n["network"] for n in operation["x-402-networks"]] == [o["network"] for o in required["accepts"]]
        assert [n["payTo"] for n in operation["x-402-networks"]] == [o["payTo"] for o in required["accepts"]]
        assert operation["security"] == [{"x402": []}]
        answers = {"200", "400", "402", "403", "404", "409", "503", "405", "413", "429", "431"}
        assert set(operation["responses"]) == answers
        assert "PAYMENT-REQUIRED" in operation["responses"]["402"]["headers"]
        # the parameters are the ones the 402 declares, with the same bounds and required flags
        declared = query_schema_of(required)
        parameters = {p["name"]: p for p in operation["parameters"]}
        assert set(parameters) == set(declared["properties"])
        for name, parameter in parameters.items():
            assert parameter["in"] == "query"
            assert parameter["required"] == (name in declared.get("required", []))
            for bound in ("type", "minimum", "maximum", "pattern"):
                assert parameter["schema"].get(bound) == declared["properties"][name].get(bound), (path, name)
        # its example answer has the shape its schema gives
        ok = operation["responses"]["200"]["content"]["application/json"]
        jsonschema.validate(ok["example"], response_schema(spec, ok["schema"]["$ref"]))
        assert ok["example"] == required["extensions"]["bazaar"]["info"]["output"]["example"]


# ---- /llms.txt ----


async def test_llms_txt_names_what_is_sold_at_its_real_prices(client: httpx.AsyncClient, gateway: Gateway) -> None:
    answer = await client.get("/llms.txt")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert text.startswith("# worldgate\n\n> ")
    for category in Registry().categories():
        assert f"- {category}: " in text
    catalog = (await client.get("/v1/streams")).json()["streams"]
    price_lines = {m.group(1): m.group(0) for m in re.finditer(r"^- \$([0-9.]+) \(.*$", text, re.MULTILINE)}
    for stream in catalog:  # each stream on the line of its real price
        line = price_lines[stream["price"]["usdc"]]
        assert f"{stream['price']['amount_atomic']} atomic units" in line and stream["id"] in line
    _answer, world = await quote(client, WORLD)
    assert WORLD in price_lines["0.01"] and world["accepts"][0]["amount"] == "10000"
    for needed in ("PAYMENT-SIGNATURE", "x402 v2", "Base Sepolia", "Solana devnet", "x402HttpxClient", "@x402/fetch"):
        assert needed in text
    for offer in world["accepts"]:
        assert offer["asset"] in text
    for link in ("/v1/streams", "/openapi.json", "/.well-known/x402", "/mcp"):
        assert f"({gateway.url}{link})" in text
    assert 'README.md, section "Try it as a new user"' in text


# ---- caching ----


def usdc_terms() -> list[NetworkTerms]:
    usdc = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
    return [NetworkTerms("eip155:84532", usdc, "0x" + "11" * 20, 6, {"name": "USDC", "version": "2"}, 300)]


def test_documents_are_cached_until_the_pricing_or_registry_changes() -> None:
    terms = usdc_terms()
    registry = Registry()
    services = Services(pricing=Pricing(registry, terms, DEFAULT_PRICE_TIERS, {}))
    current = {"registry": registry}
    documents = Documents(services, lambda: current["registry"], None)
    first = documents.document("/.well-known/x402", "http://a")
    assert first is not None and documents.document("/.well-known/x402", "http://a") is first  # encoded once
    assert documents.document("/.well-known/x402", "http://b") is not first  # per base URL
    hidden = registry.with_sharing({"static.capitals": Sharing.NOT_SHARED})
    services.pricing = Pricing(hidden, terms, DEFAULT_PRICE_TIERS, {"/v1/world": "$0.05"})
    current["registry"] = hidden
    rebuilt = documents.document("/.well-known/x402", "http://a")
    assert rebuilt is not first
    items = json.loads(rebuilt or b"")["resources"]
    assert "http://a/v1/streams/static.capitals" not in {i["url"] for i in items}
    assert next(i for i in items if i["url"] == "http://a/v1/world")["accepts"][0]["amount"] == "50000"
    assert b"$0.05 (50000 atomic units)" in (documents.document("/llms.txt", "http://a") or b"")
    services.pricing = None
    assert documents.document("/openapi.json", "http://a") is None  # not started: the route answers 503


def test_extensions_are_declared_per_route_by_name() -> None:
    """Every paid route declares bazaar and payment-identifier (optional, as the official SDK reads it); another
    extension is one more builder, and a builder returning None leaves that route without it."""
    terms = usdc_terms()
    default = Pricing(Registry(), terms, DEFAULT_PRICE_TIERS, {})
    for paid in default.routes():
        assert set(paid.extensions) == {"bazaar", "payment-identifier"}, paid.path
    world_paid = default.lookup(WORLD)
    assert world_paid is not None
    declared = json.loads(base64.b64decode(default.quote(world_paid, "http://a").header))["extensions"]
    identifier = declared["payment-identifier"]
    assert validate_payment_identifier(identifier).valid
    assert not is_payment_identifier_required(identifier)  # retries are idempotent when asked for, never a must
    jsonschema.validate({"required": False, "id": "retry-" + "a" * 16}, identifier["schema"])
    with pytest.raises(jsonschema.ValidationError):  # too short: the checkout refuses it too (test_idempotency)
        jsonschema.validate({"required": False, "id": "short"}, identifier["schema"])

    builders = {**EXTENSIONS, "x-note": lambda paid: {"info": {"n": 1}} if paid.stream is None else None}
    pricing = Pricing(Registry(), terms, DEFAULT_PRICE_TIERS, {}, extensions=builders)
    paid = pricing.lookup(WORLD)
    assert paid is not None and set(paid.extensions) == {"bazaar", "payment-identifier", "x-note"}
    header = json.loads(base64.b64decode(pricing.quote(paid, "http://a").header))
    assert header["extensions"]["x-note"] == {"info": {"n": 1}}
    capitals = pricing.lookup("/v1/streams/static.capitals")
    assert capitals is not None and "x-note" not in capitals.extensions
    bare = Pricing(Registry(), terms, DEFAULT_PRICE_TIERS, {}, extensions={})
    world = bare.lookup(WORLD)
    assert world is not None
    assert "extensions" not in json.loads(base64.b64decode(bare.quote(world, "http://a").header))
    assert isinstance(paid.params[0], QueryParam)
