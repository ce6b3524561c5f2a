"""gunicorn's settings for Sensorcast, the same wherever it runs: ``make run``, the tests,
the benchmark and deploy/'s systemd units (``--config gunicorn.conf.py``; gunicorn also
reads this file by itself when started in this folder). The command line adds what
varies: the address, the workers and their connections.
"""
import logging
import time

worker_class = "gevent"
graceful_timeout = 5
# gunicorn 25+ opens a control socket at $HOME/.gunicorn/gunicorn.ctl for every instance
# a user runs, so two instances would take over each other's: none of ours needs one.
control_socket_disable = True


class QuietInvalidRequests(logging.Filter):
    """gunicorn logs a line for each malformed request, so a client sending garbage in a
    loop would fill the disk: one such line a minute, saying how many were left out."""

    def __init__(self):
        super().__init__()
        self.next_line_at, self.left_out = 0.0, 0

    def filter(self, record):
        if not str(record.msg).startswith("Invalid request from"):
            return True
        now = time.monotonic()
        if now < self.next_line_at:
            self.left_out += 1
            return False
        if self.left_out:
            record.msg = f"{record.msg} (and {self.left_out} more invalid requests in the minute before)"
        self.next_line_at, self.left_out = now + 60, 0
        return True


def post_worker_init(worker):
    """Start the app's background duties (``server/duties.py``) in each worker, before
    any request: offline alerts and the webhook must not wait for someone to look."""
    worker.log.error_log.addFilter(QuietInvalidRequests())
    duties = getattr(worker.wsgi, "extensions", {}).get("sensorcast.duties")
    if duties:
        duties.start()
