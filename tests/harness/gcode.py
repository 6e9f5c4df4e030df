"""G-code dispatch (klippy/gcode.py: GCodeDispatch, GCodeCommand)."""
import re
import shlex


class CommandError(Exception):
    """Klipper's gcode.CommandError / printer.command_error."""


class GCodeCommand:
    error = CommandError

    class sentinel:
        pass

    def __init__(self, gcode, command, commandline, params, need_ack=False):
        self._command = command
        self._commandline = commandline
        self._params = params
        self._need_ack = need_ack
        self.respond_info = gcode.respond_info
        self.respond_raw = gcode.respond_raw

    def get_command(self):
        return self._command

    def get_commandline(self):
        return self._commandline

    def get_command_parameters(self):
        return self._params

    def get_raw_command_parameters(self):
        line = self._commandline
        start, end = len(self._command), len(line)
        if line[:start].upper() != self._command:
            # A line number in front, maybe a checksum at the end.
            start += max(0, line.upper().find(self._command))
            star = line.rfind('*')
            if star >= 0 and line[star + 1:].isdigit():
                end = star
        if line[start:start + 1].isspace():
            start += 1
        return line[start:end]

    def ack(self, msg=None):
        if not self._need_ack:
            return False
        self.respond_raw("ok %s" % (msg,) if msg else "ok")
        self._need_ack = False
        return True

    def get(self, name, default=sentinel, parser=str, minval=None,
            maxval=None, above=None, below=None):
        raw = self._params.get(name)
        where = "Error on '%s'" % (self._commandline,)
        if raw is None:
            if default is self.sentinel:
                raise self.error("%s: missing %s" % (where, name))
            return default
        try:
            value = parser(raw)
        except Exception:
            raise self.error("%s: unable to parse %s"
                             % (where, raw)) from None
        if minval is not None and value < minval:
            raise self.error("%s: %s must have minimum of %s"
                             % (where, name, minval))
        if maxval is not None and value > maxval:
            raise self.error("%s: %s must have maximum of %s"
                             % (where, name, maxval))
        if above is not None and value <= above:
            raise self.error("%s: %s must be above %s" % (where, name, above))
        if below is not None and value >= below:
            raise self.error("%s: %s must be below %s" % (where, name, below))
        return value

    def get_int(self, name, default=sentinel, minval=None, maxval=None):
        return self.get(name, default, int, minval, maxval)

    def get_float(self, name, default=sentinel, minval=None, maxval=None,
                  above=None, below=None):
        return self.get(name, default, float, minval, maxval, above, below)


def is_traditional_gcode(cmd):
    # A letter followed by a number, e.g. G1, M105, M141.
    try:
        word = cmd.upper().split()[0]
        float(word[1:])
        return word[0].isupper() and word[1].isdigit()
    except (IndexError, ValueError):
        return False


_words = re.compile('([A-Z_]+|[A-Z*])')


