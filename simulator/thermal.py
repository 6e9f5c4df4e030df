"""Lumped thermal model of a Panda Breath in a printer enclosure.

Three nodes: the PTC heater body, the slow true chamber (air, walls and
printer mass) and the fast outlet-air node where the device's NTC sits.
The sensor node chases the outlet air, which is the chamber plus a share
of the PTC's excess while the fan blows, so it over-reads the chamber.

Tuned to the field figures in protocol.md ("The device's sensor is not
the chamber"), with the room at 25 C, in always-on mode:

- from 25 C the sensor reaches 55 C in about 5 minutes (~300 s), the PTC
  peaks around 95 C and averages ~67 C while holding;
- while warming, the sensor over-reads the chamber by up to ~17 C (the
  chamber ~40 C while the device reads 57-60);
- steady, the gap is share * loss / conductance of the chamber's rise
  over the room (~0.22 of it): the chamber settles ~5.5 C under a 55 C
  reading (~49.5 C) and ~6.4 C under 60 C (~53.6 C), within 1 C of that
  after about 20 minutes. So with the device capped at 60 C, a chamber
  above ~54 C is out of reach (set_temp 67 would give ~60 C).
"""

HEATER_WATTS = 300.0
PTC_CAPACITY = 300.0  # J/K
CHAMBER_CAPACITY = 5000.0  # J/K
PTC_TO_AIR_FAN = 5.0  # W/K with the fan blowing through the PTC
PTC_TO_AIR_STILL = 1.0  # W/K by natural convection
CHAMBER_LOSS = 3.6  # W/K through the enclosure walls
OUTLET_SHARE_FAN = 0.31  # share of the PTC excess the outlet air carries
OUTLET_SHARE_STILL = 0.05
SENSOR_TAU = 15.0  # s
MAX_STEP = 0.1  # s of device time per integration step


class ThermalModel:
    def __init__(self, ambient=25.0):
        self.ambient = float(ambient)
        self.ptc = self.chamber = self.sensor = self.ambient
        # other heat into the chamber air (the printer's bed, say), W
        self.extra_watts = 0.0

    def step(self, dt, relay, fan):
        """Advance dt seconds of device time (sub-stepped for stability)."""
        while dt > 1e-9:
            h = min(dt, MAX_STEP)
            self._euler(h, relay, fan)
            dt -= h

    def _euler(self, h, relay, fan):
        share = OUTLET_SHARE_FAN if fan else OUTLET_SHARE_STILL
        conductance = PTC_TO_AIR_FAN if fan else PTC_TO_AIR_STILL
        to_air = conductance * (self.ptc - self.chamber)
        power = HEATER_WATTS if relay else 0.0
        loss = CHAMBER_LOSS * (self.chamber - self.ambient)
        outlet = self.chamber + share * (self.ptc - self.chamber)
        self.ptc += h * (power - to_air) / PTC_CAPACITY
        self.chamber += h * (to_air + self.extra_watts - loss) \
            / CHAMBER_CAPACITY
        self.sensor += h * (outlet - self.sensor) / SENSOR_TAU
