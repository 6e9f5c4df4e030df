"""[gcode_macro] and templates (klippy/extras/gcode_macro.py).  Jinja2 is
used when importable; without it (the QEMU guest has no pip packages) a
[gcode_macro] section is a config error naming the section, and only
templates without Jinja syntax (and idle_timeout's default) work."""
import ast
import copy
import json

try:
    import jinja2
except ImportError:
    jinja2 = None


class GetStatusWrapper:
    """The `printer` template variable: printer["heater_generic chamber"]
    is that object's get_status(), which may not pause."""

    def __init__(self, printer, eventtime=None):
        self.printer = printer
        self.eventtime = eventtime
        self.cache = {}

    def __getitem__(self, val):
        name = str(val).strip()
        if name in self.cache:
            return self.cache[name]
        obj = self.printer.lookup_object(name, None)
        if obj is None or not hasattr(obj, 'get_status'):
            raise KeyError(val)
        if self.eventtime is None:
            self.eventtime = self.printer.get_reactor().monotonic()
        status = self.printer.query_status(obj, self.eventtime)
        self.cache[name] = result = copy.deepcopy(status)
        return result

    def __contains__(self, val):
        try:
            self[val]
        except KeyError:
            return False
        return True

    def __iter__(self):
        for name, _ in self.printer.lookup_objects():
            if name in self:
                yield name


class TemplateWrapper:
    def __init__(self, printer, env, name, script):
        self.printer = printer
        self.name = name
        self.gcode = printer.lookup_object('gcode')
        self.create_template_context = printer.lookup_object(
            'gcode_macro').create_template_context
        try:
            self.template = env.from_string(script)
        except jinja2.exceptions.TemplateSyntaxError as e:
            lines = script.splitlines()
            raise printer.config_error(
                "Error loading template '%s'\nline %s: %s # %s"
                % (name, e.lineno, lines[e.lineno - 1], e.message)) from e

    def render(self, context=None):
        if context is None:
            context = self.create_template_context()
        try:
            return str(self.template.render(context))
        except self.printer.command_error:
            raise
        except Exception as e:
            raise self.gcode.error("Error evaluating '%s': %s: %s"
                                   % (self.name, type(e).__name__, e)) from e

    def run_gcode_from_command(self, context=None):
        self.gcode.run_script_from_command(self.render(context))


class PlainTemplate:
    """A script without Jinja syntax, for hosts without jinja2."""

    def __init__(self, printer, name, script, render=None):
        self.printer = printer
        self.name = name
        self.gcode = printer.lookup_object('gcode')
        self.script = script
        self._render = render

    def render(self, context=None):
        if self._render is not None:
            return self._render()
        return self.script

    def run_gcode_from_command(self, context=None):
        self.gcode.run_script_from_command(self.render(context))


class PrinterGCodeMacro:
    def __init__(self, config):
        self.printer = config.get_printer()
        self.env = None
        if jinja2 is not None:
            self.env = jinja2.Environment('{%', '%}', '{', '}')

    def load_template(self, config, option, default=None):
        name = "%s:%s" % (config.get_name(), option)
        if default is None:
            script = config.get(option)
        else:
            script = config.get(option, default)
        if self.env is not None:
            return TemplateWrapper(self.printer, self.env, name, script)
        from .idle_timeout import DEFAULT_IDLE_GCODE
        if script == DEFAULT_IDLE_GCODE:
            def idle_default():
                heaters = self.printer.lookup_object('heaters', None)
                return "TURN_OFF_HEATERS\nM84" if heaters else "M84"
            return PlainTemplate(self.printer, name, script, idle_default)
        if '{' in script:
            raise config.error(
                "Option '%s' in section '%s' is a template and needs the"
                " Python package Jinja2, which is not installed"
                % (option, config.get_name()))
        return PlainTemplate(self.printer, name, script)

    def _action_emergency_stop(self, msg="action_emergency_stop"):
        self.printer.invoke_shutdown("Shutdown due to %s" % (msg,))
        return ""

    def _action_respond_info(self, msg):
        self.printer.lookup_object('gcode').respond_info(msg)
        return ""

    def _action_raise_error(self, msg):
        raise self.printer.command_error(msg)

    def create_template_context(self, eventtime=None):
        return {
            'printer': GetStatusWrapper(self.printer, eventtime),
            'action_emergency_stop': self._action_emergency_stop,
            'action_respond_info': self._action_respond_info,
            'action_raise_error': self._action_raise_error,
        }


