"""The segment builder shows a rule as people read it: indented JSON, one condition a line, signs
and accents as they are (not the \\u003e escapes of ``tojson``), escaped once by the template."""

from __future__ import annotations

import html
import json
import re

from sqlalchemy import select

from segments.models import Segment
from segments.views import rule_text

RULE = {
    "all": [
        {"field": "shows", "op": ">=", "value": 3, "within_days": 548},
        {"not": {"field": "venue", "op": "any", "value": ["Salle Émile-Legault", "L'Olympia <Est>"]}},
    ]
}
PRE = re.compile(r'<pre class="rule small">(.*?)</pre>', re.S)


def test_rule_text_lays_a_rule_out_one_condition_a_line():
    text = rule_text(RULE)
    assert json.loads(text) == RULE
    assert text.splitlines() == [
        "{",
        '  "all": [',
        '    {"field": "shows", "op": ">=", "value": 3, "within_days": 548},',
        "    {",
        '      "not": {"field": "venue", "op": "any", "value": ["Salle Émile-Legault", "L\'Olympia <Est>"]}',
        "    }",
        "  ]",
        "}",
    ]
    assert rule_text(json.dumps(RULE)) == text  # the form's JSON text, too
    assert rule_text('{"all": [') == '{"all": ['  # not JSON (a refused form): shown as it is
    assert rule_text("") == ""


def test_the_versions_table_shows_rules_readably_and_escaped_once(login_as, db):
    client = login_as("staff")
    response = client.post(
        "/segments/new", data={"name": "Fidèles", "description": "", "as_of": "", "rule": json.dumps(RULE)}
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    with db.session() as session:
        segment = session.scalar(select(Segment))
        stored = segment.versions[0].rule
        url = f"/segments/{segment.id}?lang=en"
    page = client.get(url).get_data(as_text=True)
    # (the builder's configuration is a JSON data block for the script: tojson is right there)
    page = re.sub(r'<script type="application/json" id="builder-config">.*?</script>', "", page, flags=re.S)
    assert "\\u003e" not in page and "\\u00c9" not in page and "\\u0027" not in page  # no tojson escapes
    assert "&amp;gt;" not in page and "&amp;#" not in page  # not escaped twice
    shown = PRE.findall(page)
    assert len(shown) == 1
    assert "&gt;=" in shown[0] and "Salle Émile-Legault" in shown[0] and "&lt;Est&gt;" in shown[0]
    assert "<Est>" not in page  # text of a rule never becomes markup
    assert json.loads(html.unescape(shown[0])) == stored
    assert html.unescape(shown[0]) == rule_text(stored)
    # the collapsed "rule as JSON" starts with the same layout before the script takes over
    json_view = re.search(r'<pre id="rule-json" class="rule"><code>(.*?)</code></pre>', page, re.S)
    assert json_view and html.unescape(json_view.group(1)) == rule_text(stored)
