"""MIPROv2's optuna study: where it lives, what is stored in it, and what is read back.

The study is in optuna's RDB storage (SQLite in the run folder by default, any optuna storage URL
with `--storage`), so a killed run resumes and several processes can search one study. What the
search needs besides optuna's own trial records is stored there too (docs/mipro-design.md 5.1):

- study user attributes: `candidates` (predictor names, instruction candidates, demo sets, the
  kept valset positions, the plan), `rng_after_setup` (the shared RNG's state once the demo sets
  and the proposer have drawn from it) and `setup_done` (others wait for it);
- trial user attributes: `kind` (`baseline`, `minibatch`, `full`), `added` (a trial created by
  hand: the baseline or a full evaluation of a minibatch combination; the rest are objective
  trials, asked), `minibatch` (the valset positions a minibatch trial was scored on), `rng_state`
  (the shared RNG after the trial, for a resumed single-process run), `full_eval_due` and
  `after` (a full evaluation owed after an objective trial, and the trial it followed).

optuna is imported inside functions: `dspx --help` and `dspx validate` must not import it.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dspx_cli.errors import UsageError

if TYPE_CHECKING:
    import optuna

__all__ = [
    "ADDED",
    "KIND",
    "StudyHandle",
    "default_study_name",
    "finished_objective_trials",
    "open_study",
    "rng_from_state",
    "rng_state",
    "trials_in_order",
]

KIND = "kind"
ADDED = "added"
SETUP_DONE = "setup_done"
CANDIDATES = "candidates"
RNG_AFTER_SETUP = "rng_after_setup"
STUDY_FILE = "study.json"  # in the run folder: which storage and study a --resume continues
_PASSWORD = re.compile(r"(://[^:/@]+:)([^@]*)(@)")
# How long a process that did not set the study up waits for the one that does.
SETUP_POLL_S = 1.0


def default_study_name(program_text: str, settings: dict[str, Any]) -> str:
    """`dspx-<hash>` of the program file and the optimizer settings: two processes compiling the
    same program the same way share a study on a shared storage without naming one."""
    digest = hashlib.sha256((program_text + json.dumps(settings, sort_keys=True, default=str)).encode())
    return "dspx-" + digest.hexdigest()[:16]


def rng_state(rng: random.Random) -> list[Any]:
    """`random.Random.getstate()` as JSON data."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def rng_from_state(state: list[Any]) -> random.Random:
    rng = random.Random()
    rng.setstate((state[0], tuple(state[1]), state[2]))
    return rng


def _redacted(url: str) -> str:
    return _PASSWORD.sub(r"\1***\3", url)


def _quiet_optuna() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # `multivariate=True` is experimental in optuna; DSPy turns it on and so does dspx, knowingly.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def _storage(url: str | None) -> Any:
    """optuna's storage for `url`; None: in memory (a library call without a run folder)."""
    optuna = _quiet_optuna()
    if url is None:
        return optuna.storages.InMemoryStorage()
    engine: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Several processes on one SQLite file take turns at its lock: wait for it, do not fail.
        engine = {"connect_args": {"timeout": 60}}
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=engine)
    except Exception as exc:  # noqa: BLE001 - a bad URL or an unreachable server: one line, exit 2
        raise UsageError(f"--storage {_redacted(url)}: {type(exc).__name__}: {exc}") from None
    if url.startswith("sqlite"):
        _write_ahead(storage.engine)
    return storage


