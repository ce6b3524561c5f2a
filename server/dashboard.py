"""The dashboard page at ``/``: a card and a live chart per device (behind a login
once viewers exist, see ``viewers.py``).

The page's script and styles are in ``static/``; uPlot is served from
``static/vendor/``, where the set-up puts it (``tools/fetch_assets.py``).
"""
from flask import Blueprint, redirect, render_template, request, session, url_for

from .connections import UNREACHABLE
from .readings import METRICS, NOT_METRICS
from .viewers import login_needed

bp = Blueprint("dashboard", __name__)

DIAGNOSTICS = ("rssi", "uptime", "heap", "dropped")


@bp.get("/")
def index():
    """The page: it holds no data, so while Redis cannot say whether a login is needed it
    is served anyway, and its data waits for Redis and the viewer's login (dashboard.js)."""
    try:
        needed = login_needed()
    except UNREACHABLE:
        needed = False
    if needed:
        return redirect(url_for("viewers.login", next=request.full_path.rstrip("?")))  # with its range: ?from=…
    metrics = [(name, unit) for name, (unit, _, _) in METRICS.items()]
    return render_template("index.html", metrics=metrics, diagnostics=DIAGNOSTICS, not_metrics=NOT_METRICS,
                           viewer=session.get("viewer"))
