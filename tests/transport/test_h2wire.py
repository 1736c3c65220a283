"""The built-in client's HTTP/2 framing, checked frame by frame against an independent, strict
implementation: the ``h2`` library as the server side, in memory (no sockets, no threads)."""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest

from highlight_logging import _h2wire
from highlight_logging._h2wire import Connection, ProtocolError, header_block

REQUEST = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", "/opentelemetry.proto.collector.logs.v1.LogsService/Export"),
    (":authority", "collector:4317"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
    ("x-long", "v" * 300),  # a length over HPACK's 7-bit prefix
]


def _server(settings: dict[int, int] | None = None) -> h2.connection.H2Connection:
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    server.initiate_connection()
    if settings:
        server.update_settings(settings)
    return server


def _pump(client: Connection, server: h2.connection.H2Connection) -> list[Any]:
    """Exchange bytes both ways until neither side has anything to say; the server's events."""
    events: list[Any] = []
    while True:
        out = client.data_to_send()
        if out:
            events += server.receive_data(out)
        back = server.data_to_send()
        if back:
            client.receive(back)
        if not out and not back:
            return events


def _connected(settings: dict[int, int] | None = None) -> tuple[Connection, h2.connection.H2Connection]:
    client, server = Connection(), _server(settings)
    _pump(client, server)
    return client, server


def _requested(client: Connection, server: h2.connection.H2Connection) -> tuple[int, _h2wire.Answer]:
    """A request with an empty body, sent and read by the server."""
    sid, answer = client.send_headers(header_block(REQUEST))
    client.send_data(sid, b"", end_stream=True)
    _pump(client, server)
    return sid, answer


def _answer(server: h2.connection.H2Connection, sid: int, body: bytes = b"\0\0\0\0\0") -> None:
    server.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
    server.send_data(sid, body)
    server.send_headers(sid, [("grpc-status", "0"), ("grpc-message", "")], end_stream=True)


def test_a_request_and_its_answer() -> None:
    """The server reads our headers and body exactly; our Answer gets its headers, body and trailers."""
    client, server = _connected()
    sid, answer = client.send_headers(header_block(REQUEST))
    client.send_data(sid, b"hello", end_stream=True)
    events = _pump(client, server)
    received = next(e for e in events if isinstance(e, h2.events.RequestReceived))
    assert [(k.decode(), v.decode()) for k, v in received.headers] == REQUEST
    assert b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived)) == b"hello"
    assert any(isinstance(e, h2.events.StreamEnded) for e in events)
    _answer(server, sid, b"\0\0\0\0\x02ok")
    _pump(client, server)
    assert answer.ended and answer.data == b"\0\0\0\0\x02ok"
    assert answer.fields == {
        ":status": "200",
        "content-type": "application/grpc",
        "grpc-status": "0",
        "grpc-message": "",
    }


def test_answers_stay_readable_as_the_servers_header_table_fills() -> None:
    """Later answers use the server's HPACK dynamic table (indexed fields): decoded in step."""
    client, server = _connected()
    for i in range(20):
        sid, answer = client.send_headers(header_block(REQUEST))
        client.send_data(sid, b"x", end_stream=True)
        _pump(client, server)
        server.send_headers(
            sid, [(":status", "200"), ("grpc-status", str(i % 3)), ("grpc-message", f"m{i}")], end_stream=True
        )
        _pump(client, server)
        assert answer.fields == {":status": "200", "grpc-status": str(i % 3), "grpc-message": f"m{i}"}
    assert sid == 39  # odd ids, in order


def test_sending_keeps_within_the_servers_windows() -> None:
    """A small SETTINGS_INITIAL_WINDOW_SIZE: we send no more than the window, and go on when it is
    replenished (h2 fails the connection on any overrun); a later change moves open windows by the delta."""
    client, server = _connected({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 10})
    sid, _ = client.send_headers(header_block(REQUEST))
    assert client.window(sid) == 10
    client.send_data(sid, b"0123456789", end_stream=False)
    assert client.window(sid) == 0
    _pump(client, server)
    server.increment_flow_control_window(5, stream_id=sid)
    server.increment_flow_control_window(5)
    _pump(client, server)
    assert client.window(sid) == 5
    server.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 30})
    _pump(client, server)
    assert client.window(sid) == 25  # + (30 - 10); the connection window is not touched by SETTINGS
    client.send_data(sid, b"abcde", end_stream=True)
    events = _pump(client, server)
    assert b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived)) == b"abcde"
    assert client.window(sid) == 20


def test_the_connection_window_is_shared_by_streams() -> None:
    """The connection-level window (65,535 at first) limits all streams together."""
    client, server = _connected()
    one, _ = client.send_headers(header_block(REQUEST))
    two, _ = client.send_headers(header_block(REQUEST))
    client.send_data(one, b"x" * 16384, end_stream=False)
    client.send_data(one, b"x" * 16384, end_stream=False)
    client.send_data(one, b"x" * 16384, end_stream=False)
    assert client.window(two) == 65_535 - 3 * 16384
    _pump(client, server)  # h2 would fail on an overrun


