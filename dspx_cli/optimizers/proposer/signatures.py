"""The grounded proposer's signatures, as DSPy 3.4.1 declares them (dspy/propose/).

These texts are prompt data, not prose: the instructions, field names and descriptions reach the
prompt model verbatim, and tests/fixtures/mipro/golden.json checks them byte for byte. The odd
spellings ("Somethings", "conciceness", the two spaces after "made.") are DSPy's and stay.
"""

from __future__ import annotations

from dspx_cli.core import Field, Signature

__all__ = [
    "DATASET_DESCRIPTOR",
    "DATASET_DESCRIPTOR_WITH_PRIOR",
    "DESCRIBE_MODULE",
    "DESCRIBE_PROGRAM",
    "OBSERVATION_SUMMARIZER",
    "instruction_signature",
]


def _fields(*pairs: tuple[str, str]) -> tuple[Field, ...]:
    return tuple(Field(name, str, desc) for name, desc in pairs)


# ----- the dataset summary (dspy/propose/dataset_summary_generator.py) ---------------------------

_EXAMPLES = ("examples", "Sample data points from the dataset")

DATASET_DESCRIPTOR = Signature(
    _fields(_EXAMPLES),
    _fields(("observations", "Somethings that holds true for most or all of the data you observed")),
    "Given several examples from a dataset please write observations about trends that hold for most or all of "
    "the samples. Some areas you may consider in your observations: topics, content, syntax, conciseness, etc. "
    "It will be useful to make an educated guess as to the nature of the task this dataset will enable. "
    "Don't be afraid to be creative",
)

DATASET_DESCRIPTOR_WITH_PRIOR = Signature(
    _fields(_EXAMPLES, ("prior_observations", "Some prior observations I made about the data")),
    _fields(
        (
            "observations",
            (
                "Somethings that holds true for most or all of the data you observed or COMPLETE if you have "
                "nothing to add"
            ),
        )
    ),
    "Given several examples from a dataset please write observations about trends that hold for most or all of "
    "the samples. I will also provide you with a few observations I have already made.  Please add your own "
    "observations or if you feel the observations are comprehensive say 'COMPLETE' Some areas you may consider "
    "in your observations: topics, content, syntax, conciceness, etc. It will be useful to make an educated "
    "guess as to the nature of the task this dataset will enable. Don't be afraid to be creative",
)

OBSERVATION_SUMMARIZER = Signature(
    _fields(("observations", "Observations I have made about my dataset")),
    _fields(("summary", "Two to Three sentence summary of only the most significant highlights of my observations")),
    "Given a series of observations I have made about my dataset, please summarize them into a brief 2-3 "
    "sentence summary which highlights only the most important details.",
)

# ----- describing the program (dspy/propose/grounded_proposer.py) --------------------------------

_PIPELINE = "Below is some pseudo-code for a pipeline that solves tasks with calls to language models."
_PROGRAM_CODE = ("program_code", "Pseudocode for a language model program designed to solve a particular task.")
_PROGRAM_EXAMPLE = ("program_example", "An example of the program in use.")
_PROGRAM_SUMMARY = "Summary of the task the program is designed to solve, and how it goes about solving it."

DESCRIBE_PROGRAM = Signature(
    _fields(_PROGRAM_CODE, _PROGRAM_EXAMPLE),
    _fields(
        (
            "program_description",
            "Describe what task the program is designed to solve, and how it goes about solving this task.",
        )
    ),
    f"{_PIPELINE} Please describe what type of task this program appears to be designed to solve, and how it "
    "appears to work.",
)

DESCRIBE_MODULE = Signature(
    _fields(
        _PROGRAM_CODE,
        _PROGRAM_EXAMPLE,
        ("program_description", _PROGRAM_SUMMARY),
        ("module", "The module in the program that we want to describe."),
    ),
    _fields(("module_description", "Description of the module's role in the broader program.")),
    f"{_PIPELINE} Please describe the purpose of one of the specified module in this pipeline.",
)

# ----- proposing one instruction (generate_instruction_class) ------------------------------------

_GENERATE_INSTRUCTIONS = (
    "Use the information below to learn about a task that we are trying to solve using calls to an LM, then "
    "generate a new instruction that will be used to prompt a Language Model to better solve the task."
)


def instruction_signature(*, dataset_description: bool, program_aware: bool, tip: bool) -> Signature:
    """DSPy's GenerateSingleModuleInstruction with the fields the proposal's settings keep.

    The instruction history field is never present: MIPROv2 turns history off.
    """
    inputs: list[tuple[str, str]] = []
    if dataset_description:
        inputs.append(("dataset_description", "A description of the dataset that we are using."))
    if program_aware:
        inputs += [
            ("program_code", "Language model program designed to solve a particular task."),
            ("program_description", _PROGRAM_SUMMARY),
            ("module", "The module to create an instruction for."),
            ("module_description", "Description of the module to create an instruction for."),
        ]
    inputs += [
        ("task_demos", "Example inputs/outputs of our module."),
        ("basic_instruction", "Basic instruction."),
    ]
    if tip:
        inputs.append(("tip", "A suggestion for how to go about generating the new instruction."))
    outputs = _fields(
        (
            "proposed_instruction",
            "Propose an instruction that will be used to prompt a Language Model to perform this task.",
        )
    )
    return Signature(_fields(*inputs), outputs, _GENERATE_INSTRUCTIONS)
