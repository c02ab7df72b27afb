"""One group member in its own process, for the tests that kill a consumer mid-stream.

    python consumer_worker.py SERVERS TOPIC GROUP OUTFILE [--delay SECONDS]

Every message handled is written to OUTFILE as ``partition offset key`` (one line,
flushed) before the handler returns, so what a killed member finished is on disk.
"""

from __future__ import annotations

import argparse
import asyncio

from fastkit.message import AsyncConsumer, Message

FAST_GROUP = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 300}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("servers")
    parser.add_argument("topic")
    parser.add_argument("group")
    parser.add_argument("outfile")
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()

    async def run() -> None:
        with open(args.outfile, "a", buffering=1) as out:
            async def handler(message: Message) -> None:
                if args.delay:
                    await asyncio.sleep(args.delay)
                out.write(f"{message.partition} {message.offset} {message.key.decode()}\n")

            consumer = AsyncConsumer(args.servers, args.topic, group_id=args.group,
                                     **FAST_GROUP)
            await consumer.run(handler)

    asyncio.run(run())


if __name__ == "__main__":
    main()
