"""The printer object registry, events and lifecycle (klippy/klippy.py:
Printer) and loading of extras (Printer.load_object)."""
import collections
import importlib
import os
import sys
import types

from . import (
    configfile,
    gcode,
    gcode_macro,
    heaters,
    idle_timeout,
    mcu,
    pins,
    statistics,
    toolhead,
    verify_heater,
)
from .configfile import ConfigError, sentinel
from .gcode import CommandError

message_ready = "Printer is ready"
message_startup = "Printer is not ready"
message_restart = ('Once the underlying issue is corrected, use the "RESTART"'
                   ' command to reload the config and restart the host'
                   ' software.\nPrinter is halted')

# Klipper's own extras that the harness implements: name ->
# (load_config, load_config_prefix).
BUILTINS = {
    'heaters': (heaters.load_config, None),
    'heater_generic': (None, heaters.load_heater_generic),
    'verify_heater': (None, verify_heater.load_config_prefix),
    'idle_timeout': (idle_timeout.load_config, None),
    'statistics': (statistics.load_config, None),
    'gcode_macro': (gcode_macro.load_config, gcode_macro.load_config_prefix),
}

DEFAULT_EXTRAS_DIR = os.path.normpath(os.path.join(
    os.path.dirname(__file__), '..', '..', 'klipper', 'extras'))

# Klipper imports klippy/extras/<name>.py as `extras.<name>`, once per
# process.  Each extras directory becomes such a package here.
_packages = {}


def extras_package(extras_dir):
    path = os.path.realpath(extras_dir)
    name = _packages.get(path)
    if name is not None:
        return name
    name = 'extras'
    if path != os.path.realpath(DEFAULT_EXTRAS_DIR) or name in sys.modules:
        base = 'extras_' + ''.join(
            c if c.isalnum() else '_' for c in os.path.basename(
                os.path.dirname(path)))
        name, n = base, 1
        while name in sys.modules:
            n += 1
            name = '%s_%d' % (base, n)
    package = types.ModuleType(name)
    package.__path__ = [path]
    package.__package__ = name
    sys.modules[name] = package
    _packages[path] = name
    return name


