"""Host fake of MicroPython's ``dht`` driver: values and failures come from the test."""
import machine


class DHTBase:
    def __init__(self, pin):
        self.pin = pin
        self.values = None

    def measure(self):
        machine.failing_read()
        self.values = machine.next_of("dht")

    def temperature(self):
        return self.values["temperature"]

    def humidity(self):
        return self.values["humidity"]


class DHT11(DHTBase):
    pass


class DHT22(DHTBase):
    pass
