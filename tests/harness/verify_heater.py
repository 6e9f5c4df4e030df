"""[verify_heater] (klippy/extras/verify_heater.py: HeaterCheck)."""

HINT = ("\nSee the 'verify_heater' section of Klipper's Config_Reference"
        " for the parameters that control this check.\n")


class HeaterCheck:
    def __init__(self, config):
        self.printer = config.get_printer()
        self.printer.register_event_handler("klippy:connect",
                                            self.handle_connect)
        self.printer.register_event_handler("klippy:shutdown",
                                            self.handle_shutdown)
        self.heater_name = config.get_name().split()[1]
        self.heater = None
        self.hysteresis = config.getfloat('hysteresis', 5., minval=0.)
        self.max_error = config.getfloat('max_error', 120., minval=0.)
        self.heating_gain = config.getfloat('heating_gain', 2., above=0.)
        gain_time = 60. if self.heater_name == 'heater_bed' else 20.
        self.check_gain_time = config.getfloat('check_gain_time', gain_time,
                                               minval=1.)
        self.approaching_target = self.starting_approach = False
        self.last_target = self.goal_temp = self.error = 0.
        self.goal_systime = self.printer.get_reactor().NEVER
        self.check_timer = None

    def handle_connect(self):
        self.heater = self.printer.lookup_object('heaters').lookup_heater(
            self.heater_name)
        reactor = self.printer.get_reactor()
        self.check_timer = reactor.register_timer(self.check_event,
                                                  reactor.NOW)

    def handle_shutdown(self):
        if self.check_timer is not None:
            reactor = self.printer.get_reactor()
            reactor.update_timer(self.check_timer, reactor.NEVER)

    def check_event(self, eventtime):
        temp, target = self.heater.get_temp(eventtime)
        if target <= 0. or temp >= target - self.hysteresis:
            # Near (or above) the target: nothing to check.
            self.approaching_target = self.starting_approach = False
            if temp <= target + self.hysteresis:
                self.error = 0.
            self.last_target = target
            return eventtime + 1.
        self.error += (target - self.hysteresis) - temp
        if not self.approaching_target:
            if target != self.last_target:
                # New target: expect heating_gain within check_gain_time.
                self.approaching_target = self.starting_approach = True
                self.goal_temp = temp + self.heating_gain
                self.goal_systime = eventtime + self.check_gain_time
            elif self.error >= self.max_error:
                return self.heater_fault()
        elif temp >= self.goal_temp:
            self.starting_approach = False
            self.error = 0.
            self.goal_temp = temp + self.heating_gain
            self.goal_systime = eventtime + self.check_gain_time
        elif eventtime >= self.goal_systime:
            self.approaching_target = False
        elif self.starting_approach:
            self.goal_temp = min(self.goal_temp, temp + self.heating_gain)
        self.last_target = target
        return eventtime + 1.

    def heater_fault(self):
        msg = "Heater %s not heating at expected rate" % (self.heater_name,)
        self.printer.invoke_shutdown(msg + HINT)
        return self.printer.get_reactor().NEVER


def load_config_prefix(config):
    return HeaterCheck(config)
