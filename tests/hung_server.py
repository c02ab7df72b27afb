"""A TCP server that never answers: what a wedged database, cache or broker looks like.

    with hung_server() as port:                 # connections are taken, never answered
        pymysql.connect(host="127.0.0.1", port=port, read_timeout=1)    # times out reading

    with hung_server(accept=False) as port:     # connections are never even established
        socket.create_connection(("127.0.0.1", port), timeout=1)         # times out connecting

With ``accept=True`` (the default) a thread accepts every connection on 127.0.0.1 and
holds it open without reading or sending a byte: a client's connect succeeds and its
first read waits for ever (or for its read timeout). With ``accept=False`` the server
listens with a backlog of 0 and fills its own listen queue with one connection, so
the kernel drops the SYN of every later connection: a client's connect waits for ever
(or for its connect timeout). Either way the server binds port 0 and yields the port
the kernel gave it; on exit it closes everything it opened and stops its thread.
"""

from __future__ import annotations

import selectors
import socket
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

__all__ = ["hung_server"]


@contextmanager
def hung_server(*, accept: bool = True) -> Iterator[int]:
    """A server on 127.0.0.1 that never answers; yields its port (see the module)."""
    with ExitStack() as stack:
        listener = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        listener.bind(("127.0.0.1", 0))
        listener.listen(16 if accept else 0)
        port = listener.getsockname()[1]
        if not accept:
            # The one place in the queue, taken: the kernel drops every later SYN.
            filler = stack.enter_context(socket.create_connection(("127.0.0.1", port), 5))
            assert filler.getpeername()[1] == port
            yield port
            return
        held: list[socket.socket] = []
        stop_reader, stop_writer = socket.socketpair()
        stack.enter_context(stop_reader)
        stack.enter_context(stop_writer)

        def take_connections() -> None:
            with selectors.DefaultSelector() as selector:
                selector.register(listener, selectors.EVENT_READ)
                selector.register(stop_reader, selectors.EVENT_READ)
                while True:
                    for key, _ in selector.select():
                        if key.fileobj is stop_reader:
                            return
                        connection, _ = listener.accept()
                        held.append(connection)  # never read, never written

        thread = threading.Thread(target=take_connections, name="hung-server", daemon=True)
        thread.start()
        try:
            yield port
        finally:
            stop_writer.send(b"x")
            thread.join(5)
            for connection in held:
                connection.close()
            assert not thread.is_alive(), "the hung server's thread did not stop"
