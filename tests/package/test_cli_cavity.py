"""The printer's [temperature_sensor cavity] (a Snapmaker U1's) as the
chamber sensor and its guard: `panda-breath setup` and `panda-breath
cavity` add them where the printer's config has the sensor, never where
Klipper would refuse them, and real Klipper starts with what they
write."""
import importlib.machinery
import importlib.util

import pytest
from pkgtools import CLI, ROOT, run_cli
from realklipper import trees
from realklipper.printer import Printer, tracebacks

from simulator import Simulator

TEMPLATE = (ROOT / "klipper" / "config" / "panda_breath.cfg").read_text()
NO_KLIPPER = ("--klipper-socket", "/nonexistent/klippy.sock")
CAVITY = """\
[temperature_sensor cavity]
sensor_type: temperature_host
sensor_path: {path}
min_temp: -40
max_temp: 150
"""
ADDED = ("# The printer's cavity sensor: the chamber heater regulates by "
         "it, and\n# the device stays off while the cavity is over 70C.\n"
         "chamber_sensor: temperature_sensor cavity\n"
         "guard:\n  temperature_sensor cavity, 70\n")


def load_cli():
    loader = importlib.machinery.SourceFileLoader("panda_breath_cli",
                                                  str(CLI))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cli():
    return load_cli()


@pytest.fixture(scope="module")
def sim():
    with Simulator(push_interval=0.1) as device:
        yield device


def options(cli, text):
    """[panda_breath] of text as Klipper reads it."""
    return cli.Config(text, "test").breath


# Where the two options go, and where not

def test_they_close_the_first_block_of_panda_breath(cli):
    text = "[panda_breath]\nhost: h\n#port: 80\n\n[heater_generic c]\n"
    new, changes = cli.cavity_options(text, {"host": "h"}, True, True)
    assert new == ("[panda_breath]\nhost: h\n#port: 80\n" + ADDED
                   + "\n[heater_generic c]\n")
    assert len(changes) == 2
    again, changes = cli.cavity_options(new, options(cli, new), True, True)
    assert (again, changes) == (new, [])


@pytest.mark.parametrize("owner, added", [
    ("chamber_sensor: temperature_sensor air\n", ["guard"]),
    ("guard: temperature_sensor soc, 80\n", ["chamber_sensor"]),
    ("temperature_offset: -6\n", ["guard"]),
    ("chamber_sensor: temperature_sensor air\nguard:\n  x, 80\n", []),
])
def test_an_owners_choice_is_kept(cli, owner, added):
    text = "[panda_breath]\nhost: h\n" + owner
    new, _ = cli.cavity_options(text, options(cli, text), True, True)
    assert new.startswith(text)
    assert [w for w in ("chamber_sensor:", "guard:")
            if w in new[len(text):]] == [w + ":" for w in added]


def test_nothing_without_the_cavity_or_without_panda_breath(cli):
    text = "[panda_breath]\nhost: h\n"
    assert cli.cavity_options(text, {}, False, True) == (text, [])
    assert cli.cavity_options("[printer]\n", {}, True, True) == (
        "[printer]\n", [])


def test_without_a_heater_the_sensor_waits_for_one(cli):
    """Klipper refuses chamber_sensor when no heater uses the device:
    it is set aside, and put back with the heater."""
    text = "[panda_breath]\nhost: h\n"
    guarded, _ = cli.cavity_options(text, {}, True, False)
    assert "chamber_sensor" not in guarded and "guard:" in guarded
    full, _ = cli.cavity_options(text, {}, True, True)
    aside, changes = cli.cavity_options(full, options(cli, full), True,
                                        False)
    assert "\n# needs the heater: chamber_sensor: temperature_sensor " \
        "cavity\n" in aside
    assert changes == ["set chamber_sensor aside: no heater uses the "
                       "device, and Klipper refuses it without one"]
    assert cli.Config(aside, "test").chamber_sensor is None
    back, _ = cli.cavity_options(aside, options(cli, aside), True, True)
    assert back == full


