"""Sensors: what every kind shares, and the one the settings name, opened.

Each sensor's ``read()`` takes a few samples at its minimum interval, retries failed
reads, and returns the median of each value, dropping implausible ones (with a log line).
Each kind lives in its own module (thermistor.py, dht_sensor.py): the heap holds only the
board's.
"""
import time

from micropython import const

_RETRIES = const(3)
PLAUSIBLE = {"temperature": (-40.0, 125.0), "humidity": (0.0, 100.0)}


def median(values):
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


class Sensor:
    interval_ms = 0  # between two samples: each kind says its own

    def __init__(self, samples, log):
        self.samples = samples
        self.log = log
        self.last_ms = None

    def read(self):
        """Median values of a few good samples, or None when every try failed."""
        found = {}
        for _ in range(self.samples):
            sample = self._sample_with_retries()
            for name, value in (sample or {}).items():
                low, high = PLAUSIBLE.get(name, (-1e9, 1e9))
                if low <= value <= high:
                    found.setdefault(name, []).append(value)
                else:
                    self.log("dropped implausible %s %s" % (name, value))
        return {name: median(values) for name, values in found.items()} or None

    def _sample_with_retries(self):
        for attempt in range(_RETRIES):
            self._wait_turn()
            try:
                return self._sample()
            except Exception as error:  # OSError timeouts, and the dht driver's "checksum error"
                self.log("sensor read failed (try %d of %d): %r" % (attempt + 1, _RETRIES, error))
        return None

    def _wait_turn(self):
        if self.last_ms is not None:
            left = self.interval_ms - time.ticks_diff(time.ticks_ms(), self.last_ms)
            if left > 0:
                time.sleep_ms(left)
        self.last_ms = time.ticks_ms()


def open_sensor(settings, log):
    """The sensor the settings name (settings.py checked them)."""
    if settings["sensor"] == "thermistor":
        from thermistor import Thermistor

        return Thermistor(settings["pin"], settings["thermistor"], settings["chip"], settings["samples"], log)
    from dht_sensor import Dht

    return Dht(settings["sensor"], settings["pin"], settings["samples"], log)
