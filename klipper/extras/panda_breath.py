# BIQU Panda Breath chamber heater as a Klipper heater_generic
#
# Copyright (C) 2026  The panda-breath developers
#
# This file may be distributed under the terms of the GNU GPLv3 license.
#
# The device regulates its own 300 W heater; Klipper owns the target.  The
# file has five parts: the device protocol (pure functions), the link (one
# WebSocket connection kept alive by a thread that never touches Klipper
# state), the policy (one pure function deciding what the device is
# told), the Klipper glue (sensor, virtual pin, events, status) and the
# device modes (drying, auto, the community module's commands).  The glue
# and the modes run on the reactor thread only.
import collections, ipaddress, json, logging, math, os, re, select
import signal, socket, struct
import threading, time, urllib.parse
# The link thread's first connect would import the IDNA codec (host names)
# holding the GIL while Klipper's reactor waits for it: import it here.
import encodings.idna  # noqa: F401

try:
    import websocket
except ImportError:
    websocket = None

PUSH_TIME = 0.5         # the device pushes a reading about every 500 ms
REPORT_TIME = 2 * PUSH_TIME     # Klipper hears an unchanged reading this often
HEARD_TIME = 2 * REPORT_TIME    # a device reading this old is still current
SILENCE = 3 * PUSH_TIME
# Klipper has no target-change event: the target is looked at after each
# of these commands, and with every reading for changes made elsewhere.
TARGET_COMMANDS = ('SET_HEATER_TEMPERATURE', 'TURN_OFF_HEATERS')
DEVICE_MAX_TEMP = 60
MAX_FRAME = 64 * 1024
MAX_FRAME_RATE = 200    # frames a second; the device sends about 2
FAST_RETRY_TIME = 15.   # a rebooting device is back within seconds
STABLE_LINK_TIME = 10.  # a link lost sooner counts as a failed attempt
CLOSE_TIME = 1.         # the most close() waits for its last frames
LOG_REPEAT_TIME = 60.
LINK_LOG_BURST = 6      # link up/down lines per LOG_REPEAT_TIME


######################################################################
# Device protocol
######################################################################

MODE_AUTO, MODE_ALWAYS_ON, MODE_DRYING = 1, 2, 3
SENSOR_FAULTS = {1: 'short', 2: 'open'}
# Keys the device reports in its settings root that the module uses.
NUMBER_KEYS = (
    'work_mode', 'set_temp', 'temp', 'filtertemp', 'hotbedtemp',
    'isrunning', 'remaining_seconds', 'printer_type', 'warehouse_temper',
    'chamber_temp', 'ptc_sensor_status', 'warehouse_sensor_status',
    'custom_temp', 'custom_timer', 'filament_temp', 'filament_timer')
STATE_KEYS = ('work_on', 'work_mode', 'set_temp', 'isrunning')


class ProtocolError(Exception):
    pass


def _reject_constant(name):
    raise ProtocolError("non-finite number %s" % (name,))


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def decode_frame(text):
    """Parse one device frame into a dict, or raise ProtocolError."""
    if len(text) > MAX_FRAME:
        raise ProtocolError("frame of %d bytes is too large" % (len(text),))
    try:
        msg = _DECODER.decode(text)
    except (ValueError, RecursionError) as e:
        raise ProtocolError(
            "malformed JSON (%s)" % (type(e).__name__,)) from None
    if not isinstance(msg, dict):
        raise ProtocolError("frame is not a JSON object")
    return msg


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        if not math.isfinite(value):
            return None
    except OverflowError:       # an integer beyond any float
        return None
    return value


def read_settings(msg):
    """Return (settings, rejected) from a decoded frame.

    settings holds only well-typed values the module uses; rejected names
    the keys that were present but of the wrong type."""
    raw = msg.get('settings')
    if not isinstance(raw, dict):
        return {}, []
    settings, rejected = {}, []
    for key in NUMBER_KEYS:
        if key in raw:
            value = _number(raw[key])
            if value is None:
                rejected.append(key)
            else:
                settings[key] = value
    if 'work_on' in raw:
        value = raw['work_on']
        if isinstance(value, bool) or value in (0, 1):
            settings['work_on'] = bool(value)
        else:
            rejected.append('work_on')
    if 'fw_version' in raw:
        if isinstance(raw['fw_version'], str):
            settings['fw_version'] = raw['fw_version'][:32]
        else:
            rejected.append('fw_version')
    return settings, rejected


def reading_of(settings):
    """The chamber reading in a settings update, or None."""
    if 'warehouse_temper' in settings:
        return float(settings['warehouse_temper'])
    if 'chamber_temp' in settings:
        return float(settings['chamber_temp'])
    return None


def is_state_update(settings):
    return any(key in settings for key in STATE_KEYS)


def setting_frame(key, value):
    return json.dumps({'settings': {key: value}})


def device_temp(target):
    """The whole-degree set_temp for a Klipper target, clamped to what
    the device UI allows (the firmware stores a uint8 and would wrap)."""
    return max(0, min(DEVICE_MAX_TEMP, int(round(target))))


_HOST_NAME = re.compile(
    r'^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?$')


def host_problem(host):
    """Why host cannot be the device's address, or None.  The device
    speaks IPv4 only."""
    if any(c in host for c in '/@?#') or '://' in host:
        return ("is not an address: give the bare IP address or host name,"
                " without scheme, port or path, for example 192.168.1.50")
    if ':' in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return ("is not an address: give the bare IP address or host"
                    " name, without scheme, port or path; a port goes in"
                    " 'port'")
        return ("is an IPv6 address: the Panda Breath and this module use"
                " IPv4; give its IPv4 address")
    if not _HOST_NAME.match(host) or '..' in host:
        return "is not an IP address or host name"
    return None


def heat_frames(set_temp, fw_version=None):
    # V1.0.0 firmware named the target 'temp'
    temp_key = 'temp' if fw_version == 'V1.0.0' else 'set_temp'
    return [setting_frame('work_mode', MODE_ALWAYS_ON),
            setting_frame(temp_key, set_temp),
            setting_frame('work_on', True)]


def off_frames():
    return [setting_frame('work_on', False)]


# The device's own modes.  Ranges are what its UI allows: the firmware
# stores uint8 values and would wrap anything outside them.
DRY_PRESETS = {'PLA': (1, 55, 12), 'PETG': (2, 60, 12)}
CUSTOM_DRYING = 3
DRY_TEMP_RANGE = (40, DEVICE_MAX_TEMP)
DRY_HOURS_RANGE = (1, 99)
AUTO_TARGET_RANGE = (0, DEVICE_MAX_TEMP)
HEAT_AT_RANGE = (40, 120)
FAN_AT_RANGE = (0, 120)
KLIPPER_PRINTER = 2
BINDING_STATES = {
    0: 'unbound', 1: 'invalid printer info', 2: 'connecting',
    3: 'connected', 4: 'failed', 5: 'ready', 6: 'shutdown', 7: 'error',
    8: 'startup', 9: 'unknown'}
PRINTER_KEYS = ('name', 'host', 'port', 'state')


def mode_numbers(fw_version):
    """(auto, drying) work_mode numbers; V1.0.0 numbered them the other
    way round."""
    if fw_version == 'V1.0.0':
        return MODE_DRYING, MODE_AUTO
    return MODE_AUTO, MODE_DRYING


def mode_name(work_mode, fw_version=None):
    auto, drying = mode_numbers(fw_version)
    return {auto: 'auto', MODE_ALWAYS_ON: 'always-on',
            drying: 'drying'}.get(work_mode, 'unknown')


def read_printer(msg):
    """The Klipper binding fields of a printer root (never Bambu's access
    code), well-typed only."""
    raw = msg.get('printer')
    if not isinstance(raw, dict):
        return {}
    printer = {}
    for key in PRINTER_KEYS:
        value = raw.get(key)
        if key in ('name', 'host') and isinstance(value, str):
            printer[key] = value[:64]
        elif key in ('port', 'state') and _number(value) is not None:
            printer[key] = value
    return printer


def _check_range(name, value, limits):
    if isinstance(value, bool) or not isinstance(value, int) or not (
            limits[0] <= value <= limits[1]):
        raise ValueError("%s must be a whole number %d-%d, not %r"
                         % (name, limits[0], limits[1], value))


def dry_frames(temp, hours, preset=None, fw_version=None):
    """Frames starting a drying cycle: a device preset (1 PLA, 2 PETG)
    or the custom temp/hours.  isrunning goes last: sent before work_on,
    the firmware's 200 ms mode rule may see work_on false and reset it."""
    _check_range('temp', temp, DRY_TEMP_RANGE)
    _check_range('hours', hours, DRY_HOURS_RANGE)
    drying = mode_numbers(fw_version)[1]
    if fw_version == 'V1.0.0':
        # No filament_drying_mode: it dries at the custom values.
        frames = [setting_frame('filament_temp', temp),
                  setting_frame('filament_timer', hours)]
    elif preset is not None:
        frames = [setting_frame('filament_drying_mode', preset)]
    else:
        frames = [setting_frame('filament_temp', temp),
                  setting_frame('filament_timer', hours),
                  setting_frame('filament_drying_mode', CUSTOM_DRYING)]
    return frames + [setting_frame('work_mode', drying),
                     setting_frame('work_on', True),
                     setting_frame('isrunning', 1)]


def dry_stop_frames():
    return [setting_frame('isrunning', 0)] + off_frames()


def auto_frames(target, heat_at, fan_at, fw_version=None):
    """Frames for auto mode: heat toward target while the printer's bed
    target is >= heat_at, run the fans while it is >= fan_at."""
    _check_range('target', target, AUTO_TARGET_RANGE)
    _check_range('heat_at', heat_at, HEAT_AT_RANGE)
    _check_range('fan_at', fan_at, FAN_AT_RANGE)
    return [setting_frame('set_temp', target),
            setting_frame('hotbedtemp', heat_at),
            setting_frame('filtertemp', fan_at),
            setting_frame('work_mode', mode_numbers(fw_version)[0]),
            setting_frame('work_on', True)]


# The frames the panda-breath command sends to bind the device.
def printer_type_frame(kind):
    """Set the printer type (1 Bambu, 2 Klipper): the device saves it and
    reboots, even when it is unchanged."""
    _check_range('printer type', kind, (1, KLIPPER_PRINTER))
    return setting_frame('printer_type', kind)


