"""Connection guard: bound what libzmq holds for each TCP connection, which the ROUTER alone cannot.

libzmq keeps the parts of a multipart message in memory until its last part
arrives (256 never-terminated 1 MiB parts held 260 MB, silently), and queues
replies for a peer that never reads up to SNDHWM messages (policy chunks of
4 MiB: gigabytes). Its limits count messages, not bytes, and a ROUTER cannot
drop one connection. So the server watches the connections itself, Linux only:

- the ROUTER's monitor reports each accepted connection and its file
  descriptor; over `max_connections` (or `max_connections_per_address` from
  one remote IP; loopback is exempt, simulated fleets live there) the new
  connection is shut down at once;
- every message received tells its descriptor (ZMQ_SRCFD), so we know the bytes
  each connection delivered; the kernel knows the bytes it received
  (TCP_INFO bytes_received) and still holds (FIONREAD); the difference is what
  libzmq holds for it. Over `connection_pending_bytes`, or the largest when all
  together exceed `max_pending_bytes`, the connection is shut down (the peer
  may reconnect and say hello again);
- a large reply (policy chunk, status) goes only to a peer whose kernel send
  queue is nearly empty, i.e. one that reads what it gets; at most one per peer
  per batch.

Shutting a descriptor down makes libzmq close that connection and free its
queues; nothing else about libzmq's sockets is touched.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import ipaddress
import logging
import os
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from lwd_learner_bridge.config import BridgeConfig
from lwd_learner_bridge.stats import FleetStats

log = logging.getLogger("lwd.bridge")

_FIONREAD = 0x541B  # bytes the kernel received that nobody read yet
_SIOCOUTQ = 0x5411  # bytes in the kernel send queue (not yet acknowledged by the peer)
_TCPI_BYTES_RECEIVED = 128  # offset of tcpi_bytes_received (u64) in struct tcp_info (Linux >= 4.1)
PART_OVERHEAD = 96  # wire bytes per message part beyond its payload (ZMTP header, CURVE box), generous
SLACK = 64 << 10  # greeting, handshake, metadata
LARGE_REPLY = 64 << 10  # replies at least this big are "large"
CHECK_MIN_S, CHECK_MAX_S, CHECK_PER_CONNECTION_S = 0.01, 0.1, 40e-6  # check interval: grows with connections


@dataclass
class Conn:
    fd: int
    address: str
    accepted_at: float
    delivered: int = 0  # wire bytes of the messages libzmq handed us (payload + PART_OVERHEAD per part)
    peers: set[bytes] = field(default_factory=set)
    pending: int = 0  # last measured: bytes received by the kernel that libzmq still holds


def _fd_socket(fd: int) -> socket.socket:
    """A socket object on a duplicate of `fd` (closing it leaves libzmq's descriptor alone)."""
    dup = os.dup(fd)
    try:
        return socket.socket(fileno=dup)
    except OSError:
        os.close(dup)
        raise


_libc = ctypes.CDLL(None, use_errno=True)
_libc.getsockopt.argtypes = [
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint32),
]


def _tcp_counters(fd: int) -> tuple[int, int] | None:
    """(bytes the kernel received on `fd`, bytes of those still unread); None if not a TCP socket.

    Straight on libzmq's descriptor (no dup: a duplicate would keep a closed connection open).
    """
    buf = ctypes.create_string_buffer(256)
    size = ctypes.c_uint32(256)
    if _libc.getsockopt(fd, socket.IPPROTO_TCP, socket.TCP_INFO, buf, ctypes.byref(size)) != 0:
        err = ctypes.get_errno()
        if err in (errno.EBADF, errno.ENOTSOCK):
            raise OSError(err, os.strerror(err))
        return None  # e.g. EOPNOTSUPP: not TCP
    if size.value < _TCPI_BYTES_RECEIVED + 8:
        return None
    received = struct.unpack_from("Q", buf.raw, _TCPI_BYTES_RECEIVED)[0]
    unread = struct.unpack("i", fcntl.ioctl(fd, _FIONREAD, b"\0" * 4))[0]
    return received, unread


