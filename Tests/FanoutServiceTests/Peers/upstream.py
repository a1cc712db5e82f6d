#!/usr/bin/env python3
"""An upstream service and a notifier's presence writes, written with clients nobody here wrote
(nats-py, redis-py) and protobuf bytes encoded by hand from proto/switchboard.proto: proof
that a publisher in another language computes the same partition and wire format.

usage: upstream.py NATS_URL REDIS_URL   (prints the stream sequence of the published event)
"""
import asyncio
import sys
import time

import nats
import redis

PARTITIONS = 16


def fnv1a32(text: str) -> int:
    h = 0x811C9DC5
    for byte in text.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field_bytes(number: int, data: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(data)) + data


def field_str(number: int, text: str) -> bytes:
    return field_bytes(number, text.encode())


def field_varint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


async def main(nats_url: str, redis_url: str) -> None:
    assert fnv1a32("foobar") == 0xBF9CF968, "FNV-1a test vector"
    channel, member, instance = "py-room", "py-user", "py-notifier"
    p = fnv1a32(channel) % PARTITIONS

    # Presence as a notifier writes it: epoch, hash, heartbeat, then the pub/sub delta.
    r = redis.Redis.from_url(redis_url)
    r.set(f"epoch:{instance}", 1)
    r.hset(f"presence:{instance}", member, 7)
    r.zadd("instances", {instance: int(time.time() * 1000)})
    delta = field_str(1, instance) + field_varint(2, 1) + field_str(3, member) + field_varint(4, 7) + field_varint(5, 1)
    r.publish("presence", delta)

    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    change = field_str(1, channel) + field_str(2, member) + field_varint(3, 1) + field_varint(4, 1)
    await js.publish(f"chat.membership.{p}.{channel}.{member}", change)
    await asyncio.sleep(1.0)  # let the fan-out apply the join and the presence delta
    r.zadd("instances", {instance: int(time.time() * 1000)})

    body = field_str(1, "m-1") + field_str(2, "hello from python")
    event = (field_str(1, "py-event-1") + field_str(2, channel) + field_str(3, "py-sender")
             + field_varint(4, int(time.time() * 1000)) + field_bytes(10, body))
    ack = await js.publish(f"chat.events.{p}.{channel}", event, headers={"Nats-Msg-Id": "py-event-1"})
    print(ack.seq, flush=True)
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