def bind_frame(name, ip, port):
    """Bind the device to the Klipper printer whose Moonraker is at
    ip:port, shown on the device as name (an empty name is ignored)."""
    if not isinstance(name, str) or not 1 <= len(name) <= 31 or \
            not name.isprintable():
        raise ValueError("the printer name must be 1-31 printable"
                         " characters, not %r" % (name,))
    try:
        if not isinstance(ip, str):
            raise ValueError()
        ip = str(ipaddress.IPv4Address(ip))
    except ValueError:
        raise ValueError("the printer's address must be an IPv4 address,"
                         " not %r" % (ip,)) from None
    _check_range('port', port, (1, 65535))
    return json.dumps({'printer': {'name': name, 'ip': ip, 'port': port}})


def unbind_frame():
    return json.dumps({'printer': {'disconnect': 1}})


######################################################################
# Link: one WebSocket connection, kept alive by a thread
######################################################################

class LinkOptions:
    def __init__(self, connect_timeout=5., reconnect_delay=.5,
                 reconnect_max_delay=30., link_timeout=6.,
                 keepalive_interval=5., send_timeout=5.):
        self.connect_timeout = connect_timeout
        self.reconnect_delay = reconnect_delay
        self.reconnect_max_delay = reconnect_max_delay
        self.link_timeout = link_timeout
        self.keepalive_interval = keepalive_interval
        self.send_timeout = send_timeout


class LinkDown(Exception):
    pass


class DeviceLink:
    """Connects, reads and writes in its own thread.

    notify(kind, *args) is called from that thread for each event:
    ('up', settings) once the snapshot arrived, ('update', settings,
    rx_time), ('down', reason) and ('error', kind, text) for bad input
    that was dropped.  send() and close() may be called from any thread
    and never block; once close() returned, notify is not called again."""
    def __init__(self, url, notify, options):
        self.url = url
        self.address = urllib.parse.urlsplit(url)
        self.notify = notify
        self.options = options
        self.outbox = collections.deque()
        self.final = []         # frames handed to close()
        self.closing = False
        self.sock = None        # the socket being connected or served
        self.repeated = None    # (frame, time) of the last reading handed on
        self.up_time = None
        # Re-entrant: the SIGTERM handler closes the link on the thread
        # it interrupted, which may hold the lock.
        self.lock = threading.RLock()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name='panda_breath link')
    def start(self):
        self.thread.start()
    def send(self, frames):
        self.outbox.extend(frames)
        self._wake()
    def close(self, frames=()):
        with self.lock:
            self.final.extend(frames)
            self.closing = True
            if not self.final:
                # Nothing left to say: unblock a connect or handshake now
                self._interrupt()
        self._wake()
    def stop(self, frames=(), timeout=CLOSE_TIME):
        """close(), then wait for the thread; a thread still saying its
        last words after timeout is cut off.  True once it ended."""
        self.close(frames)
        self.thread.join(timeout)
        if self.thread.is_alive():
            with self.lock:
                self._interrupt()
            self.thread.join(timeout)
        return not self.thread.is_alive()
    def _interrupt(self):
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    def _emit(self, *event):
        with self.lock:
            if not self.closing:
                self.notify(*event)
    def _wake(self):
        with self.lock:
            if self.wake_w is None:
                return
            try:
                os.write(self.wake_w, b'.')
            except OSError:
                pass
    def _drain_wake(self):
        try:
            while os.read(self.wake_r, 512):
                pass
        except (BlockingIOError, OSError):
            pass
    def _sleep(self, delay):
        end = time.monotonic() + delay
        while not self.closing:
            left = end - time.monotonic()
            if left <= 0.:
                break
            select.select([self.wake_r], [], [], left)
            self._drain_wake()
    # Thread body
    def _run(self):
        opts = self.options
        delay = 0.
        lost = -FAST_RETRY_TIME
        try:
            while not self.closing:
                self._sleep(delay)
                if self.closing:
                    break
                if self._session():
                    lost = time.monotonic()
                # Soon after a working link was lost (a reboot) retry at
                # once each time; back off for a device that stays away
                # or keeps dropping the link.
                if time.monotonic() - lost < FAST_RETRY_TIME:
                    delay = opts.reconnect_delay
                else:
                    delay = min(max(delay * 2., opts.reconnect_delay),
                                opts.reconnect_max_delay)
            if self.final:
                self._session()     # the link was down when closed
        finally:
            with self.lock:
                os.close(self.wake_r)
                os.close(self.wake_w)
                self.wake_w = None
    def _connect(self):
        port = self.address.port or 80
        addrs = socket.getaddrinfo(self.address.hostname, port, 0,
                                   socket.SOCK_STREAM)
        for family, kind, proto, _, addr in addrs:
            sock = socket.socket(family, kind, proto)
            with self.lock:
                if self.closing and not self.final:
                    sock.close()
                    raise LinkDown("closing")
                self.sock = sock
            try:
                sock.settimeout(self.options.connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.connect(addr)
                # skip_utf8_validation: _receive decodes the text itself
                ws = websocket.WebSocket(skip_utf8_validation=True)
                ws.connect(self.url, socket=sock, suppress_origin=True,
                           timeout=self.options.connect_timeout)
                return ws
            except Exception:
                self._drop_socket()
                if addr == addrs[-1][4]:
                    raise
        raise LinkDown("no address for %s" % (self.address.hostname,))
    def _drop_socket(self):
        with self.lock:
            sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()
    def _stable(self):
        # A link lost soon after it came up counts as a failed attempt.
        return (self.up_time is not None
                and time.monotonic() - self.up_time >= STABLE_LINK_TIME)
    def _session(self):
        self.up_time = None
        try:
            ws = self._connect()
        except Exception as e:
            self._emit('down', describe_error(e, 'connect'))
            return False
        with self.lock:
            closing = self.closing
            if not closing:
                self.outbox.clear()
        if closing:
            self._goodbye(ws)
            return False
        try:
            self._serve(ws)
        except Exception as e:
            if isinstance(e, LinkDown):
                reason = str(e)
            else:
                reason = describe_error(e, 'link')
            self._abort(ws)
            self._emit('down', reason)
            return self._stable()
        self._goodbye(ws)
        self._emit('down', 'closed')
        return self._stable()
    def _goodbye(self, ws):
        try:
            ws.settimeout(CLOSE_TIME)
            while self.outbox:
                ws.send(self.outbox.popleft())
            with self.lock:
                final, self.final = self.final, []
            for frame in final:
                ws.send(frame)
            ws.close(timeout=CLOSE_TIME)
        except Exception:
            pass
        self._drop_socket()
    def _abort(self, ws):
        # A failed link is reset, not closed: frames the device has not
        # taken yet die with it instead of arriving after Klipper's intent
        # changed.  The next snapshot is the truth again.
        self.outbox.clear()
        try:
            ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                               struct.pack('ii', 1, 0))
        except (AttributeError, OSError):
            pass
        self._drop_socket()
    def _flush(self, ws):
        if not self.outbox:
            return
        ws.settimeout(self.options.send_timeout)
        while self.outbox:
            ws.send(self.outbox.popleft())
        ws.settimeout(self.options.link_timeout)
    def _serve(self, ws):
        opts = self.options
        sock = ws.sock
        established = False
        self.repeated = None
        ws.settimeout(opts.link_timeout)
        start = last_rx = last_ping = last_text = time.monotonic()
        second, frames = start, 0
        while True:
            if self.closing:
                return
            now = time.monotonic()
            if now - last_text <= SILENCE:
                # Nothing is written into a link that went quiet: held
                # frames are dropped with it and the reconnect re-asserts.
                self._flush(ws)
            if not established and now - start > opts.link_timeout:
                raise LinkDown("the device sent no settings snapshot")
            # Pongs come from the device's HTTP server, which outlives a
            # hung push task: only text frames prove the device works.
            if now - last_text > opts.link_timeout:
                raise LinkDown("no reading from the device for %.0f s"
                               % (now - last_text,))
            if now - last_ping >= opts.keepalive_interval:
                ws.ping()
                last_ping = now
            wait = min(last_ping + opts.keepalive_interval,
                       last_text + opts.link_timeout) - now
            readable, _, _ = select.select([sock, self.wake_r], [], [],
                                           max(0., wait) + .01)
            if self.wake_r in readable:
                self._drain_wake()
            if sock not in readable:
                continue
            if self._frame_too_large(ws):
                raise LinkDown("frame over %d bytes from the device"
                               % (MAX_FRAME,))
            opcode, frame = ws.recv_data_frame(True)
            last_rx = time.monotonic()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                raise LinkDown("the device closed the connection")
            if last_rx - second >= 1.:
                second, frames = last_rx, 0
            frames += 1
            if frames == MAX_FRAME_RATE:
                # Parsing a flood would starve Klipper's reactor of the
                # interpreter: leave the rest in the socket for a while.
                self._emit('error', 'flood', "device sends over %d frames"
                           " a second; reading them more slowly"
                           % (MAX_FRAME_RATE,))
                self._sleep(second + 1. - last_rx)
                last_rx = time.monotonic()
            if opcode == websocket.ABNF.OPCODE_BINARY:
                self._emit('error', 'binary', "binary frame dropped")
                continue
            if opcode != websocket.ABNF.OPCODE_TEXT:
                continue
            if established and last_rx - last_text > SILENCE:
                # Pushes were lost (a panel press among them?) and the
                # device echoes nothing: re-read its state.
                raise LinkDown("device silent for %.1f s"
                               % (last_rx - last_text,))
            last_text = last_rx
            if self._receive(frame.data, last_rx, established):
                established = True
                self.up_time = last_rx
    def _frame_too_large(self, ws):
        # Read the header before the payload so a huge frame is refused
        # without buffering it.
        buf = ws.frame_buffer
        if buf.needs_header():
            buf.recv_header()
        if buf.needs_length():
            buf.recv_length()
        return buf.length > MAX_FRAME
    def _receive(self, data, rx_time, established):
        # The device pushes its whole-degree reading twice a second,
        # changed or not.  Klipper hears each change at once and the same
        # frame again about once per REPORT_TIME: half the reactor's
        # wake-ups of a steady chamber, and no parsing of the other half.
        repeated = self.repeated
        if (repeated is not None and data == repeated[0]
                and rx_time - repeated[1] < REPORT_TIME - PUSH_TIME / 2):
            return False
        self.repeated = None
        text = data
        if isinstance(text, bytes):
            text = text.decode('utf-8', 'replace')
        try:
            msg = decode_frame(text)
        except ProtocolError as e:
            self._emit('error', 'frame', str(e))
            return False
        settings, rejected = read_settings(msg)
        printer = read_printer(msg)
        if printer:
            settings['printer'] = printer
        if rejected:
            self._emit('error', 'type', "ignored wrongly typed %s"
                       % (', '.join(sorted(rejected)),))
        if not established and is_state_update(settings):
            self._emit('up', settings)
            return True
        if settings:
            if (established and not rejected and len(settings) == 1
                    and reading_of(settings) is not None):
                self.repeated = (data, rx_time)
            self._emit('update', settings, rx_time)
        return False