def _is_loopback(address: str) -> bool:
    """Simulated fleets run many robots on this machine: the per-address cap is for remote hosts."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address == "local"
    return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None and ip.ipv4_mapped.is_loopback)


def _peer_address(fd: int) -> str:
    try:
        with _fd_socket(fd) as s:
            peer = s.getpeername()
    except OSError:
        return "?"
    return str(peer[0]) if isinstance(peer, tuple) else "local"


class ConnectionGuard:
    def __init__(self, sock: zmq.Socket, config: BridgeConfig, stats: FleetStats):
        self.config = config
        self.stats = stats
        self.enabled = sys.platform.startswith("linux")
        if not self.enabled:
            log.warning(
                "not Linux: what libzmq holds per connection is not bounded (no TCP_INFO / SRCFD checks)"
            )
        self.monitor = sock.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED)
        self.conns: dict[int, Conn] = {}
        self.peer_fd: dict[bytes, int] = {}
        self._per_address: dict[str, int] = {}
        self._large_this_batch: set[bytes] = set()
        self._closed_peers: list[bytes] = []
        self._next_check = 0.0

    # --- bookkeeping -------------------------------------------------------------------------------------

    def events(self) -> list[bytes]:
        """Handle the monitor's events; return the peers whose connection closed (their sessions go)."""
        self._drain()
        closed, self._closed_peers = self._closed_peers, []
        return closed

    def _drain(self) -> None:
        # Called before a received message is attributed to its descriptor too: libzmq reports a
        # closed descriptor before it can be reused, so draining first keeps fd -> connection right.
        while self.monitor.poll(0):
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except zmq.Again:
                break
            fd = int(event["value"])
            if event["event"] == zmq.EVENT_ACCEPTED:
                self._accepted(fd)
            else:
                self._closed(fd)

    def _accepted(self, fd: int) -> None:
        self._closed(fd)  # a reused descriptor: its old connection is gone (missed event)
        address = _peer_address(fd)
        conn = self.conns[fd] = Conn(fd, address, time.monotonic())
        self._per_address[address] = self._per_address.get(address, 0) + 1
        if len(self.conns) > self.config.max_connections:
            self._cut(conn, f"more than {self.config.max_connections} connections", refused=True)
        elif self._per_address[address] > self.config.max_connections_per_address and not _is_loopback(
            address
        ):
            self._cut(
                conn,
                f"more than {self.config.max_connections_per_address} connections from {address}",
                refused=True,
            )

    def _closed(self, fd: int) -> None:
        conn = self.conns.pop(fd, None)
        if conn is not None:
            self._forget(conn)
            self._closed_peers += conn.peers

    def _forget(self, conn: Conn) -> None:
        left = self._per_address.get(conn.address, 0) - 1
        if left > 0:
            self._per_address[conn.address] = left
        else:
            self._per_address.pop(conn.address, None)
        for peer in conn.peers:
            if self.peer_fd.get(peer) == conn.fd:
                del self.peer_fd[peer]

    def delivered(self, peer: bytes, frames: list[zmq.Frame]) -> int:
        """Count a received message against its connection; returns its descriptor (-1: unknown)."""
        try:
            fd = int(frames[-1].get(zmq.SRCFD))
        except (zmq.ZMQError, ValueError, TypeError):
            return -1
        if fd < 0:
            return -1
        self._drain()
        conn = self.conns.get(fd)
        if conn is None:  # the message overtook the monitor's ACCEPTED event
            conn = self.conns[fd] = Conn(fd, _peer_address(fd), time.monotonic())
            self._per_address[conn.address] = self._per_address.get(conn.address, 0) + 1
        conn.delivered += sum(f.buffer.nbytes + PART_OVERHEAD for f in frames[1:])
        if peer not in conn.peers:
            conn.peers.add(peer)
            self.peer_fd[peer] = fd
        return fd

    def new_batch(self) -> None:
        self._large_this_batch.clear()

    # --- limits ------------------------------------------------------------------------------------------

    def check(self, now: float | None = None) -> None:
        """Measure what libzmq holds per connection; shut down those over their share (every CHECK_EVERY_S)."""
        now = time.monotonic() if now is None else now
        if not self.enabled or now < self._next_check:
            return
        self._next_check = now + self.check_interval()
        total = 0
        for conn in list(self.conns.values()):
            try:
                pending = self._pending(conn)
            except OSError as exc:
                if exc.errno in (errno.EBADF, errno.ENOTSOCK):  # closed and we missed the event
                    self._closed(conn.fd)
                continue
            if pending is None:
                continue
            conn.pending = pending
            if pending > self.config.connection_pending_bytes:
                self._cut(
                    conn, f"{pending} bytes received but not delivered (an unterminated multipart message?)"
                )
            else:
                total += pending
        while total > self.config.max_pending_bytes:
            conn = max(self.conns.values(), key=lambda c: c.pending)
            total -= conn.pending
            self._cut(conn, f"largest of {total + conn.pending} bytes held for all connections")

    def check_interval(self) -> float:
        """Seconds between checks: often (a fast peer pushes ~1 GB/s on loopback), less so with many connections."""
        return min(CHECK_MAX_S, max(CHECK_MIN_S, len(self.conns) * CHECK_PER_CONNECTION_S))

    def _pending(self, conn: Conn) -> int | None:
        counters = _tcp_counters(conn.fd)  # OSError: closed meanwhile (the caller forgets it)
        if counters is None:
            return None
        received, unread = counters
        return max(0, received - unread - conn.delivered - SLACK)

    def _cut(self, conn: Conn, why: str, refused: bool = False) -> None:
        self.stats.counters["connections_refused" if refused else "connections_cut"] += 1
        self.stats.note(logging.WARNING, "connection", "closing connection from %s: %s", conn.address, why)
        try:
            with _fd_socket(conn.fd) as s:
                s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        conn.pending = 0

    def large_reply_ok(self, peer: bytes) -> bool:
        """May `peer` get a large reply now: first this batch, and its kernel send queue nearly empty."""
        if peer in self._large_this_batch:
            return False
        self._large_this_batch.add(peer)
        fd = self.peer_fd.get(peer)
        if fd is None or not self.enabled:
            return True
        try:
            with _fd_socket(fd) as s:
                queued = struct.unpack("i", fcntl.ioctl(s.fileno(), _SIOCOUTQ, b"\0" * 4))[0]
                sndbuf = s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        except OSError:
            return True
        return queued < min(LARGE_REPLY, max(4096, sndbuf // 4))

    def status(self) -> dict[str, Any]:
        return {
            "open": len(self.conns),
            "addresses": len(self._per_address),
            "pending_bytes": sum(c.pending for c in self.conns.values()),
        }

    def close(self) -> None:
        self.monitor.close(0)
