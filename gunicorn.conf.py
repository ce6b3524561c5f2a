"""gunicorn's settings for Sensorcast, the same wherever it runs: ``make run``, the tests,
the benchmark and deploy/'s systemd units (``--config gunicorn.conf.py``; gunicorn also
reads this file by itself when started in this folder). The command line adds what
varies: the address, the workers and their connections.
"""
worker_class = "gevent"
graceful_timeout = 5
# gunicorn 25+ opens a control socket at $HOME/.gunicorn/gunicorn.ctl for every instance
# a user runs, so two instances would take over each other's: none of ours needs one.
control_socket_disable = True


def post_worker_init(worker):
    """Start the app's background duties (``server/duties.py``) in each worker, before
    any request: offline alerts and the webhook must not wait for someone to look."""
    duties = getattr(worker.wsgi, "extensions", {}).get("sensorcast.duties")
    if duties:
        duties.start()
