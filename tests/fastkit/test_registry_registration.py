"""fastkit.registry.Registration against a real etcd: a beat puts the instance's key under a
lease of 3 × heartbeat, renews it, grants a new one when it ended; withdraw removes the key
and the lease; two registrations of one instance (two workers) keep it listed while either
lives; a lease no one renews ends, and the key with it."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fastkit.etcd import EtcdClient, EtcdUnavailable
from fastkit.registry import Instance, Registration
from redis_server import closed_port
from waiting import wait_for


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def lease_info(etcd: Any, lease: int) -> dict[str, Any]:
    """etcd's own view of ``lease``: ``TTL`` (-1 once ended), ``grantedTTL``, ``keys``."""
    response = httpx.post(f"{etcd.url}/v3/kv/lease/timetolive",
                          json={"ID": str(lease), "keys": True}, timeout=5)
    response.raise_for_status()
    info = response.json()
    return {"TTL": int(info.get("TTL", -1)), "grantedTTL": int(info.get("grantedTTL", 0)),
            "keys": [base64.b64decode(k).decode() for k in info.get("keys", [])]}


def key_lease(etcd: Any, key: str) -> int | None:
    """The lease holding ``key`` (0: none), or ``None`` when the key is not there."""
    response = httpx.post(f"{etcd.url}/v3/kv/range", json={"key": _b64(key)}, timeout=5)
    response.raise_for_status()
    kvs = response.json().get("kvs") or []
    return int(kvs[0].get("lease", 0)) if kvs else None


def revoke(etcd: Any, lease: int) -> None:
    """End ``lease`` from outside, as etcd does to a lease no one renewed."""
    httpx.post(f"{etcd.url}/v3/kv/lease/revoke", json={"ID": str(lease)},
               timeout=5).raise_for_status()


@pytest.fixture
def client(etcd: Any) -> Iterator[EtcdClient]:
    with EtcdClient(etcd.url, timeout=3) as made:
        yield made


@pytest.fixture
def instance(key: str) -> Instance:
    return Instance(service=f"svc-{key[:8]}", host="10.0.0.5", port=8080, version="v3",
                    metadata={"zone": "a"}, namespace=f"ns-{key[:8]}",
                    base_url="http://10.0.0.5:8080/flyer")


def test_a_beat_registers_the_instance_under_a_lease_of_three_heartbeats(
        client: EtcdClient, etcd: Any, instance: Instance) -> None:
    registration = Registration(client, instance, heartbeat=2)
    assert registration.ttl == 6
    assert registration.lease is None and not registration.registered
    assert registration.beat() is True  # a new lease
    assert registration.registered
    lease = registration.lease
    assert lease is not None
    assert key_lease(etcd, instance.key) == lease
    record = json.loads(etcd.get(instance.key))
    assert record["host"] == "10.0.0.5" and record["port"] == 8080
    assert record["base_url"] == "http://10.0.0.5:8080/flyer" and record["version"] == "v3"
    assert record["metadata"] == {"zone": "a"}
    info = lease_info(etcd, lease)
    assert info["grantedTTL"] == 6
    assert info["keys"] == [instance.key]
    registration.withdraw()


def test_a_ttl_is_whole_seconds_rounded_up() -> None:
    instance = Instance(service="s", host="h", port=1)
    client = EtcdClient("http://127.0.0.1:1")
    assert Registration(client, instance, heartbeat=0.5).ttl == 2
    assert Registration(client, instance, heartbeat=1.1).ttl == 4
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="heartbeat"):
            Registration(client, instance, heartbeat=bad)


def test_each_beat_renews_the_same_lease(client: EtcdClient, etcd: Any,
                                         instance: Instance) -> None:
    registration = Registration(client, instance, heartbeat=1)  # TTL 3 s
    registration.beat()
    lease = registration.lease
    assert lease is not None
    # Let the lease run down, then renew it: its full TTL again, the key still there.
    wait_for(lambda: lease_info(etcd, lease)["TTL"] <= 1, timeout=10, what="the lease runs down")
    assert registration.beat() is False  # renewed, not a new lease
    assert registration.lease == lease
    assert lease_info(etcd, lease)["TTL"] >= 2
    assert key_lease(etcd, instance.key) == lease
    registration.withdraw()


def test_a_lease_no_one_renews_ends_and_the_key_with_it(client: EtcdClient, etcd: Any,
                                                        instance: Instance) -> None:
    # A process killed without withdrawing: gone within one TTL (3 s here).
    registration = Registration(client, instance, heartbeat=1)
    registration.beat()
    wait_for(lambda: etcd.get(instance.key) is None, timeout=3 + 3,
             what="the key ends with its lease")


