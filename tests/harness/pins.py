"""Pin names to chips (klippy/pins.py: PrinterPins.parse_pin/setup_pin)."""


class PinError(Exception):
    """Klipper's pins.error; klippy reports it like a config error."""


error = PinError


class PrinterPins:
    error = PinError

    def __init__(self):
        self.chips = {}
        self.active_pins = {}

    def register_chip(self, chip_name, chip):
        chip_name = chip_name.strip()
        if chip_name in self.chips:
            raise PinError("Duplicate chip name '%s'" % (chip_name,))
        self.chips[chip_name] = chip

    def parse_pin(self, pin_desc, can_invert=False, can_pullup=False):
        desc = pin_desc.strip()
        invert = pullup = 0
        if can_pullup and desc[:1] in ('^', '~'):
            pullup = 1 if desc[0] == '^' else -1
            desc = desc[1:].strip()
        if can_invert and desc[:1] == '!':
            invert = 1
            desc = desc[1:].strip()
        chip_name, pin = 'mcu', desc
        if ':' in desc:
            chip_name, pin = [p.strip() for p in desc.split(':', 1)]
        if chip_name not in self.chips:
            raise PinError("Unknown pin chip name '%s'" % (chip_name,))
        if any(c in pin for c in '^~!:') or ''.join(pin.split()) != pin:
            allowed = ("[^~] " if can_pullup else "") + (
                "[!] " if can_invert else "")
            raise PinError("Invalid pin description '%s'\n"
                           "Format is: %s[chip_name:] pin_name"
                           % (pin_desc, allowed))
        return {'chip': self.chips[chip_name], 'chip_name': chip_name,
                'pin': pin, 'invert': invert, 'pullup': pullup}

    def lookup_pin(self, pin_desc, can_invert=False, can_pullup=False,
                   share_type=None):
        params = self.parse_pin(pin_desc, can_invert, can_pullup)
        key = "%s:%s" % (params['chip_name'], params['pin'])
        shared = self.active_pins.get(key)
        if shared is not None:
            if share_type is None or share_type != shared['share_type']:
                raise PinError("pin %s used multiple times in config"
                               % (params['pin'],))
            if (params['invert'], params['pullup']) != (
                    shared['invert'], shared['pullup']):
                raise PinError("Shared pin %s must have same polarity"
                               % (params['pin'],))
            return shared
        params['share_type'] = share_type
        self.active_pins[key] = params
        return params

    def setup_pin(self, pin_type, pin_desc):
        can_invert = pin_type in ('endstop', 'digital_out', 'pwm')
        can_pullup = pin_type == 'endstop'
        params = self.lookup_pin(pin_desc, can_invert, can_pullup)
        return params['chip'].setup_pin(pin_type, params)


def add_printer_objects(config):
    config.get_printer().add_object('pins', PrinterPins())
