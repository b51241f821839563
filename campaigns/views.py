"""Campaigns: the pages of the campaigns package."""

from __future__ import annotations

from flask import Blueprint, render_template

from core.auth import roles_required

bp = Blueprint("campaigns", __name__, url_prefix="/campaigns")


@bp.route("/")
@roles_required("staff", "admin", "venue")
def index():
    return render_template("campaigns/index.html")
