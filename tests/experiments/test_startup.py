"""Start-up cost: the report pages need scipy only when a statistic is computed, so the commands and
web workers do not import it (about a second) when they start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROGRAM = """
import sys
import core
core.create_app({"INSTANCE_PATH": sys.argv[1], "DATABASE_URL": "sqlite:///" + sys.argv[1] + "/pilot.db",
                 "SECRET_KEY": "s", "DISTRICT_SECRET": "d"})
import experiments.jobs, experiments.power, experiments.reports, experiments.stats, experiments.views
loaded = sorted(name for name in sys.modules if name == "scipy" or name.startswith("scipy."))
assert not loaded, loaded[:5]
from experiments import power, stats
assert abs(stats.sample_ratio_mismatch([1000, 1200]).p_value - 0.000020079) < 1e-9
assert power.mde_binary(0.1, 1000, 1000).absolute > 0
assert any(name.startswith("scipy.") for name in sys.modules)  # imported by the computation
print("ok")
"""


def test_the_application_starts_without_importing_scipy(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
