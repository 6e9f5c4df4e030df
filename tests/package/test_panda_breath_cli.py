"""The panda-breath command against the device simulator, over loopback."""
import http.server
import importlib.machinery
import importlib.util
import socket
import threading

import pytest
from pkgtools import CLI, run_cli
from realklipper import trees
from realklipper.printer import Printer, tracebacks
from websockets.sync.server import serve

from simulator import Simulator


@pytest.fixture(scope="module")
def sim():
    with Simulator(push_interval=0.1) as device:
        yield device


@pytest.fixture
def config_dir(tmp_path):
    folder = tmp_path / "config"
    folder.mkdir()
    return folder


def run(*args, timeout=30):
    return run_cli(*args, timeout=timeout)


def setup(port, config_dir, *extra, host="127.0.0.1"):
    return run("setup", "--host", host, "--port", port, "--config-dir",
               config_dir, "--timeout", 2, *NO_PRINTER, *extra)


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Neither Moonraker nor Klipper runs: restarting is safe.  Named so that
# no Moonraker another test runs on this machine is asked.
NO_PRINTER = ("--moonraker", f"http://127.0.0.1:{closed_port()}",
              "--klipper-socket", "/nonexistent/klippy.sock")


free_port = closed_port


def error_line(result):
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("panda-breath: ")
    return lines[0]


# setup

def test_setup_checks_device_writes_config_and_restarts(sim, config_dir,
                                                        tmp_path):
    marker = tmp_path / "restarted"
    result = setup(sim.port, config_dir, "--restart-cmd", f"touch {marker}")
    assert result.returncode == 0, result.stderr
    assert "firmware V1.0.3" in result.stdout
    cfg = (config_dir / "panda_breath.cfg").read_text()
    assert "host: 127.0.0.1\n" in cfg
    assert f"port: {sim.port}\n" in cfg
    assert "[heater_generic chamber]" in cfg
    assert marker.exists()


def test_setup_never_writes_a_setting_to_the_device(sim, config_dir):
    sim.clear_frames()
    assert setup(sim.port, config_dir, "--no-restart").returncode == 0
    assert sim.settings_writes() == []
    assert [f for f in sim.frames if f.data is not None] == []


def test_written_config_is_the_template_with_the_address_filled_in(
        config_dir):
    with Simulator(port=0) as device:
        result = setup(device.port, config_dir, "--no-restart")
    assert result.returncode == 0
    template = (CLI.parents[2] / "klipper/config/panda_breath.cfg")
    written = (config_dir / "panda_breath.cfg").read_text()
    expected = template.read_text().replace(
        "host: 192.168.1.50\n", "host: 127.0.0.1\n").replace(
        "#port: 80\n", f"port: {device.port}\n")
    assert written == expected


def test_setup_without_host_reuses_the_set_aside_config(sim, config_dir):
    (config_dir / "panda_breath.cfg.removed").write_text(
        f"[panda_breath]\nhost: 127.0.0.1\nport: {sim.port}\n")
    result = run("setup", "--config-dir", config_dir, "--no-restart")
    assert result.returncode == 0, result.stderr
    assert f"port: {sim.port}\n" in (config_dir / "panda_breath.cfg"
                                     ).read_text()


def test_setup_without_any_known_host_asks_for_one(config_dir):
    result = run("setup", "--config-dir", config_dir, "--no-restart")
    assert result.returncode == 1
    assert "pass --host" in error_line(result)


def test_failed_restart_is_an_error(sim, config_dir):
    result = setup(sim.port, config_dir, "--restart-cmd", "exit 3")
    assert result.returncode == 1
    assert "exited 3" in error_line(result)


def test_missing_config_dir_is_an_error(sim, tmp_path):
    result = setup(sim.port, tmp_path / "nowhere", "--no-restart")
    assert result.returncode == 1
    assert "does not exist" in error_line(result)


# errors about the device

def assert_nothing_written(config_dir):
    assert list(config_dir.iterdir()) == []


def test_refused_port_is_a_clear_error(config_dir):
    result = setup(free_port(), config_dir, "--no-restart")
    assert result.returncode == 1
    assert "refused the connection" in error_line(result)
    assert_nothing_written(config_dir)