def test_withdraw_deletes_the_key_and_revokes_the_lease_and_can_be_repeated(
        client: EtcdClient, etcd: Any, instance: Instance) -> None:
    registration = Registration(client, instance, heartbeat=1)
    registration.beat()
    lease = registration.lease
    assert lease is not None
    registration.withdraw()
    assert etcd.get(instance.key) is None
    assert lease_info(etcd, lease)["TTL"] == -1
    assert registration.lease is None and not registration.registered
    registration.withdraw()  # the key and the lease are gone already: no error
    # Registered again by the next beat, with a new lease.
    assert registration.beat() is True
    assert registration.lease not in (None, lease)
    assert etcd.get(instance.key) is not None
    registration.withdraw()


def test_withdraw_copes_with_a_lease_that_already_ended(client: EtcdClient, etcd: Any,
                                                        instance: Instance) -> None:
    registration = Registration(client, instance, heartbeat=1)
    registration.beat()
    assert registration.lease is not None
    revoke(etcd, registration.lease)
    registration.withdraw()
    assert registration.lease is None


def test_a_lease_that_ended_is_replaced_and_the_key_put_again(
        client: EtcdClient, etcd: Any, instance: Instance) -> None:
    registration = Registration(client, instance, heartbeat=1)
    registration.beat()
    ended = registration.lease
    assert ended is not None
    revoke(etcd, ended)  # etcd lost it, or an outage outlived it
    assert etcd.get(instance.key) is None
    assert registration.beat() is True  # a new lease
    assert registration.lease not in (None, ended)
    assert key_lease(etcd, instance.key) == registration.lease
    assert lease_info(etcd, registration.lease)["grantedTTL"] == 3
    registration.withdraw()


def test_two_workers_keep_the_instance_listed_while_either_lives(
        client: EtcdClient, etcd: Any, instance: Instance) -> None:
    first = Registration(client, instance, heartbeat=1)
    second = Registration(client, instance, heartbeat=1)
    first.beat()
    second.beat()
    assert first.lease != second.lease
    assert key_lease(etcd, instance.key) == second.lease  # the last put holds it
    assert second.lease is not None
    revoke(etcd, second.lease)  # the second worker died and its lease ended
    assert etcd.get(instance.key) is None
    first.beat()  # the first one's next beat
    assert key_lease(etcd, instance.key) == first.lease
    # And the other way round: the first one's lease ending leaves the second's put.
    second.beat()
    assert first.lease is not None
    revoke(etcd, first.lease)
    first.beat()
    assert etcd.get(instance.key) is not None
    first.withdraw()
    second.withdraw()
    assert etcd.get(instance.key) is None


def test_a_closed_registration_beats_no_more_and_still_withdraws(
        client: EtcdClient, etcd: Any, instance: Instance) -> None:
    registration = Registration(client, instance, heartbeat=1)
    registration.beat()
    lease = registration.lease
    registration.close()
    assert registration.closed
    assert registration.beat() is False
    assert registration.lease == lease and key_lease(etcd, instance.key) == lease
    registration.withdraw()
    assert etcd.get(instance.key) is None
    assert registration.beat() is False  # closed: not registered again
    assert etcd.get(instance.key) is None


def test_an_unreachable_etcd_raises_and_the_next_beat_tries_again(
        etcd: Any, instance: Instance) -> None:
    with closed_port() as port, EtcdClient(f"http://127.0.0.1:{port}", timeout=1) as away:
        registration = Registration(away, instance, heartbeat=1)
        with pytest.raises(EtcdUnavailable, match="cannot be reached"):
            registration.beat()
        assert registration.lease is None and not registration.registered
        with pytest.raises(EtcdUnavailable):
            registration.withdraw()
    with EtcdClient(etcd.url, timeout=3) as back:
        registration.client = back
        assert registration.beat() is True
        assert etcd.get(instance.key) is not None
        registration.withdraw()


def test_the_documented_example_registers_and_withdraws(etcd: Any, key: str) -> None:
    # The module's example as written, on the test's etcd and under a service of its own.
    import textwrap

    import fastkit.registry._registration as module

    doc = module.__doc__ or ""
    example = textwrap.dedent(doc.split("\n\n", 1)[1].split("\nThe key ``")[0])
    service = f"orders-{key[:8]}"
    example = (example.replace("http://10.0.0.1:2379", etcd.url)
               .replace('"orders"', repr(service))
               .replace("\n...\n", "\nwait_for(lambda: registration.registered, 10)\n"))
    assert "wait_for" in example
    namespace: dict[str, Any] = {"wait_for": wait_for}
    exec(compile(example, "example", "exec"), namespace)
    assert etcd.get(f"/default/{service}/10.0.0.5:8080") is None  # withdrawn at the end
    assert namespace["registration"].closed


def test_a_wildcard_host_registers_the_default_routes_address() -> None:
    import socket

    from fastkit.utils.net import routable_host

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("192.0.2.1", 1))  # what the kernel picks; nothing is sent
        expected = sock.getsockname()[0]
    for wildcard in ("0.0.0.0", "::", ""):
        assert routable_host(wildcard) == expected
    assert expected not in ("0.0.0.0", "::")
    for given in ("10.1.2.3", "api.internal", "::1", "127.0.0.1"):
        assert routable_host(given) == given
