"""The servers a user would write instead, as plain as the asyncio docs show them.

    python bench/throughput/peers.py streams  --port N   # asyncio streams
    python bench/throughput/peers.py protocol --port N   # asyncio Protocol
    python bench/throughput/peers.py uvloop   --port N   # the same Protocol on uvloop

Each listens on 127.0.0.1:N and sends back ``bytes.upper()`` of every byte,
the same transform as the reference server.  No flow control and no
descriptor-limit handling: they are the benchmark's peers, not conforming
servers.  SIGTERM/SIGINT end them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import signal


class UpperProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data.upper())  # type: ignore[attr-defined]


async def _streams_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data.upper())
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve(kind: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.cancel)
    if kind == "streams":
        server = await asyncio.start_server(_streams_handler, "127.0.0.1", port, backlog=4096)
    else:
        server = await loop.create_server(UpperProtocol, "127.0.0.1", port, backlog=4096)
    print(f"listening on 127.0.0.1:{port}", flush=True)
    async with server:
        with contextlib.suppress(asyncio.CancelledError):
            await stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["streams", "protocol", "uvloop"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.kind == "uvloop":
        import uvloop  # an optional extra: the runner skips this peer without it

        uvloop.run(serve(args.kind, args.port))
    else:
        asyncio.run(serve(args.kind, args.port))


if __name__ == "__main__":
    main()
