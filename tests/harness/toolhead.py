"""A toolhead without motion (klippy/toolhead.py: print time tracking,
register_lookahead_callback, dwell, wait_moves, check_busy and the
toolhead:sync_print_time event that drives idle_timeout)."""

BUFFER_TIME_START = 0.250
BUFFER_TIME_HIGH = 2.0


class ToolHead:
    def __init__(self, config):
        self.printer = config.get_printer()
        self.reactor = self.printer.get_reactor()
        self.mcu = self.printer.lookup_object('mcu')
        self.print_time = 0.
        self.can_pause = True
        if config.has_section('printer'):
            pconfig = config.getsection('printer')
            pconfig.get('kinematics', 'none')
            self.max_velocity = pconfig.getfloat('max_velocity', 300.,
                                                 above=0.)
            self.max_accel = pconfig.getfloat('max_accel', 3000., above=0.)
            pconfig.getfloat('square_corner_velocity', 5., minval=0.)
            pconfig.getfloat('minimum_cruise_ratio', 0.5, below=1.,
                             minval=0.)
        else:
            self.max_velocity, self.max_accel = 300., 3000.
        gcode = self.printer.lookup_object('gcode')
        gcode.register_command('G4', self.cmd_G4)
        gcode.register_command('M400', self.cmd_M400)
        gcode.register_command('M84', self.cmd_M84)
        gcode.register_command('M18', self.cmd_M84)
        self.printer.register_event_handler("klippy:shutdown",
                                            self._handle_shutdown)

    def _calc_print_time(self):
        curtime = self.reactor.monotonic()
        est_print_time = self.mcu.estimated_print_time(curtime)
        min_print_time = est_print_time + BUFFER_TIME_START
        if min_print_time > self.print_time:
            self.print_time = min_print_time
            self.printer.send_event("toolhead:sync_print_time", curtime,
                                    est_print_time, self.print_time)

    def get_last_move_time(self):
        # No moves are ever queued: always the "NeedPrime" path.
        self._calc_print_time()
        return self.print_time

    def register_lookahead_callback(self, callback):
        callback(self.get_last_move_time())

    def dwell(self, delay):
        self.print_time = self.get_last_move_time() + max(0., delay)
        eventtime = self.reactor.monotonic()
        while (self.can_pause and self.print_time
               - self.mcu.estimated_print_time(eventtime) > BUFFER_TIME_HIGH):
            eventtime = self.reactor.pause(eventtime + 0.100)

    def wait_moves(self):
        eventtime = self.reactor.monotonic()
        while (self.can_pause and self.print_time
               >= self.mcu.estimated_print_time(eventtime)):
            eventtime = self.reactor.pause(eventtime + 0.100)

    def check_busy(self, eventtime):
        est_print_time = self.mcu.estimated_print_time(eventtime)
        return self.print_time, est_print_time, True

    def stats(self, eventtime):
        buffer_time = self.print_time - self.mcu.estimated_print_time(
            eventtime)
        return buffer_time > -60., "print_time=%.3f buffer_time=%.3f" % (
            self.print_time, max(buffer_time, 0.))

    def get_status(self, eventtime):
        return {'print_time': self.print_time,
                'estimated_print_time':
                    self.mcu.estimated_print_time(eventtime),
                'max_velocity': self.max_velocity,
                'max_accel': self.max_accel,
                'homed_axes': ''}

    def _handle_shutdown(self):
        self.can_pause = False

    def cmd_G4(self, gcmd):
        self.dwell(gcmd.get_float('P', 0., minval=0.) / 1000.)

    def cmd_M400(self, gcmd):
        self.wait_moves()

    def cmd_M84(self, gcmd):
        # Motors off: there are no steppers here.
        pass


def add_printer_objects(config):
    printer = config.get_printer()
    printer.add_object('toolhead', ToolHead(config))
    for name in ('idle_timeout', 'statistics'):
        printer.load_object(config, name)