class NotFound(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_error(404)

    def log_message(self, *args):
        pass


def test_http_server_without_websocket_is_not_a_panda_breath(config_dir):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = setup(server.server_address[1], config_dir, "--no-restart")
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1
    assert "answered HTTP 404" in error_line(result)
    assert "not a Panda Breath" in result.stderr
    assert_nothing_written(config_dir)


def setup_against(handler, config_dir):
    """panda-breath setup against a WebSocket server running handler."""
    with serve(handler, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.socket.getsockname()[1]
        result = setup(port, config_dir, "--no-restart", "--timeout", 0.5)
        server.shutdown()
    return result


def test_websocket_that_sends_no_snapshot_is_not_a_panda_breath(config_dir):
    def silent(connection):
        for _ in connection:
            pass

    result = setup_against(silent, config_dir)
    assert result.returncode == 1
    assert "sent no Panda Breath settings" in error_line(result)
    assert_nothing_written(config_dir)


def test_websocket_sending_other_json_is_not_a_panda_breath(config_dir):
    def chatty(connection):
        connection.send('{"settings": {"work_on": 1}}')
        connection.send("not json")
        for _ in connection:
            pass

    result = setup_against(chatty, config_dir)
    assert result.returncode == 1
    assert "sent no Panda Breath settings" in error_line(result)


def test_device_that_never_answers_the_handshake(sim, config_dir):
    sim.set_fault("no_upgrade", True)
    try:
        result = setup(sim.port, config_dir, "--no-restart", "--timeout",
                       0.5)
    finally:
        sim.set_fault("no_upgrade", False)
    assert result.returncode == 1
    assert "did not answer the WebSocket handshake" in error_line(result)
    assert_nothing_written(config_dir)


def test_device_answering_http_500_at_ws(sim, config_dir):
    sim.set_fault("http_status", 500)
    try:
        result = setup(sim.port, config_dir, "--no-restart")
    finally:
        sim.set_fault("http_status", None)
    assert result.returncode == 1
    assert "answered HTTP 500" in error_line(result)


# arguments

@pytest.mark.parametrize("args,word", [
    (["setup", "--host", "http://192.168.1.50"], "not an address"),
    (["setup", "--host", "a b"], "not an IP address or host name"),
    (["setup", "--host", "1.2.3.4", "--port", "99999"], "port number"),
    (["setup", "--host", "1.2.3.4", "--timeout", "-1"], "timeout"),
    (["status", "--timeout", "0"], "not a timeout in seconds (more than 0"),
    (["status", "--timeout", "nan"], "at most 60"),
    (["setup", "--no-restart", "--restart-cmd", "x"], "not allowed"),
    (["frobnicate"], "invalid choice"),
    ([], "required"),
])
def test_bad_arguments_are_refused_with_usage(args, word):
    result = run(*args)
    assert result.returncode == 2
    assert word in result.stderr
    assert result.stderr.startswith("usage: panda-breath")


# status and disable

def test_status_reports_device_state_and_reading(sim, config_dir):
    setup(sim.port, config_dir, "--no-restart")
    sim.press(work_on=True, work_mode=2, set_temp=45)
    result = run("status", "--config-dir", config_dir)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"host 127.0.0.1, port {sim.port}" in out
    assert "firmware V1.0.3" in out
    assert "heater:      on, mode always-on, target 45 °C" in out
    assert "temperature: 25 °C" in out


def test_status_without_config_or_host(config_dir):
    result = run("status", "--config-dir", config_dir)
    assert result.returncode == 0
    assert "not installed" in result.stdout
    assert "pass --host" in result.stdout


def test_status_with_device_down_says_unreachable(config_dir):
    result = run("status", "--config-dir", config_dir, "--host",
                 "127.0.0.1", "--port", free_port())
    assert result.returncode == 1
    assert "device:      unreachable" in result.stdout


def test_disable_removes_config_and_is_idempotent(sim, config_dir,
                                                  tmp_path):
    setup(sim.port, config_dir, "--no-restart")
    marker = tmp_path / "restarted"
    result = run("disable", "--config-dir", config_dir, "--restart-cmd",
                 f"touch {marker}", *NO_PRINTER)
    assert result.returncode == 0
    assert not (config_dir / "panda_breath.cfg").exists()
    assert marker.exists()
    marker.unlink()
    again = run("disable", "--config-dir", config_dir, "--restart-cmd",
                f"touch {marker}", *NO_PRINTER)
    assert again.returncode == 0 and "already disabled" in again.stdout
    assert not marker.exists()


def load_cli():
    loader = importlib.machinery.SourceFileLoader("panda_breath_cli",
                                                  str(CLI))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_default_port_keeps_the_template_port_line_commented():
    cli = load_cli()
    template = "[panda_breath]\nhost: x\n#port: 80\n\n[other]\nhost: y\n"
    assert cli.render_config(template, "10.0.0.2", 80) == (
        "[panda_breath]\nhost: 10.0.0.2\n#port: 80\n\n[other]\nhost: y\n")
    assert cli.render_config("[panda_breath]\nhost: x\n", "h", 8080) == (
        "[panda_breath]\nhost: h\nport: 8080\n")


def test_template_without_host_line_is_an_error():
    cli = load_cli()
    with pytest.raises(cli.CliError, match="no 'host:' line"):
        cli.render_config("[panda_breath]\n#host: x\n", "h", 80)


def test_written_config_loads_in_klipper_and_heats(sim, config_dir,
                                                   tmp_path):
    tree = trees.need("klipper", "upstream")
    assert setup(sim.port, config_dir, "--no-restart").returncode == 0
    text = (config_dir / "panda_breath.cfg").read_text()
    assert "[gcode_macro M141]" in text and "[gcode_macro M191]" in text
    p = Printer(tree, "upstream", text, tmp_path / "klipper")
    try:
        p.start()
        p.wait_for(lambda: p.status("panda_breath")["connected"])
        p.gcode("M141 S40")
        sim.wait_for(lambda s: s["set_temp"] == 40 and s["work_on"])
        p.gcode("M141 S0")
        sim.wait_for(lambda s: not s["work_on"])
    finally:
        p.stop()
    assert not tracebacks(p.log()), tracebacks(p.log())


@pytest.mark.parametrize("oem,debug,baked,warned", [
    (False, False, False, False),   # not a U1
    (True, False, False, True),     # runtime install, rootfs resets
    (True, True, False, False),     # /oem/.debug keeps it
    (True, False, True, False),     # built into the firmware
])
def test_setup_warns_when_the_install_is_lost_at_reboot(
        tmp_path, monkeypatch, capsys, oem, debug, baked, warned):
    cli = load_cli()
    monkeypatch.setattr(cli, "U1_OEM", str(tmp_path / "oem"))
    monkeypatch.setattr(cli, "FIRMWARE_RECORD", str(tmp_path / "record"))
    if oem:
        (tmp_path / "oem").mkdir()
    if debug:
        (tmp_path / "oem" / ".debug").touch()
    if baked:
        (tmp_path / "record").touch()
    cli.warn_if_lost_at_reboot("/x/panda_breath.cfg")
    assert ("WARNING" in capsys.readouterr().out) == warned
