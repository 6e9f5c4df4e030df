"""printer.cfg mistakes in real Klipper: each stops Klipper at start-up
with a message naming the option, and that message reaches `info`."""
import pytest
from chamber import chamber_config

from realklipper.printer import StartupError


def startup_error(printer, config):
    """Klipper's message for a config that must not start."""
    with pytest.raises(StartupError) as error:
        printer(config=config, check=False)
    return str(error.value)


@pytest.mark.parametrize("options,word", [
    ({"port": 0}, "port"),
    ({"port": 70000}, "port"),
    ({"connect_timeout": -1}, "connect_timeout"),
    ({"reconnect_delay": 0}, "reconnect_delay"),
    ({"reconnect_delay": 5, "reconnect_max_delay": 1},
     "reconnect_max_delay"),
    ({"link_timeout": 30}, "link_timeout"),
    ({"keepalive_interval": 5, "link_timeout": 4}, "keepalive_interval"),
    ({"stale_grace": -1}, "stale_grace"),
    ({"frobnicate": 1}, "frobnicate"),
])
def test_bad_option_is_a_config_error_naming_it(printer, options, word):
    message = startup_error(printer, chamber_config(8080, options=options))
    assert "'%s'" % (word,) in message
    assert "panda_breath" in message


@pytest.mark.parametrize("host", ["ws://192.168.1.50", "192.168.1.50:80",
                                  "a b", "host/ws", ""])
def test_host_with_scheme_port_or_path_is_refused(printer, host):
    text = chamber_config(8080).replace("host: 127.0.0.1\n",
                                        "host: %s\n" % (host,))
    assert "'host'" in startup_error(printer, text)


def test_missing_host_is_a_config_error(printer):
    text = chamber_config(8080).replace("host: 127.0.0.1\n", "")
    assert "'host'" in startup_error(printer, text)


def test_heater_section_before_panda_breath_is_refused(printer):
    head, tail = chamber_config(8080).split("[heater_generic chamber]")
    message = startup_error(printer, "[heater_generic chamber]" + tail + head)
    assert "Unknown temperature sensor 'panda_breath'" in message


def test_panda_breath_without_a_heater_loads(printer, sim):
    # as the community module did: owners' manual-mode configs rely on it
    p = printer(config="[panda_breath]\nhost: 127.0.0.1\nport: %d\n"
                % (sim.port,))
    assert p.status("heaters")["available_heaters"] == []


def test_second_heater_on_the_same_device_is_refused(printer):
    extra = ("\n[heater_generic second]\nsensor_type: panda_breath\n"
             "heater_pin: panda_breath:pwm\ncontrol: watermark\n"
             "min_temp: 0\nmax_temp: 70\n")
    message = startup_error(printer, chamber_config(8080, extra=extra))
    assert "Only one heater" in message


def test_short_link_timeout_alone_starts(printer, sim):
    # keepalive_interval's default stays under any link_timeout allowed
    p = printer(config=chamber_config(sim.port, options={"link_timeout": 2}))
    assert p.status("webhooks")["state"] == "ready"
