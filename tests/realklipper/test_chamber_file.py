"""Real Klipper reads the simulator's chamber file as a plain
temperature_host sensor: no test-only Klipper code.

What a chamber loop built on it must live with, seen here on both trees:
a frozen file looks exactly like a steady chamber, and one unreadable
value (a non-number) makes temperature_host log a traceback and stop
for good: the `temperature_sensor` status keeps the last good reading,
the `temperature_host` object's own status drops to 0.0. The U1 fork's
`temperature_sensor` status rounds to a whole degree (upstream: 0.01);
the `temperature_host` object's is 0.01 on both."""
import time

from realklipper.printer import Printer, tracebacks
from simulator import Simulator

SENSOR = """
[temperature_sensor chamber_air]
sensor_type: temperature_host
sensor_path: {path}
min_temp: -40
max_temp: 120
"""
NAME = "temperature_sensor chamber_air"
HOST = "temperature_host chamber_air"
# what temperature_sensor's get_status() rounds to
RESOLUTION = {"upstream": 0.01, "u1": 1.0}
ERROR = "temperature_host: Error reading data"


def test_klipper_reads_the_chamber_file_until_garbage_stops_it(
        klipper_tree, tmp_path):
    name, tree = klipper_tree
    path = tmp_path / "chamber_temp"
    # speed 1: the chamber barely moves by itself while we look
    with Simulator(port=0, chamber_file=str(path)) as sim:
        p = Printer(tree, name, SENSOR.format(path=path), tmp_path / "run")
        try:
            p.start()

            def seen():
                return p.status(NAME)["temperature"]

            def host():
                return p.status(HOST)["temperature"]

            def shows(celsius, timeout=5.0):
                slack = 0.1 + RESOLUTION[name] / 2  # the chamber drifts
                p.wait_for(lambda: abs(host() - celsius) < 0.1
                           and abs(seen() - celsius) < slack, timeout)

            shows(25.0)
            sim.set_chamber(40.5)
            shows(40.5)
            sim.set_chamber(-5.25)  # negatives read too
            shows(-5.25)

            sim.chamber_file_fault("freeze")  # silent: looks steady
            sim.set_chamber(50.0)
            time.sleep(1.5)
            frozen = host()
            time.sleep(2.0)
            assert host() == frozen and abs(frozen - -5.25) < 0.1
            sim.chamber_file_fault(None)
            shows(50.0)

            sim.chamber_file_fault("garbage")
            p.wait_for(lambda: ERROR in p.log(), timeout=5)
            sim.chamber_file_fault(None)
            sim.set_chamber(60.0)
            time.sleep(3.0)
            # stopped for good: the last good value, and Klipper runs on
            assert abs(seen() - 50.0) < 0.1 + RESOLUTION[name] / 2
            assert host() == 0.0
            assert p.state()[0] == "ready"
            assert float(path.read_text()) > 59000  # the file moved on
        finally:
            p.stop()
    found = tracebacks(p.log())
    assert len(found) == 1 and "could not convert string to float" \
        in found[0], found
    assert not tracebacks(p.stderr())
