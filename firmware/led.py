"""The status LED: off when all is well, a slow blink for passing trouble (sensor, Wi-Fi,
server), a fast blink for a fault that needs the user (settings, a refused token)."""
import time

import machine

HALF_PERIOD_MS = {"ok": 0, "trouble": 500, "fault": 100}


class Led:
    def __init__(self, pin, active_low):
        self.pin = machine.Pin(pin, machine.Pin.OUT)
        self.active_low = active_low
        self.pattern = "ok"
        self.light(False)

    def show(self, pattern):
        if pattern != self.pattern:
            print("led:", pattern)
            self.pattern = pattern

    def light(self, on):
        self.pin.value(on != self.active_low)

    def wait(self, ms, feed):
        """Sleep ``ms`` while blinking the current pattern and feeding the watchdog."""
        half = HALF_PERIOD_MS[self.pattern]
        step = half or 1000
        lit = False
        while ms > 0:
            if half:
                lit = not lit
            self.light(lit)
            feed()
            time.sleep_ms(min(step, ms))
            ms -= step
        self.light(False)