def merge_settings(old, new):
    """Two updates that queued up, as one; a sensor fault is kept."""
    merged = dict(old)
    merged.update(new)
    for key in ('warehouse_sensor_status', 'ptc_sensor_status'):
        if old.get(key) in SENSOR_FAULTS:
            merged[key] = old[key]
    return merged


def describe_error(e, stage):
    if websocket is not None:
        if isinstance(e, websocket.WebSocketBadStatusException):
            return "device answered HTTP %s instead of a WebSocket" % (
                e.status_code,)
        if isinstance(e, websocket.WebSocketTimeoutException):
            return "%s timed out" % (stage,)
        if isinstance(e, websocket.WebSocketConnectionClosedException):
            return "connection closed by the device"
        if isinstance(e, websocket.WebSocketAddressException):
            return "cannot resolve the device's host name"
    if isinstance(e, socket.gaierror):
        return "cannot resolve the device's host name"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, TimeoutError):
        return "%s timed out" % (stage,)
    text = str(e) or type(e).__name__
    return "%s failed: %s" % (stage, text[:120])


######################################################################
# Policy: what the device is told
######################################################################

# decide() is the only place that chooses what the device is told.  It
# is pure: Klipper's wish, the device's last report, what the module
# remembers and one event in; the frames, the console lines and the new
# memory out.  Each decision names the row of TABLE it followed.

class Wish(collections.namedtuple(
        'Wish', 'target setpoint shutdown expired hold', defaults=(
            0., 0, False, False, None))):
    """Klipper's chamber target, the whole-degree set_temp that serves
    it on the device, whether Klipper shut down or stopped refreshing
    its heater pin, and why a guard holds the device off (or None)."""
    __slots__ = ()
    @property
    def heat(self):
        return self.target > 0. and not (self.shutdown or self.expired
                                         or self.hold)
    @property
    def off(self):
        """The device must be off, whatever it runs."""
        return self.shutdown or self.hold is not None


class Memory(collections.namedtuple(
        'Memory', 'control session inherited off_due drying sent', defaults=(
            None, None, False, False, False, {}))):
    """What the module remembers beyond the device's report.

    control: 'heat' once Klipper's target was sent, 'yielded' once the
    owner took the device while Klipper had a target; session: the
    drying or auto session this Klipper started; inherited: one that an
    earlier Klipper started may still run; off_due: a shutdown's off the
    device has not confirmed; drying: a drying cycle is known to run;
    sent: settings written since the device last reported them."""
    __slots__ = ()


class Event(collections.namedtuple('Event', 'kind settings params',
                                   defaults=({}, {}))):
    """kind is one of EVENTS; settings are a push's reported settings;
    params are a mode command's parameters."""
    __slots__ = ()


Decision = collections.namedtuple(
    'Decision', 'rule told frames messages memory refused')

EVENTS = {
    'set': "Klipper's chamber target is set (any value, the same again"
           " too)",
    'wish': "Klipper's heater pin expires or is refreshed again, a guard"
            " trips or clears, or the chamber loop moves the setpoint",
    'snapshot': "the link comes up and the device reports all its"
                " settings",
    'push': "the device announces new settings (a panel press, the end of"
            " drying, a sensor fault)",
    'down': "the link is lost",
    'shutdown': "Klipper shuts down",
    'stop': "Klipper restarts or stops",
    'dry': "`PANDA_BREATH_DRY`",
    'dry_stop': "`PANDA_BREATH_DRY_STOP`",
    'auto': "`PANDA_BREATH_AUTO`",
    'auto_off': "`PANDA_BREATH_AUTO ENABLE=0`",
    'release': "`panda-breath disable` (Klipper runs without the module)",
    'unbind': "`panda-breath unbind`",
}
TOLD = {
    None: "nothing",
    'heat': "always-on mode, the setpoint, on",
    'setpoint': "the new setpoint only",
    'off': "off",
    'dry': "the drying cycle, on",
    'dry_stop': "stop drying, off",
    'auto': "auto mode with its thresholds, on",
}
# (rule, event, when, told): docs/safety.md shows this table, and a test
# holds every decision to its row.
TABLE = (
    ('shutdown', 'shutdown', "the link is up", 'off'),
    ('shutdown-later', 'shutdown',
     "the link is down: the off is due at the next snapshot, also after"
     " a RESTART", None),
    ('set-later', 'set', "the link is down: the snapshot applies it",
     None),
    ('set-heat', 'set',
     "the target is above 0 (it ends a drying or auto session and takes"
     " the device back from its owner)", 'heat'),
    ('set-off', 'set',
     "the target is 0, and the device heats for Klipper or is on in"
     " always-on mode", 'off'),
    ('set-leave', 'set',
     "the target is 0, and the device is off or runs a drying or auto"
     " session", None),
    ('wish-hold', 'wish',
     "a guard holds the device off and it is on, whatever it runs",
     'off'),
    ('wish-setpoint', 'wish',
     "Klipper heats the device, which is on in always-on mode at another"
     " setpoint", 'setpoint'),
    ('wish-heat', 'wish',
     "Klipper heats the device, which is off or in another mode (its pin"
     " is refreshed again)", 'heat'),
    ('wish-off', 'wish',
     "Klipper's target stands but its heater pin expired, and the device"
     " may heat", 'off'),
    ('wish-same', 'wish',
     "anything else (the device already does it, or is not Klipper's)",
     None),
    ('snapshot-off-due', 'snapshot',
     "Klipper is shut down, a guard holds the device off, or a"
     " shutdown's off is unconfirmed and no target was set since; and"
     " the device is on", 'off'),
    ('snapshot-heat', 'snapshot',
     "the target is above 0 and Klipper heats the device (the owner has"
     " not taken it since the target was set)", 'heat'),
    ('snapshot-yielded', 'snapshot',
     "the target is above 0 but the owner took the device after it was"
     " set", None),
    ('snapshot-no-target', 'snapshot',
     "there is no target and the device is on in always-on mode", 'off'),
    ('snapshot-outlived', 'snapshot',
     "the device runs the drying or auto session an earlier Klipper"
     " started", 'off'),
    ('snapshot-leave', 'snapshot',
     "anything else (off, or a session started on the device)", None),
    ('push-shutdown', 'push',
     "Klipper is shut down or a guard holds the device off, and the"
     " device is on", 'off'),
    ('push-no-target', 'push',
     "the device is on in always-on mode with no target", 'off'),
    ('push-yield', 'push',
     "Klipper heats the device, which is now off or in another mode: the"
     " module lets go until the target is set again", None),
    ('push-leave', 'push', "anything else", None),
    ('down', 'down',
     "always: writes the device never confirmed are forgotten", None),
    ('stop-off', 'stop',
     "the link is up, and the device heats for Klipper, is on in"
     " always-on mode, or runs a session Klipper started", 'off'),
    ('stop-leave', 'stop', "anything else", None),
    ('refused', 'dry, auto',
     "the link is down, Klipper is shut down, a guard holds the device"
     " off, the chamber heater has a target, or (auto) the device is bound"
     " to no Klipper printer: a G-code error", None),
    ('dry', 'dry', "otherwise", 'dry'),
    ('auto', 'auto', "otherwise", 'auto'),
    ('dry-stop', 'dry_stop', "a drying cycle runs", 'dry_stop'),
    ('auto-off', 'auto_off', "auto mode runs", 'off'),
    ('mode-idle', 'dry_stop, auto_off',
     "that mode does not run (the link down: a G-code error)", None),
    ('release', 'release', "the device is on in always-on mode", 'off'),
    ('unbind', 'unbind', "the device runs auto mode, which would follow"
     " no printer", 'off'),
    ('release-leave', 'release, unbind', "anything else", None),
)


def set_temp_of(view):
    return view.get('set_temp', view.get('temp'))


def heats_for_klipper(view):
    """On in always-on mode: the mode only Klipper uses."""
    return bool(view.get('work_on')) and view.get(
        'work_mode') == MODE_ALWAYS_ON


def in_session(view):
    """On in another mode: drying, auto, or one this module cannot name."""
    return bool(view.get('work_on')) and view.get(
        'work_mode') != MODE_ALWAYS_ON


def session_of(view):
    """The session the device runs ('drying', 'auto', 'unknown'), or None;
    a finished drying cycle does not heat and is none."""
    if not in_session(view):
        return None
    kind = mode_name(view.get('work_mode'), view.get('fw_version'))
    if kind == 'drying' and not view.get('isrunning'):
        return None
    return kind


def is_bound(view):
    return (view.get('printer_type') == KLIPPER_PRINTER
            and view.get('printer', {}).get('state', 0) >= 2)


def decide(wish, report, memory, event):
    """The Decision for one event.  report is the device's last report
    (None while the link is down); memory.sent lays the writes it has
    not confirmed over it."""
    sent = memory.sent
    if report is not None and event.kind == 'snapshot':
        sent = {}
    elif report is not None and event.kind == 'push':
        sent = {k: v for k, v in sent.items() if k not in event.settings}
    view = None
    if report is not None:
        view = dict(report)
        view.update(sent)
    return _DECIDE[event.kind](
        _Choice(wish, view, memory._replace(sent=sent), event))


class _Choice:
    # One decision being made: the rules below read its inputs and say
    # what to tell through tell().
    def __init__(self, wish, view, memory, event):
        self.wish, self.view, self.memory, self.event = (
            wish, view, memory, event)
        self.messages = []
    def say(self, text):
        self.messages.append("Panda Breath: " + text)
    def remember(self, **changes):
        self.memory = self.memory._replace(**changes)
    def end_session(self):
        self.remember(session=None, inherited=False, drying=False)
    def tell(self, rule, told=None, refused=None):
        frames = []
        if told is not None:
            frames = _frames(told, self.wish, self.view, self.event.params)
            sent = dict(self.memory.sent)
            for frame in frames:
                sent.update(json.loads(frame)['settings'])
            self.remember(sent=sent)
        return Decision(rule, told, frames, self.messages, self.memory,
                        refused)


