"""HTTP/2 framing for the built-in gRPC client (RFC 9113): the client side of one connection.

Written here rather than taken from the ``h2`` library, which cost a third of the export worker's
CPU per batch; this does the same work in about a tenth of h2's time (docs/performance.md) because
it does only what a gRPC client needs:

- no server push (refused in our SETTINGS), no priorities;
- our header blocks are HPACK literals without indexing, so there is no encoder state to keep;
  answers are decoded by ``hpack`` (the decoder h2 itself uses);
- flow control: we send within the collector's windows; ours are large (answers are small) and
  are replenished at half use.

It never touches the socket: :meth:`Connection.receive` takes bytes read, and
:meth:`Connection.data_to_send` gives bytes to write.  A broken rule by the peer raises
:class:`ProtocolError`, after which the connection is not used again.
"""

from __future__ import annotations

import struct

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PUSH_PROMISE, _PING, _GOAWAY, _WINDOW_UPDATE, _CONTINUATION = (
    0, 1, 3, 4, 5, 6, 7, 8, 9
)  # fmt: skip
_END_STREAM = _ACK = 0x1
_END_HEADERS = 0x4
_PADDED = 0x8
_PRIORITY = 0x20
_HEAD = struct.Struct(">HBBBL")  # 24-bit length as 16 + 8 bits, type, flags, stream id
_U32 = struct.Struct(">L")
_PAIR = struct.Struct(">HL")  # a SETTINGS entry
_MASK = 0x7FFFFFFF
_WINDOW_MAX = 2**31 - 1
_DEFAULT_WINDOW = 65_535
_DEFAULT_FRAME = 16_384  # also the largest frame we accept: we never raise SETTINGS_MAX_FRAME_SIZE
_DEFAULT_TABLE = 4_096
# Our receive window, per stream and for the connection.  Answers are a few bytes, so one
# WINDOW_UPDATE at half use is all the replenishing a connection normally needs.
_RECV_WINDOW = 1 << 24
# Bounds on what a hostile or broken collector can make us hold (h2 had the first as a frame count):
_MAX_HEADER_BLOCK = 128 * 1024  # one header block, CONTINUATIONs included (a CONTINUATION flood)
_MAX_ANSWER = 4 * 1024 * 1024 + 5  # an answer's body: gRPC's default largest message; the rest is ignored
_MAX_OWED = 1024 * 1024  # frames we owe (PING and SETTINGS ACKs) and have not written (a PING flood)
# SETTINGS: ENABLE_PUSH 0, INITIAL_WINDOW_SIZE.
_OUR_SETTINGS = _PAIR.pack(2, 0) + _PAIR.pack(4, _RECV_WINDOW)
# Names of error codes, for a readable GOAWAY or RST_STREAM line (RFC 9113 section 7).
ERROR_NAMES = (
    "NO_ERROR",
    "PROTOCOL_ERROR",
    "INTERNAL_ERROR",
    "FLOW_CONTROL_ERROR",
    "SETTINGS_TIMEOUT",
    "STREAM_CLOSED",
    "FRAME_SIZE_ERROR",
    "REFUSED_STREAM",
    "CANCEL",
    "COMPRESSION_ERROR",
    "CONNECT_ERROR",
    "ENHANCE_YOUR_CALM",
    "INADEQUATE_SECURITY",
    "HTTP_1_1_REQUIRED",
)


class ProtocolError(ConnectionError):
    """The peer broke HTTP/2 (or HPACK): the connection cannot be used any more."""


def _frame(ftype: int, flags: int, sid: int, payload: bytes | memoryview = b"") -> bytes:
    n = len(payload)
    return _HEAD.pack(n >> 8, n & 0xFF, ftype, flags, sid) + payload


def _hpack_int(value: int) -> bytes:
    """An HPACK integer with a 7-bit prefix (a string length, H bit clear: no Huffman)."""
    if value < 127:
        return bytes((value,))
    out = bytearray((127,))
    value -= 127
    while value >= 128:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def header_block(headers: list[tuple[str, str]]) -> bytes:
    """Headers as HPACK literals without indexing, new name: no dynamic table entry on either side.

    Names must already be lowercase; names and values are sent as UTF-8, as h2 did with
    validation off.
    """
    out = bytearray()
    for name, value in headers:
        n, v = name.encode(), value.encode()
        out += b"\x00" + _hpack_int(len(n)) + n + _hpack_int(len(v)) + v
    return bytes(out)


