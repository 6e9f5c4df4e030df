"""The device's non-volatile storage: a dict, optionally mirrored to JSON.

It counts its flash writes: every save (one per saved key the device is
given, changed or not) and every erase, in total and by key.
"""

import collections
import json
import logging
import os

log = logging.getLogger("simulator")


class Nvs:
    def __init__(self, path=None):
        self.path = path
        self._data = None
        self.writes = 0  # flash writes since the simulator started
        self.writes_by_key = collections.Counter()
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise ValueError(f"{path}: no such directory")
        if path and os.path.exists(path):
            try:
                with open(path, encoding="utf-8") as f:
                    data = json.load(f)
            except ValueError as e:
                raise ValueError(f"{path}: not an NVS JSON file ({e})") from e
            if not isinstance(data, dict):
                raise ValueError(f"{path}: NVS file must hold a JSON object")
            self._data = data

    def load(self):
        """A copy of what was saved, or None when the storage is blank."""
        return None if self._data is None else json.loads(
            json.dumps(self._data))

    def _count(self, key):
        self.writes += 1
        self.writes_by_key[key or "?"] += 1

    def save(self, data, key=None):
        """Store data; key names the setting that caused the write."""
        self._count(key)
        self._data = json.loads(json.dumps(data))
        if self.path:
            tmp = self.path + ".tmp"
            try:
                with open(tmp, "w", encoding="utf-8") as f:
                    json.dump(self._data, f, indent=1, sort_keys=True)
                os.replace(tmp, self.path)
            except OSError as e:
                log.warning("cannot write NVS file %s: %s", self.path, e)

    def erase(self, key=None):
        self._count(key)
        self._data = None
        if self.path and os.path.exists(self.path):
            os.remove(self.path)