def test_a_set_aside_sensor_stays_aside_beside_an_offset(cli):
    """The owner set temperature_offset meanwhile: chamber_sensor beside
    it stops Klipper, so it is not put back."""
    text = ("[panda_breath]\nhost: h\n# needs the heater: chamber_sensor: "
            "temperature_sensor cavity\ntemperature_offset: -6\n")
    new, _ = cli.cavity_options(text, options(cli, text), True, True)
    assert "# needs the heater: chamber_sensor:" in new
    assert cli.Config(new, "test").chamber_sensor is None


def test_only_a_guard_says_only_that(cli):
    text = "[panda_breath]\nhost: h\n"
    new, _ = cli.cavity_options(text, {}, True, False)
    assert new == text + ("# The device stays off while the printer's "
                          "cavity is over 70C.\nguard:\n"
                          "  temperature_sensor cavity, 70\n")


def test_only_panda_breaths_chamber_sensor_is_set_aside(cli):
    text = ("[panda_breath]\nhost: h\nchamber_sensor: temperature_sensor a"
            "\n\n[other]\nchamber_sensor: x\n")
    new, _ = cli.cavity_options(text, options(cli, text), False, False)
    assert new == text.replace("h\nchamber", "h\n# needs the heater: "
                               "chamber")


# setup and cavity on a printer's config folder

@pytest.fixture
def printer_data(tmp_path):
    config = tmp_path / "printer_data" / "config"
    config.mkdir(parents=True)
    return config


def setup(sim, folder, *extra):
    return run_cli("setup", "--host", "127.0.0.1", "--port", sim.port,
                   "--config-dir", folder, "--timeout", 2, "--no-restart",
                   *NO_KLIPPER, *extra)


def rendered(port):
    return TEMPLATE.replace("host: 192.168.1.50\n", "host: 127.0.0.1\n") \
        .replace("#port: 80\n", f"port: {port}\n")


def test_setup_adds_them_when_printer_cfg_has_the_cavity(sim, printer_data):
    (printer_data / "printer.cfg").write_text(
        CAVITY.format(path="/x") + "\n[printer]\nkinematics: none\n")
    result = setup(sim, printer_data)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the printer has [temperature_sensor cavity]" in result.stdout
    assert (printer_data / "panda_breath.cfg").read_text() == \
        rendered(sim.port).replace(f"port: {sim.port}\n",
                                   f"port: {sim.port}\n" + ADDED)


def test_setup_finds_it_in_an_include_on_a_u1(sim, printer_data):
    """A U1's printer.cfg and what it includes; the config goes to
    extended/klipper/, two levels below."""
    extended = printer_data / "extended" / "klipper"
    extended.mkdir(parents=True)
    (printer_data / "hardware.cfg").write_text(CAVITY.format(path="/x"))
    (printer_data / "printer.cfg").write_text(
        "[include hardware.cfg]\n[include extended/klipper/*.cfg]\n")
    assert setup(sim, extended).returncode == 0
    assert ADDED in (extended / "panda_breath.cfg").read_text()


def test_setup_adds_nothing_without_the_cavity(sim, printer_data):
    (printer_data / "printer.cfg").write_text(
        "[printer]\nkinematics: none\n# [temperature_sensor cavity]\n")
    result = setup(sim, printer_data)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (printer_data / "panda_breath.cfg").read_text() == \
        rendered(sim.port)


def test_setup_that_cannot_tell_adds_nothing_and_says_why(sim, tmp_path):
    folder = tmp_path / "config"
    folder.mkdir()
    result = setup(sim, folder)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "chamber sensor: cannot tell whether the printer has " \
        "[temperature_sensor cavity]" in result.stdout
    assert (folder / "panda_breath.cfg").read_text() == rendered(sim.port)


