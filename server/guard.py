"""Checks that every request passes before its view, against what one client on the
network or one hostile web page could otherwise do.

- A body is read here, whole, within ``BODY_TIMEOUT`` seconds and ``MAX_CONTENT_LENGTH``
  bytes, a chunked one too: a body sent a byte at a time gets 408 instead of holding a
  connection forever, and one over the cap gets 413 instead of being cut short. One
  client address may be sending ``BODIES_PER_ADDRESS`` bodies at once (per process):
  past that, 429 at once, so one client cannot fill the connection slots with slow
  bodies even where no nginx stands in front (a body that arrives whole with its
  headers is read in a moment, so no real client comes near it).
- A request that changes something and carries no device token must come from this
  server's own pages when a browser sends it (``Sec-Fetch-Site``, else ``Origin``): a
  cross-site form cannot log a viewer out or change a threshold. A PUT takes JSON only.
- A browser's request must name this server in ``Host``: an IP address, a name of this
  machine, or one in ``ALLOWED_HOSTS``, so that a web page cannot reach the server
  through DNS rebinding: not the data while reading is open, nor the login form to lock
  a viewer out with failed logins from the viewer's own address.
- A client that stops reading its answers (pipelining requests, say) is cut off once a
  write to it has stalled for ``CLIENT_LAG`` seconds, so that such clients cannot hold
  every connection the worker accepts. The live stream has its own rule for the same
  limit (``hub.py``): it is left to it.
- One client address may hold ``CONNECTIONS_PER_ADDRESS`` connections open at once (per
  process); past that, a connection is answered 429 and closed as it arrives, so one
  client cannot take every connection the worker accepts by opening them faster than
  ``CLIENT_LAG`` cuts them off. Behind a proxy (``TRUSTED_PROXIES``) every connection is
  the proxy's: the proxy limits them there (``limit_conn`` in deploy/nginx/sensorcast.conf).
- ``TRUSTED_PROXIES`` makes the server believe ``X-Forwarded-For``, the key of every
  per-address limit above and of the logins': ``proxy_warning`` says so at start when
  the server also listens beyond loopback, where any client could claim any address.
  An IPv6 address counts by its /64 (``sender``), as one subscriber holds all of it.
"""
import collections
import contextlib
import io
import ipaddress
import socket
import urllib.parse

from flask import abort, current_app, request
from gevent import Timeout, monkey
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import RequestTimeout, TooManyRequests
from werkzeug.wsgi import get_content_length

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
OWN_PAGES = ("same-origin", "none")  # Sec-Fetch-Site of our pages, and of a typed URL
ALWAYS_OPEN = ("api.healthz",)
DEVICE_BLUEPRINTS = ("ingest", "firmware")
LIVE_STREAM = "sse.stream"  # its hub drops the clients whose writes stall
MET_BELOW_FLASK = "sensorcast.met_below_flask"  # in the environ: what ingest.FastUploads met, for Flask to answer
bodies_arriving = collections.Counter()  # client address -> bodies being read from it now, in this process


def check_request():
    """Flask ``before_request``: each check, in turn, after what was met below Flask."""
    if MET_BELOW_FLASK in request.environ:
        raise request.environ.pop(MET_BELOW_FLASK)
    config = current_app.config
    limit_writes(request.environ, None if request.endpoint == LIVE_STREAM else config["CLIENT_LAG"])
    read_body(request.environ, config)
    if request.endpoint in ALWAYS_OPEN or _from_a_device():
        return
    if request.method not in SAFE_METHODS and not _from_own_pages():
        abort(403, "this request did not come from this server's own pages")
    if request.method in ("PUT", "PATCH") and not request.is_json:
        abort(415, "send JSON with 'Content-Type: application/json'")
    if not _known_host(request.host):
        abort(400, f"this server does not answer to {request.host!r}: add it to SENSORCAST_ALLOWED_HOSTS")


def proxy_warning(trusted_proxies, hosts):
    """What to warn of at start when ``trusted_proxies`` is on and the server listens on
    ``hosts`` (gunicorn's bind addresses) beyond loopback; else None."""
    exposed = [host for host in hosts if not _is_loopback(host)]
    if not trusted_proxies or not exposed:
        return None
    return (f"SENSORCAST_TRUSTED_PROXIES={trusted_proxies} while listening on {', '.join(exposed)}: any client "
            "that reaches this port can claim any address in X-Forwarded-For and so pass every per-address "
            "limit (logins, streams, bodies). Listen on 127.0.0.1 behind the proxy, or set "
            "SENSORCAST_TRUSTED_PROXIES=0 and let the clients connect directly.")


