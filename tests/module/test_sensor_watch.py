"""SensorWatch and the chamber's tick with Klipper's sensors faked: how
long a sensor may stay quiet follows how often it reports, and Klipper's
heater hears the chamber every tick whatever the sensor's pace."""
import types


class Reactor:
    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now


class Sensor:
    """A Klipper sensor reporting every `every` seconds."""
    def __init__(self, every):
        self.every = every
        self.callback = None

    def setup_callback(self, callback):
        self.callback = callback

    def get_report_time_delta(self):
        return self.every


class TemperatureSensor:
    def __init__(self, every):
        self.sensor = Sensor(every)
        self.readings = []

    def temperature_callback(self, read_time, temp):
        self.readings.append(temp)

    def get_status(self, eventtime):
        return {"temperature": self.readings[-1] if self.readings else 0.}


def watched(pb, every):
    reactor = Reactor()
    obj = TemperatureSensor(every)
    watch = pb.SensorWatch(reactor, obj)
    return reactor, obj, watch


def test_a_fast_sensor_silent_past_ten_seconds_is_dead(pb):
    reactor, obj, watch = watched(pb, 0.3)
    obj.sensor.callback(0.0, 40.0)
    reactor.now = 9.0
    assert watch.silence(reactor.now, 0.0) is None
    reactor.now = 10.5
    assert "has not reported" in watch.silence(reactor.now, 0.0)


def test_a_slow_sensor_is_given_three_of_its_reports(pb):
    # aht10 and htu21d report every 30 s by default
    reactor, obj, watch = watched(pb, 30.0)
    for n in range(4):
        reactor.now = 30.0 * n
        obj.sensor.callback(reactor.now, 40.0 + n)
        reactor.now += 29.0
        assert watch.silence(reactor.now, 0.0) is None
        assert watch.stuck(reactor.now) is None
    reactor.now = 90.0 + 91.0
    assert "has not reported" in watch.silence(reactor.now, 0.0)
    # the readings still reach the sensor's own object
    assert obj.readings == [40.0, 41.0, 42.0, 43.0]


def test_a_slow_sensor_stuck_on_one_value_is_seen(pb):
    reactor, obj, watch = watched(pb, 30.0)
    for n in range(5):
        reactor.now = 30.0 * n
        obj.sensor.callback(reactor.now, 40.0)
    assert watch.stuck(reactor.now) == ("has read exactly 40.0C for"
                                        " 120 s")


def test_the_heater_hears_the_chamber_every_tick(pb):
    # A sensor slower than the heater pin's watchdog (3.5 s) must not
    # leave Klipper's heater without a reading to refresh the pin on.
    delivered = []
    breath = types.SimpleNamespace(
        target=0., deliver_chamber=lambda t, temp: delivered.append(
            (t, temp)))
    chamber = object.__new__(pb.Chamber)
    chamber.breath = breath
    chamber.watch = types.SimpleNamespace(last=(0.0, 38.5))
    chamber.loop = pb.ChamberLoop(60.0)
    chamber.seen = chamber.temperature = None
    for tick in range(1, 6):
        chamber._follow_chamber(float(tick))
    assert delivered == [(float(t), 38.5) for t in range(1, 6)]
