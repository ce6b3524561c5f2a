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


CUT_OFF = "Cut off a client whose answer could not be sent for SENSORCAST_CLIENT_LAG seconds: it stopped reading"


class QuietFloods(logging.Filter):
    """gunicorn logs a line for each malformed request, and a traceback for each client
    cut off because it stopped reading its answers (``server/guard.py``), so a client
    doing either in a loop would fill the disk: one line a minute of each, saying how
    many were left out."""

    def __init__(self):
        super().__init__()
        self.next_line_at, self.left_out = {}, {}

    def filter(self, record):
        if str(record.msg).startswith("Invalid request from"):
            kind = "invalid requests"
        elif record.exc_info and isinstance(record.exc_info[1], TimeoutError):  # gunicorn's "Socket error"
            kind = "clients cut off"
            record.msg, record.args, record.exc_info, record.exc_text = CUT_OFF, (), None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"  # the client's doing, not an error
        else:
            return True
        now = time.monotonic()
        if now < self.next_line_at.get(kind, 0.0):
            self.left_out[kind] += 1
            return False
        if self.left_out.get(kind):
            record.msg = f"{record.msg} (and {self.left_out[kind]} more {kind} in the minute before)"
        self.next_line_at[kind], self.left_out[kind] = now + 60, 0
        return True


def worker_exit(server, worker):
    """Stop the app's background duties as the worker ends: the webhook lets its lease go,
    so a reload's new worker posts the next alert at once, not once the lease ran out."""
    duties = getattr(worker.wsgi, "extensions", {}).get("sensorcast.duties")
    if duties:
        duties.stop()


def post_worker_init(worker):
    """Start the app's background duties (``server/duties.py``) in each worker, before
    any request: offline alerts and the webhook must not wait for someone to look. Cap
    each client address's open connections where no proxy stands in front (``server/guard.py``).
    Warn when the app believes X-Forwarded-For from anyone who can reach it."""
    from server.guard import cap_connections, proxy_warning  # the app has imported it: after gevent patched

    worker.log.error_log.addFilter(QuietFloods())
    duties = getattr(worker.wsgi, "extensions", {}).get("sensorcast.duties")
    if duties:
        duties.start()
    config = getattr(worker.wsgi, "config", {})
    trusted_proxies = config.get("TRUSTED_PROXIES")
    if not trusted_proxies and "CONNECTIONS_PER_ADDRESS" in config:
        worker.handle = cap_connections(worker.handle, config["CONNECTIONS_PER_ADDRESS"])
    warning = proxy_warning(trusted_proxies, [address[0] for address in worker.cfg.address
                                              if isinstance(address, tuple)])
    if warning:
        worker.log.warning(warning)
