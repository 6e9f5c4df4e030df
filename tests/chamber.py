"""A Klipper printer with a Panda Breath chamber heater, for tests.

Shared by the real-Klipper tests, the safety state machine, the benchmarks
and the QEMU guest scenario, so it uses the standard library only."""

CHAMBER = """\
[panda_breath]
host: {host}
port: {port}
{options}
[heater_generic chamber]
sensor_type: panda_breath
heater_pin: panda_breath:pwm
control: watermark
min_temp: {min_temp}
max_temp: {max_temp}

[verify_heater chamber]
check_gain_time: {check_gain_time}
heating_gain: 1
"""

# Quick to notice faults, so tests do not wait on production defaults.
FAST = {"reconnect_delay": 0.1, "reconnect_max_delay": 1.0,
        "link_timeout": 2.0, "keepalive_interval": 0.5,
        "connect_timeout": 1.0}


def chamber_config(port, host="127.0.0.1", options=None, extra="",
                   min_temp=0, max_temp=70, check_gain_time=360):
    lines = "".join("%s: %s\n" % kv for kv in (options or {}).items())
    return CHAMBER.format(host=host, port=port, options=lines,
                          min_temp=min_temp, max_temp=max_temp,
                          check_gain_time=check_gain_time) + extra
