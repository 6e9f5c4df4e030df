"""Connections, reboots and the link faults, seen from a real client."""

import socket
import time

import pytest
import websocket
from wire import closed, deliver, is_temperature


def refused(sim):
    with pytest.raises((ConnectionError, OSError,
                        websocket.WebSocketException)):
        websocket.create_connection(sim.url, timeout=1).recv()
    return True


def raw_upgrade(port, path="/ws"):
    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    return sock


def test_state_counts_connected_clients(sim, connect):
    a = connect(sim)
    connect(sim)
    assert sim.wait_for(lambda s: s["clients"] == 2)
    a.close()
    assert sim.wait_for(lambda s: s["clients"] == 1)


def test_connect_and_disconnect_are_logged(sim, connect, caplog):
    caplog.set_level("INFO", logger="simulator")
    connect(sim).close()
    sim.wait_for(lambda s: s["clients"] == 0)
    text = caplog.text
    assert "client 1 connected" in text and "client 1 disconnected" in text
    assert sim.state()["online"]


def test_snapshot_can_share_the_tcp_segment_with_the_101(make_sim):
    sim = make_sim(snapshot_with_handshake=True)
    sock = raw_upgrade(sim.port)
    data = sock.recv(65536)
    sock.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    assert rest[0] == 0x81  # a final text frame follows in the same read
    assert b'"wifi"' in rest and b'"settings"' in rest


def test_snapshot_with_handshake_reaches_websocket_client(make_sim,
                                                          connect):
    sim = make_sim(snapshot_with_handshake=True)
    client = connect(sim)
    assert "settings" in client.snapshot and "wifi" in client.snapshot
    assert is_temperature(client.recv(timeout=1))


def test_snapshot_normally_follows_the_101_separately(sim):
    sock = raw_upgrade(sim.port)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    sock.close()
    assert data.startswith(b"HTTP/1.1 101")


def test_status_page_on_root_and_404_elsewhere(sim):
    for path, status in (("/", b"200"), ("/nope", b"404")):
        sock = socket.create_connection(("127.0.0.1", sim.port), timeout=2)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = sock.recv(65536)
        sock.close()
        assert data.split(b" ")[1] == status
    assert b"V1.0.3" in _get(sim.port, "/")


def _get(port, path):
    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    return data


def test_socket_limit_refuses_the_extra_client(make_sim, connect):
    sim = make_sim(max_clients=2)
    connect(sim)
    connect(sim)
    assert refused(sim)
    assert sim.state()["clients"] == 2


def test_default_socket_limit_is_seven(sim, connect):
    for _ in range(7):
        connect(sim)
    assert refused(sim)


def test_freed_socket_can_be_reused(make_sim, connect):
    sim = make_sim(max_clients=1)
    connect(sim).close()
    sim.wait_for(lambda s: s["clients"] == 0)
    assert connect(sim).snapshot


def test_printer_type_write_responds_then_reboots(sim, connect):
    client = connect(sim)
    client.send({"settings": {"printer_type": 1}})  # unchanged: reboots too
    frame = client.recv_until(lambda f: "response" in f)
    assert frame == {"response": {"type": "printer_type", "ok": 1}}
    assert closed(client)
    assert not sim.state()["online"]
    sim.wait_for(lambda s: s["online"] and s["boot_count"] == 2)
    assert connect(sim).snapshot["settings"]["printer_type"] == 1


def test_printer_type_change_persists_across_the_reboot(sim, connect):
    client = connect(sim)
    client.send({"settings": {"printer_type": 2}})
    assert closed(client)
    sim.wait_for(lambda s: s["online"] and s["boot_count"] == 2)
    assert connect(sim).snapshot["settings"]["printer_type"] == 2


def test_reset_reboots_and_keeps_settings_but_not_drying(sim, connect):
    client = connect(sim)
    deliver(sim, client, {"settings": {"set_temp": 42, "work_mode": 3,
                                       "isrunning": 1}})
    assert sim.state()["isrunning"] == 1
    client.send({"settings": {"reset": 1}})
    assert closed(client)
    state = sim.wait_for(lambda s: s["online"] and s["boot_count"] == 2)
    assert state["set_temp"] == 42 and state["work_mode"] == 3
    assert state["isrunning"] == 0


def test_device_is_unreachable_while_rebooting(make_sim):
    sim = make_sim(reboot_delay=0.6)
    sim.reboot()
    assert not sim.state()["online"]
    assert refused(sim)
    sim.wait_for(lambda s: s["online"], timeout=3)
    websocket.create_connection(sim.url, timeout=2).close()


def test_reboot_delay_argument_overrides_default(make_sim, connect):
    sim = make_sim(reboot_delay=30)
    start = time.monotonic()
    sim.reboot(delay=0.1)
    sim.wait_for(lambda s: s["online"], timeout=3)
    assert time.monotonic() - start < 3
    assert connect(sim).snapshot


def test_factory_reset_restores_defaults_and_reboots(sim, connect):
    client = connect(sim)
    deliver(sim, client, {"settings": {
        "set_temp": 40, "work_on": False, "work_mode": 2, "filtertemp": 10,
        "hotbedtemp": 50, "filament_temp": 45, "filament_timer": 3,
        "language": "zh"}})
    client.send({"settings": {"factory_reset": 1}})
    frame = client.recv_until(lambda f: "response" in f)
    assert frame["response"] == {"type": "factory_reset", "ok": 1}
    assert closed(client)
    sim.wait_for(lambda s: s["online"] and s["boot_count"] == 2)
    s = connect(sim).snapshot["settings"]
    assert (s["work_on"], s["work_mode"], s["set_temp"]) == (1, 1, 60)
    assert (s["filtertemp"], s["hotbedtemp"]) == (30, 80)
    assert (s["custom_temp"], s["custom_timer"], s["language"]) == (
        60, 12, "en")
    assert s["printer_type"] == 1