class GCodeDispatch:
    error = CommandError

    def __init__(self, printer):
        self.printer = printer
        printer.register_event_handler("klippy:ready", self._handle_ready)
        printer.register_event_handler("klippy:shutdown",
                                       self._handle_shutdown)
        printer.register_event_handler("klippy:disconnect",
                                       self._handle_disconnect)
        self.is_printer_ready = False
        self.mutex = printer.get_reactor().mutex()
        self.output_callbacks = []
        self.ready_handlers = {}
        self.base_handlers = {}
        self.handlers = self.base_handlers
        self.mux_commands = {}
        self.help = {}
        for cmd in ('M110', 'M112', 'M115', 'RESTART', 'FIRMWARE_RESTART',
                    'ECHO', 'STATUS', 'HELP'):
            self.register_command(cmd, getattr(self, 'cmd_' + cmd), True,
                                  getattr(self, 'cmd_%s_help' % cmd, None))

    is_traditional_gcode = staticmethod(is_traditional_gcode)

    # Registration
    def register_command(self, cmd, func, when_not_ready=False, desc=None):
        if func is None:
            old = self.ready_handlers.pop(cmd, None)
            self.base_handlers.pop(cmd, None)
            return old
        if cmd in self.ready_handlers:
            raise self.printer.config_error(
                "gcode command %s already registered" % (cmd,))
        if not is_traditional_gcode(cmd) and (
                cmd.upper() != cmd or not cmd.replace('_', 'A').isalnum()
                or cmd[0].isdigit() or cmd[1:2].isdigit()):
            raise self.printer.config_error(
                "Can't register '%s' as it is an invalid name" % (cmd,))
        self.ready_handlers[cmd] = func
        if when_not_ready:
            self.base_handlers[cmd] = func
        if desc is not None:
            self.help[cmd] = desc

    def register_mux_command(self, cmd, key, value, func, desc=None):
        entry = self.mux_commands.get(cmd)
        if entry is None:
            def mux(gcmd):
                self._cmd_mux(cmd, gcmd)
            self.register_command(cmd, mux, desc=desc)
            entry = self.mux_commands[cmd] = (key, {})
        mux_key, values = entry
        if mux_key != key:
            raise self.printer.config_error(
                "mux command %s %s %s may have only one key (%s)"
                % (cmd, key, value, mux_key))
        if value in values:
            raise self.printer.config_error(
                "mux command %s %s %s already registered (%s)"
                % (cmd, key, value, values))
        values[value] = func

    def register_output_handler(self, cb):
        self.output_callbacks.append(cb)

    def get_command_help(self):
        return dict(self.help)

    def get_status(self, eventtime):
        return {'commands': {c: ({'help': self.help[c]} if c in self.help
                                 else {}) for c in self.handlers}}

    # State
    def _handle_ready(self):
        self.is_printer_ready = True
        self.handlers = self.ready_handlers
        self._respond_state("Ready")

    def _handle_shutdown(self):
        if not self.is_printer_ready:
            return
        self.is_printer_ready = False
        self.handlers = self.base_handlers
        self._respond_state("Shutdown")

    def _handle_disconnect(self):
        self._respond_state("Disconnect")

    # Running commands
    def _parse(self, line):
        origline = line = line.strip()
        pos = line.find(';')
        if pos >= 0:
            line = line[:pos]
        parts = _words.split(line.upper())
        if ''.join(parts[:2]) == 'N':
            cmd = ''.join(parts[3:5]).strip()
        else:
            cmd = ''.join(parts[:3]).strip()
        params = {parts[i]: parts[i + 1].strip()
                  for i in range(1, len(parts), 2)}
        return GCodeCommand(self, cmd, origline, params)

    def _extended_params(self, gcmd):
        lexer = shlex.shlex(gcmd.get_raw_command_parameters(), posix=True)
        lexer.whitespace_split = True
        lexer.commenters = '#;'
        try:
            pairs = [word.split('=', 1) for word in lexer]
            params = {k.upper(): v for k, v in pairs}
        except ValueError:
            raise self.error("Malformed command '%s'"
                             % (gcmd.get_commandline(),)) from None
        gcmd._params.clear()
        gcmd._params.update(params)

    def _call(self, func, gcmd):
        return self.printer.invoke_callback('gcode', func, gcmd)

    def _process_commands(self, lines):
        for line in lines:
            gcmd = self._parse(line)
            cmd = gcmd.get_command()
            handler = self.handlers.get(cmd)
            try:
                if handler is None:
                    self.cmd_default(gcmd)
                    continue
                if not is_traditional_gcode(cmd):
                    self._extended_params(gcmd)
                self._call(handler, gcmd)
            except self.error as e:
                self._respond_error(str(e))
                self.printer.send_event("gcode:command_error")
                raise
            except Exception:
                msg = 'Internal error on command:"%s"' % (cmd,)
                self.printer.invoke_shutdown(msg)
                self._respond_error(msg)
                raise

    def run_script_from_command(self, script):
        self._process_commands(script.split('\n'))

    def run_script(self, script):
        with self.mutex:
            self._process_commands(script.split('\n'))

    def get_mutex(self):
        return self.mutex

    def create_gcode_command(self, command, commandline, params):
        return GCodeCommand(self, command, commandline, params)

    # Responses
    def respond_raw(self, msg):
        self.printer.get_reactor()._check_thread('gcode respond')
        for cb in self.output_callbacks:
            cb(msg)

    def respond_info(self, msg, log=True):
        lines = [line.strip() for line in msg.strip().split('\n')]
        self.respond_raw("// " + "\n// ".join(lines))

    def _respond_error(self, msg):
        lines = msg.strip().split('\n')
        if len(lines) > 1:
            self.respond_info("\n".join(lines), log=False)
        self.respond_raw('!! %s' % (lines[0].strip(),))

    def _respond_state(self, state):
        self.respond_info("Klipper state: %s" % (state,), log=False)

    # Commands
    def cmd_default(self, gcmd):
        cmd = gcmd.get_command()
        if cmd == 'M105':
            gcmd.ack("T:0")
            return
        if cmd == 'M21':
            return
        if not self.is_printer_ready:
            raise gcmd.error(self.printer.get_state_message()[0])
        if not cmd:
            return
        if ' ' in cmd:
            realcmd = cmd.split()[0]
            handler = self.handlers.get(realcmd)
            if realcmd in ('M117', 'M118', 'M23') and handler is not None:
                gcmd._command = realcmd
                self._call(handler, gcmd)
                return
        elif cmd in ('M140', 'M104') and not gcmd.get_float('S', 0.):
            return
        elif cmd == 'M107' or (cmd == 'M106'
                               and not gcmd.get_float('S', 1.)):
            return
        gcmd.respond_info('Unknown command:"%s"' % (cmd,))

    def _cmd_mux(self, command, gcmd):
        key, values = self.mux_commands[command]
        if None in values:
            key_param = gcmd.get(key, None)
        else:
            key_param = gcmd.get(key)
        if key_param not in values:
            names = [v for v in values if v is not None]
            guess = [v for v in names if key_param and key_param in v]
            if guess:
                hint = ". Did you mean '%s'?" % (guess[-1],)
            else:
                hint = ". Options: %s" % (
                    ", ".join("'%s'" % (v,) for v in names),)
            raise gcmd.error("The value '%s' is not valid for %s%s"
                             % (key_param, key, hint))
        self._call(values[key_param], gcmd)

    def cmd_M110(self, gcmd):
        pass

    def cmd_M112(self, gcmd):
        self.printer.invoke_shutdown("Shutdown due to M112 command")

    def cmd_M115(self, gcmd):
        version = self.printer.get_start_args().get('software_version')
        msg = "FIRMWARE_NAME:Klipper FIRMWARE_VERSION:%s" % (version,)
        if not gcmd.ack(msg):
            gcmd.respond_info(msg)

    def request_restart(self, result):
        if self.is_printer_ready:
            toolhead = self.printer.lookup_object('toolhead')
            print_time = toolhead.get_last_move_time()
            self.printer.send_event("gcode:request_restart", print_time)
            toolhead.dwell(0.500)
            toolhead.wait_moves()
        self.printer.request_exit(result)

    cmd_RESTART_help = "Reload config file and restart host software"

    def cmd_RESTART(self, gcmd):
        self.request_restart('restart')

    cmd_FIRMWARE_RESTART_help = "Restart firmware, host, and reload config"

    def cmd_FIRMWARE_RESTART(self, gcmd):
        self.request_restart('firmware_restart')

    def cmd_ECHO(self, gcmd):
        gcmd.respond_info(gcmd.get_commandline(), log=False)

    cmd_STATUS_help = "Report the printer status"

    def cmd_STATUS(self, gcmd):
        if self.is_printer_ready:
            self._respond_state("Ready")
            return
        msg = self.printer.get_state_message()[0]
        raise gcmd.error(msg.rstrip() + "\nKlipper state: Not ready")

    cmd_HELP_help = "Report the list of available extended G-Code commands"

    def cmd_HELP(self, gcmd):
        out = []
        if not self.is_printer_ready:
            out.append("Printer is not ready - not all commands available.")
        out.append("Available extended commands:")
        for cmd in sorted(self.handlers):
            if cmd in self.help:
                out.append("%-10s: %s" % (cmd, self.help[cmd]))
        gcmd.respond_info("\n".join(out), log=False)


def add_early_printer_objects(printer):
    printer.add_object('gcode', GCodeDispatch(printer))
