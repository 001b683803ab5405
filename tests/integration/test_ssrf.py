"""SSRF: refused URLs never produce a connection; DNS answers are checked at connect time too."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestClient, TestServer

from meshes_gateway.app import create_app
from meshes_gateway.delivery.ssrf import AddressPolicy, unwrap
from tests.conftest import Api, Receiver, make_settings


class StubResolver(AbstractResolver):
    """DNS answers from a table (scripted per call); nothing leaves the machine."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls.append(host)
        script = self.answers.get(host.rstrip(".").lower())
        if not script:
            raise OSError(f"stub: no answer for {host}")
        addresses = script.pop(0) if len(script) > 1 else script[0]
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for a in addresses
        ]

    async def close(self) -> None:
        pass


async def start(tmp_path: Path, resolver: AbstractResolver, **overrides: object) -> Api:
    settings = make_settings(tmp_path / "data", **overrides)
    app = create_app(settings, resolver=resolver)
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return Api(client)


def refused_urls(port: int) -> list[str]:
    p = port
    return [
        f"http://127.0.0.1:{p}/hook",
        f"http://127.0.0.2:{p}/hook",
        f"https://127.0.0.1:{p}/hook",
        f"http://localhost:{p}/hook",
        f"http://LOCALHOST:{p}/hook",
        f"http://localhost.:{p}/hook",
        f"http://[::1]:{p}/hook",
        f"http://[::ffff:127.0.0.1]:{p}/hook",
        f"http://[::ffff:7f00:1]:{p}/hook",
        f"http://[::127.0.0.1]:{p}/hook",
        f"http://[64:ff9b::7f00:1]:{p}/hook",
        f"http://[2002:7f00:1::]:{p}/hook",
        f"http://2130706433:{p}/hook",
        f"http://0x7f000001:{p}/hook",
        f"http://127.1:{p}/hook",
        f"http://0177.0.0.1:{p}/hook",
        f"http://127.0.0.1.:{p}/hook",
        f"http://0.0.0.0:{p}/hook",
        f"http://0:{p}/hook",
        f"http://[::]:{p}/hook",
        "http://10.0.0.1/hook",
        "http://172.16.0.1/hook",
        "http://172.31.255.254/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://100.64.0.1/hook",
        "http://100.100.100.200/latest/meta-data/",
        "http://192.0.0.1/hook",
        "http://192.0.2.1/hook",
        "http://198.18.0.1/hook",
        "http://198.51.100.1/hook",
        "http://203.0.113.1/hook",
        "http://224.0.0.1/hook",
        "http://239.255.255.250/hook",
        "http://240.0.0.1/hook",
        "http://255.255.255.255/hook",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[fc00::1]/hook",
        "http://[fe80::1]/hook",
        "http://[fec0::1]/hook",
        "http://[ff02::1]/hook",
        "http://[2001:db8::1]/hook",
        "http://[64:ff9b::a00:1]/hook",
        "http://[2002:a00:1::]/hook",
        f"http://internal.test:{p}/hook",
        f"http://metadata.test:{p}/hook",
        f"http://mixed.test:{p}/hook",
        f"http://nxdomain.test:{p}/hook",
        f"http://user:secret@public.test:{p}/hook",
        f"ftp://public.test:{p}/hook",
        "file:///etc/passwd",
        "gopher://public.test/",
        "javascript:alert(1)",
        "http:///hook",
        "not a url",
    ]


RESOLVER_TABLE = {
    "localhost": [["127.0.0.1", "::1"]],
    "internal.test": [["10.1.2.3"]],
    "metadata.test": [["169.254.169.254"]],
    "mixed.test": [["192.0.2.10", "127.0.0.1"]],
    "public.test": [["192.0.2.10"]],
}


@pytest.fixture
async def no_allow(tmp_path: Path) -> AsyncIterator[Api]:
    resolver = StubResolver({k: [list(a) for a in v] for k, v in RESOLVER_TABLE.items()})
    api = await start(tmp_path, resolver, allow_networks=())
    yield api
    await api.client.close()


