"""A TCP proxy in front of Postgres that can lose the reply of one chosen statement.

Armed with a piece of SQL, it forwards the statement that contains it to the server, waits
until the server has answered it completely (ReadyForQuery), and then closes the client's
connection without passing the answer on: the server did the work (a COMMIT landed), the client
only sees its connection die. That is the lost reply of a real COMMIT, not a simulation of one.
It can also refuse new connections, as an unreachable database does.

Speaks just enough of the wire protocol to find message boundaries; point clients at it with
sslmode=disable.
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass, field

_STARTUP_CODES = {80877103, 80877104, 80877102, 196608}  # SSL, GSSENC, cancel, protocol 3.0


@dataclass
class _Link:
    client: socket.socket
    server: socket.socket
    doomed: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        for sock in (self.client, self.server):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


class LossyProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._armed: list[bytes] = []
        self.refusing = False
        # When the lost reply is cut, cut every other connection too and refuse new ones: the
        # database goes out of reach right after the statement landed.
        self.unreachable_after_loss = False
        self.lost: list[bytes] = []  # the statements whose replies were lost
        self._links: list[_Link] = []
        self._stopped = False
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def url(self, base_url: str) -> str:
        """`base_url` (a postgresql:// URL of the target) pointed at this proxy."""
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        params = conninfo_to_dict(base_url)
        params.update(host="127.0.0.1", port=str(self.port), sslmode="disable")
        return make_conninfo(**params)

    def lose_reply_of(self, sql: str) -> None:
        """The next statement containing `sql` runs, and its reply is lost with the connection."""
        with self._lock:
            self._armed.append(sql.encode())

    def armed(self) -> bool:
        with self._lock:
            return bool(self._armed)

    def stop(self) -> None:
        self._stopped = True
        # close() alone does not wake a thread blocked in accept(); it would take one more
        # connection, possibly one meant for a proxy that reuses the descriptor. shutdown() does.
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._acceptor.join(timeout=5)
        self._listener.close()
        for link in list(self._links):
            link.close()

    # -- plumbing ------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._stopped:
                client.close()
                return
            if self.refusing:
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            link = _Link(client, server)
            with self._lock:
                if self.refusing:  # went out of reach while this one was connecting
                    link.close()
                    continue
                self._links.append(link)
            threading.Thread(target=self._upstream, args=(link,), daemon=True).start()
            threading.Thread(target=self._downstream, args=(link,), daemon=True).start()

    def _take(self, payload: bytes) -> bytes | None:
        with self._lock:
            for sql in self._armed:
                if sql in payload:
                    self._armed.remove(sql)
                    return sql
        return None

    def _upstream(self, link: _Link) -> None:
        """Client to server, message by message; a statement we were armed for dooms the link."""
        buffer = b""
        startup = True
        try:
            while True:
                chunk = link.client.recv(65536)
                if not chunk:
                    break
                buffer += chunk
                while True:
                    if startup:
                        if len(buffer) < 8:
                            break
                        length, code = struct.unpack("!II", buffer[:8])
                        if code not in _STARTUP_CODES or len(buffer) < length:
                            break
                        message, buffer = buffer[:length], buffer[length:]
                        startup = code in (80877103, 80877104)  # the real startup follows
                        link.server.sendall(message)
                        continue
                    if len(buffer) < 5:
                        break
                    length = struct.unpack("!I", buffer[1:5])[0]
                    if len(buffer) < 1 + length:
                        break
                    message, buffer = buffer[: 1 + length], buffer[1 + length :]
                    if message[:1] in (b"Q", b"P") and not link.doomed.is_set():
                        hit = self._take(message)
                        if hit is not None:
                            self.lost.append(hit)
                            link.doomed.set()
                    link.server.sendall(message)
        except OSError:
            pass
        finally:
            link.close()

    def _downstream(self, link: _Link) -> None:
        """Server to client; once doomed, swallow the answer up to ReadyForQuery, then cut."""
        pending = b""
        try:
            while True:
                chunk = link.server.recv(65536)
                if not chunk:
                    break
                if not link.doomed.is_set():
                    link.client.sendall(chunk)
                    continue
                pending += chunk
                if self._answered(pending):
                    if self.unreachable_after_loss:
                        with self._lock:
                            self.refusing = True
                            # Every other link first: once this one is cut the client acts at
                            # once, and must not find another connection still open.
                            others = [other for other in self._links if other is not link]
                        for other in others:
                            other.close()
                    break
        except OSError:
            pass
        finally:
            link.close()

    @staticmethod
    def _answered(stream: bytes) -> bool:
        """Whether `stream` (server messages) holds a ReadyForQuery."""
        offset = 0
        while offset + 5 <= len(stream):
            kind = stream[offset : offset + 1]
            length = struct.unpack("!I", stream[offset + 1 : offset + 5])[0]
            if kind == b"Z" and offset + 1 + length <= len(stream):
                return True
            offset += 1 + length
        return False
