"""An NTC thermistor on the ADC, in a divider with a fixed series resistor (Beta equation)."""
import math

import machine
from micropython import const

from sensors import Sensor

_ADC_INTERVAL_MS = const(20)
_KELVIN = const(273.15)


class Thermistor(Sensor):
    """On an ADC1 pin (settings.py checked it): ADC2 cannot be read while Wi-Fi is on."""

    interval_ms = _ADC_INTERVAL_MS

    def __init__(self, pin, constants, chip_name, samples, log):
        super().__init__(samples, log)
        if chip_name == "esp8266":  # its one ADC reads 0-1 V in 10 bits
            self.adc = machine.ADC(pin)
            full_scale, self.adc_max = 1.0, 1023
        else:  # the ESP32 family's, at 11 dB attenuation, 0-3.3 V in 12 bits
            self.adc = machine.ADC(machine.Pin(pin))
            self.adc.atten(machine.ADC.ATTN_11DB)
            full_scale, self.adc_max = 3.3, 4095
        self.full_scale = constants["full_scale"] or full_scale
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
