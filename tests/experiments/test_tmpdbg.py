from tests.experiments.test_reports import *  # noqa
from experiments import reports as R
def test_dbg(session, measured):
    district, experiment = measured
    data = R.load_data(session, experiment)
    rep = R.build_report(session, experiment, now=after_window(experiment))
    print("K", rep["k"], rep["arms"], rep["recipients"])
    for o in rep["organisations"]:
        print(o["n"], o["comparisons"][0]["hidden"])
    assert 0
