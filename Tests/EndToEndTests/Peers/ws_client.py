#!/usr/bin/env python3
"""A WebSocket chat client written with the `websockets` library (not ours): connects to a
notifier with a bearer token and prints every text frame it receives, one per line.

usage: ws_client.py URL TOKEN SECONDS
runs for SECONDS, then closes normally; "CONNECTED" is printed after the hello frame.
"""
import asyncio
import sys

import websockets


async def main(url: str, token: str, seconds: float) -> None:
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}, proxy=None) as socket:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        hello = await asyncio.wait_for(socket.recv(), timeout=5)
        print(hello, flush=True)
        print("CONNECTED", flush=True)
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                frame = await asyncio.wait_for(socket.recv(), timeout=remaining)
            except asyncio.TimeoutError:
                break
            if isinstance(frame, str):
                print(frame, flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