def _shown(data: bytes) -> str:
    """Bytes for a diagnostic line: printable ASCII as text, the rest escaped."""
    return repr(bytes(data))


def error_name(code: int) -> str:
    return ERROR_NAMES[code] if 0 <= code < len(ERROR_NAMES) else f"error {code:#x}"


class Answer:
    """One request's stream: what the collector sent back, and our send window on it."""

    __slots__ = ("data", "ended", "fields", "lost", "received", "reset", "window")

    def __init__(self, window: int) -> None:
        self.fields: dict[str, str] = {}  # headers, then trailers (a trailers-only answer has one set)
        self.data = bytearray()
        self.reset: int | None = None  # RST_STREAM's error code
        self.lost: str | None = None  # why the stream will never be answered (GOAWAY before it)
        self.ended = False
        self.window = window  # bytes we may still send on it
        self.received = 0  # DATA bytes taken since our last WINDOW_UPDATE for it


class Connection:
    """The HTTP/2 state of one client connection: streams, windows, the collector's settings."""

    def __init__(self) -> None:
        self.streams: dict[int, Answer] = {}  # requests not yet collected by the caller, by stream id
        self.closing = False  # GOAWAY received: no new stream on it
        self.max_frame_size = _DEFAULT_FRAME  # the peer's, for our DATA frames
        self.max_streams = _WINDOW_MAX  # the peer's SETTINGS_MAX_CONCURRENT_STREAMS
        # The peer's first SETTINGS arrived: its limits are known (a stream opened before could be
        # refused, e.g. by nginx whose window for request bodies may be 0).
        self.settings_received = False
        self._window = _DEFAULT_WINDOW  # connection-level send window
        self._initial = _DEFAULT_WINDOW  # the peer's SETTINGS_INITIAL_WINDOW_SIZE
        self._received = 0  # connection-level DATA bytes since our last WINDOW_UPDATE
        self._next_sid = 1
        self._decoder = hpack.Decoder()
        self._pending = b""  # an incomplete frame from the last receive()
        self._continuing: tuple[int, int, bytearray] | None = None  # HEADERS awaiting CONTINUATION
        self._shrink_table = False  # the peer's table is below 4 KiB: say ours is 0 (RFC 7541 4.2)
        self._out = bytearray(
            PREFACE
            + _frame(_SETTINGS, 0, 0, _OUR_SETTINGS)
            + _frame(_WINDOW_UPDATE, 0, 0, _U32.pack(_RECV_WINDOW - _DEFAULT_WINDOW))
        )

    # -- sending -------------------------------------------------------------------------------

    def owes(self) -> bool:
        """Something waits to be written."""
        return bool(self._out)

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def open_streams(self) -> int:
        """Streams the peer has not closed yet (its concurrency limit counts these)."""
        return sum(1 for answer in self.streams.values() if not answer.ended)

    def send_headers(self, block: bytes) -> tuple[int, Answer]:
        """Open a stream with a request's header block (from :func:`header_block`)."""
        if self.closing:
            raise ProtocolError("the collector sent GOAWAY: no new streams on this connection")
        sid = self._next_sid
        if sid > _MASK:
            raise ProtocolError("stream ids used up on this connection")
        self._next_sid += 2
        if self._shrink_table:
            block = b"\x20" + block  # dynamic table size update to 0, first in the next block
            self._shrink_table = False
        size = self.max_frame_size
        first, rest = block[:size], block[size:]
        self._out += _frame(_HEADERS, 0 if rest else _END_HEADERS, sid, first)
        while rest:
            part, rest = rest[:size], rest[size:]
            self._out += _frame(_CONTINUATION, 0 if rest else _END_HEADERS, sid, part)
        answer = self.streams[sid] = Answer(self._initial)
        return sid, answer

    def window(self, sid: int) -> int:
        """Bytes of DATA that may be sent on stream ``sid`` now."""
        answer = self.streams.get(sid)
        return min(self._window, answer.window) if answer is not None else 0

    def send_data(self, sid: int, data: bytes | memoryview, end_stream: bool) -> None:
        """One DATA frame: ``len(data)`` at most :meth:`window` and :attr:`max_frame_size`."""
        self._window -= len(data)
        self.streams[sid].window -= len(data)
        self._out += _frame(_DATA, _END_STREAM if end_stream else 0, sid, data)

    def reset_stream(self, sid: int, code: int) -> None:
        self._out += _frame(_RST_STREAM, 0, sid, _U32.pack(code))
        answer = self.streams.get(sid)
        if answer is not None:
            answer.ended = True

    # -- receiving -----------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Take bytes read from the socket: answers go to their streams, and what the protocol
        asks in return (SETTINGS and PING acknowledgements, WINDOW_UPDATEs) to the output."""
        buf = self._pending + data if self._pending else data
        pos, end = 0, len(buf)
        while end - pos >= 9:
            hi, lo, ftype, flags, sid = _HEAD.unpack_from(buf, pos)
            length = hi << 8 | lo
            if length > _DEFAULT_FRAME:
                if not self.settings_received:  # e.g. "HTTP/1.1 400": a TLS port spoken to in plaintext
                    raise ProtocolError(f"the server did not answer in HTTP/2 (it sent {_shown(buf[:40])})")
                raise ProtocolError(f"a {length}-byte frame, over SETTINGS_MAX_FRAME_SIZE")
            if end - pos - 9 < length:
                break
            if not self.settings_received and ftype != _SETTINGS:
                raise ProtocolError(f"the server did not answer in HTTP/2 (it sent {_shown(buf[:40])})")
            payload = buf[pos + 9 : pos + 9 + length]
            pos += 9 + length
            sid &= _MASK
            if self._continuing is not None and ftype != _CONTINUATION:
                raise ProtocolError("a header block was interrupted by another frame")
            if ftype == _DATA:
                self._on_data(sid, flags, payload)
            elif ftype == _HEADERS:
                self._on_headers(sid, flags, payload)
            elif ftype == _CONTINUATION:
                self._on_continuation(sid, flags, payload)
            elif ftype == _SETTINGS:
                self._on_settings(sid, flags, payload)
            elif ftype == _WINDOW_UPDATE:
                self._on_window_update(sid, payload)
            elif ftype == _PING:
                if sid or length != 8:
                    raise ProtocolError("a malformed PING")
                if not flags & _ACK:
                    self._out += _frame(_PING, _ACK, 0, payload)
            elif ftype == _RST_STREAM:
                if not sid or length != 4:
                    raise ProtocolError("a malformed RST_STREAM")
                answer = self.streams.get(sid)
                if answer is not None:
                    answer.reset, answer.ended = _U32.unpack(payload)[0], True
            elif ftype == _GOAWAY:
                self._on_goaway(sid, payload)
            elif ftype == _PUSH_PROMISE:
                raise ProtocolError("PUSH_PROMISE, though our SETTINGS disabled push")
            # PRIORITY and unknown frame types are ignored (RFC 9113 section 4.1, 5.5)
        self._pending = buf[pos:]
        if len(self._out) > _MAX_OWED:  # only acknowledgements can pile up here: we send nothing else
            raise ProtocolError("the collector floods us with frames to acknowledge")

    @staticmethod
    def _unpad(flags: int, payload: bytes) -> bytes:
        if flags & _PADDED:
            if not payload or payload[0] >= len(payload):
                raise ProtocolError("padding longer than the frame")
            return payload[1 : len(payload) - payload[0]]
        return payload

    def _on_data(self, sid: int, flags: int, payload: bytes) -> None:
        if not sid:
            raise ProtocolError("DATA on stream 0")
        answer = self.streams.get(sid)
        # Flow control counts the whole payload, padding included, even for a stream we reset.
        self._received += len(payload)
        if self._received >= _RECV_WINDOW // 2:
            self._out += _frame(_WINDOW_UPDATE, 0, 0, _U32.pack(self._received))
            self._received = 0
        if answer is None:
            return
        if len(answer.data) < _MAX_ANSWER:
            answer.data += self._unpad(flags, payload)
        if flags & _END_STREAM:
            answer.ended = True
            return
        answer.received += len(payload)
        if answer.received >= _RECV_WINDOW // 2:
            self._out += _frame(_WINDOW_UPDATE, 0, sid, _U32.pack(answer.received))
            answer.received = 0

    def _on_headers(self, sid: int, flags: int, payload: bytes) -> None:
        if not sid:
            raise ProtocolError("HEADERS on stream 0")
        block = self._unpad(flags, payload)
        if flags & _PRIORITY:
            block = block[5:]
        if flags & _END_HEADERS:
            self._header_block(sid, flags, block)
        else:
            self._continuing = (sid, flags, bytearray(block))

    def _on_continuation(self, sid: int, flags: int, payload: bytes) -> None:
        if self._continuing is None or self._continuing[0] != sid:
            raise ProtocolError("CONTINUATION without the HEADERS it continues")
        self._continuing[2].extend(payload)
        if len(self._continuing[2]) > _MAX_HEADER_BLOCK:
            raise ProtocolError("a header block over 128 KiB (a CONTINUATION flood?)")
        if flags & _END_HEADERS:
            _, first_flags, block = self._continuing
            self._continuing = None
            self._header_block(sid, first_flags, bytes(block))

    def _header_block(self, sid: int, flags: int, block: bytes) -> None:
        # Decoded even for a stream nobody waits on: the decoder's table must stay in step.
        try:
            pairs = self._decoder.decode(block, raw=True)
        except Exception as exc:  # hpack's errors: the table is out of step for good
            raise ProtocolError(f"unreadable header block ({type(exc).__name__}: {exc})") from exc
        answer = self.streams.get(sid)
        if answer is not None:
            answer.fields.update((k.decode("latin-1"), v.decode("latin-1")) for k, v in pairs)
            if flags & _END_STREAM:
                answer.ended = True

    def _on_settings(self, sid: int, flags: int, payload: bytes) -> None:
        if sid or len(payload) % 6 or (flags & _ACK and payload):
            raise ProtocolError("a malformed SETTINGS frame")
        if flags & _ACK:
            return
        self.settings_received = True
        for offset in range(0, len(payload), 6):
            key, value = _PAIR.unpack_from(payload, offset)
            if key == 1 and value < _DEFAULT_TABLE:
                self._shrink_table = True
            elif key == 3:
                self.max_streams = value
            elif key == 4:
                if value > _WINDOW_MAX:
                    raise ProtocolError("SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1")
                for answer in self.streams.values():
                    answer.window += value - self._initial
                self._initial = value
            elif key == 5:
                if not _DEFAULT_FRAME <= value <= 16_777_215:
                    raise ProtocolError("SETTINGS_MAX_FRAME_SIZE out of range")
                self.max_frame_size = value
        self._out += _frame(_SETTINGS, _ACK, 0)

    def _on_window_update(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ProtocolError("a malformed WINDOW_UPDATE")
        increment = _U32.unpack(payload)[0] & _MASK
        if not sid:
            if not increment:
                raise ProtocolError("a zero WINDOW_UPDATE for the connection")
            self._window += increment
            if self._window > _WINDOW_MAX:
                raise ProtocolError("the connection's send window over 2^31-1")
            return
        answer = self.streams.get(sid)
        if answer is not None:
            answer.window += increment  # a zero increment is the peer's stream error; harmless here

    def _on_goaway(self, sid: int, payload: bytes) -> None:
        if sid or len(payload) < 8:
            raise ProtocolError("a malformed GOAWAY")
        last, code = _U32.unpack_from(payload, 0)[0] & _MASK, _U32.unpack_from(payload, 4)[0]
        self.closing = True
        # Streams up to ``last`` may still be answered (a graceful shutdown); later ones never will.
        for stream, answer in self.streams.items():
            if stream > last and not answer.ended:
                answer.lost, answer.ended = f"GOAWAY from the collector ({error_name(code)})", True