def test_large_header_blocks_use_continuation_both_ways() -> None:
    """Blocks over the frame size go as HEADERS + CONTINUATION, and are read back the same way."""
    client, server = _connected()
    big = [*REQUEST, ("x-big", "b" * 40_000)]
    sid, answer = client.send_headers(header_block(big))
    client.send_data(sid, b"", end_stream=True)
    events = _pump(client, server)
    received = next(e for e in events if isinstance(e, h2.events.RequestReceived))
    assert dict(received.headers)[b"x-big"] == b"b" * 40_000
    server.send_headers(sid, [(":status", "200")])
    server.send_headers(sid, [("grpc-status", "13"), ("grpc-message", "m" * 40_000)], end_stream=True)
    _pump(client, server)
    assert answer.ended and answer.fields["grpc-message"] == "m" * 40_000


def test_padded_frames_and_priority_fields_are_stripped() -> None:
    """DATA with padding, HEADERS with padding and a priority field: only the content is kept."""
    client, server = _connected()
    sid, answer = _requested(client, server)
    server.send_headers(sid, [(":status", "200")])
    server.send_data(sid, b"abc", pad_length=7)
    _pump(client, server)
    block = server.encoder.encode([("grpc-status", "0")])
    payload = bytes([4]) + b"\x80\x00\x00\x00\x10" + block + b"\0" * 4  # pad length, priority, block, padding
    frame = _h2wire._frame(1, 0x1 | 0x4 | 0x8 | 0x20, sid, payload)
    client.receive(frame[:5])  # and split anywhere: a frame waits for its rest
    client.receive(frame[5:])
    assert answer.data == b"abc" and answer.fields["grpc-status"] == "0" and answer.ended


def test_ping_is_answered_and_settings_acknowledged() -> None:
    """A PING gets its ACK with the same payload; the server's SETTINGS get an ACK."""
    client, server = Connection(), _server()
    events = _pump(client, server)
    assert any(isinstance(e, h2.events.SettingsAcknowledged) for e in events)
    server.ping(b"12345678")
    events = _pump(client, server)
    assert [e.ping_data for e in events if isinstance(e, h2.events.PingAckReceived)] == [b"12345678"]


def test_goaway_loses_only_the_streams_after_its_last_id() -> None:
    """GOAWAY(last=1): stream 1 may still be answered, stream 3 never will; no new streams after it."""
    client, server = _connected()
    one, first = client.send_headers(header_block(REQUEST))
    three, second = client.send_headers(header_block(REQUEST))
    client.send_data(one, b"", end_stream=True)
    client.send_data(three, b"", end_stream=True)
    _pump(client, server)
    server.close_connection(last_stream_id=one)
    _pump(client, server)
    assert client.closing
    assert second.ended and second.lost == "GOAWAY from the collector (NO_ERROR)"
    assert first.lost is None and not first.ended
    with pytest.raises(ProtocolError):
        client.send_headers(header_block(REQUEST))


def test_our_data_window_is_replenished() -> None:
    """Answers beyond half our 16 MiB windows get WINDOW_UPDATEs: the server never stalls; what
    an answer's body holds is bounded."""
    client, server = _connected()
    sid, answer = _requested(client, server)
    server.send_headers(sid, [(":status", "200")])
    chunk, sent, total = b"z" * 16384, 0, 20 * 1024 * 1024
    while sent < total:
        assert server.local_flow_control_window(sid) >= len(chunk), "stalled: no WINDOW_UPDATE came"
        server.send_data(sid, chunk)
        sent += len(chunk)
        _pump(client, server)
    # Read whole for flow control, but held only up to gRPC's largest message (4 MiB).
    assert _h2wire._MAX_ANSWER <= len(answer.data) < _h2wire._MAX_ANSWER + len(chunk)


def test_a_shrunk_header_table_is_acknowledged_in_the_next_block() -> None:
    """SETTINGS_HEADER_TABLE_SIZE below 4 KiB: our next block starts with a table size update to 0."""
    client, server = _connected({h2.settings.SettingCodes.HEADER_TABLE_SIZE: 0})
    sid, _ = client.send_headers(header_block(REQUEST))
    client.send_data(sid, b"", end_stream=True)
    out = client.data_to_send()
    assert out[9] == 0x20  # first byte of the block
    events = server.receive_data(out)
    assert any(isinstance(e, h2.events.RequestReceived) for e in events)