def _frames(told, wish, view, params):
    fw = view.get('fw_version')
    if told == 'heat':
        return heat_frames(wish.setpoint, fw)
    if told == 'setpoint':
        return heat_frames(wish.setpoint, fw)[1:2]
    if told == 'off':
        return off_frames()
    if told == 'dry':
        return dry_frames(params['temp'], params['hours'],
                          params.get('preset'), fw)
    if told == 'dry_stop':
        return dry_stop_frames()
    return auto_frames(params['target'], params['heat_at'],
                       params['fan_at'], fw)


def _drying_news(c):
    # The device pushes no countdown, only the end of a cycle.
    view, settings = c.view, c.event.settings
    drying = in_session(view) and mode_name(
        view.get('work_mode'), view.get('fw_version')) == 'drying'
    if drying and view.get('isrunning'):
        c.remember(drying=True)
    elif c.memory.drying and 'isrunning' in settings:
        c.remember(drying=False)
        if drying:
            if settings.get('remaining_seconds') == 0:
                c.say("filament drying finished")
            else:
                c.say("filament drying stopped early")
            if c.memory.session == 'drying':
                c.end_session()


def _session_news(c):
    # A session Klipper started that the device no longer runs is over.
    kind = session_of(c.view)
    if c.memory.session is not None and c.memory.session != kind:
        c.say("the %s session Klipper started was changed at the device"
              " and is now the device's" % (c.memory.session,))
        c.end_session()
    return kind


def _heat(c, rule):
    kind = session_of(c.view)
    if kind is not None:
        c.say("chamber target %.0f replaces the %s session; the device is"
              " now in always-on mode" % (c.wish.target, kind))
    c.end_session()
    c.remember(control='heat', off_due=False)
    return c.tell(rule, 'heat')


def _on_shutdown(c):
    c.end_session()
    c.remember(control=None, off_due=True)
    if c.view is None:
        return c.tell('shutdown-later')
    return c.tell('shutdown', 'off')


def _on_set(c):
    wish, view, before = c.wish, c.view, c.memory.control
    if wish.target > 0. and not wish.shutdown:
        # A new target once Klipper is ready again ends a shutdown's off
        c.remember(control='heat', off_due=False)
    else:
        c.remember(control=None)
    if view is None:
        return c.tell('set-later')
    if wish.heat:
        return _heat(c, 'set-heat')
    if view.get('work_on', True) and (
            before == 'heat' or not in_session(view)):
        return c.tell('set-off', 'off')
    return c.tell('set-leave')


def _on_wish(c):
    view, wish = c.view, c.wish
    if view is not None and wish.hold is not None and view.get(
            'work_on', True):
        c.end_session()
        return c.tell('wish-hold', 'off')
    if view is None or c.memory.control != 'heat':
        return c.tell('wish-same')
    if wish.heat:
        if not heats_for_klipper(view):
            return c.tell('wish-heat', 'heat')
        if set_temp_of(view) != wish.setpoint:
            return c.tell('wish-setpoint', 'setpoint')
    elif view.get('work_on', True):
        return c.tell('wish-off', 'off')
    return c.tell('wish-same')


def _on_snapshot(c):
    view, wish, memory = c.view, c.wish, c.memory
    _drying_news(c)
    if not wish.heat and (wish.off or memory.off_due):
        if view.get('work_on'):
            c.end_session()
            return c.tell('snapshot-off-due', 'off')
        c.remember(off_due=False)
    if wish.heat and memory.control == 'heat':
        return _heat(c, 'snapshot-heat')
    if wish.heat:
        _session_news(c)
        return c.tell('snapshot-yielded')
    if heats_for_klipper(view):
        c.end_session()
        return c.tell('snapshot-no-target', 'off')
    kind = session_of(view)
    if (in_session(view) and c.memory.session is None
            and c.memory.inherited):
        c.say("ending the %s session Klipper started before it restarted"
              % (mode_name(view.get('work_mode'), view.get('fw_version')),))
        c.end_session()
        return c.tell('snapshot-outlived', 'off')
    if c.memory.session != kind:
        _session_news(c)
        if kind is not None:
            c.say("leaving the %s session started on the device running"
                  % (kind,))
    c.remember(inherited=False)
    return c.tell('snapshot-leave')


def _on_push(c):
    view, wish, memory, settings = c.view, c.wish, c.memory, c.event.settings
    _drying_news(c)
    if 'work_on' in settings and not (wish.shutdown and settings['work_on']):
        c.remember(off_due=False)   # seen off, or switched on since
    if wish.off and view.get('work_on'):
        c.end_session()
        return c.tell('push-shutdown', 'off')
    _session_news(c)
    if heats_for_klipper(view) and not wish.heat:
        return c.tell('push-no-target', 'off')
    if memory.control == 'heat' and wish.target > 0. and not (
            heats_for_klipper(view)):
        c.remember(control='yielded')
        c.say("the device left Klipper's control (%s); set the chamber"
              " target again to take it back"
              % (mode_name(view.get('work_mode'), view.get('fw_version'))
                 if view.get('work_on') else 'switched off',))
        return c.tell('push-yield')
    return c.tell('push-leave')


def _on_down(c):
    c.remember(sent={})
    return c.tell('down')


def _on_stop(c):
    view, memory = c.view, c.memory
    if view is not None and (memory.control == 'heat'
                             or memory.session is not None
                             or heats_for_klipper(view)):
        # Should the off not arrive, the next Klipper still ends the
        # session this one started.
        c.remember(inherited=memory.inherited or memory.session is not None,
                   session=None, control=None)
        return c.tell('stop-off', 'off')
    return c.tell('stop-leave')


def _not_connected(c):
    return ("Panda Breath is not connected (%s); nothing was sent"
            % (c.event.params.get('link_error') or 'connecting',))


def _refusal(c):
    if c.view is None:
        return _not_connected(c)
    if c.wish.shutdown:
        return "Klipper is shut down; nothing was sent"
    if c.wish.hold is not None:
        return "Panda Breath is held off (%s); nothing was sent" % (
            c.wish.hold,)
    if c.wish.target > 0.:
        return ("Panda Breath runs one mode at a time and the chamber heater"
                " has target %.0f: turn it off first"
                " (SET_HEATER_TEMPERATURE HEATER=%s TARGET=0)"
                % (c.wish.target, c.event.params.get('heater')))
    return None


def _start(c, told, session):
    c.end_session()
    c.remember(control=None, session=session, off_due=False,
               drying=session == 'drying')
    return c.tell(told, told)


def _on_dry(c):
    refused = _refusal(c)
    if refused is not None:
        return c.tell('refused', refused=refused)
    params = c.event.params
    c.say("drying filament at %dC for %d h"
          % (params['temp'], params['hours']))
    return _start(c, 'dry', 'drying')


def _on_auto(c):
    refused = _refusal(c)
    if refused is None and not is_bound(c.view):
        refused = ("Panda Breath is not bound to a Klipper printer, so auto"
                   " mode would follow no bed: run 'panda-breath bind' on"
                   " the printer first (needs firmware V1.0.3 or later)")
    if refused is not None:
        return c.tell('refused', refused=refused)
    params = c.event.params
    c.say("auto mode, chamber %dC while the bed target is >= %dC, fans"
          " from %dC" % (params['target'], params['heat_at'],
                         params['fan_at']))
    state = c.view.get('printer', {}).get('state')
    if state != 3:
        c.say("its link to this printer is %s; it heats only while that"
              " link is up" % (BINDING_STATES.get(state, 'unknown'),))
    return _start(c, 'auto', 'auto')


def _on_dry_stop(c):
    if c.view is None:
        return c.tell('mode-idle', refused=_not_connected(c))
    if session_of(c.view) != 'drying':
        c.say("not drying")
        return c.tell('mode-idle')
    c.end_session()
    c.say("filament drying stopped")
    return c.tell('dry-stop', 'dry_stop')


def _on_auto_off(c):
    if c.view is None:
        return c.tell('mode-idle', refused=_not_connected(c))
    if session_of(c.view) != 'auto':
        c.say("auto mode is not running")
        return c.tell('mode-idle')
    c.end_session()
    c.say("auto mode off")
    return c.tell('auto-off', 'off')


def _on_release(c):
    if c.view is not None and heats_for_klipper(c.view):
        return c.tell('release', 'off')
    return c.tell('release-leave')


def _on_unbind(c):
    if c.view is not None and session_of(c.view) == 'auto':
        return c.tell('unbind', 'off')
    return c.tell('release-leave')


_DECIDE = {
    'set': _on_set, 'wish': _on_wish, 'snapshot': _on_snapshot,
    'push': _on_push, 'down': _on_down, 'shutdown': _on_shutdown,
    'stop': _on_stop, 'dry': _on_dry, 'auto': _on_auto,
    'dry_stop': _on_dry_stop, 'auto_off': _on_auto_off,
    'release': _on_release, 'unbind': _on_unbind,
}


######################################################################
# Chamber loop: the device's thermostat as the inner loop
######################################################################

# The device regulates its outlet air, which reads above the chamber (4-9
# C when steady, far more while warming).  With a chamber sensor the
# module moves the device's setpoint instead: a PI loop on the chamber
# that learns that gap.  Its pace is counted in updates, one per
# setpoint_interval, so it behaves the same whatever the interval.
LOOP_KP = 1.5           # setpoint degrees per degree the chamber lags
LOOP_KI = .1            # share of the chamber's error learned per update
LOOP_LEAD = 2.          # updates ahead the chamber's rise is projected
LOOP_ZONE = 2.          # the gap is learned this close to the target,
LOOP_STILL = .1         # or where the chamber moves less than this
LOOP_GAP = 4.           # first guess of the gap
LOOP_MAX_GAP = 20.
SETPOINT_STEP = 1.5    # the setpoint moves once it is this far off
STALL_UPDATES = 5       # at the device's maximum this many updates with
STALL_RISE = .5         # the chamber rising less than this: a stall


