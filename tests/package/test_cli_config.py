"""The panda-breath command's config handling on any Klipper host: where
the config goes, the include in printer.cfg, files Klipper would refuse,
and the protocol it shares with the Klipper module."""
import os
import shutil
import subprocess
import sys

import pytest
from pkgtools import CLI, ROOT, run_cli
from realklipper import trees
from realklipper.printer import Printer, StartupError

from simulator import Simulator

MODULE = ROOT / "klipper" / "extras" / "panda_breath.py"
NO_PRINTER = ("--moonraker", "http://127.0.0.1:9",
              "--klipper-socket", "/nonexistent/klippy.sock")
SAVE_CONFIG = ("#*# <---------------------- SAVE_CONFIG "
               "---------------------->\n#*# DO NOT EDIT THIS BLOCK OR BELOW."
               " The contents are auto-generated.\n#*#\n")


@pytest.fixture(scope="module")
def sim():
    with Simulator(push_interval=0.1) as device:
        yield device


@pytest.fixture
def config_dir(tmp_path):
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "printer.cfg").write_text(
        "[printer]\nkinematics: none\n\n" + SAVE_CONFIG)
    return folder


def one_error(result):
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("panda-breath: "), \
        result.stderr
    assert "unexpected" not in lines[0]
    return lines[0]


def setup(sim, config_dir, *extra):
    return run_cli("setup", "--host", "127.0.0.1", "--port", sim.port,
                   "--config-dir", config_dir, "--timeout", 2, *extra)


# the include

def test_setup_adds_the_include_above_save_config_once(sim, config_dir):
    assert setup(sim, config_dir, "--no-restart").returncode == 0
    text = (config_dir / "printer.cfg").read_text()
    assert text == ("[printer]\nkinematics: none\n\n"
                    "[include panda_breath.cfg]\n" + SAVE_CONFIG)
    again = setup(sim, config_dir, "--no-restart")
    assert again.returncode == 0 and "added" not in again.stdout
    assert (config_dir / "printer.cfg").read_text() == text


def test_setup_keeps_an_include_the_user_wrote(sim, config_dir):
    cfg = config_dir / "printer.cfg"
    cfg.write_text("[include  panda_breath.cfg ]  # chamber\n[printer]\n")
    assert setup(sim, config_dir, "--no-restart").returncode == 0
    assert cfg.read_text() == \
        "[include  panda_breath.cfg ]  # chamber\n[printer]\n"


def test_disable_removes_the_include_and_the_config(sim, config_dir):
    before = (config_dir / "printer.cfg").read_bytes()
    (config_dir / "printer.cfg").chmod(0o600)
    assert setup(sim, config_dir, "--no-restart").returncode == 0
    result = run_cli("disable", "--config-dir", config_dir, "--no-restart")
    assert result.returncode == 0, result.stderr
    assert "removed [include panda_breath.cfg]" in result.stdout
    assert (config_dir / "printer.cfg").read_bytes() == before
    assert (config_dir / "printer.cfg").stat().st_mode & 0o777 == 0o600
    assert sorted(os.listdir(config_dir)) == ["printer.cfg"]


def test_disable_removes_a_left_over_include_alone(config_dir):
    cfg = config_dir / "printer.cfg"
    cfg.write_bytes(b"[printer]\n# caf\xe9\n[include panda_breath.cfg]\n")
    result = run_cli("disable", "--config-dir", config_dir, "--no-restart")
    assert result.returncode == 0, result.stderr
    assert cfg.read_bytes() == b"[printer]\n# caf\xe9\n"


def test_u1_extended_folder_gets_no_include(sim, tmp_path):
    folder = tmp_path / "config" / "extended" / "klipper"
    folder.mkdir(parents=True)
    (folder / "printer.cfg").write_text("[printer]\n")
    assert setup(sim, folder, "--no-restart").returncode == 0
    assert (folder / "printer.cfg").read_text() == "[printer]\n"


# where the config is

def test_config_dir_that_is_a_file_is_named_as_such(sim, config_dir):
    error = one_error(setup(sim, config_dir / "printer.cfg", "--no-restart"))
    assert "is not a folder" in error


def test_template_that_is_a_folder_is_named_as_such(sim, config_dir,
                                                    tmp_path):
    error = one_error(setup(sim, config_dir, "--no-restart", "--template",
                            tmp_path))
    assert "is a folder, not a file" in error
    assert not (config_dir / "panda_breath.cfg").exists()


