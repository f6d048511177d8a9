"""Example, Prediction and Completions behave like DSPy's."""

from __future__ import annotations

import pytest

from dspx_cli.core import Completions, Example, Prediction


def test_access_and_mapping_protocol() -> None:
    example = Example({"question": "Why?"}, answer="Because.")
    assert example.question == example["question"] == "Why?"
    assert example.keys() == ["question", "answer"]
    assert example.values() == ["Why?", "Because."]
    assert example.items() == [("question", "Why?"), ("answer", "Because.")]
    assert list(example) == ["question", "answer"]
    assert len(example) == 2
    assert "answer" in example and "source" not in example
    assert example.get("source", "web") == "web"
    assert dict(example) == {"question": "Why?", "answer": "Because."}
    with pytest.raises(AttributeError):
        _ = example.source
    with pytest.raises(KeyError):
        _ = example["source"]


def test_setting_fields() -> None:
    example = Example(a=1)
    example.b = 2
    example["c"] = 3
    del example["a"]
    assert example.to_dict() == {"b": 2, "c": 3}


def test_equality_ignores_input_keys() -> None:
    assert Example(a=1).with_inputs("a") == Example(a=1)
    assert Example(a=1) != Example(a=2)
    assert Example(a=1) != {"a": 1}
    assert hash(Example(a=[1])) == hash(Example(a=[1]))


def test_with_inputs_inputs_and_labels() -> None:
    example = Example(question="Q", context="C", answer="A")
    tagged = example.with_inputs("question", "context")
    assert example.input_keys is None  # with_inputs copies
    assert tagged.inputs().to_dict() == {"question": "Q", "context": "C"}
    assert tagged.inputs().input_keys == ("question", "context")
    assert tagged.labels().to_dict() == {"answer": "A"}


def test_inputs_require_with_inputs() -> None:
    with pytest.raises(ValueError, match="with_inputs"):
        Example(question="Q").inputs()
    with pytest.raises(ValueError, match="with_inputs"):
        Example(question="Q").labels()


def test_copy_and_without() -> None:
    example = Example(question="Q", answer="A", source="web").with_inputs("question")
    changed = example.copy(answer="B")
    assert changed.answer == "B" and example.answer == "A"
    assert changed.inputs().to_dict() == {"question": "Q"}
    trimmed = example.without("source", "missing")
    assert trimmed.keys() == ["question", "answer"]
    assert example.keys() == ["question", "answer", "source"]


def test_to_dict_converts_nested_values() -> None:
    class Model:
        def model_dump(self) -> dict[str, int]:
            return {"x": 1}

    example = Example(inner=Example(a=1), items=[Example(b=2), (3, 4)], model=Model(), mapping={"k": Example(c=3)})
    assert example.to_dict() == {
        "inner": {"a": 1},
        "items": [{"b": 2}, [3, 4]],
        "model": {"x": 1},
        "mapping": {"k": {"c": 3}},
    }
    assert example.toDict() == example.to_dict()


def test_prediction_from_completions() -> None:
    prediction = Prediction.from_completions([{"answer": "A", "score": 1}, {"answer": "B", "score": 2}])
    assert prediction.answer == "A" and prediction.score == 1
    assert prediction.keys() == ["answer", "score"]
    completions = prediction.completions
    assert len(completions) == 2
    assert completions.answer == ["A", "B"]
    assert completions["score"] == [1, 2]
    assert isinstance(completions[1], Prediction) and completions[1].answer == "B"
    assert completions[-1].score == 2
    assert [c.answer for c in completions] == ["A", "B"]
    assert dict(completions.items()) == {"answer": ["A", "B"], "score": [1, 2]}
    assert "answer" in completions
    with pytest.raises(IndexError):
        completions[2]
    with pytest.raises(AttributeError):
        _ = completions.missing
    assert "1 completions omitted" in repr(prediction)


def test_prediction_usage_is_not_a_field() -> None:
    prediction = Prediction(answer="A")
    assert prediction.usage is None
    prediction.usage = {"prompt_tokens": 3}
    assert prediction.usage == {"prompt_tokens": 3}
    assert prediction.keys() == ["answer"]
    # A Prediction built from fields is its own single completion.
    assert len(prediction.completions) == 1 and prediction.completions.answer == ["A"]


def test_completions_from_columns_and_mismatches() -> None:
    assert len(Completions({"a": [1, 2, 3]})) == 3
    assert len(Completions([])) == 0
    with pytest.raises(ValueError, match="one value per completion"):
        Completions({"a": [1], "b": [1, 2]})
    with pytest.raises(ValueError, match="completion 1 has fields"):
        Completions([{"a": 1}, {"b": 2}])
