"""Experiments and reports: the pages of the experiments package."""

from __future__ import annotations

from flask import Blueprint, render_template

from core.auth import roles_required

bp = Blueprint("experiments", __name__, url_prefix="/experiments")


@bp.route("/")
@roles_required("staff", "evaluator", "admin", "venue")
def index():
    return render_template("experiments/index.html")
