"""Segments and insights: the pages of the segments package."""

from __future__ import annotations

from flask import Blueprint, render_template

from core.auth import roles_required

bp = Blueprint("segments", __name__, url_prefix="/segments")


@bp.route("/")
@roles_required("staff", "admin", "venue")
def index():
    return render_template("segments/index.html")