def limit_writes(environ, seconds):
    """Give up on a write to this connection after ``seconds`` (None: never; the live
    stream's), under gunicorn, where a gevent socket's timeout bounds each send."""
    connection = environ.get("gunicorn.socket")
    if connection is not None:
        connection.settimeout(seconds)


def sender(address):
    """Who ``address`` is to the per-address limits (bodies, streams, logins): itself, or an
    IPv6 address's /64, whose 2^64 addresses one home or one rented server may all use."""
    if address and ":" in address:
        with contextlib.suppress(ValueError):  # a zone (fe80::1%eth0) or no address: as it is
            return str(ipaddress.ip_network(address + "/64", strict=False).network_address) + "/64"
    return address


_TOO_MANY = b"this address has too many connections open at once\n"
TOO_MANY_CONNECTIONS = (b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nConnection: close\r\n"
                        b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(_TOO_MANY), _TOO_MANY))


def cap_connections(handle, cap):
    """gunicorn's gevent worker's ``handle`` (called with each connection accepted), but a
    connection from an address (``sender``) that holds ``cap`` open already is answered
    429 and closed, what it sent meanwhile read for a second at most and dropped (closed
    with a request unread, the connection would be reset, and the client might never read
    its 429)."""
    open_from = collections.Counter()

    def capped(listener, client, address):
        who = sender(address[0]) if isinstance(address, tuple) else None  # a Unix socket's: no address
        if who is not None and open_from[who] >= cap:
            with contextlib.suppress(OSError), Timeout(1, False):
                client.sendall(TOO_MANY_CONNECTIONS)
                client.shutdown(socket.SHUT_WR)
                while client.recv(65536):
                    pass
            client.close()
            return
        open_from[who] += 1
        try:
            handle(listener, client, address)
        finally:
            open_from[who] -= 1
            if not open_from[who]:
                del open_from[who]
    return capped


def read_body(environ, config):
    """Read the body now, in time and within the cap, and hand it on with its length (in
    ``wsgi.input``, which can then be read again); or raise the HTTPException to answer."""
    length = get_content_length(environ)
    if not length and "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return b""
    cap = config["MAX_CONTENT_LENGTH"]
    if length and length > cap:
        abort(413, f"the body is over {cap} bytes")
    deadline = contextlib.nullcontext()  # a plain WSGI server (tests, flask run) has no way to time it
    if monkey.is_module_patched("socket"):
        deadline = Timeout(config["BODY_TIMEOUT"], RequestTimeout("the body took too long to arrive"))
    address = sender(environ.get("REMOTE_ADDR"))
    if bodies_arriving[address] >= config["BODIES_PER_ADDRESS"]:
        raise TooManyRequests("this address is sending too many request bodies at once",
                              retry_after=config["BODY_TIMEOUT"])
    bodies_arriving[address] += 1
    try:
        with deadline:
            body = environ["wsgi.input"].read(length if length else cap + 1)
    except (OSError, ParseException) as error:  # gunicorn could not read it: a bad chunk, a body cut short
        abort(400, f"the body could not be read: {type(error).__name__}")
    finally:
        bodies_arriving[address] -= 1
        if not bodies_arriving[address]:
            del bodies_arriving[address]
    if len(body) > cap:
        abort(413, f"the body is over {cap} bytes")
    environ.update({"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))})
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    return body


def _from_a_device():
    """A device's request: to a device route, with a token that says who it is (checked
    there). Any other ``Authorization`` header opens nothing here."""
    scheme = request.headers.get("Authorization", "").partition(" ")[0]  # as auth.py reads it: werkzeug's
    return request.blueprint in DEVICE_BLUEPRINTS and scheme.lower() == "bearer"  # parse fails on a byte past ASCII


def _from_own_pages():
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in OWN_PAGES
    origin = request.headers.get("Origin")
    return origin is None or origin == request.host_url.rstrip("/")  # no Origin: not a browser


def _known_host(host):
    name = urllib.parse.urlsplit("//" + host).hostname or ""
    if _is_address(name) or name == "localhost" or name.endswith(".localhost"):
        return True
    allowed = current_app.config["ALLOWED_HOSTS"]
    allowed = allowed.split(",") if isinstance(allowed, str) else allowed
    return "*" in allowed or name in allowed or name in _machine_names()


def _is_address(name):
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, name)
            return True
        except OSError:
            pass
    return False


def _is_loopback(host):
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def _machine_names():
    hostname = socket.gethostname().lower()
    return {hostname, socket.getfqdn().lower(), hostname + ".local"}