def _write_ahead(engine: Any) -> None:
    """SQLite in WAL mode with `synchronous=NORMAL`: a commit no longer waits for the disk (optuna
    commits several times per trial, about 15 ms each otherwise), readers do not block the writer
    (several processes on one file), and a killed process still loses nothing it committed."""
    from sqlalchemy import event

    def pragmas(connection: Any, record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(engine, "connect", pragmas)
    engine.dispose()  # connections opened while optuna set the storage up reconnect with the pragmas


@dataclass
class StudyHandle:
    study: optuna.Study
    storage_url: str | None
    name: str
    created: bool  # this process created the study (it sets it up unless another already did)

    # ----- setup ---------------------------------------------------------------------------------

    @property
    def setup_done(self) -> bool:
        return bool(self.study.user_attrs.get(SETUP_DONE))

    def store_setup(self, candidates: dict[str, Any], rng: random.Random) -> None:
        self.study.set_user_attr(CANDIDATES, candidates)
        self.study.set_user_attr(RNG_AFTER_SETUP, rng_state(rng))

    def mark_setup_done(self) -> None:
        self.study.set_user_attr(SETUP_DONE, True)

    def candidates(self) -> Any:
        """As stored, unchecked: `Candidates.from_json` checks it (a study may not be dspx's)."""
        return self.study.user_attrs.get(CANDIDATES)

    def rng_after_setup(self) -> random.Random:
        return rng_from_state(self.study.user_attrs[RNG_AFTER_SETUP])

    def wait_for_setup(self, notice: Callable[[str], None], timeout_s: float | None = None) -> None:
        """Poll until the process that created the study has stored the candidates."""
        started = time.monotonic()
        told = False
        while not self.setup_done:
            if not told:
                notice(f"study {self.name}: waiting for the process that set it up (demo sets, proposals)\n")
                told = True
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                raise UsageError(f"study {self.name}: nobody finished setting it up within {timeout_s:.0f} s")
            time.sleep(SETUP_POLL_S)
            # A fresh read: user_attrs goes to the storage each time, nothing to refresh.

    # ----- trials --------------------------------------------------------------------------------

    def fail_stale_trials(self) -> int:
        """Trials left running by a killed process (a --resume runs alone): failed, so they count
        for nothing and TPE's constant liar forgets them."""
        optuna = _quiet_optuna()
        stale = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        for trial in stale:
            self.study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        return len(stale)

    def write_study_file(self, run_dir: Path) -> None:
        record = {"study": self.name, "storage": _redacted(self.storage_url) if self.storage_url else None}
        (run_dir / STUDY_FILE).write_text(json.dumps(record, indent=2) + "\n")


def stored_study(run_dir: Path) -> tuple[str | None, str | None]:
    """(study name, storage URL) a run folder's study.json names, each None when not recorded."""
    path = run_dir / STUDY_FILE
    if not path.is_file():
        return None, None
    try:
        record = json.loads(path.read_text())
        return record.get("study"), record.get("storage")
    except (OSError, ValueError, AttributeError):
        raise UsageError(f"{path}: not a study record written by dspx compile") from None


def _is_folder_default(url: str) -> bool:
    """Whether `url` is the SQLite file a run folder keeps by default (`.../study.db`)."""
    return url.startswith("sqlite:///") and url.endswith("/study.db")


def open_study(
    *,
    run_dir: Path | None,
    storage: str | None,
    name: str,
    seed: int,
    resume: bool,
) -> StudyHandle:
    """Create the study, or load it when it exists (another process, or the run being resumed).

    The sampler is always a fresh `TPESampler(seed=seed, multivariate=True)` (DSPy's): optuna
    keeps the sampler's RNG in memory only, so after a resume its suggestions differ from those of
    an uninterrupted run (still a function of the kill point)."""
    optuna = _quiet_optuna()
    if resume and run_dir is not None:
        recorded_name, recorded_storage = stored_study(run_dir)
        name = recorded_name or name
        # study.json is as hostile as the folder it sits in: only the folder's own study.db is
        # taken from it (wherever the folder was when it was written); a study kept anywhere else
        # is continued only when the user names its storage again.
        if storage is None and recorded_storage is not None and not _is_folder_default(recorded_storage):
            if "***" in recorded_storage:
                raise UsageError(
                    f"{run_dir / STUDY_FILE}: the study's storage URL has a password dspx did not keep; "
                    "pass it again with --storage"
                )
            raise UsageError(
                f"{run_dir / STUDY_FILE}: the study is kept outside the run folder ({recorded_storage}); "
                "pass --storage to continue it there"
            )
    if storage is None and run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        storage = f"sqlite:///{(run_dir / 'study.db').resolve()}"
    backend = _storage(storage)
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if resume:
        names = [summary.study_name for summary in optuna.study.get_all_study_summaries(backend)]
        if name in names:
            study = optuna.load_study(study_name=name, storage=backend, sampler=sampler)
            return StudyHandle(study, storage, name, created=False)
        if names:
            raise UsageError(
                f"--resume: no study {name!r} in {_redacted(storage or 'memory')} (it has: {', '.join(names)})"
            )
        # Killed before its study was created: the resume starts it.
    try:
        study = optuna.create_study(study_name=name, storage=backend, sampler=sampler, direction="maximize")
        return StudyHandle(study, storage, name, created=True)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=backend, sampler=sampler)
        return StudyHandle(study, storage, name, created=False)


def trials_in_order(study: optuna.Study, states: Iterable[Any] | None = None) -> list[optuna.trial.FrozenTrial]:
    chosen = tuple(states) if states is not None else None
    return sorted(study.get_trials(deepcopy=False, states=chosen), key=lambda t: t.number)


def finished_objective_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The objective (asked) trials that finished, in trial-number order: `num_trials` counts these."""
    optuna = _quiet_optuna()
    return [
        t
        for t in trials_in_order(study, (optuna.trial.TrialState.COMPLETE,))
        if not t.user_attrs.get(ADDED) and t.user_attrs.get(KIND)
    ]
