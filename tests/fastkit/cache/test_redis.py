"""Redis clients on shared pools, against the real Redis of 127.0.0.1:6379."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis

from fastflyer.cache import get_redis_pool as flyer_get_redis_pool
from fastkit.cache import get_async_redis_pool, get_redis_pool
from redis_server import closed_port

HOST, PORT = "127.0.0.1", 6379
DB = 15  # the tests' own database


@pytest.fixture
def key():
    name = f"fastkit-test:{uuid.uuid4().hex}"
    yield name
    redis.Redis(host=HOST, port=PORT, db=DB).delete(name)


def test_the_seed_block_runs_with_positional_arguments(key):
    # class Cache: redis_pool = get_redis_pool(redis_host, redis_port, redis_pass, redis_db)
    redis_host, redis_port, redis_pass, redis_db = HOST, "6379", "", str(DB)
    redis_pool = get_redis_pool(redis_host, redis_port, redis_pass, redis_db)
    redis_pool.set(key, 1)
    assert redis_pool.get(key) == "1"  # responses are str


def test_same_arguments_share_one_pool_from_any_thread(key):
    first = get_redis_pool(HOST, PORT, "", DB)
    second = flyer_get_redis_pool(HOST, PORT, "", DB)
    assert first.connection_pool is second.connection_pool
    assert get_redis_pool(HOST, PORT, "", 14).connection_pool is not first.connection_pool
    assert get_redis_pool(HOST, PORT, "", DB, timeout=5).connection_pool \
        is not first.connection_pool


def test_url_form(key):
    client = get_redis_pool(f"redis://{HOST}:{PORT}/{DB}")
    client.set(key, "url")
    assert get_redis_pool(HOST, PORT, "", DB).get(key) == "url"


def test_creating_a_client_connects_nothing_and_the_first_command_names_host_and_port():
    with closed_port() as port:  # held: nothing can listen there during the test
        client = get_redis_pool(HOST, port, "", 0, timeout=1)  # no error here
        with pytest.raises(redis.ConnectionError, match=f"{HOST}:{port}"):
            client.ping()


@pytest.mark.parametrize(("args", "message"), [
    ((HOST, "port"), "redis port 'port' is not a number"),
    ((HOST, 70000), "redis port 70000 is not between 1 and 65535"),
    ((HOST, 6379, "", "db"), "redis database 'db' is not a number"),
])
def test_bad_arguments_name_what_is_wrong(args, message):
    with pytest.raises(ValueError, match=message):
        get_redis_pool(*args)


def test_a_killed_connection_is_replaced_on_the_next_call(key):
    client = get_redis_pool(HOST, PORT, "", DB)
    client.set(key, "before")
    client_id = client.client_id()
    admin = redis.Redis(host=HOST, port=PORT)
    assert admin.client_kill_filter(_id=client_id) == 1
    assert client.get(key) == "before"  # redis-py reconnects and retries
    assert client.client_id() != client_id


@pytest.fixture
def acl_user():
    admin = redis.Redis(host=HOST, port=PORT)
    user = f"fastkit-test-{uuid.uuid4().hex[:8]}"
    admin.acl_setuser(user, enabled=True, passwords=["+right-password"], keys=["*"],
                      commands=["+@all"])
    yield user
    admin.acl_deluser(user)


def test_passwords_appear_in_no_repr_or_error(acl_user, key):
    secret = "hunter2-very-secret"
    client = get_redis_pool(HOST, PORT, secret, DB, username=acl_user)
    assert secret not in repr(client)
    assert secret not in repr(client.connection_pool)
    with pytest.raises(redis.AuthenticationError) as caught:
        client.ping()
    assert secret not in str(caught.value)
    good = get_redis_pool(HOST, PORT, "right-password", DB, username=acl_user)
    assert good.set(key, "authed")
    assert "right-password" not in repr(good)


async def test_async_variant_shares_a_pool_within_its_loop(key):
    client = get_async_redis_pool(HOST, PORT, "", DB)
    assert get_async_redis_pool(HOST, PORT, "", DB).connection_pool is client.connection_pool
    await client.set(key, "async")
    assert await client.get(key) == "async"
    other_loop_pool = await asyncio.to_thread(
        lambda: asyncio.run(_pool_in_new_loop()))
    assert other_loop_pool is not client.connection_pool
    await client.aclose()


async def _pool_in_new_loop():
    client = get_async_redis_pool(HOST, PORT, "", DB)
    assert await client.ping()
    pool = client.connection_pool
    await client.aclose()
    return pool
