"""The Python example of docs/recommender.md runs as written (so the doc cannot drift)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "recommender.md"


def test_the_documented_python_example_runs(tmp_path, monkeypatch, capsys):
    text = DOC.read_text()
    section = text.split("### Example: fit once, serve both directions from Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)  # the example saves a file in the working directory
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    digest, audience = namespace["digest"], namespace["audience"]
    assert (digest.groupby("user_id").size() <= 10).all() and len(digest) > 0
    assert (audience.groupby("item_id").size() <= 50).all() and len(audience) > 0
    assert (tmp_path / "recommender.bin").exists()
    printed = capsys.readouterr().out
    assert printed.split()[0] in ("two_stage", "mf", "popularity")