class ChamberLoop:
    def __init__(self, interval):
        self.interval = interval
        self.gap = LOOP_GAP
        self.setpoint = None
        self.total = self.count = 0
        self.means = collections.deque(maxlen=STALL_UPDATES + 1)
        self.at_max = 0
        self.next_time = 0.
    def restart(self):
        # A new target is acted on at the next reading; the gap stays
        self.setpoint = None
        self.total = self.count = 0
        self.means.clear()
        self.at_max = 0
    def update(self, eventtime, chamber, target):
        """Take one chamber reading; the device setpoint to hold."""
        self.total += chamber
        self.count += 1
        if self.setpoint is not None and eventtime < self.next_time:
            return self.setpoint
        mean = self.total / self.count
        self.total = self.count = 0
        self.next_time = eventtime + self.interval
        rise = mean - self.means[-1] if self.means else 0.
        self.means.append(mean)
        error = target - mean
        drive = LOOP_KP * (error - LOOP_LEAD * rise)
        want = target + self.gap + drive
        # Learn near the target, or where the chamber stays put: never
        # while warming, nor past what the device can do (a frozen or
        # far-off reading teaches the loop nothing).
        pinned = ((want >= DEVICE_MAX_TEMP and error > 0.)
                  or (want <= target and error < 0.))
        if not pinned and (abs(error) < LOOP_ZONE or abs(rise) < LOOP_STILL):
            self.gap = max(0., min(LOOP_MAX_GAP, self.gap + LOOP_KI * error))
            want = target + self.gap + drive
        want = max(round(target), min(DEVICE_MAX_TEMP, want))
        if self.setpoint is None or abs(want - self.setpoint) >= SETPOINT_STEP:
            self.setpoint = int(round(want))
        self.at_max = self.at_max + 1 if self.setpoint >= DEVICE_MAX_TEMP \
            else 0
        return self.setpoint
    def stalled(self, target):
        """The chamber's mean if it stopped rising below the target with
        the device held at its maximum, else None."""
        means = self.means
        if self.at_max <= STALL_UPDATES or len(means) <= STALL_UPDATES:
            return None
        if means[-1] - means[0] >= STALL_RISE or means[-1] >= target - 1.:
            return None
        return means[-1]


######################################################################
# Chamber: what the heater shows, and what may stop it
######################################################################

WATCH_TIME = 1.         # how often the chamber sensor and guards are read
SENSOR_DEAD_TIME = 10.  # a sensor silent, or stuck on one value, this long
GUARD_MARGIN = 5.       # a tripped guard resumes this far under its limit
WAIT_MARGIN = 1.        # PANDA_BREATH_WAIT: this close to the target is there


class SensorWatch:
    """The readings of another Klipper temperature object.  Where it has
    a sensor with a callback (temperature_sensor, heaters, fans), each
    reading is seen as it is made, in whatever thread makes it, so a
    sensor that stopped is told from a steady one: Klipper's
    temperature_host stops for good after a read error while its status
    keeps the last value.  Other objects are read from their status."""
    def __init__(self, reactor, obj):
        self.obj = obj
        self.last = None            # (reactor time, temperature)
        self.changed = None         # reactor time the value last changed
        sensor = getattr(obj, 'sensor', None)
        callback = getattr(obj, 'temperature_callback', None)
        self.hooked = callback is not None and hasattr(sensor,
                                                       'setup_callback')
        # A slow sensor (aht10 reports every 30 s) is not a dead one
        self.patience = SENSOR_DEAD_TIME
        if self.hooked:
            every = getattr(sensor, 'get_report_time_delta', None)
            if every is not None:
                self.patience = max(SENSOR_DEAD_TIME, 3. * every())
            def seen(read_time, temp):
                self._note(reactor.monotonic(), temp)
                callback(read_time, temp)
            sensor.setup_callback(seen)
    def _note(self, now, temp):
        last = self.last
        if last is None or last[1] != temp:
            self.changed = now
        self.last = (now, temp)
    def reading(self, eventtime):
        if not self.hooked:
            temp = self.obj.get_status(eventtime).get('temperature')
            if temp is not None:
                self._note(eventtime, temp)
        return self.last
    def silence(self, eventtime, since):
        """Why this sensor counts as dead, or None."""
        heard = since if self.last is None else self.last[0]
        if eventtime - heard > self.patience:
            return "has not reported for %.0f s" % (eventtime - heard,)
        return None
    def stuck(self, eventtime):
        if (self.hooked and self.changed is not None
                and eventtime - self.changed > self.patience):
            return "has read exactly %sC for %.0f s" % (
                self.last[1], eventtime - self.changed)
        return None


def parse_guards(config):
    guards = []
    for line in (config.get('guard', None) or '').split('\n'):
        if not line.strip():
            continue
        name, _, limit = line.rpartition(',')
        try:
            limit = float(limit)
        except ValueError:
            limit = None
        if not name.strip() or limit is None or not 0. < limit < 200.:
            raise config.error(
                "Option 'guard' in section 'panda_breath': '%s' is not"
                " '<Klipper object>, <max C>' (for example"
                " 'temperature_sensor cavity, 70')" % (line.strip(),))
        guards.append((name.strip(), limit))
    return guards


class Guard:
    def __init__(self, name, limit, watch):
        self.name, self.limit, self.watch = name, limit, watch
        self.temp = None
        self.why = None         # why it holds the device off
    def check(self, eventtime, since):
        reading = self.watch.reading(eventtime)
        silent = self.watch.silence(eventtime, since)
        if reading is not None:
            self.temp = reading[1]
        if silent is not None:
            if self.why is None:
                self.why = ("guard %s %s: the device is off until it reports"
                            " again" % (self.name, silent))
        elif self.temp is None:
            pass
        elif self.temp > self.limit:
            if self.why is None:
                self.why = ("guard %s at %.1fC is over its %gC limit: the"
                            " device is off until it is %gC below it"
                            % (self.name, self.temp, self.limit,
                               GUARD_MARGIN))
        elif self.why is not None and self.temp <= self.limit - GUARD_MARGIN:
            self.why = None
            return "guard %s is back to %.1fC" % (self.name, self.temp)
        return None


class Chamber:
    """The chamber heater's reading and setpoint: the device's own
    reading (plus temperature_offset), or a chamber sensor with the
    loop; and what holds the device off: guards, a failed chamber
    sensor.  A hold turns the device off whatever it runs and puts
    Klipper's target to 0 (so verify_heater waits and M191 returns),
    and gives the target back when it clears."""
    def __init__(self, breath, config):
        self.breath = breath
        self.printer = breath.printer
        self.reactor = breath.reactor
        self.sensor_name = config.get('chamber_sensor', None)
        offset = config.getfloat('temperature_offset', None, minval=-20.,
                                 maxval=20.)
        if self.sensor_name is not None and offset is not None:
            raise config.error(
                "Options 'chamber_sensor' and 'temperature_offset' in"
                " section 'panda_breath' cannot both be set: with a chamber"
                " sensor the module finds the device's offset itself")
        self.offset = offset or 0.
        self.loop = None
        if self.sensor_name is not None:
            self.loop = ChamberLoop(config.getfloat(
                'setpoint_interval', 60., minval=1., maxval=600.))
        self.guard_specs = parse_guards(config)
        self.watch = None
        self.guards = []
        self.temperature = None     # the chamber sensor's last reading
        self.seen = None
        self.failed = None          # why the chamber sensor failed
        self.resume = 0.            # the target a hold put off
        self.stall = None
        self.started = 0.
        breath.gcode.register_command('PANDA_BREATH_WAIT',
                                      self.cmd_PANDA_BREATH_WAIT,
                                      desc=self.cmd_PANDA_BREATH_WAIT_help)
    def _watch(self, option, name, watches):
        obj = self.printer.lookup_object(name, None)
        if obj is None or not hasattr(obj, 'get_status') or obj is \
                self.breath.heater:
            raise self.printer.config_error(
                "Option '%s' in section 'panda_breath': '%s' is not a Klipper"
                " temperature sensor (for example 'temperature_sensor"
                " cavity')" % (option, name))
        if 'temperature' not in obj.get_status(self.reactor.monotonic()):
            raise self.printer.config_error(
                "Option '%s' in section 'panda_breath': '%s' has no"
                " temperature (for example 'temperature_sensor cavity'"
                " has)" % (option, name))
        if name not in watches:
            watches[name] = SensorWatch(self.reactor, obj)
        return watches[name]
    def connect(self):
        watches = {}
        if self.sensor_name is not None:
            self.watch = self._watch('chamber_sensor', self.sensor_name,
                                     watches)
        self.guards = [Guard(name, limit, self._watch('guard', name,
                                                      watches))
                       for name, limit in self.guard_specs]
        if self.watch is not None or self.guards:
            self.started = self.reactor.monotonic()
            self.reactor.register_timer(self._tick, self.reactor.NOW)
    # What the heater shows and what the device holds
    def shows_device(self):
        return self.watch is None
    def shown(self, device_reading):
        return device_reading + self.offset
    def max_target(self):
        return DEVICE_MAX_TEMP + self.offset
    def setpoint(self, target):
        if self.loop is None:
            return device_temp(target - self.offset)
        if self.loop.setpoint is None:
            return DEVICE_MAX_TEMP      # not read yet: as for a cold chamber
        return self.loop.setpoint
    def hold(self):
        for guard in self.guards:
            if guard.why is not None:
                return guard.why
        return self.failed
    # Klipper's target
    def target_set(self, target):
        """The target Klipper may keep: 0 while a hold lasts (it gets the
        target back when the hold clears)."""
        self.stall = None
        hold = self.hold()
        if target > 0. and hold is not None:
            self.resume = target
            self.breath.respond("%s; chamber target %.0f waits for it"
                                % (hold, target))
            return 0.
        self.resume = 0.
        if target > 0. and self.loop is not None:
            self.loop.restart()
            if self.temperature is not None:
                self.loop.update(self.reactor.monotonic(),
                                 self.temperature, target)
        return target
    # The chamber sensor and the guards, once a second
    def _tick(self, eventtime):
        before = self.hold()
        news = [guard.check(eventtime, self.started)
                for guard in self.guards]
        if self.watch is not None:
            news.append(self._check_chamber(eventtime))
        self._held(before, self.hold(), [n for n in news if n])
        if self.watch is not None and self.failed is None:
            self._follow_chamber(eventtime)
        return eventtime + WATCH_TIME
    def _check_chamber(self, eventtime):
        reading = self.watch.reading(eventtime)
        problem = (self.watch.silence(eventtime, self.started)
                   or self.watch.stuck(eventtime))
        sensor = self.breath.sensor
        if problem is None and reading is not None and not (
                sensor.min_temp <= reading[1] <= sensor.max_temp):
            problem = ("reads %.1fC, outside the chamber heater's range %g"
                       " to %g" % (reading[1], sensor.min_temp,
                                   sensor.max_temp))
        if problem is None:
            if self.failed is not None:
                self.failed = None
                return "chamber sensor %s reads again" % (self.sensor_name,)
        elif self.failed is None:
            self.failed = ("chamber sensor %s %s: the chamber heater is off"
                           " until it reads again" % (self.sensor_name,
                                                       problem))
    def _held(self, before, hold, news):
        # One console line when a hold starts, one when it ends
        if hold != before:
            self.breath.tell('wish')
        if hold is not None:
            for line in news:
                self.breath.respond(line)
            if hold != before:
                self.breath.respond(hold)
            if before is None and self.breath.target > 0.:
                target = self.breath.target
                self.breath.set_target(0.)
                self.resume = target
        elif before is not None:
            line = "; ".join(news) or "the device may heat again"
            target, self.resume = self.resume, 0.
            if target > 0.:
                line += ": chamber target %.0f again" % (target,)
            self.breath.respond(line)
            if target > 0.:
                self.breath.set_target(target)
    def _follow_chamber(self, eventtime):
        reading = self.watch.last
        if reading is None:
            return
        # Klipper's heater refreshes its pin on each reading it hears: a
        # sensor slower than the pin's watchdog must not starve it.
        self.temperature = reading[1]
        self.breath.deliver_chamber(eventtime, self.temperature)
        if reading[0] == self.seen:
            return
        self.seen = reading[0]
        target = self.breath.target
        if target <= 0. or self.hold() is not None:
            return
        setpoint = self.loop.setpoint
        if self.loop.update(eventtime, self.temperature, target) != setpoint:
            self.breath.tell('wish')
        stalled = self.loop.stalled(target)
        if stalled is not None and self.stall is None:
            lowered = max(1, int(math.floor(stalled)))
            self.breath.respond(
                "the chamber stopped rising at %.1fC with the device at its"
                " maximum (%dC): chamber target %.0f lowered to %d, the most"
                " it reaches, so the print goes on"
                % (stalled, DEVICE_MAX_TEMP, target, lowered))
            self.breath.set_target(lowered)
            self.stall = stalled        # set_target cleared it
    cmd_PANDA_BREATH_WAIT_help = (
        "Wait until the chamber heater is within 1C of its target; ends"
        " when the target is lowered to what the chamber reaches (M191)")
    def cmd_PANDA_BREATH_WAIT(self, gcmd):
        heater = self.breath.heater
        if heater is None:
            raise gcmd.error("Panda Breath has no chamber heater to wait"
                             " for")
        eventtime = self.reactor.monotonic()
        while not self.printer.is_shutdown():
            temp, target = heater.get_temp(eventtime)
            if target <= 0. or temp >= target - WAIT_MARGIN:
                return
            eventtime = self.reactor.pause(eventtime + 1.)
    def get_status(self):
        return {
            'chamber_sensor': self.sensor_name,
            'chamber_temperature': self.temperature,
            'chamber_failed': self.failed,
            'temperature_offset': self.offset,
            'guards': {g.name: {'limit': g.limit, 'temperature': g.temp,
                                'tripped': g.why is not None}
                       for g in self.guards},
            'held': self.hold(),
            'stalled_at': self.stall,
        }


