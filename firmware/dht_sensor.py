"""A DHT11 or DHT22 through MicroPython's dht driver."""
import dht
import machine
from micropython import const

from sensors import Sensor

_DHT11_INTERVAL_MS = const(1000)  # the shortest time between two reads
_DHT22_INTERVAL_MS = const(2000)


class Dht(Sensor):
    def __init__(self, kind, pin, samples, log):
        super().__init__(samples, log)
        if kind == "dht11":
            self.driver, self.interval_ms = dht.DHT11(machine.Pin(pin)), _DHT11_INTERVAL_MS
        else:
            self.driver, self.interval_ms = dht.DHT22(machine.Pin(pin)), _DHT22_INTERVAL_MS

    def _sample(self):
        self.driver.measure()
        return {"temperature": self.driver.temperature(), "humidity": self.driver.humidity()}
