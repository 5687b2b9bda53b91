"""When the demo's driver may call a run finished (`dialer.demo.work_in_broker`): not while a
task message waits in a queue or is held by a worker (kombu's unacked hash), except the beat's
own ticks, which never stop."""

from __future__ import annotations

import json

import redis

from dialer.demo import work_in_broker
from dialer.local_stack import KOMBU_UNACKED_KEY


def _held(r: redis.Redis, tag: str, routing_key: str) -> None:
    message = {"body": "", "headers": {"task": "x"}, "properties": {"delivery_tag": tag}}
    r.hset(KOMBU_UNACKED_KEY, tag, json.dumps([message, routing_key, routing_key]))


def test_queued_or_held_messages_are_work_and_beat_ticks_are_not(r: redis.Redis) -> None:
    assert not work_in_broker(r)
    r.lpush("webhooks", "{}")
    assert work_in_broker(r)
    r.delete("webhooks")
    _held(r, "t-beat", "beat")
    assert not work_in_broker(r), "a beat tick being run is not work of the run"
    _held(r, "t-results", "results")  # e.g. the task recording a final result
    assert work_in_broker(r)
    r.hdel(KOMBU_UNACKED_KEY, "t-results")
    r.hset(KOMBU_UNACKED_KEY, "t-odd", "not json")
    assert work_in_broker(r), "what cannot be read counts as work"