######################################################################
# Klipper glue
######################################################################

class ChamberSensor:
    def __init__(self, breath, config):
        self.breath = breath
        self.name = config.get_name()
        self.min_temp = self.max_temp = 0.
        self.callback = None
    def setup_minmax(self, min_temp, max_temp):
        self.min_temp, self.max_temp = min_temp, max_temp
    def setup_callback(self, callback):
        self.callback = callback
    def get_report_time_delta(self):
        return REPORT_TIME
    def set_read_tolerance(self, read_time_tol, min_update_ratio):
        # Snapmaker U1 Klipper sets how late an MCU ADC sample may be;
        # readings here are pushed by the device at its own pace.
        pass
    def deliver(self, read_time, temp):
        if not self.min_temp <= temp <= self.max_temp:
            self.breath.printer.invoke_shutdown(
                "Panda Breath temperature %.1f outside range of %.1f:%.1f"
                % (temp, self.min_temp, self.max_temp))
            return
        if self.callback is not None:
            self.callback(read_time, temp)


class HeaterPin:
    # A virtual pin enforces max_duration itself: when Klipper's heater
    # stops refreshing a non-zero value, the device is turned off.
    def __init__(self, breath):
        self.breath = breath
        self.reactor = breath.reactor
        self.max_duration = 3.
        self.value = 0.
        self.expired = False
        self.watchdog = self.reactor.register_timer(self._expire)
    def get_mcu(self):
        return self.breath.mcu
    def setup_cycle_time(self, cycle_time, hardware_pwm=False):
        pass
    def setup_max_duration(self, max_duration):
        self.max_duration = max_duration
    def setup_start_value(self, start_value, shutdown_value):
        pass
    def set_pwm(self, print_time, value):
        self.value = value
        waketime = self.reactor.NEVER
        if value > 0.:
            waketime = self.reactor.monotonic() + self.max_duration + .5
        self.reactor.update_timer(self.watchdog, waketime)
        if self.expired:
            self.expired = False
            self.breath.tell('wish')
    def _expire(self, eventtime):
        self.expired = True
        self.breath.tell('wish')
        return self.reactor.NEVER


def _handle_terminate(signum, frame):
    # A service stop ends Klipper with SIGTERM, which runs none of its
    # disconnect handlers, and the device has no link watchdog: say off
    # first (bounded by the link's stop), then end as the signal would.
    try:
        breath = PandaBreath.current
        if breath is not None and breath.link is not None:
            breath._stop_link()
    finally:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


