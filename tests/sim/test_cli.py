"""`python -m simulator`: options, the stdin console and bad input."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import websocket

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def start(*args, stdin=subprocess.PIPE):
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--port", "0", *args],
        cwd=ROOT, stdin=stdin, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    banner = proc.stdout.readline()
    if "simulator on ws://" not in banner:
        proc.kill()     # nothing outlives a failed start
        _, err = proc.communicate()
        raise AssertionError("simulator did not start: %s" % (err,))
    return proc, banner.split(" on ")[1].split()[0]


def command(proc, line):
    """Run one console command; its output up to the next prompt line."""
    proc.stdin.write(line + "\nhelp\n")
    proc.stdin.flush()
    out = []
    while (text := proc.stdout.readline()) != "commands:\n":
        assert text, "console ended"
        out.append(text)
    while proc.stdout.readline() != "  quit                          " \
            "stop the simulator\n":
        pass
    return "".join(out)


def finish(proc):
    proc.stdin.write("quit\n")
    proc.stdin.flush()
    proc.wait(5)
    return proc.returncode, proc.stderr.read()


@pytest.fixture
def running():
    procs = []

    def run(*args):
        proc, url = start(*args)
        procs.append(proc)
        return proc, url
    yield run
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()


@pytest.mark.parametrize("args, message", [
    (["--firmware", "9.9"], "unknown firmware"),
    (["--port", "70000"], "port must be"),
    (["--speed", "0"], "speed must be"),
    (["--speed", "fast"], "invalid float value"),
    (["--max-clients", "0"], "max_clients"),
    (["--fault", "gremlins"], "unknown fault"),
    (["--fault", "http_status=200"], "http_status"),
    (["--bogus"], "unrecognized arguments"),
    (["--chamber-file", "/nonexistent/dir/temp"], "no such directory"),
    (["--fault", "chamber_file=freeze"], "needs --chamber-file"),
])
def test_bad_options_give_one_line_and_nonzero_exit(args, message):
    result = subprocess.run(
        [sys.executable, "-m", "simulator", *args], cwd=ROOT,
        capture_output=True, text=True, timeout=20)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_bad_nvs_file_is_reported_without_traceback(tmp_path):
    nvs = tmp_path / "nvs.json"
    nvs.write_text("{broken")
    result = subprocess.run(
        [sys.executable, "-m", "simulator", "--nvs", str(nvs)], cwd=ROOT,
        capture_output=True, text=True, timeout=20)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"{nvs}: not an NVS JSON file" in result.stderr


def test_port_in_use_is_a_clear_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "simulator", "--port", str(port)],
            cwd=ROOT, capture_output=True, text=True, timeout=20)
    assert result.returncode == 1
    assert "cannot listen" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_the_options():
    result = subprocess.run(
        [sys.executable, "-m", "simulator", "--help"], cwd=ROOT,
        capture_output=True, text=True, timeout=20)
    assert result.returncode == 0
    for option in ("--firmware", "--port", "--speed", "--fault",
                   "--snapshot-with-handshake", "--nvs", "--chamber-file"):
        assert option in result.stdout


def test_cli_device_is_driven_like_protocol_md(running):
    proc, url = running("--firmware", "1.0.3")
    ws = websocket.create_connection(url, timeout=3)
    snapshot = json.loads(ws.recv())
    assert snapshot["settings"]["fw_version"] == "V1.0.3"
    ws.send(json.dumps({"settings": {"set_temp": 44, "work_on": False}}))
    deadline = time.monotonic() + 3
    while "set_temp: 44" not in command(proc, "state"):
        assert time.monotonic() < deadline, "write never applied"
    ws.close()
    code, log = finish(proc)
    assert code == 0
    assert "client 1 connected" in log and "client 1 disconnected" in log
    assert snapshot["wifi"]["password"] not in log


def test_console_press_pushes_settings(running):
    proc, url = running()
    ws = websocket.create_connection(url, timeout=3)
    ws.recv()
    command(proc, "press work_on=false set_temp=50")
    while "work_on" not in (text := ws.recv()):
        pass
    assert json.loads(text)["settings"]["work_on"] == 0
    ws.close()


def test_console_faults_switch_at_run_time(running):
    proc, url = running()
    assert "fault http_status: 404" in command(proc, "fault http_status 404")
    with pytest.raises(websocket.WebSocketBadStatusException):
        websocket.create_connection(url, timeout=3)
    command(proc, "fault http_status off")
    websocket.create_connection(url, timeout=3).close()
    ws = websocket.create_connection(url, timeout=3)
    command(proc, "reboot 0.2")
    with pytest.raises(websocket.WebSocketException):
        while True:
            ws.recv()
    assert "sent" in command(proc, "send malformed")
    assert "fault mute: on" in command(proc, "fault mute on")
    assert "'mute': True" in command(proc, "state")


def test_console_bad_commands_get_a_message_and_carry_on(running):
    proc, _ = running()
    for line, message in (("warp 9", "unknown command"),
                          ("fault half_open maybe", "expected on or off"),
                          ("fault mute maybe", "expected on or off"),
                          ("fault sensor melted", "sensor fault"),
                          ("fault http_status 499", "HTTP error status"),
                          ("fault slow_handshake -1", "seconds must be"),
                          ("press nothing", "KEY=VALUE"),
                          ("press warp=1", "no setting"),
                          ("reboot soon", "seconds must be"),
                          ("send confetti", "usage: send"),
                          ("ambient hot", "not a temperature")):
        assert message in command(proc, line)
    assert "online: True" in command(proc, "state")
    code, log = finish(proc)
    assert code == 0 and "Traceback" not in log


def test_console_and_exit_report_flash_writes(running):
    proc, _ = running()
    assert "flash writes: 0\n" in command(proc, "flash")
    command(proc, "press set_temp=50 work_on=false")
    line = "flash writes: 2 (set_temp 1, work_on 1)\n"
    assert line in command(proc, "flash")
    assert "flash_writes: 2\n" in command(proc, "state")
    code, _ = finish(proc)
    assert code == 0 and proc.stdout.read() == line


def test_chamber_file_option_and_console(running, tmp_path):
    path = tmp_path / "chamber_temp"
    proc, _ = running("--chamber-file", str(path), "--ambient", "21")
    assert path.read_text() == "  21000\n"
    command(proc, "chamber 40.5")
    assert path.read_text() == "  40500\n"
    state = command(proc, "state")
    assert "chamber_temp: 40.5\n" in state
    assert f"chamber_file: {path}\n" in state
    assert "fault chamber_file: garbage" in command(
        proc, "fault chamber_file garbage")
    assert path.read_text() == "garbage\n"
    assert "chamber_file_fault: garbage" in command(proc, "state")
    command(proc, "fault chamber_file off")
    assert float(path.read_text()) > 35000
    command(proc, "chamber_heat 50")
    assert "chamber_heat: 50.0\n" in command(proc, "state")
    for line, message in (("chamber hot", "not a number"),
                          ("chamber 500", "chamber temperature must be"),
                          ("chamber_heat", "usage: chamber_heat WATTS"),
                          ("fault chamber_file melt", "chamber_file fault")):
        assert message in command(proc, line)
    code, log = finish(proc)
    assert code == 0 and "Traceback" not in log
    assert f"chamber air in {path}" in log


def test_chamber_file_fault_flag_and_no_file(running, tmp_path):
    path = tmp_path / "chamber_temp"
    proc, _ = running("--chamber-file", str(path),
                      "--fault", "chamber_file=garbage")
    assert path.read_text() == "garbage\n"
    proc, _ = running()
    assert "no chamber file" in command(proc, "fault chamber_file freeze")


def test_fault_flags_apply_at_start(running):
    proc, url = running("--fault", "http_status=500", "--fault",
                        "sensor=open")
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(url, timeout=3)
    assert info.value.status_code == 500
    assert "warehouse_sensor_status: 2" in command(proc, "state")


def test_sigterm_stops_cleanly_without_console():
    proc, url = start("--no-console", stdin=subprocess.DEVNULL)
    websocket.create_connection(url, timeout=3).close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(5) == 0
    assert "Traceback" not in proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()


def test_end_of_stdin_keeps_the_device_running():
    proc, url = start(stdin=subprocess.DEVNULL)
    ws = websocket.create_connection(url, timeout=3)
    assert "settings" in json.loads(ws.recv())
    ws.close()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(5) == 0
    proc.stdout.close()
    proc.stderr.close()


def test_cli_options_reach_the_device(running, tmp_path):
    nvs = tmp_path / "nvs.json"
    proc, url = running("--firmware", "0.0.0", "--ambient", "18",
                        "--max-clients", "1", "--snapshot-with-handshake",
                        "--push-interval", "0.2", "--nvs", str(nvs))
    ws = websocket.create_connection(url, timeout=3)
    assert json.loads(ws.recv())["settings"]["fw_version"] == "V1.0.0"
    assert json.loads(ws.recv())["settings"]["warehouse_temper"] == 18
    with pytest.raises((OSError, websocket.WebSocketException)):
        websocket.create_connection(url, timeout=2).recv()
    ws.send(json.dumps({"settings": {"temp": 33}}))
    deadline = time.monotonic() + 3
    while not nvs.exists():
        assert time.monotonic() < deadline, "NVS file never written"
        time.sleep(0.02)
    assert json.loads(nvs.read_text())["set_temp"] == 33
    ws.close()
