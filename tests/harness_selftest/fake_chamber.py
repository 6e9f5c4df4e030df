"""The fake chamber heater config the self-tests load."""

CHAMBER = """
[fake_chamber]
temperature: 20
report_time: %(report_time)s
%(chamber_extra)s

[heater_generic chamber]
sensor_type: fake_chamber
heater_pin: fake_chamber:pwm
control: watermark
min_temp: 0
max_temp: 70
smooth_time: 0.1
%(heater_extra)s
"""


def chamber_config(report_time=0.1, chamber_extra='', heater_extra='',
                   more=''):
    return CHAMBER % {'report_time': report_time,
                      'chamber_extra': chamber_extra,
                      'heater_extra': heater_extra} + more
