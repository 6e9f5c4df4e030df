"""Once-a-second stats (klippy/extras/statistics.py: PrinterStats).  Each
printer object with a stats(eventtime) method is polled; a Heater's stats()
refreshes the main-thread check that lets its PWM stay on."""


class PrinterStats:
    def __init__(self, config):
        self.printer = config.get_printer()
        self.reactor = self.printer.get_reactor()
        self.stats_timer = self.reactor.register_timer(self.generate_stats)
        self.stats_cb = []
        self.lines = []
        self.printer.register_event_handler("klippy:ready",
                                            self.handle_ready)

    def handle_ready(self):
        self.stats_cb = [o.stats for n, o in self.printer.lookup_objects()
                         if hasattr(o, 'stats')]
        self.reactor.update_timer(self.stats_timer, self.reactor.NOW)

    def generate_stats(self, eventtime):
        with self.reactor.assert_no_pause("stats"):
            stats = [self.printer.invoke_callback('stats', cb, eventtime)
                     for cb in self.stats_cb]
        if any(active for active, text in stats):
            self.lines.append("Stats %.1f: %s" % (
                eventtime, ' '.join(text for active, text in stats if text)))
            del self.lines[:-100]
        return eventtime + 1.


def load_config(config):
    return PrinterStats(config)