class PandaBreath:
    current = None      # the instance whose link is up in this process
    def __init__(self, config):
        self.printer = printer = config.get_printer()
        self.reactor = printer.get_reactor()
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _handle_terminate)
        if websocket is None:
            raise config.error(
                "panda_breath needs the websocket-client Python package"
                " (opkg package python3-websocket)")
        check_firmware(config)
        self.host = config_host(config)
        self.port = config.getint('port', 80, minval=1, maxval=65535)
        self.options = link_options(config)
        self.stale_grace = config.getfloat('stale_grace', 30., minval=0.,
                                           maxval=300.)
        self.url = "ws://%s:%d/ws" % (self.host, self.port)
        # Klipper keeps start_args across RESTART: a shutdown's off the
        # device has not confirmed, and a drying or auto session Klipper
        # started, outlive this object (the link may be down meanwhile).
        start_args = printer.get_start_args()
        self.unconfirmed_off = start_args.setdefault(
            'panda_breath_unconfirmed_off', set())
        self.klipper_sessions = start_args.setdefault(
            'panda_breath_klipper_sessions', set())
        self.memory = Memory(off_due=self.url in self.unconfirmed_off,
                             inherited=self.url in self.klipper_sessions)
        # Klipper side
        self.mcu = self.sensor = self.heater = self.pin = None
        self.heater_name = None
        self.shutdown = False
        self.target = 0.
        self.clamp_warned = None
        # Device side: its last report, and the link
        self.link = None
        self.connected = False
        self.report = {}
        self.reading = None
        self.reading_time = self.delivered_time = -999.
        self.reconnects = 0
        self.log = LinkLog(self.reactor)
        self.handover = Handover(self.reactor, self._link_event)
        self.hold_timer = None
        self.gcode = printer.lookup_object('gcode')
        pheaters = printer.load_object(config, 'heaters')
        pheaters.add_sensor_factory('panda_breath', self._make_sensor)
        printer.lookup_object('pins').register_chip('panda_breath', self)
        printer.register_event_handler('klippy:connect', self._handle_connect)
        printer.register_event_handler('klippy:shutdown',
                                       self._handle_shutdown)
        printer.register_event_handler('klippy:disconnect',
                                       self._handle_disconnect)
        self.gcode.register_command('PANDA_BREATH_STATUS',
                                    self.cmd_PANDA_BREATH_STATUS,
                                    desc=self.cmd_PANDA_BREATH_STATUS_help)
        self.modes = DeviceModes(self)
        self.chamber = Chamber(self, config)
    # Klipper objects
    def _make_sensor(self, config):
        if self.sensor is not None:
            raise config.error(
                "Only one heater may use sensor_type panda_breath (%s"
                " already does)" % (self.sensor.name,))
        self.sensor = ChamberSensor(self, config)
        self.heater_name = config.get_name().split()[-1]
        return self.sensor
    def setup_pin(self, pin_type, pin_params):
        if pin_type != 'pwm' or pin_params['pin'] != 'pwm':
            raise self.printer.config_error(
                "panda_breath only provides the pin panda_breath:pwm")
        if pin_params['invert']:
            raise self.printer.config_error(
                "panda_breath:pwm can not be inverted")
        if self.pin is not None:
            raise self.printer.config_error(
                "panda_breath:pwm is already in use")
        self.pin = HeaterPin(self)
        return self.pin
    def _handle_connect(self):
        self.mcu = self.printer.lookup_object('mcu')
        if self.sensor is None and self.pin is None:
            # The community module ran without a heater section too (only
            # its G-code commands), and owners' configs rely on it.
            logging.info("panda_breath: no [heater_generic] uses"
                         " sensor_type panda_breath: running without a"
                         " Klipper heater")
            if self.chamber.sensor_name is not None:
                raise self.printer.config_error(
                    "Option 'chamber_sensor' in section 'panda_breath' needs"
                    " the [heater_generic] section with sensor_type:"
                    " panda_breath")
            self.chamber.connect()
            self._start_link()
            return
        if self.sensor is None or self.pin is None:
            raise self.printer.config_error(
                "panda_breath needs a [heater_generic] section with"
                " sensor_type: panda_breath and heater_pin: panda_breath:pwm")
        pheaters = self.printer.lookup_object('heaters')
        self.heater = pheaters.lookup_heater(self.heater_name)
        for name in TARGET_COMMANDS:
            handler = self.gcode.register_command(name, None)
            if handler is not None:
                # Re-registered as gcode_macro's rename_existing does
                self.gcode.register_command(
                    name, self._then_check(name, handler),
                    desc=self.gcode.get_command_help().get(name))
        self.chamber.connect()
        self._start_link()
    def _start_link(self):
        self.hold_timer = self.reactor.register_timer(
            self._hold_reading, self.reactor.NOW)
        self.link = DeviceLink(self.url, self.handover.put, self.options)
        self.link.start()
        PandaBreath.current = self
    def _handle_shutdown(self):
        self.shutdown = True
        self.tell('shutdown')
    def _handle_disconnect(self):
        if self.hold_timer is not None:
            self.reactor.unregister_timer(self.hold_timer)
        self.hold_timer = None
        if self.pin is not None:
            self.reactor.unregister_timer(self.pin.watchdog)
        if PandaBreath.current is self:
            PandaBreath.current = None
        if self.link is not None:
            self._stop_link()
    def _stop_link(self):
        # Joined here, so nothing of it reaches the reactor Klipper is
        # about to finalize; the wait is bounded (CLOSE_TIME twice).
        decision = self.tell('stop', send=False)
        if not self.link.stop(decision.frames):
            logging.warning("panda_breath: link thread did not end in time"
                            " (a host name lookup?); it is left to finish")
        self.link = None
        self.connected = False
    # What the device is told
    def wish(self):
        expired = self.pin is not None and self.pin.expired
        return Wish(self.target, self.chamber.setpoint(self.target),
                    self.shutdown, expired, self.chamber.hold())
    def tell(self, kind, settings=None, params=None, send=True):
        report = self.report if self.connected else None
        decision = decide(self.wish(), report, self.memory,
                          Event(kind, settings or {}, params or {}))
        self.memory = memory = decision.memory
        for duty, holds in ((self.unconfirmed_off, memory.off_due),
                            (self.klipper_sessions,
                             memory.session or memory.inherited)):
            if holds:
                duty.add(self.url)
            else:
                duty.discard(self.url)
        if decision.frames:
            logging.info("panda_breath: %s: the device is told %s",
                         decision.rule, TOLD[decision.told])
            if send and self.link is not None:
                self.link.send(decision.frames)
        for msg in decision.messages:
            self._respond(msg)
        return decision
    def _respond(self, msg):
        logging.info(msg)
        self.gcode.respond_info(msg)
    def respond(self, text):
        self._respond("Panda Breath: " + text)
    # Events from the link thread, on the reactor
    def _link_event(self, eventtime, kind, args):
        if self.link is None:
            return
        if kind == 'up':
            self._link_up(eventtime, args[0])
        elif kind == 'update':
            self._update(eventtime, args[0])
        elif kind == 'down':
            self._link_down(args[0])
        elif kind == 'error':
            self.log.error(args[0], args[1])
    def _link_up(self, eventtime, settings):
        self.connected = True
        self.report = dict(settings)
        self.report.setdefault('printer', {})
        self.log.link("connected to %s (firmware %s)"
                      % (self.url, settings.get('fw_version', '?')))
        self.modes.track(eventtime, settings)
        self.tell('snapshot', settings)
        self._observe(eventtime, settings)
    def _link_down(self, reason):
        if self.connected:
            self.reconnects += 1
            self.log.link("link to %s lost: %s" % (self.url, reason))
            # Once per loss: each failed retry restarting it would put
            # off the held reading for as long as retries keep failing.
            self.reactor.update_timer(self.hold_timer, self.reactor.NOW)
            self.connected = False
            self.tell('down')
        self.log.error('link', reason)
    def _update(self, eventtime, settings):
        printer = settings.pop('printer', None)
        if printer:
            binding = self.report.setdefault('printer', {})
            if printer.get('state') == 0:
                binding.clear()
            binding.update(printer)
        self.report.update(settings)
        if self.connected and is_state_update(settings):
            self.modes.track(eventtime, settings)
            self.tell('push', settings)
        self._observe(eventtime, settings)
    def _observe(self, eventtime, settings):
        for key in ('warehouse_sensor_status', 'ptc_sensor_status'):
            fault = SENSOR_FAULTS.get(settings.get(key))
            if fault is not None and not self.shutdown:
                self.printer.invoke_shutdown(
                    "Panda Breath reports its %s sensor %s"
                    % ('chamber' if key[0] == 'w' else 'heater', fault))
                return
        temp = reading_of(settings)
        if temp is not None:
            self.reading = temp
            self.reading_time = eventtime
            self._check_target()
            self._deliver(eventtime)
            # Readings flow: no timer wakes Klipper while they do.
            self.reactor.update_timer(self.hold_timer, self.reactor.NEVER)
    # Readings
    def _deliver(self, eventtime):
        self.delivered_time = eventtime
        if (self.sensor is not None and not self.shutdown
                and self.chamber.shows_device()):
            read_time = self.mcu.estimated_print_time(eventtime)
            self.sensor.deliver(read_time, self.chamber.shown(self.reading))
    def deliver_chamber(self, eventtime, temp):
        # The chamber sensor's reading is the heater's while the device
        # is heard (or its last reading held, as above): a device that
        # stays away still ends in Klipper's verify_heater.
        heard = max(self.stale_grace, HEARD_TIME)
        if (self.sensor is not None and not self.shutdown
                and eventtime - self.reading_time <= heard):
            read_time = self.mcu.estimated_print_time(eventtime)
            self.sensor.deliver(read_time, temp)
    def _hold_reading(self, eventtime):
        # Runs while readings are missing (before the first one and while
        # the link is down).  Holds the last reading for stale_grace so a
        # short link blink does not trip verify_heater; after that
        # Klipper's own stale-sensor rules decide.
        self._check_target()
        if (self.reading is not None
                and eventtime - self.delivered_time >= 1.5 * REPORT_TIME
                and eventtime - self.reading_time <= self.stale_grace):
            self._deliver(eventtime)
        return eventtime + REPORT_TIME
    # Klipper's target
    def _then_check(self, name, handler):
        def run(gcmd):
            said = False
            try:
                handler(gcmd)
                said = (name == 'TURN_OFF_HEATERS'
                        or gcmd.get('HEATER', None) == self.heater_name)
            finally:
                self._check_target(said)
        return run
    def _check_target(self, said=False):
        # Klipper has no target event: a SET of this heater is seen
        # through the commands above, a change made elsewhere here.
        if self.heater is None:
            return
        target = self.heater.get_temp(self.reactor.monotonic())[1]
        if said or target != self.target:
            self._target_set(target)
    def set_target(self, target):
        self.heater.set_temp(target)
        self._check_target(True)
    def _target_set(self, target):
        most = self.chamber.max_target()
        if target > most:
            # The device never passes its maximum: waiting for more would
            # end the print in verify_heater, so Klipper's own target
            # becomes what the device can reach.
            self.respond("chamber target %.0f lowered to %g, the most the"
                         " device holds" % (target, most))
            self.heater.set_temp(most)
            target = most
        kept = self.chamber.target_set(target)
        if kept != target:
            self.heater.set_temp(kept)
            target = kept
        self.target = target
        set_temp = device_temp(target)
        if (target > 0. and set_temp != target and self.clamp_warned != target
                and self.chamber.shows_device() and not self.chamber.offset):
            self.clamp_warned = target
            self._respond("Panda Breath: target %.1f sent as %d (the device"
                          " accepts whole degrees 0-%d)"
                          % (target, set_temp, DEVICE_MAX_TEMP))
        self.tell('set')
    # Status
    def get_status(self, eventtime):
        age = None
        if self.reading is not None:
            age = round(eventtime - self.reading_time, 1)
        view = dict(self.report)
        view.update(self.memory.sent)
        wish = self.wish()
        printer = self.report.get('printer', {})
        chamber = self.chamber
        shown = chamber.temperature
        if chamber.shows_device() and self.reading is not None:
            shown = chamber.shown(self.reading)
        status = {
            'connected': self.connected,
            'firmware': self.report.get('fw_version'),
            # The device confirms no write: work_on, work_mode and
            # set_temp are its report with the writes in 'sent' laid over.
            'work_on': view.get('work_on'),
            'work_mode': (mode_name(view.get('work_mode'),
                                    view.get('fw_version'))
                          if view else None),
            'set_temp': set_temp_of(view),
            'reported': {k: self.report[k] for k in STATE_KEYS
                         if k in self.report},
            'sent': dict(self.memory.sent),
            'target': wish.target if wish.heat else 0.,
            # what Klipper's chamber heater shows, and the device's side
            'temperature': shown,
            'device_temperature': self.reading,
            'device_target': (set_temp_of(view) if heats_for_klipper(view)
                              else None),
            'reading_age': age,
            'stale': age is None or age > HEARD_TIME,
            'last_error': self.log.last_error,
            'reconnects': self.reconnects,
            'session': ('klipper' if self.memory.session else 'device'
                        if session_of(view) else None),
            'drying_temp': self.modes.drying_temp(),
            'drying_minutes_left': self.modes.minutes_left(eventtime),
            'binding': (BINDING_STATES.get(printer.get('state'))
                        if self.report.get('printer_type')
                        == KLIPPER_PRINTER else None),
        }
        status.update(chamber.get_status())
        return status
    cmd_PANDA_BREATH_STATUS_help = "Report the Panda Breath link and state"
    def cmd_PANDA_BREATH_STATUS(self, gcmd):
        gcmd.respond_info(status_line(
            self.host, self.get_status(self.reactor.monotonic())))


def status_line(host, st):
    """PANDA_BREATH_STATUS's one line, from get_status()."""
    if not st['connected']:
        link = "not connected (%s)" % (st['last_error'] or 'connecting',)
    else:
        link = "connected, firmware %s" % (st['firmware'],)
    if st['device_temperature'] is None:
        reading = "no reading yet"
    else:
        reading = "%.0fC %s %.1fs ago" % (
            st['device_temperature'], 'held' if st['stale'] else 'read',
            st['reading_age'])
    if st['chamber_sensor'] is not None:
        chamber = st['chamber_temperature']
        reading = "chamber %s (%s), device %s" % (
            "no reading yet" if chamber is None else "%.1fC" % chamber,
            st['chamber_failed'] or st['chamber_sensor'], reading)
    elif st['temperature_offset']:
        reading = "device %s, shown with offset %+g" % (
            reading, st['temperature_offset'])
    for name, guard in sorted(st['guards'].items()):
        reading += "; guard %s %s (limit %gC)" % (
            name, "no reading" if guard['temperature'] is None
            else "%.1fC" % guard['temperature'], guard['limit'])
    if st['held'] is not None:
        reading += "; held off: %s" % (st['held'],)
    state = "off"
    if st['work_on']:
        state = "on, %s, set %s" % (st['work_mode'], st['set_temp'])
    if st['drying_minutes_left'] is not None:
        state += ", %d min left" % (st['drying_minutes_left'],)
    if st['binding'] is not None:
        state += ", link to this printer %s" % (st['binding'],)
    if st['sent']:
        state += " (as written; the device confirms nothing)"
    return ("Panda Breath %s: %s; device %s; %s; Klipper target %.0f;"
            " reconnects %d" % (host, link, state, reading, st['target'],
                                st['reconnects']))