def test_cavity_needs_an_installed_config(printer_data):
    result = run_cli("cavity", "--config-dir", printer_data, *NO_KLIPPER)
    assert result.returncode == 1
    assert result.stderr.strip().endswith(
        "panda_breath.cfg does not exist: run 'panda-breath setup' first")


def test_cavity_adds_them_to_an_installed_config_once(printer_data):
    (printer_data / "printer.cfg").write_text(
        CAVITY.format(path="/x") + "[include panda_breath.cfg]\n")
    installed = "[panda_breath]\nhost: 10.0.0.2\n\n" \
        "[heater_generic chamber]\nsensor_type: panda_breath\n"
    (printer_data / "panda_breath.cfg").write_text(installed)
    (printer_data / "panda_breath.cfg").chmod(0o600)
    result = run_cli("cavity", "--config-dir", printer_data, *NO_KLIPPER)
    assert result.returncode == 0, result.stderr
    text = (printer_data / "panda_breath.cfg").read_text()
    assert text == installed.replace("10.0.0.2\n", "10.0.0.2\n" + ADDED)
    assert (printer_data / "panda_breath.cfg").stat().st_mode & 0o777 == \
        0o600
    again = run_cli("cavity", "--config-dir", printer_data, *NO_KLIPPER)
    assert again.returncode == 0 and "left as it is" in again.stdout
    assert (printer_data / "panda_breath.cfg").read_text() == text


# In real Klipper

def thermistor(tmp_path, celsius=30):
    path = tmp_path / "cavity_temp"
    path.write_text("%d\n" % (celsius * 1000,))
    return path


@pytest.mark.parametrize("tree", ["upstream", "u1"])
@pytest.mark.parametrize("cavity", [True, False])
def test_setup_asks_klipper_and_what_it_writes_starts_klipper(
        sim, tmp_path, tree, cavity):
    """Klipper runs with or without [temperature_sensor cavity]; setup
    asks it and reads its printer.cfg, writes the config and its
    include, and Klipper restarts ready with the cavity as its chamber
    sensor and guard, or without either."""
    built = trees.need("klipper", tree)
    config = CAVITY.format(path=thermistor(tmp_path)) if cavity else ""
    p = Printer(built, tree, config, tmp_path / "run")
    try:
        p.start()
        result = run_cli("setup", "--host", "127.0.0.1", "--port", sim.port,
                         "--config-dir", p.run, "--timeout", 2,
                         "--no-restart", "--klipper-socket", p.sock)
        assert result.returncode == 0, result.stdout + result.stderr
        assert ("the printer has [temperature_sensor cavity]"
                in result.stdout) == cavity
        p.restart()
        p.wait_for(lambda: p.status("panda_breath")["connected"])
        status = p.status("panda_breath")
    finally:
        p.stop()
    assert not tracebacks(p.log()), tracebacks(p.log())
    sensor = "temperature_sensor cavity"
    assert status["chamber_sensor"] == (sensor if cavity else None)
    assert list(status["guards"]) == ([sensor] if cavity else [])


def test_a_klipper_that_disagrees_with_its_files_gets_nothing(sim,
                                                              tmp_path):
    """Klipper runs with the cavity, but printer.cfg no longer has it:
    Klipper would refuse the sensor at its next start, so none is
    added."""
    built = trees.need("klipper", "upstream")
    p = Printer(built, "upstream", CAVITY.format(path=thermistor(tmp_path)),
                tmp_path / "run")
    try:
        p.start()
        p.cfg.write_text(p.cfg.read_text().replace(
            "[temperature_sensor cavity]", "[temperature_sensor other]"))
        result = run_cli("setup", "--host", "127.0.0.1", "--port", sim.port,
                         "--config-dir", p.run, "--timeout", 2,
                         "--no-restart", "--klipper-socket", p.sock)
    finally:
        p.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("chamber sensor: Klipper has [temperature_sensor cavity] but "
            f"{p.cfg} does not define it: restart Klipper, then try again;"
            " none added") in result.stdout
    assert "chamber_sensor" not in (p.run / "panda_breath.cfg").read_text()