def control_frames(client, seconds):
    """Opcodes of every frame (pongs included) seen during seconds."""
    opcodes = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        client.ws.settimeout(left)
        try:
            opcode, _ = client.ws.recv_data_frame(control_frame=True)
        except websocket.WebSocketTimeoutException:
            break
        opcodes.append(opcode)
    return opcodes


def test_half_open_stops_pushes_and_pongs_but_keeps_tcp(sim, connect):
    client = connect(sim)
    sim.set_fault("half_open", True)
    client.frames_for(0.15)  # a push already on the wire
    client.ws.ping("are you there")
    assert control_frames(client, 0.3) == []
    assert client.ws.connected
    sim.set_fault("half_open", False)
    seen = control_frames(client, 0.3)
    assert websocket.ABNF.OPCODE_PONG in seen  # the late pong
    assert websocket.ABNF.OPCODE_TEXT in seen  # pushes again


def test_half_open_device_does_not_read_writes(sim, connect):
    client = connect(sim)
    sim.set_fault("half_open", True)
    client.send({"settings": {"set_temp": 33}})
    time.sleep(0.3)
    assert sim.state()["set_temp"] == 60 and sim.frames == []
    sim.set_fault("half_open", False)
    sim.wait_for(lambda s: s["set_temp"] == 33)


def test_mute_stops_pushes_but_pings_are_still_answered(sim, connect):
    client = connect(sim)
    sim.set_fault("mute", True)
    client.frames_for(0.15)  # a push already on the wire
    client.ws.ping("are you there")
    seen = control_frames(client, 0.5)
    assert websocket.ABNF.OPCODE_PONG in seen
    assert websocket.ABNF.OPCODE_TEXT not in seen
    sim.set_fault("mute", False)
    assert websocket.ABNF.OPCODE_TEXT in control_frames(client, 0.3)


def test_mute_device_still_applies_writes(sim, connect):
    client = connect(sim)
    sim.set_fault("mute", True)
    client.send({"settings": {"set_temp": 33}})
    sim.wait_for(lambda s: s["set_temp"] == 33)


def test_mute_device_upgrades_new_connections_but_sends_no_snapshot(
        sim, connect):
    sim.set_fault("mute", True)
    ws = websocket.create_connection(sim.url, timeout=0.5)
    with pytest.raises(websocket.WebSocketTimeoutException):
        ws.recv()
    ws.close(timeout=0.5)
    sim.set_fault("mute", False)
    assert "settings" in connect(sim).snapshot


def test_pong_answers_a_ping_normally(sim, connect):
    client = connect(sim)
    client.ws.ping("hi")
    client.ws.settimeout(2)
    while True:
        opcode, frame = client.ws.recv_data_frame(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_PONG:
            assert frame.data == b"hi"
            break


def test_drop_all_ends_every_connection(sim, connect):
    clients = [connect(sim), connect(sim)]
    sim.drop_all()
    assert all(closed(c) for c in clients)
    assert sim.state()["online"]
    assert connect(sim).snapshot


def test_refuse_rejects_new_connections_keeps_old(sim, connect):
    old = connect(sim)
    sim.set_fault("refuse", True)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", sim.port), timeout=1)
    assert is_temperature(old.recv(timeout=1))
    sim.set_fault("refuse", False)
    assert connect(sim).snapshot


def test_no_upgrade_accepts_tcp_but_never_answers(sim):
    sim.set_fault("no_upgrade", True)
    sock = raw_upgrade(sim.port)
    sock.settimeout(0.5)
    with pytest.raises(socket.timeout):
        sock.recv(100)
    sock.close()


@pytest.mark.parametrize("status", [404, 500])
def test_http_status_fault_answers_the_upgrade(sim, status):
    sim.set_fault("http_status", status)
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(sim.url, timeout=2)
    assert info.value.status_code == status
    sim.set_fault("http_status", None)
    websocket.create_connection(sim.url, timeout=2).close()


def test_slow_handshake_delays_the_101(sim, connect):
    sim.set_fault("slow_handshake", 0.4)
    start = time.monotonic()
    connect(sim)
    assert time.monotonic() - start >= 0.4
    sim.set_fault("slow_handshake", 0)
    start = time.monotonic()
    connect(sim)
    assert time.monotonic() - start < 0.4


def test_unknown_fault_name_is_an_error(sim):
    with pytest.raises(ValueError):
        sim.set_fault("gremlins", True)


def test_half_open_device_sends_no_settings_push_either(sim, connect):
    client = connect(sim)
    sim.set_fault("half_open", True)
    client.frames_for(0.15)
    sim.press(set_temp=50)
    assert control_frames(client, 0.3) == []
    assert sim.state()["set_temp"] == 50
    sim.set_fault("half_open", False)


def test_http_status_fault_needs_an_error_status(sim):
    for bad in (200, 499, "x"):
        with pytest.raises(ValueError, match="http_status"):
            sim.set_fault("http_status", bad)