class LinkLog:
    """klippy.log lines of the link, rate-limited: a device that keeps
    dropping the link, or sending garbage, would fill the log."""
    def __init__(self, reactor):
        self.reactor = reactor
        self.last_error = None
        self.times = collections.deque()
        self.skipped = 0
        self.error_times = {}
    def link(self, text):
        now = self.reactor.monotonic()
        times = self.times
        while times and times[0] <= now - LOG_REPEAT_TIME:
            times.popleft()
        if len(times) >= LINK_LOG_BURST:
            self.skipped += 1
            return
        if self.skipped:
            text += " (%d link changes not logged)" % (self.skipped,)
            self.skipped = 0
        times.append(now)
        logging.info("panda_breath: %s", text)
    def error(self, kind, text):
        self.last_error = text
        now = self.reactor.monotonic()
        if now < self.error_times.get(kind, -LOG_REPEAT_TIME):
            return
        self.error_times[kind] = now + LOG_REPEAT_TIME
        logging.warning("panda_breath: %s", text)


class Handover:
    """Events from the link thread to one reactor callback at a time,
    which takes all that queued meanwhile, updates merged into one: a
    device flooding the link cannot back up Klipper's reactor."""
    def __init__(self, reactor, handle):
        self.reactor = reactor
        self.handle = handle
        self.events = []
        self.lock = threading.Lock()
        self.pending = False
    def put(self, kind, *args):
        with self.lock:
            events = self.events
            if kind == 'update' and events and events[-1][0] == 'update':
                settings = merge_settings(events[-1][1][0], args[0])
                events[-1] = (kind, (settings,) + args[1:])
            elif kind != 'error' or ('error', args) not in events:
                events.append((kind, args))
            if self.pending:
                return
            self.pending = True
        self.reactor.register_async_callback(self._take)
    def _take(self, eventtime):
        with self.lock:
            events, self.events = self.events, []
            self.pending = False
        for kind, args in events:
            self.handle(eventtime, kind, args)


def config_host(config):
    host = config.get('host').strip()
    problem = host_problem(host) if host else "must not be empty"
    if problem is not None:
        raise config.error("Option 'host' in section 'panda_breath': '%s'"
                           " %s" % (host, problem))
    return host


def link_options(config):
    delay = config.getfloat('reconnect_delay', .5, minval=.1, maxval=60.)
    options = LinkOptions(
        connect_timeout=config.getfloat('connect_timeout', 5., minval=.5,
                                        maxval=60.),
        reconnect_delay=delay,
        reconnect_max_delay=config.getfloat(
            'reconnect_max_delay', 30., minval=delay, maxval=600.),
        link_timeout=config.getfloat('link_timeout', 6., minval=2.,
                                     maxval=10.),
        keepalive_interval=config.getfloat('keepalive_interval', 5.,
                                           minval=.5, maxval=30.))
    if options.keepalive_interval >= options.link_timeout:
        if config.get_prefix_options('keepalive_interval'):
            raise config.error(
                "Option 'keepalive_interval' in section 'panda_breath'"
                " must be below link_timeout")
        # The default, kept under a short link_timeout
        options.keepalive_interval = options.link_timeout - 1.
    return options


######################################################################
# Device modes: drying and auto, started from Klipper
######################################################################

class DeviceModes:
    def __init__(self, breath):
        self.breath = breath
        self.reactor = breath.reactor
        self.dry_temp = None
        self.dry_end = None         # reactor time the drying cycle ends
        gcode = breath.gcode
        for cmd in ('DRY', 'DRY_STOP', 'AUTO', 'DRY_START'):
            name = 'PANDA_BREATH_' + cmd
            gcode.register_command(name, getattr(self, 'cmd_' + name),
                                   desc=getattr(self, 'cmd_%s_help' % name))
    def track(self, eventtime, settings):
        # The device pushes no countdown: keep it from the start and the
        # timer, corrected by every snapshot.
        if settings.get('isrunning') and 'remaining_seconds' in settings:
            self.dry_end = eventtime + settings['remaining_seconds']
    def drying_temp(self):
        if self.breath.memory.session == 'drying':
            return self.dry_temp
        return None
    def minutes_left(self, eventtime):
        if self.dry_end is None or not self.breath.memory.drying:
            return None
        return max(0, int(math.ceil((self.dry_end - eventtime) / 60.)))
    def _tell(self, gcmd, kind, **params):
        breath = self.breath
        breath._check_target()
        params.update(heater=breath.heater_name,
                      link_error=breath.log.last_error)
        decision = breath.tell(kind, params=params)
        if decision.refused is not None:
            raise gcmd.error(decision.refused)
        return decision
    cmd_PANDA_BREATH_DRY_help = (
        "Dry filament: PRESET=PLA|PETG or TEMP=<40-60> HOURS=<1-99>")
    def cmd_PANDA_BREATH_DRY(self, gcmd):
        preset = gcmd.get('PRESET', None)
        if preset is not None:
            if gcmd.get('TEMP', None) is not None or gcmd.get(
                    'HOURS', None) is not None:
                raise gcmd.error("Use PRESET, or TEMP and HOURS, not both")
            if preset.upper() not in DRY_PRESETS:
                raise gcmd.error("PRESET must be %s, not '%s'"
                                 % (' or '.join(DRY_PRESETS), preset))
            number, temp, hours = DRY_PRESETS[preset.upper()]
        elif gcmd.get('TEMP', None) is None:
            raise gcmd.error("PANDA_BREATH_DRY needs PRESET=PLA|PETG or"
                             " TEMP=<40-60> HOURS=<1-99>")
        else:
            number = None
            temp = gcmd.get_int('TEMP', minval=DRY_TEMP_RANGE[0],
                                maxval=DRY_TEMP_RANGE[1])
            hours = gcmd.get_int('HOURS', minval=DRY_HOURS_RANGE[0],
                                 maxval=DRY_HOURS_RANGE[1])
        self._dry(gcmd, temp, hours, number)
    def _dry(self, gcmd, temp, hours, preset):
        self._tell(gcmd, 'dry', temp=temp, hours=hours, preset=preset)
        self.dry_temp = temp
        self.dry_end = self.reactor.monotonic() + hours * 3600.
    cmd_PANDA_BREATH_DRY_STOP_help = "Stop the Panda Breath's filament drying"
    def cmd_PANDA_BREATH_DRY_STOP(self, gcmd):
        self._tell(gcmd, 'dry_stop')
    cmd_PANDA_BREATH_AUTO_help = (
        "Heat and filter while the bed is hot: TARGET=<0-60> HEAT_AT=<bed"
        " 40-120> FAN_AT=<bed 0-120> (or HOTBEDTEMP, FILTERTEMP), or"
        " ENABLE=0")
    def cmd_PANDA_BREATH_AUTO(self, gcmd):
        if not gcmd.get_int('ENABLE', 1, minval=0, maxval=1):
            self._tell(gcmd, 'auto_off')
            return
        target, heat_at, fan_at, notes = auto_params(gcmd)
        self._tell(gcmd, 'auto', target=target, heat_at=heat_at,
                   fan_at=fan_at)
        for note in notes:
            gcmd.respond_info(note)
    cmd_PANDA_BREATH_DRY_START_help = (
        "Dry filament (the community module's name for PANDA_BREATH_DRY):"
        " TEMP=<0-80> HOURS=<1-12>")
    def cmd_PANDA_BREATH_DRY_START(self, gcmd):
        (temp, hours), notes = fitted_params(gcmd, COMMUNITY_DRY)
        self._dry(gcmd, temp, hours, None)
        for note in notes:
            gcmd.respond_info(note)


######################################################################
# Compatibility with the community panda_breath module
######################################################################

# The Snapmaker U1 Extended Firmware shipped the community module before
# this one: owners' configs say `firmware: stock` and their macros use its
# command parameters, defaults and accepted ranges.  Values it accepted
# that the device's UI does not allow are fitted, and the user told.
COMMUNITY_AUTO = (('TARGET', 45, (0, 80), AUTO_TARGET_RANGE),
                  ('HOTBEDTEMP', 80, (0, 120), HEAT_AT_RANGE),
                  ('FILTERTEMP', 30, (0, 120), FAN_AT_RANGE))
COMMUNITY_DRY = (('TEMP', 55, (0, 80), DRY_TEMP_RANGE),
                 ('HOURS', 6, (1, 12), DRY_HOURS_RANGE))


def check_firmware(config):
    firmware = config.get('firmware', 'stock')
    if firmware.strip().lower() != 'stock':
        raise config.error(
            "Option 'firmware' in section 'panda_breath' is '%s', but this"
            " module speaks only the stock Panda Breath firmware's"
            " WebSocket API: use 'firmware: stock' or remove the option."
            " A Panda Breath running DragonBreath firmware needs the"
            " DragonBreath Klipper module (section [dragonbreath],"
            " dragonbreath.py) instead" % (firmware,))


def fitted_params(gcmd, params):
    """Whole-number values of community-style parameters, and a note for
    each one fitted into what the device allows."""
    values, notes = [], []
    for name, default, accepted, allowed in params:
        value = gcmd.get_float(name, default, minval=accepted[0],
                               maxval=accepted[1])
        if math.isnan(value):
            raise gcmd.error("%s must be a number" % (name,))
        value = int(value)
        fitted = max(allowed[0], min(allowed[1], value))
        if fitted != value:
            notes.append("Panda Breath: %s=%d sent as %d (the device allows"
                         " %d to %d)" % (name, value, fitted, allowed[0],
                                      allowed[1]))
        values.append(fitted)
    return values, notes


def auto_params(gcmd):
    """(target, heat_at, fan_at, notes) from PANDA_BREATH_AUTO: this
    module's HEAT_AT/FAN_AT form, or the community module's
    HOTBEDTEMP/FILTERTEMP form with its defaults."""
    def given(names):
        return [n for n in names if gcmd.get(n, None) is not None]
    ours = given(('HEAT_AT', 'FAN_AT'))
    if ours and given(('HOTBEDTEMP', 'FILTERTEMP')):
        raise gcmd.error("Use HEAT_AT and FAN_AT, or HOTBEDTEMP and"
                         " FILTERTEMP, not both")
    if not ours:
        values, notes = fitted_params(gcmd, COMMUNITY_AUTO)
        return tuple(values) + (notes,)
    target = gcmd.get_int('TARGET', minval=AUTO_TARGET_RANGE[0],
                          maxval=AUTO_TARGET_RANGE[1])
    heat_at = gcmd.get_int('HEAT_AT', minval=HEAT_AT_RANGE[0],
                           maxval=HEAT_AT_RANGE[1])
    fan_at = gcmd.get_int('FAN_AT', minval=FAN_AT_RANGE[0],
                          maxval=FAN_AT_RANGE[1])
    return target, heat_at, fan_at, []


def load_config(config):
    return PandaBreath(config)
