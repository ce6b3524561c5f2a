"""Log lines a device can cause, at most ``most`` a minute each: a device that sends
garbage or reports in a loop, or a whole fleet posting while Redis is away, cannot fill
the disk, while the first lines still say what is going on."""
import threading
import time


class LinesPerMinute:
    def __init__(self, most=10):
        self.most = most
        self.lines = {}  # key -> (when its minute began, lines logged in it)
        self.lock = threading.Lock()

    def take(self, key):
        """"log" for the first ``most`` lines of ``key``'s minute, "last" for the next
        (log it, saying the rest go unlogged), None after that."""
        now = time.monotonic()
        with self.lock:
            since, logged = self.lines.get(key, (now, 0))
            if now - since >= 60:
                since, logged = now, 0
            self.lines[key] = (since, logged + 1)
        return "log" if logged < self.most else "last" if logged == self.most else None
