"""Sensors: DHT11/DHT22 through MicroPython's dht driver, and an NTC thermistor on the ADC.

Each sensor's ``read()`` takes a few samples at its minimum interval, retries failed
reads, and returns the median of each value, dropping implausible ones (with a log line).
"""
import math
import os
import sys
import time

import machine
from micropython import const
from settings import SettingsError

_DHT11_INTERVAL_MS = const(1000)
_DHT22_INTERVAL_MS = const(2000)
_ADC_INTERVAL_MS = const(20)
_RETRIES = const(3)
_KELVIN = const(273.15)

# ADC1 pins by chip: ADC2 cannot be read while Wi-Fi is on.
ADC1_PINS = {"esp32": range(32, 40), "esp32s2": range(1, 11), "esp32s3": range(1, 11),
             "esp32c3": range(0, 5), "esp8266": (0,)}
# Volts at the ADC's full scale: ESP32 family at 11 dB attenuation, ESP8266's 0-1 V input.
FULL_SCALE = {"esp8266": 1.0}
ADC_MAX = {"esp8266": 1023}
PLAUSIBLE = {"temperature": (-40.0, 125.0), "humidity": (0.0, 100.0)}


def chip():
    """'esp32', 'esp32s2', 'esp32s3', 'esp32c3' or 'esp8266'."""
    if sys.platform != "esp32":
        return sys.platform
    name = os.uname().machine.upper()
    for variant in ("S2", "S3", "C3"):
        if "ESP32" + variant in name:
            return "esp32" + variant.lower()
    return "esp32"


def median(values):
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


class Sensor:
    interval_ms = _ADC_INTERVAL_MS

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


class Dht(Sensor):
    def __init__(self, kind, pin, samples, log):
        super().__init__(samples, log)
        import dht
        if kind == "dht11":
            self.driver, self.interval_ms = dht.DHT11(machine.Pin(pin)), _DHT11_INTERVAL_MS
        else:
            self.driver, self.interval_ms = dht.DHT22(machine.Pin(pin)), _DHT22_INTERVAL_MS

    def _sample(self):
        self.driver.measure()
        return {"temperature": self.driver.temperature(), "humidity": self.driver.humidity()}


class Thermistor(Sensor):
    """A Beta-equation NTC in a divider with a fixed series resistor."""

    def __init__(self, pin, constants, chip_name, samples, log):
        super().__init__(samples, log)
        if pin not in ADC1_PINS.get(chip_name, ()):
            raise SettingsError("pin %s is not an ADC1 pin of %s (ADC2 stops working with Wi-Fi); use one of %s"
                             % (pin, chip_name, list(ADC1_PINS.get(chip_name, ()))))
        self.adc = machine.ADC(pin if chip_name == "esp8266" else machine.Pin(pin))
        if chip_name != "esp8266":
            self.adc.atten(machine.ADC.ATTN_11DB)
        self.adc_max = ADC_MAX.get(chip_name, 4095)
        self.full_scale = constants["full_scale"] or FULL_SCALE.get(chip_name, 3.3)
        self.constants = constants

    def _sample(self):
        raw = self.adc.read()
        volts = raw * self.full_scale / self.adc_max
        if not 0 < volts < self.constants["vcc"] or raw >= self.adc_max:
            raise OSError("ADC reads %d: is the thermistor open or shorted?" % raw)
        return {"temperature": celsius(volts, self.constants)}


def celsius(volts, c):
    """Temperature of the NTC from the divider's output voltage (Beta equation)."""
    if c["ntc_to_ground"]:
        resistance = c["series"] * volts / (c["vcc"] - volts)
    else:
        resistance = c["series"] * (c["vcc"] - volts) / volts
    inverse = 1 / (c["t0"] + _KELVIN) + math.log(resistance / c["r0"]) / c["beta"]
    return 1 / inverse - _KELVIN


def open_sensor(settings, log):
    kind = settings["sensor"]
    if kind == "thermistor":
        return Thermistor(settings["pin"], settings["thermistor"], settings["chip"] or chip(),
                          settings["samples"], log)
    return Dht(kind, settings["pin"], settings["samples"], log)
