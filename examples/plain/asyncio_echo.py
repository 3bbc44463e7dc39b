"""The TCP echo server of Python's asyncio streams documentation, as published.

https://docs.python.org/3/library/asyncio-stream.html#tcp-echo-server-using-streams
The one change: the port comes from the command line instead of 8888 (and the
quotes are this repository's style).

    python examples/plain/asyncio_echo.py PORT
    pytest --echo-transform identity \
        --echo-server-cmd "python examples/plain/asyncio_echo.py {port}"
"""

import asyncio
import sys


async def handle_echo(reader, writer):
    data = await reader.read(100)
    message = data.decode()
    addr = writer.get_extra_info("peername")

    print(f"Received {message!r} from {addr!r}")

    print(f"Send: {message!r}")
    writer.write(data)
    await writer.drain()

    print("Close the connection")
    writer.close()
    await writer.wait_closed()


async def main():
    server = await asyncio.start_server(handle_echo, "127.0.0.1", int(sys.argv[1]))

    addrs = ", ".join(str(sock.getsockname()) for sock in server.sockets)
    print(f"Serving on {addrs}")

    async with server:
        await server.serve_forever()


asyncio.run(main())
