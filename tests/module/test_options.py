"""printer.cfg validation: every bad option is a config error naming it."""
import pytest
from chamber import chamber_config
from harness import ConfigError, Klippy


def load(text):
    k = Klippy(text)
    try:
        k.start()
    finally:
        k.stop()


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
def test_bad_option_is_a_config_error_naming_it(options, word):
    with pytest.raises(ConfigError, match=word):
        load(chamber_config(8080, options=options))


@pytest.mark.parametrize("host", ["ws://192.168.1.50", "192.168.1.50:80",
                                  "a b", "host/ws"])
def test_host_with_scheme_port_or_path_is_refused(host):
    with pytest.raises(ConfigError, match="host"):
        load(chamber_config(8080, host=host))


def test_missing_host_is_a_config_error():
    text = chamber_config(8080).replace("host: 127.0.0.1\n", "")
    with pytest.raises(ConfigError, match="host"):
        load(text)


def test_heater_section_before_panda_breath_is_refused():
    text = chamber_config(8080)
    head, tail = text.split("[heater_generic chamber]")
    with pytest.raises(ConfigError, match="Unknown temperature sensor"):
        load("[heater_generic chamber]" + tail + head)


def test_panda_breath_without_a_heater_loads():
    # as the community module did: owners' manual-mode configs rely on it
    load("[panda_breath]\nhost: 127.0.0.1\n")


def test_second_heater_on_the_same_device_is_refused():
    extra = ("\n[heater_generic second]\nsensor_type: panda_breath\n"
             "heater_pin: panda_breath:pwm\ncontrol: watermark\n"
             "min_temp: 0\nmax_temp: 70\n")
    with pytest.raises(ConfigError, match="Only one heater"):
        load(chamber_config(8080, extra=extra))
