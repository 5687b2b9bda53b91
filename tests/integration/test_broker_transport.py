"""The hardened Redis transport (tasks.broker) against a real Redis: a channel closed after its
transport was torn down (what Celery's consumer does when the broker connection drops) must not
stop the worker, and the messages it held must come back through the visibility sweep."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from kombu import Connection, Exchange, Queue

from tasks.broker import SafeRedisTransport

QUEUE = Queue("broker-test", Exchange("broker-test"), "broker-test")


@pytest.fixture()
def connection(redis_url: str, r: redis.Redis) -> Iterator[Connection]:
    conn = Connection(redis_url, transport=SafeRedisTransport)
    try:
        yield conn
    finally:
        conn.release()


def _publish(conn: Connection, body: dict[str, int]) -> None:
    with conn.Producer() as producer:
        producer.publish(body, exchange=QUEUE.exchange, routing_key="broker-test", declare=[QUEUE])


def test_closing_a_channel_after_the_transport_is_gone_keeps_the_message(
    connection: Connection, redis_url: str, r: redis.Redis
) -> None:
    _publish(connection, {"n": 1})
    channel = connection.default_channel
    held = channel.basic_get("broker-test", no_ack=False)
    assert held is not None and len(channel.qos._delivered) == 1
    assert r.hlen("unacked") == 1

    # Celery's consumer, on a lost connection: Connection.collect() detaches the transport
    # (transport.client = None), then the channel is closed. Stock kombu raises AttributeError
    # here and the worker exits with "Unrecoverable error".
    connection._do_close_transport()
    connection.maybe_close_channel(channel)  # swallows connection errors only

    # Nothing lost: the message waits in the unacked hash, not on the queue ...
    assert r.hlen("unacked") == 1
    assert r.llen("broker-test") == 0

    # ... and the next sweep of any worker (here with no visibility delay) hands it out again.
    with Connection(
        redis_url, transport=SafeRedisTransport, transport_options={"visibility_timeout": 0}
    ) as sweeper:
        sweeper.default_channel.qos.restore_visible(num=10, interval=1)
        again = sweeper.default_channel.basic_get("broker-test", no_ack=True)
    assert again is not None and again.decode() == {"n": 1}
    assert r.hlen("unacked") == 0


@pytest.mark.parametrize("settle", ["ack", "reject_requeue", "reject"])
def test_settling_a_message_of_a_torn_down_channel_is_a_connection_error(
    connection: Connection, r: redis.Redis, settle: str
) -> None:
    """A task that ran through the outage finishes after the consumer reconnected: its message
    belongs to the old channel. kombu's ack/reject helpers swallow connection errors only."""
    _publish(connection, {"n": 3})
    channel = connection.default_channel
    message = channel.basic_get("broker-test", no_ack=False)
    assert message is not None
    connection._do_close_transport()
    connection.maybe_close_channel(channel)  # the consumer's clean-up after the lost connection
    with pytest.raises(tuple(connection.connection_errors)):
        if settle == "ack":
            message.ack()
        else:
            message.reject(requeue=settle == "reject_requeue")
    assert r.hlen("unacked") == 1, "left for the visibility sweep"


def test_a_normal_close_still_hands_messages_back_at_once(
    connection: Connection, r: redis.Redis
) -> None:
    _publish(connection, {"n": 2})
    channel = connection.default_channel
    assert channel.basic_get("broker-test", no_ack=False) is not None
    channel.close()
    assert r.llen("broker-test") == 1 and r.hlen("unacked") == 0


def test_publishes_and_acks_share_one_client_per_connection_pool(
    connection: Connection, r: redis.Redis
) -> None:
    channel = connection.default_channel
    with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
        assert first is second
    _publish(connection, {"n": 4})
    message = channel.basic_get("broker-test", no_ack=False)
    assert message is not None
    message.ack()
    assert r.hlen("unacked") == 0 and r.llen("broker-test") == 0
    with channel.conn_or_acquire() as client:
        assert client is first
    channel._disconnect_pools()  # what kombu does when the connection is lost
    with channel.conn_or_acquire() as fresh:
        assert fresh is not first and fresh.connection_pool is channel.pool
    _publish(connection, {"n": 5})
    assert r.llen("broker-test") == 1