def load_config(config):
    return PrinterGCodeMacro(config)


class GCodeMacro:
    def __init__(self, config):
        section = config.get_name()
        if jinja2 is None:
            raise config.error(
                "Section '%s' needs the Python package Jinja2, which is not"
                " installed" % (section,))
        if len(section.split()) > 2:
            raise config.error("Name of section '%s' contains illegal"
                               " whitespace" % (section,))
        name = section.split()[1]
        self.alias = name.upper()
        self.printer = printer = config.get_printer()
        gcode_macro = printer.load_object(config, 'gcode_macro')
        self.template = gcode_macro.load_template(config, 'gcode')
        self.gcode = printer.lookup_object('gcode')
        self.rename_existing = config.get("rename_existing", None)
        self.cmd_desc = config.get("description", "G-Code macro")
        if self.rename_existing is not None:
            if (self.gcode.is_traditional_gcode(self.alias)
                    != self.gcode.is_traditional_gcode(self.rename_existing)):
                raise config.error(
                    "G-Code macro rename of different types ('%s' vs '%s')"
                    % (self.alias, self.rename_existing))
            printer.register_event_handler("klippy:connect",
                                           self.handle_connect)
        else:
            self.gcode.register_command(self.alias, self.cmd,
                                        desc=self.cmd_desc)
        self.gcode.register_mux_command(
            "SET_GCODE_VARIABLE", "MACRO", name, self.cmd_SET_GCODE_VARIABLE,
            desc=self.cmd_SET_GCODE_VARIABLE_help)
        self.in_script = False
        self.variables = {}
        for option in config.get_prefix_options('variable_'):
            try:
                literal = ast.literal_eval(config.get(option))
                json.dumps(literal, separators=(',', ':'))
            except (SyntaxError, TypeError, ValueError) as e:
                raise config.error(
                    "Option '%s' in section '%s' is not a valid literal: %s"
                    % (option, section, e)) from e
            self.variables[option[len('variable_'):]] = literal

    def handle_connect(self):
        prev_cmd = self.gcode.register_command(self.alias, None)
        if prev_cmd is None:
            raise self.printer.config_error(
                "Existing command '%s' not found in gcode_macro rename"
                % (self.alias,))
        self.gcode.register_command(
            self.rename_existing, prev_cmd,
            desc="Renamed builtin of '%s'" % (self.alias,))
        self.gcode.register_command(self.alias, self.cmd, desc=self.cmd_desc)

    def get_status(self, eventtime):
        return self.variables

    cmd_SET_GCODE_VARIABLE_help = "Set the value of a G-Code macro variable"

    def cmd_SET_GCODE_VARIABLE(self, gcmd):
        variable = gcmd.get('VARIABLE')
        value = gcmd.get('VALUE')
        if variable not in self.variables:
            raise gcmd.error("Unknown gcode_macro variable '%s'"
                             % (variable,))
        try:
            literal = ast.literal_eval(value)
            json.dumps(literal, separators=(',', ':'))
        except (SyntaxError, TypeError, ValueError) as e:
            raise gcmd.error("Unable to parse '%s' as a literal: %s in '%s'"
                             % (value, e, gcmd.get_commandline())) from e
        self.variables = dict(self.variables, **{variable: literal})

    def cmd(self, gcmd):
        if self.in_script:
            raise gcmd.error("Macro %s called recursively" % (self.alias,))
        context = dict(self.variables)
        context.update(self.template.create_template_context())
        context['params'] = gcmd.get_command_parameters()
        context['rawparams'] = gcmd.get_raw_command_parameters()
        self.in_script = True
        try:
            self.template.run_gcode_from_command(context)
        finally:
            self.in_script = False


def load_config_prefix(config):
    return GCodeMacro(config)