def test_concurrency_limit_and_open_streams() -> None:
    """The server's SETTINGS_MAX_CONCURRENT_STREAMS is known; streams it has closed no longer count."""
    client, server = _connected({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1})
    assert client.max_streams == 1
    sid, _ = client.send_headers(header_block(REQUEST))
    client.send_data(sid, b"", end_stream=True)
    _pump(client, server)
    assert client.open_streams() == 1
    _answer(server, sid)
    _pump(client, server)
    assert client.open_streams() == 0


def test_reset_streams() -> None:
    """Their RST_STREAM ends the stream with its code; ours reaches the server."""
    client, server = _connected()
    sid, answer = client.send_headers(header_block(REQUEST))
    _pump(client, server)
    server.reset_stream(sid, 11)
    _pump(client, server)
    assert answer.ended and answer.reset == 11
    sid, answer = client.send_headers(header_block(REQUEST))
    client.reset_stream(sid, 8)
    events = _pump(client, server)
    assert [e.error_code for e in events if isinstance(e, h2.events.StreamReset)] == [8]
    assert answer.ended


@pytest.mark.parametrize(
    "frame",
    [
        _h2wire._frame(5, 0x4, 1, b"\0\0\0\x02"),  # PUSH_PROMISE
        _h2wire._frame(0, 0, 1, b"x" * 16385),  # over the frame size we accept
        _h2wire._frame(6, 0, 0, b"1234"),  # a short PING
        _h2wire._frame(9, 0x4, 1, b""),  # CONTINUATION out of the blue
        _h2wire._frame(1, 0x4, 1, b"\xff\xff\xff\xff"),  # an unreadable header block
        _h2wire._frame(8, 0, 0, b"\0\0\0\0"),  # a zero WINDOW_UPDATE for the connection
        _h2wire._frame(4, 0, 0, b"\0\x05\0\0\0\x01"),  # SETTINGS_MAX_FRAME_SIZE too small
        _h2wire._frame(0, 0x8, 1, b"\x05abc"),  # padding longer than the frame
    ],
    ids=[
        "push",
        "too-large",
        "short-ping",
        "stray-continuation",
        "bad-hpack",
        "zero-window",
        "bad-setting",
        "bad-padding",
    ],
)
def test_protocol_errors_raise(frame: bytes) -> None:
    """A broken rule raises ProtocolError (a ConnectionError: the transport drops the connection)."""
    client, _ = _connected()
    client.send_headers(header_block(REQUEST))
    with pytest.raises(ProtocolError):
        client.receive(frame)


def test_interrupted_header_block_is_an_error() -> None:
    """HEADERS without END_HEADERS must be followed by its CONTINUATION, nothing else."""
    client, _ = _connected()
    client.send_headers(header_block(REQUEST))
    with pytest.raises(ProtocolError):
        client.receive(_h2wire._frame(1, 0, 1, b"\x88") + _h2wire._frame(6, 0, 0, b"12345678"))


def test_unknown_frames_and_streams_are_ignored() -> None:
    """Unknown frame types, PRIORITY, and frames for streams nobody waits on pass harmlessly."""
    client, server = _connected()
    client.receive(_h2wire._frame(0xEE, 0, 0, b"whatever") + _h2wire._frame(2, 0, 7, b"\0\0\0\0\x10"))
    client.receive(_h2wire._frame(0, 0x1, 99, b"late") + _h2wire._frame(3, 0, 99, b"\0\0\0\x08"))
    sid, answer = _requested(client, server)
    _answer(server, sid)
    _pump(client, server)
    assert answer.fields["grpc-status"] == "0"


def test_a_continuation_flood_is_cut_off() -> None:
    """A header block that never ends (CONTINUATION after CONTINUATION) is refused past 128 KiB,
    instead of being buffered for as long as the collector sends."""
    client, _ = _connected()
    sid, _ = client.send_headers(header_block(REQUEST))
    client.receive(_h2wire._frame(1, 0, sid, b"\x88"))  # HEADERS without END_HEADERS
    with pytest.raises(ProtocolError, match="CONTINUATION flood"):
        for _ in range(100):
            client.receive(_h2wire._frame(9, 0, sid, b"\0" * 16384))


def test_owed_acknowledgements_are_bounded() -> None:
    """PINGs read and never written back (the caller does not get to flush) stop at 1 MiB owed."""
    client, _ = _connected()
    with pytest.raises(ProtocolError, match="floods us"):
        for _ in range(1000):
            client.receive(_h2wire._frame(6, 0, 0, b"12345678") * 100)


def test_header_values_are_sent_as_utf8() -> None:
    """A value outside latin-1 is sent as UTF-8 (as h2 did), not refused."""
    client, server = _connected()
    sid, _ = client.send_headers(header_block([*REQUEST, ("x-name", "café ✓")]))
    client.send_data(sid, b"", end_stream=True)
    events = _pump(client, server)
    received = next(e for e in events if isinstance(e, h2.events.RequestReceived))
    assert dict(received.headers)[b"x-name"] == "café ✓".encode()
