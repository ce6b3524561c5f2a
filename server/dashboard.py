"""The dashboard page at ``/``: a card and a live chart per device.

The page's script and styles are in ``static/``; uPlot is served from
``static/vendor/``, where the set-up puts it (``tools/fetch_assets.py``).
"""
from flask import Blueprint, render_template

from .readings import METRICS

bp = Blueprint("dashboard", __name__)

DIAGNOSTICS = ("rssi", "uptime", "heap", "dropped")


@bp.get("/")
def index():
    metrics = [(name, unit) for name, (unit, _, _) in METRICS.items()]
    return render_template("index.html", metrics=metrics, diagnostics=DIAGNOSTICS)
