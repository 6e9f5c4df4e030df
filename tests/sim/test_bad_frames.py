"""Frames a misbehaving device sends, as a client receives them."""

import json

import websocket


def next_data(client, opcodes=(websocket.ABNF.OPCODE_TEXT,
                               websocket.ABNF.OPCODE_BINARY)):
    """(opcode, payload) of the next frame that is not a temperature."""
    client.ws.settimeout(3)
    while True:
        opcode, data = client.ws.recv_data()
        if opcode in opcodes and b"warehouse_temper\":\t" not in data:
            return opcode, data


def test_send_malformed_reaches_every_client_as_broken_json(sim, connect):
    clients = [connect(sim), connect(sim)]
    sim.send_malformed()
    for client in clients:
        opcode, data = next_data(client)
        assert opcode == websocket.ABNF.OPCODE_TEXT
        try:
            json.loads(data)
        except ValueError:
            pass
        else:
            raise AssertionError("frame parsed as JSON")


def test_send_binary_sends_a_binary_frame(sim, connect):
    client = connect(sim)
    sim.send_binary()
    client.ws.settimeout(3)
    while True:
        opcode, data = client.ws.recv_data()
        if opcode == websocket.ABNF.OPCODE_BINARY:
            break
    assert json.loads(data)["settings"]["warehouse_temper"] == 25


def test_send_oversized_sends_one_mebibyte_text(sim, connect):
    client = connect(sim)
    sim.send_oversized()
    while True:
        opcode, data = client.ws.recv_data()
        if len(data) > 1000:
            break
    assert opcode == websocket.ABNF.OPCODE_TEXT and len(data) == 1 << 20
    assert json.loads(data)["settings"]["warehouse_temper"] == 25


def test_send_oversized_takes_a_size(sim, connect):
    client = connect(sim)
    sim.send_oversized(size=5000)
    while len(data := client.ws.recv_data()[1]) < 1000:
        pass
    assert len(data) == 5000


def test_send_fragmented_splits_one_message_in_frames(sim, connect):
    client = connect(sim)
    sim.send_fragmented()
    client.ws.settimeout(3)
    fragments = []
    while True:
        frame = client.ws.recv_frame()
        if frame.opcode == websocket.ABNF.OPCODE_TEXT and frame.fin:
            continue  # a whole temperature push
        fragments.append(frame)
        if frame.fin:
            break
    assert len(fragments) >= 3  # websockets may end with an empty one
    assert fragments[0].opcode == websocket.ABNF.OPCODE_TEXT
    assert all(f.opcode == websocket.ABNF.OPCODE_CONT for f in fragments[1:])
    text = b"".join(f.data for f in fragments)
    assert json.loads(text) == {"settings": {"warehouse_temper": 25}}


def test_send_wrong_types_sends_strings_and_nan(sim, connect):
    client = connect(sim)
    sim.send_wrong_types()
    texts = []
    while len(texts) < 10:
        text = client.ws.recv()
        if '"warehouse_temper":\t' not in text:
            texts.append(text)
    assert '{"settings":{"warehouse_temper":"45"}}' in texts
    assert any("NaN" in t for t in texts)
    assert any("Infinity" in t for t in texts)
    assert client.ws.connected


def test_connection_survives_the_bad_frames(sim, connect):
    client = connect(sim)
    sim.send_malformed()
    sim.send_binary()
    sim.send_wrong_types()
    client.ws.settimeout(3)
    while True:
        opcode, data = client.ws.recv_data()
        if opcode == websocket.ABNF.OPCODE_TEXT and data == (
                b'{\n\t"settings":\t{\n\t\t"warehouse_temper":\t25\n\t}\n}'):
            break
    assert client.ws.connected
