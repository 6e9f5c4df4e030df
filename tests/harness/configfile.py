"""printer.cfg parsing and option access with Klipper's semantics
(klippy/configfile.py: ConfigWrapper, the file reader, check_unused)."""
import configparser
import io


class ConfigError(configparser.Error):
    """Klipper's config.error / printer.config_error (a configparser.Error
    there too)."""

    def __init__(self, msg=''):
        configparser.Error.__init__(self, msg)


error = ConfigError


class sentinel:
    pass


def parse_config_text(text):
    """Klipper strips everything after '#' on each line, then reads the rest
    with a non-strict RawConfigParser that also takes inline ';' comments."""
    lines = []
    for line in text.replace('\r\n', '\n').split('\n'):
        pos = line.find('#')
        if pos >= 0:
            line = line[:pos]
        lines.append(line)
    fileconfig = configparser.RawConfigParser(
        strict=False, inline_comment_prefixes=(';', '#'))
    try:
        fileconfig.read_file(io.StringIO('\n'.join(lines)), 'printer.cfg')
    except configparser.Error as e:
        raise ConfigError(str(e)) from None
    return fileconfig


class ConfigWrapper:
    error = ConfigError

    def __init__(self, printer, fileconfig, access_tracking, section):
        self.printer = printer
        self.fileconfig = fileconfig
        self.access_tracking = access_tracking
        self.section = section

    def get_printer(self):
        return self.printer

    def get_name(self):
        return self.section

    def _track(self, option, value):
        self.access_tracking[(self.section.lower(), option.lower())] = value

    def _get(self, parse, option, default, minval=None, maxval=None,
             above=None, below=None, note_valid=True):
        where = "Option '%s' in section '%s'" % (option, self.section)
        if not self.fileconfig.has_option(self.section, option):
            if default is sentinel:
                raise ConfigError("%s must be specified" % (where,))
            if note_valid and default is not None:
                self._track(option, default)
            return default
        raw = self.fileconfig.get(self.section, option)
        try:
            value = parse(raw)
        except ConfigError:
            raise
        except Exception:
            raise ConfigError("Unable to parse option '%s' in section '%s'"
                              % (option, self.section)) from None
        if note_valid:
            self._track(option, value)
        if minval is not None and value < minval:
            raise ConfigError("%s must have minimum of %s" % (where, minval))
        if maxval is not None and value > maxval:
            raise ConfigError("%s must have maximum of %s" % (where, maxval))
        if above is not None and value <= above:
            raise ConfigError("%s must be above %s" % (where, above))
        if below is not None and value >= below:
            raise ConfigError("%s must be below %s" % (where, below))
        return value

    def get(self, option, default=sentinel, note_valid=True):
        return self._get(str, option, default, note_valid=note_valid)

    def getint(self, option, default=sentinel, minval=None, maxval=None,
               note_valid=True):
        return self._get(int, option, default, minval, maxval,
                         note_valid=note_valid)

    def getfloat(self, option, default=sentinel, minval=None, maxval=None,
                 above=None, below=None, note_valid=True):
        return self._get(float, option, default, minval, maxval, above,
                         below, note_valid=note_valid)

    def getboolean(self, option, default=sentinel, note_valid=True):
        states = configparser.RawConfigParser.BOOLEAN_STATES

        def parse(raw):
            return states[raw.lower()]
        return self._get(parse, option, default, note_valid=note_valid)

    def getchoice(self, option, choices, default=sentinel, note_valid=True):
        if isinstance(choices, list):
            choices = {c: c for c in choices}
        if choices and isinstance(next(iter(choices)), int):
            value = self.getint(option, default, note_valid=note_valid)
        else:
            value = self.get(option, default, note_valid=note_valid)
        if value not in choices:
            raise ConfigError("Choice '%s' for option '%s' in section '%s'"
                              " is not a valid choice"
                              % (value, option, self.section))
        return choices[value]

    def getlists(self, option, default=sentinel, seps=(',',), count=None,
                 parser=str, note_valid=True):
        def split(text, depth):
            parts = [] if not text.strip() else [
                p.strip() for p in text.split(seps[depth])]
            if depth:
                return tuple(split(p, depth - 1) for p in parts if p)
            values = tuple(parser(p) for p in parts)
            if count is not None and len(values) != count:
                raise ConfigError(
                    "Option '%s' in section '%s' must have %d elements"
                    % (option, self.section, count))
            return values

        def parse(raw):
            return split(raw, len(seps) - 1)
        return self._get(parse, option, default, note_valid=note_valid)

    def getlist(self, option, default=sentinel, sep=',', count=None,
                note_valid=True):
        return self.getlists(option, default, (sep,), count, str, note_valid)

    def getintlist(self, option, default=sentinel, sep=',', count=None,
                   note_valid=True):
        return self.getlists(option, default, (sep,), count, int, note_valid)

    def getfloatlist(self, option, default=sentinel, sep=',', count=None,
                     note_valid=True):
        return self.getlists(option, default, (sep,), count, float,
                             note_valid)

    def getsection(self, section):
        return ConfigWrapper(self.printer, self.fileconfig,
                             self.access_tracking, section)

    def has_section(self, section):
        return self.fileconfig.has_section(section)

    def get_prefix_sections(self, prefix):
        return [self.getsection(s) for s in self.fileconfig.sections()
                if s.startswith(prefix)]

    def get_prefix_options(self, prefix):
        if not self.fileconfig.has_section(self.section):
            return []
        return [o for o in self.fileconfig.options(self.section)
                if o.startswith(prefix)]

    def deprecate(self, option, value=None):
        # Klipper only records a warning for the UI; nothing to check here.
        pass


class PrinterConfig:
    """The 'configfile' printer object: reads the text, tracks which
    options were read, rejects the rest after loading."""

    def __init__(self, printer, text):
        self.printer = printer
        self.text = text
        self.access_tracking = {}
        self.settings = {}

    def get_printer(self):
        return self.printer

    def read_main_config(self):
        fileconfig = parse_config_text(self.text)
        self.access_tracking = {}
        return ConfigWrapper(self.printer, fileconfig, self.access_tracking,
                             'printer')

    def check_unused_options(self, config):
        tracked = self.access_tracking
        valid = {name.lower() for name, obj in self.printer.lookup_objects()}
        valid.update(section for section, option in tracked)
        fileconfig = config.fileconfig
        for section_name in fileconfig.sections():
            section = section_name.lower()
            if section not in valid:
                raise ConfigError("Section '%s' is not a valid config section"
                                  % (section,))
            for option in fileconfig.options(section_name):
                if (section, option.lower()) not in tracked:
                    raise ConfigError(
                        "Option '%s' is not valid in section '%s'"
                        % (option.lower(), section))
        self.settings = {}
        for (section, option), value in tracked.items():
            self.settings.setdefault(section, {})[option] = value

    def get_status(self, eventtime):
        return {'settings': self.settings}