@pytest.mark.parametrize("skip_test", [True, False])
async def test_every_refused_url_is_a_4xx_and_nothing_is_contacted(
    no_allow: Api, receiver: Receiver, skip_test: bool
) -> None:
    urls = refused_urls(receiver.server.port or 0)
    assert len(urls) >= 40
    ws = (await no_allow.call("POST", "/api/v1/workspaces", {"name": "w"}, 201))["workspace"]
    answers = {}
    for url in urls:
        resp = await no_allow.client.post(
            "/api/v1/connections",
            json={
                "workspace": ws["id"],
                "type": "webhook",
                "name": "c",
                "metadata": {"url": url, "skip_test": skip_test},
            },
            headers=no_allow.auth,
        )
        answers[url] = resp.status
    assert {u: s for u, s in answers.items() if not 400 <= s < 500} == {}
    assert receiver.requests == []
    listed = await no_allow.call("GET", f"/api/v1/workspaces/{ws['id']}/connections", expect=200)
    assert listed["records"] == []


async def test_the_same_receiver_is_admitted_when_its_network_is_allowed(
    tmp_path: Path, receiver: Receiver
) -> None:
    api = await start(tmp_path, StubResolver({}), allow_networks=("127.0.0.0/8",))
    try:
        ws = (await api.call("POST", "/api/v1/workspaces", {"name": "w"}, 201))["workspace"]
        await api.call(
            "POST",
            "/api/v1/connections",
            {
                "workspace": ws["id"],
                "type": "webhook",
                "name": "c",
                "metadata": {"url": receiver.url()},
            },
            201,
        )
        assert len(receiver.requests) == 1
    finally:
        await api.client.close()


@pytest.mark.parametrize(
    "connect_time_answer",
    [["127.0.0.1"], ["192.0.2.10", "127.0.0.1"], ["127.0.0.1", "192.0.2.10"], ["::1"]],
    ids=["rebound to loopback", "public and loopback", "loopback and public", "rebound to ::1"],
)
async def test_dns_rebinding_is_refused_at_connect_time(
    tmp_path: Path, receiver: Receiver, connect_time_answer: list[str]
) -> None:
    # 192.0.2.0/24 (documentation) stands in for "public" here: it is allowed for
    # the create-time check, and the connect-time answer never leaves only it,
    # so no connection to it is ever attempted either.
    resolver = StubResolver({"rebind.test": [["192.0.2.10"], connect_time_answer]})
    api = await start(tmp_path, resolver, allow_networks=("192.0.2.0/24",))
    try:
        ws = (await api.call("POST", "/api/v1/workspaces", {"name": "w"}, 201))["workspace"]
        url = f"http://rebind.test:{receiver.server.port}/hook"
        conn = await api.add_connection(ws["id"], url, event="*")
        key = ws["publishable_key"]["public_key"]
        _, body = await api.emit(key, {"event": "x", "payload": {}})
        history = await api.event_when(body["event"]["id"], lambda e: e["status"] == "failed")
        assert history["rule_events"][0]["last_error"].startswith("refused")
        assert history["rule_events"][0]["attempt_count"] == 1  # refused, not retried
        assert receiver.requests == []
        assert resolver.calls == ["rebind.test", "rebind.test"]
        assert conn["active"] is True
    finally:
        await api.client.close()


@pytest.mark.parametrize(
    ("address", "embedded"),
    [
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("::10.0.0.1", "10.0.0.1"),
        ("64:ff9b::a00:1", "10.0.0.1"),
        ("2002:a00:1::1", "10.0.0.1"),
        ("2606:4700::1111", "2606:4700::1111"),
    ],
)
def test_unwrap(address: str, embedded: str) -> None:
    import ipaddress

    assert str(unwrap(ipaddress.ip_address(address))) == embedded


def test_public_addresses_are_not_denied() -> None:
    policy = AddressPolicy()
    for address in ("8.8.8.8", "1.1.1.1", "2606:4700::1111", "64:ff9b::808:808"):
        assert not policy.is_denied(address), address