def test_config_dir_where_nothing_can_be_written(sim):
    error = one_error(setup(sim, "/proc", "--no-restart"))
    assert error.startswith("panda-breath: cannot write /proc/")


def test_status_of_proc_says_not_installed():
    result = run_cli("status", "--config-dir", "/proc")
    assert "not installed" in result.stdout


def home_env(home):
    return dict(os.environ, HOME=str(home),
                PANDA_BREATH_CONFIG_DIR="")


@pytest.mark.skipif(os.path.isdir("/home/lava/printer_data/config/extended"),
                    reason="this machine is laid out like a Snapmaker U1")
def test_generic_host_without_config_dir_uses_printer_data(tmp_path):
    home = tmp_path / "home"
    result = subprocess.run([sys.executable, str(CLI), "status"],
                            env=home_env(home), capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 1
    assert "no Klipper config folder found" in result.stderr
    assert "pass --config-dir" in result.stderr
    config = home / "printer_data" / "config"
    config.mkdir(parents=True)
    (config / "printer.cfg").write_text("[printer]\n")
    result = subprocess.run([sys.executable, str(CLI), "status"],
                            env=home_env(home), capture_output=True,
                            text=True, timeout=30)
    assert f"not installed ({config}/panda_breath.cfg" in result.stdout


def test_config_dir_from_the_environment(config_dir):
    result = subprocess.run(
        [sys.executable, str(CLI), "status"], capture_output=True, text=True,
        env=dict(os.environ, PANDA_BREATH_CONFIG_DIR=str(config_dir)))
    assert f"{config_dir}/panda_breath.cfg does not exist" in result.stdout


# configs Klipper would refuse

def test_status_of_a_config_that_is_not_utf8(config_dir):
    (config_dir / "panda_breath.cfg").write_bytes(
        b"[panda_breath]\nhost: 10.0.0.2\n# \xff\n")
    result = run_cli("status", "--config-dir", config_dir)
    assert result.returncode == 1
    assert "is not UTF-8 text" in result.stdout
    assert "unexpected" not in result.stderr


def test_status_of_a_config_that_is_a_folder(config_dir):
    (config_dir / "panda_breath.cfg").mkdir()
    result = run_cli("status", "--config-dir", config_dir)
    assert result.returncode == 1
    assert "is a folder, not a file" in result.stdout
    assert "port None" not in result.stdout
    error = one_error(run_cli("disable", "--config-dir", config_dir,
                              "--no-restart"))
    assert "is a folder" in error


def test_a_port_klipper_refuses_is_not_taken_for_80(config_dir):
    (config_dir / "panda_breath.cfg").write_text(
        "[panda_breath]\nhost: 127.0.0.1\nport: notaport\n")
    result = run_cli("status", "--config-dir", config_dir)
    assert result.returncode == 1
    assert "'notaport' is not a port number" in result.stdout
    assert "port 80" not in result.stdout
    error = one_error(run_cli("setup", "--config-dir", config_dir,
                              "--no-restart"))
    assert "'notaport' is not a port number" in error


def test_an_ipv6_host_is_refused_as_the_module_refuses_it():
    result = run_cli("setup", "--host", "::1", "--no-restart")
    assert result.returncode == 2
    assert "IPv6" in result.stderr


def test_status_into_a_closed_pipe_stops_quietly(config_dir):
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run(
            [sys.executable, str(CLI), "status", "--config-dir",
             str(config_dir)], stdout=write, stderr=subprocess.PIPE,
            text=True, timeout=30)
    finally:
        os.close(write)
    assert result.returncode == 1
    assert result.stderr == ""


# one protocol, the module's

def test_the_command_reads_the_device_with_the_modules_functions():
    cli = load_cli()
    proto = cli.protocol()
    assert os.path.samefile(proto.__file__, MODULE)
    for name in ("WORK_MODES", "BINDING_STATES", "_settings_of", "_number",
                 "KLIPPER_PRINTER"):
        assert not hasattr(cli, name), name


def test_the_command_builds_no_frame_and_decides_nothing_itself():
    """Frames come from the module's protocol functions, and what the
    device is told on disable and unbind from its decide()."""
    source = CLI.read_text()
    for word in ('{"settings"', '{"printer"', '"disconnect"',
                 "MODE_ALWAYS_ON", "off_frames", "HOSTNAME"):
        assert word not in source, word
    # one JSON it writes itself: its request on Klipper's API socket
    assert source.count("json.dumps(") == 1
    cli = load_cli()
    assert not hasattr(cli, "sections")
    decision = cli.decide({"fw_version": "V1.0.3", "work_on": True,
                           "work_mode": 2, "set_temp": 45}, {}, "release")
    assert decision.rule == "release"
    assert decision.frames == cli.protocol().off_frames()


def test_v100_modes_are_named_the_modules_way():
    cli = load_cli()
    snapshot = cli.Snapshot({"fw_version": "V1.0.0", "work_on": True,
                             "work_mode": 3, "temp": 50})
    lines, _ = snapshot.describe((0, 70))
    assert lines[0] == "heater:      on, mode auto, target 50 °C"


def test_status_of_a_v100_device_names_its_mode(config_dir):
    with Simulator(firmware="0.0.0", push_interval=0.1) as old:
        old.press(work_on=True, work_mode=1, temp=45)
        result = run_cli("status", "--config-dir", config_dir, "--host",
                         "127.0.0.1", "--port", old.port, "--timeout", 2)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "heater:      on, mode drying, target 45 °C" in result.stdout


def test_status_warns_about_an_open_chamber_sensor(config_dir):
    with Simulator(push_interval=0.1) as device:
        device.sensor_fault("open")
        result = run_cli("status", "--config-dir", config_dir, "--host",
                         "127.0.0.1", "--port", device.port, "--timeout", 2)
    assert result.returncode == 1
    assert "temperature: -40 °C" in result.stdout
    assert "WARNING:     the reading -40 °C is outside the heater's range " \
        "0 to 70 °C" in result.stdout


def test_a_pushed_sensor_fault_is_named():
    cli = load_cli()
    snapshot = cli.Snapshot({"fw_version": "V1.0.3"})
    snapshot.faults = [("chamber", "short")]
    snapshot.reading = 25
    _, warnings = snapshot.describe((0, 70))
    assert warnings == ["the device reports its chamber sensor short"]


def test_a_command_on_a_klipper_host_uses_the_installed_module(sim,
                                                                tmp_path):
    """Outside a checkout (a pip or hand install), the module Klipper
    loads is the one the command reads the device with."""
    home = tmp_path / "home"
    extras = home / "klipper" / "klippy" / "extras"
    extras.mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy(CLI, bin_dir / "panda-breath")
    command = [sys.executable, str(bin_dir / "panda-breath"), "status",
               "--config-dir", str(tmp_path), "--host", "127.0.0.1",
               "--port", str(sim.port), "--timeout", "2"]
    env = dict(os.environ, HOME=str(home))
    missing = subprocess.run(command, env=env, capture_output=True,
                             text=True, timeout=30)
    assert missing.returncode == 1
    assert "the Klipper module panda_breath.py is missing" in missing.stderr
    shutil.copy(MODULE, extras / "panda_breath.py")
    found = subprocess.run(command, env=env, capture_output=True, text=True,
                           timeout=30)
    assert found.returncode == 0, found.stdout + found.stderr
    assert "firmware V1.0.3" in found.stdout


def load_cli():
    import importlib.machinery
    import importlib.util
    loader = importlib.machinery.SourceFileLoader("panda_breath_cli",
                                                  str(CLI))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_config_is_read_with_klippers_rules():
    cli = load_cli()
    config = cli.Config(
        "[panda_breath]\nhost = 10.0.0.2  ; the device\nport=8080\n"
        "[gcode_macro X]\ngcode:\n  port: 1\n"
        "[heater_generic chamber]\nsensor_type: panda_breath\n"
        "min_temp: 5\nmax_temp: 55\n", "test")
    assert (config.host, config.port, config.limits) == (
        "10.0.0.2", 8080, (5.0, 55.0))


# disable after Klipper is gone

def disable_with_restart(config_dir, tmp_path, *extra):
    return run_cli("disable", "--config-dir", config_dir, "--restart-cmd",
                   f"touch {tmp_path / 'restarted'}", *NO_PRINTER, *extra)


def test_disable_switches_off_a_device_left_heating_for_klipper(
        config_dir, tmp_path):
    with Simulator(push_interval=0.1) as device:
        assert setup(device, config_dir, "--no-restart").returncode == 0
        device.press(work_on=True, work_mode=2, set_temp=45)
        result = disable_with_restart(config_dir, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "switched the Panda Breath at 127.0.0.1" in result.stdout
        device.wait_for(lambda s: not s["work_on"])
        assert [(k, v) for _, k, v in device.settings_writes()] == [
            ("work_on", False)]


def test_disable_leaves_a_session_started_on_the_device(config_dir,
                                                        tmp_path):
    with Simulator(push_interval=0.1) as device:
        assert setup(device, config_dir, "--no-restart").returncode == 0
        device.press(work_on=True, work_mode=1)      # auto mode
        result = disable_with_restart(config_dir, tmp_path)
        assert result.returncode == 0, result.stderr
        assert device.settings_writes() == []
        assert device.state()["work_on"]


def test_disable_without_a_restart_leaves_the_device_to_klipper(
        config_dir, tmp_path):
    with Simulator(push_interval=0.1) as device:
        assert setup(device, config_dir, "--no-restart").returncode == 0
        device.press(work_on=True, work_mode=2, set_temp=45)
        result = run_cli("disable", "--config-dir", config_dir,
                         "--no-restart")
        assert result.returncode == 0
        assert device.settings_writes() == [] and device.state()["work_on"]


def test_disable_with_the_device_gone_warns(config_dir, tmp_path):
    (config_dir / "panda_breath.cfg").write_text(
        "[panda_breath]\nhost: 127.0.0.1\nport: 9\n")
    result = disable_with_restart(config_dir, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "WARNING: could not check that the Panda Breath is off" \
        in result.stdout
    assert not (config_dir / "panda_breath.cfg").exists()


# Klipper's reading of a config, and the module's rules

def test_a_hash_ends_a_line_anywhere_a_semicolon_only_after_a_space():
    cli = load_cli()
    config = cli.Config("[panda_breath]\nhost: 10.0.0.2#no space needed\n"
                        "port: 8080 ; a space before it\n", "test")
    assert (config.host, config.port) == ("10.0.0.2", 8080)
    with pytest.raises(cli.CliError) as error:
        cli.Config("[panda_breath]\nhost: 10.0.0.2;x\n", "test")
    assert str(error.value) == (
        "test: Option 'host' in section 'panda_breath': '10.0.0.2;x' is "
        "not an IP address or host name")


def test_sections_and_includes_are_merged_as_klipper_merges_them(tmp_path):
    cli = load_cli()
    (tmp_path / "heaters").mkdir()
    (tmp_path / "heaters" / "chamber.cfg").write_text(
        "[heater_generic chamber]\nsensor_type: panda_breath\n"
        "min_temp: 5\nmax_temp: 65\n")
    (tmp_path / "port.cfg").write_text("[panda_breath]\nport: 8081\n")
    path = tmp_path / "panda_breath.cfg"
    path.write_text("[panda_breath]\nhost: 10.0.0.2\n[include port.cfg]\n"
                    "[include heaters/*.cfg]\n[include none/*.cfg]\n")
    config = cli.read_config(str(path))
    assert (config.host, config.port, config.limits) == (
        "10.0.0.2", 8081, (5.0, 65.0))
    assert config.heater == "heater_generic chamber"
    path.write_text("[panda_breath]\nhost: 10.0.0.2\n[include gone.cfg]\n")
    with pytest.raises(cli.CliError, match="gone.cfg does not exist"):
        cli.read_config(str(path))
    path.write_text("[panda_breath]\nhost: 10.0.0.2\n"
                    "[include panda_breath.cfg]\n")
    with pytest.raises(cli.CliError, match="includes itself"):
        cli.read_config(str(path))


def test_a_config_klipper_cannot_parse_is_one_line(config_dir):
    (config_dir / "panda_breath.cfg").write_text("host: 10.0.0.2\n")
    result = run_cli("status", "--config-dir", config_dir)
    assert result.returncode == 1
    assert "config:      broken (" in result.stdout
    assert "no section headers" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_guards_are_read_by_the_modules_rule():
    cli = load_cli()
    config = cli.Config(
        "[panda_breath]\nhost: 10.0.0.2\nchamber_sensor: temperature_sensor"
        " cavity\nguard:\n  temperature_sensor cavity, 70\n"
        "  temperature_sensor soc, 80\n", "test")
    assert config.chamber_sensor == "temperature_sensor cavity"
    assert config.guards == [("temperature_sensor cavity", 70.0),
                             ("temperature_sensor soc", 80.0)]
    with pytest.raises(cli.CliError, match="<Klipper object>, <max C>"):
        cli.Config("[panda_breath]\nhost: x\nguard: cavity\n", "test")


def test_the_heaters_range_comes_from_the_installed_config(config_dir):
    (config_dir / "panda_breath.cfg").write_text(
        "[panda_breath]\nhost: 127.0.0.1\n\n[heater_generic chamber]\n"
        "sensor_type: panda_breath\nmin_temp: 10  # a warm room\n"
        "max_temp: 50\n")
    with Simulator(push_interval=0.1) as device:
        device.sensor_fault("open")
        result = run_cli("status", "--config-dir", config_dir, "--port",
                         device.port, "--timeout", 2)
    assert result.returncode == 1
    assert "outside the heater's range 10 to 50 °C" in result.stdout


def test_without_a_heater_anywhere_the_range_is_said_to_be_unknown(
        tmp_path):
    """A copied command with no template beside it, and a config without
    a heater (the community module's manual mode): no range is guessed."""
    home = tmp_path / "home"
    extras = home / "klipper" / "klippy" / "extras"
    extras.mkdir(parents=True)
    shutil.copy(MODULE, extras / "panda_breath.py")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy(CLI, bin_dir / "panda-breath")
    config = tmp_path / "config"
    config.mkdir()
    (config / "panda_breath.cfg").write_text(
        "[panda_breath]\nhost: 127.0.0.1\n")
    with Simulator(push_interval=0.1) as device:
        device.sensor_fault("open")
        result = subprocess.run(
            [sys.executable, str(bin_dir / "panda-breath"), "status",
             "--config-dir", str(config), "--port", str(device.port),
             "--timeout", "2"], env=dict(os.environ, HOME=str(home)),
            capture_output=True, text=True, timeout=30)
    assert "temperature: -40 °C" in result.stdout, result.stdout
    assert (f"range:       unknown (no [heater_generic] with sensor_type: "
            f"panda_breath and its min_temp and max_temp in "
            f"{config}/panda_breath.cfg)") in result.stdout
    assert "outside the heater's range" not in result.stdout


@pytest.mark.parametrize("tree", ["upstream", "u1"])
def test_the_command_reads_a_config_as_real_klipper_does(sim, tmp_path,
                                                         tree):
    """The same files, read by real Klipper and by the command: the same
    address, port and heater range, and the same refusal."""
    built = trees.need("klipper", tree)
    run = tmp_path / "run"
    run.mkdir()
    (run / "parts").mkdir()
    (run / "parts" / "port.cfg").write_text(
        f"[panda_breath]\nport = {sim.port} ; the simulator\n")
    (run / "parts" / "heater.cfg").write_text(
        "[heater_generic chamber]\nsensor_type: panda_breath\n"
        "heater_pin: panda_breath:pwm\ncontrol: watermark\n"
        "min_temp: 5#cold\nmax_temp: 65\n")
    (run / "panda_breath.cfg").write_text(
        "[panda_breath]\nhost: 127.0.0.1#the simulator\n"
        "[include parts/*.cfg]\n")
    p = Printer(built, tree, "[include panda_breath.cfg]\n", run)
    try:
        p.start()
        p.wait_for(lambda: p.status("panda_breath")["connected"])
        settings = p.status("configfile", ["settings"])["settings"]
    finally:
        p.stop()
    config = load_cli().read_config(str(run / "panda_breath.cfg"))
    assert (config.host, config.port) == (
        settings["panda_breath"]["host"], settings["panda_breath"]["port"])
    heater = settings["heater_generic chamber"]
    assert config.limits == (heater["min_temp"], heater["max_temp"])
    # ';' without a space before it is part of the value, for both
    (run / "panda_breath.cfg").write_text(
        "[panda_breath]\nhost: 127.0.0.1;x\n[include parts/*.cfg]\n")
    with pytest.raises(StartupError) as error:
        p.start()
    p.stop()
    refusal = ("Option 'host' in section 'panda_breath': '127.0.0.1;x' is "
               "not an IP address or host name")
    assert refusal in str(error.value)
    result = run_cli("status", "--config-dir", run)
    assert f"config:      broken ({run}/panda_breath.cfg: {refusal})" \
        in result.stdout