class Printer:
    config_error = ConfigError
    command_error = CommandError

    def __init__(self, reactor, start_args, config_text, extras_dir,
                 boot_time, u1_strict=False):
        self.reactor = reactor
        self.start_args = start_args
        self.config_text = config_text
        self.extras_dir = extras_dir
        self.extras_package = extras_package(extras_dir)
        self.boot_time = boot_time
        self.u1_strict = u1_strict
        self.state_message = message_startup
        self.in_shutdown_state = False
        self.shutdown_message = None
        self.config_failure = None
        self.run_result = None
        self.event_handlers = {}
        self.objects = collections.OrderedDict()
        gcode.add_early_printer_objects(self)

    # Calls into other code, timed by the stall meter when it is the
    # module's.
    def invoke_callback(self, kind, cb, *args):
        return self.reactor.meter.call(kind, cb, *args)

    def query_status(self, obj, eventtime):
        with self.reactor.assert_no_pause("get_status"):
            return self.invoke_callback('get_status', obj.get_status,
                                        eventtime)

    def get_start_args(self):
        return self.start_args

    def get_reactor(self):
        return self.reactor

    def get_state_message(self):
        if self.state_message == message_ready:
            category = "ready"
        elif self.state_message == message_startup:
            category = "startup"
        elif self.in_shutdown_state:
            category = "shutdown"
        else:
            category = "error"
        return self.state_message, category

    def is_shutdown(self):
        return self.in_shutdown_state

    def _set_state(self, msg):
        if self.state_message in (message_ready, message_startup):
            self.state_message = msg

    # Objects
    def add_object(self, name, obj):
        if name in self.objects:
            raise self.config_error("Printer object '%s' already created"
                                    % (name,))
        self.objects[name] = obj

    def lookup_object(self, name, default=sentinel):
        if name in self.objects:
            return self.objects[name]
        if default is sentinel:
            raise self.config_error("Unknown config object '%s'" % (name,))
        return default

    def lookup_objects(self, module=None):
        if module is None:
            return list(self.objects.items())
        prefix = module + ' '
        found = [(n, o) for n, o in self.objects.items()
                 if n.startswith(prefix)]
        if module in self.objects:
            return [(module, self.objects[module])] + found
        return found

    def _find_init(self, section):
        parts = section.split()
        module_name = parts[0]
        prefixed = len(parts) > 1
        if module_name in BUILTINS:
            return BUILTINS[module_name][1 if prefixed else 0]
        base = os.path.join(self.extras_dir, module_name)
        if not (os.path.exists(base + '.py')
                or os.path.exists(os.path.join(base, '__init__.py'))):
            return None
        module = importlib.import_module(
            '%s.%s' % (self.extras_package, module_name))
        return getattr(module, 'load_config_prefix' if prefixed
                       else 'load_config', None)

    def load_object(self, config, section, default=sentinel):
        if section in self.objects:
            return self.objects[section]
        init = self._find_init(section)
        if init is None:
            if default is not sentinel:
                return default
            raise self.config_error("Unable to load module '%s'"
                                    % (section,))
        # Config loading happens before the MCUs run: not timed.
        self.objects[section] = init(config.getsection(section))
        return self.objects[section]

    def _read_config(self):
        self.objects['configfile'] = pconfig = configfile.PrinterConfig(
            self, self.config_text)
        config = pconfig.read_main_config()
        pins.add_printer_objects(config)
        mcu.add_printer_objects(config, self.boot_time)
        for section_config in config.get_prefix_sections(''):
            self.load_object(config, section_config.get_name(), None)
        toolhead.add_printer_objects(config)
        pconfig.check_unused_options(config)

    # Lifecycle (Printer._connect in klippy.py)
    def _connect(self, eventtime):
        try:
            self._read_config()
            self.send_event("klippy:mcu_identify")
            for cb in self.event_handlers.get("klippy:connect", []):
                if self.state_message is not message_startup:
                    return
                self.invoke_callback('klippy:connect', cb)
        except (ConfigError, pins.PinError) as e:
            self.config_failure = e
            self._set_state("%s\n%s" % (e, message_restart))
            return
        except Exception as e:
            self._set_state("Internal error during connect: %s\n%s"
                            % (e, message_restart))
            self.reactor._fail(e)
            return
        try:
            self._set_state(message_ready)
            with self.reactor.assert_no_pause("klippy:ready handler"):
                for cb in self.event_handlers.get("klippy:ready", []):
                    if self.state_message is not message_ready:
                        return
                    self.invoke_callback('klippy:ready', cb)
        except Exception as e:
            self.invoke_shutdown("Internal error during ready callback: %s"
                                 % (e,))
            self.reactor._fail(e)

    def invoke_shutdown(self, msg, details=None):
        if self.in_shutdown_state:
            return
        self.in_shutdown_state = True
        self.shutdown_message = msg
        self._set_state(msg)
        with self.reactor.assert_no_pause("klippy:shutdown handler"):
            for cb in self.event_handlers.get("klippy:shutdown", []):
                try:
                    self.invoke_callback('klippy:shutdown', cb)
                except Exception as e:
                    self.reactor._fail(e)
            for cb in self.event_handlers.get("klippy:analyze_shutdown", []):
                try:
                    self.invoke_callback('klippy:analyze_shutdown', cb, msg,
                                         details or {})
                except Exception as e:
                    self.reactor._fail(e)

    def invoke_async_shutdown(self, msg, details=None):
        self.reactor.register_async_callback(
            lambda eventtime: self.invoke_shutdown(msg, details))

    def register_event_handler(self, event, callback):
        self.event_handlers.setdefault(event, []).append(callback)

    def send_event(self, event, *params):
        return [self.invoke_callback(event, cb, *params)
                for cb in self.event_handlers.get(event, [])]

    def request_exit(self, result):
        if self.run_result is None:
            self.run_result = result
        self.reactor.end()
