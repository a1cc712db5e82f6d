#!/usr/bin/env python3
"""An upstream service publishing chat events with nats-py (a client nobody here wrote) and
protobuf bytes encoded by hand from proto/switchboard.proto.

usage: publish_events.py NATS_URL CHANNEL COUNT ID_PREFIX
prints one line per acknowledged event: "<stream seq> <event id>"
"""
import asyncio
import sys
import time
from pathlib import Path

import nats

# The wire helpers (FNV-1a partitioning, protobuf field encoding) are the fan-out tests'
# upstream peer's: one hand-written encoder of proto/switchboard.proto for every Python peer.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "FanoutServiceTests" / "Peers"))
from upstream import PARTITIONS, field_bytes, field_str, field_varint, fnv1a32  # noqa: E402


def chat_event(event_id: str, channel: str, text: str) -> bytes:
    # ChatEvent { 1 event_id, 2 channel_id, 3 sender_id, 4 created_at_ms, 10 MessageCreated { 1 message_id, 2 text } }
    body = field_str(1, "m-" + event_id) + field_str(2, text)
    return (field_str(1, event_id) + field_str(2, channel) + field_str(3, "py-upstream")
            + field_varint(4, int(time.time() * 1000)) + field_bytes(10, body))


async def main(nats_url: str, channel: str, count: int, prefix: str) -> None:
    assert fnv1a32("foobar") == 0xBF9CF968, "FNV-1a test vector"
    subject = f"chat.events.{fnv1a32(channel) % PARTITIONS}.{channel}"
    nc = await nats.connect(nats_url.split(","))
    js = nc.jetstream()
    for i in range(count):
        event_id = f"{prefix}-{i}"
        ack = await js.publish(subject, chat_event(event_id, channel, f"hello {i}"), headers={"Nats-Msg-Id": event_id})
        print(ack.seq, event_id, flush=True)
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
