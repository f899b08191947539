#!/usr/bin/env python3
"""Opens N keep-alive HTTP/1.1 connections to HOST:PORT, sends one request on each, reads the
response, then holds them idle until killed. Writes the number opened to READY (a fifo).

Usage: open_idle.py HOST PORT N READY
"""
import asyncio
import sys


async def one(host, port, conns):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    conns.append((reader, writer))


async def main():
    host, port, n, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    conns = []
    sem = asyncio.Semaphore(100)

    async def guarded():
        async with sem:
            try:
                await one(host, port, conns)
            except OSError as e:
                print(f"connection failed: {e}", file=sys.stderr)

    await asyncio.gather(*(guarded() for _ in range(n)))
    with open(ready, "w") as f:
        f.write(f"{len(conns)}\n")
    await asyncio.sleep(3600)


asyncio.run(main())
