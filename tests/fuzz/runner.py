"""Run fuzz cases in a supervised worker process and classify what happened.

The parent sends one :class:`~fuzz.cases.Case` at a time to a worker process (``spawn``) that holds the
tiny detector, a started :class:`~vidfake.miner.service.MinerService` with its axon handlers, and (when
``axon`` cases are asked for) a real ``bt.Axon`` on 127.0.0.1 with a ``bt.Dendrite`` validator. While a
case runs the parent polls the worker's resident memory (``/proc/<pid>/status``) and the clock: past the
per-case deadline the worker is killed and the case is a ``hang``; above the memory cap it is killed and
the case is ``memory``; if it dies on its own the case is a ``crash``. A fresh worker takes the next case.

Statuses (what :attr:`Outcome.status` can be):

============================  =============================================================================
``result``                    a valid answer (``valid_three_class``; miner: a valid prediction)
``typed_error``               a :class:`MediaError` naming the input (miner: a 400 refusal saying why)
``fallback``                  miner/axon: the deadline passed before the service finished, and it answered
                              its uninformative vector (valid for validators; counted apart, never a
                              detection)
``unexpected_result``         a valid answer where the input must be refused (random bytes, bombs)
``unexpected_error``          a typed error on input that is valid by construction
``untyped_error``             any other exception (CLI: an untyped failure reported for the file)
``unnamed_error``             a ``MediaError`` whose ``source`` is not the input's name
``invalid_result``            a result with NaN, out-of-range or non-summing probabilities
``masked_error``              a valid answer, but a branch or plan raised and was logged with a traceback
``bad_status``                the axon answered with a status other than 200/400, or the CLI's exit code
                              disagrees with its output
``crash`` / ``hang`` / ``memory``  the worker died, passed the deadline, or passed the memory cap
============================  =============================================================================

The CLI entry runs :func:`vidfake.cli.main` in the worker on one path per case (argument parsing, input
expansion, per-file isolation, JSON/text output to a strict UTF-8 stdout, exit code); the detector it
builds is served from the worker's tiny detector instead of being rebuilt per case. The real command in a
subprocess is exercised by ``tests/test_cli_batch.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import math
import multiprocessing
import os
import re
import shutil
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fuzz.cases import Case, MediaSpec, WireSpec, build, materialize

OK_STATUSES = ("result", "typed_error", "fallback")
FAILURE_STATUSES = ("unexpected_result", "unexpected_error", "untyped_error", "unnamed_error", "invalid_result",
                    "masked_error", "bad_status", "crash", "hang", "memory")
#: The hotkey the handler cases claim (the offline allow-list holds exactly this one).
FUZZ_HOTKEY = "5FuzzValidatorHotkeyForLocalHandlerCalls00000000"
_UNTYPED = re.compile(r"^[A-Z][A-Za-z0-9_]*(Error|Exception|Exit|Interrupt)\b:?")


@dataclass
class Outcome:
    """What one case did.

    Attributes:
        id: ``entry/index``; entry, recipe, expect, note: from the case.
        status: see the module docstring.
        detail: the error message, traceback head or reason (empty for plain results).
        answer: ``detect``: the verdict; miner/axon: the service outcome or HTTP status.
        seconds: wall time of the call (input building excluded).
        rss_before_mb, rss_after_mb: worker RSS around the call; rss_peak_mb: the peak during it.
    """

    id: str
    entry: str
    recipe: str
    expect: str = ""
    note: str = ""
    status: str = ""
    detail: str = ""
    answer: str = ""
    seconds: float = 0.0
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0
    rss_peak_mb: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES


@dataclass(frozen=True)
class RunOptions:
    """How cases are run.

    Attributes:
        case_timeout_s: a case that takes longer is a ``hang`` (its worker is killed).
        startup_timeout_s: how long a worker may take to import and build its detectors.
        rss_cap_mb: a case whose worker grows more than this above its ready RSS is ``memory``.
        log_path: worker stderr and logs go here (``None``: a file in the temporary work folder).
        threads: torch threads in the worker.
    """

    case_timeout_s: float = 60.0
    startup_timeout_s: float = 900.0
    rss_cap_mb: float = 2048.0
    log_path: str | None = None
    threads: int = 1


@dataclass
class RunReport:
    """All outcomes of a run, and what the workers cost."""

    outcomes: list[Outcome]
    worker_starts: int
    ready_rss_mb: list[float]
    end_rss_mb: float
    wall_s: float
    log_path: str

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]


# ------------------------------------------------------------------------------------------ memory


def rss_mb(pid: int | str = "self") -> tuple[float, float]:
    """``(VmRSS, VmHWM)`` of a process in MiB (0 when it is gone)."""
    values = {"VmRSS": 0.0, "VmHWM": 0.0}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in values:
                    values[key] = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return values["VmRSS"], values["VmHWM"]


def _reset_peak() -> None:
    """Make VmHWM restart from the current RSS (Linux >= 4.0); harmless where not allowed."""
    with contextlib.suppress(OSError):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")


# ------------------------------------------------------------------------------------------ the worker


class _Capture(logging.Handler):
    """Keeps the records of the running case (ERROR with a traceback marks a masked failure)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def tracebacks(self) -> list[str]:
        out = []
        for r in self.records:
            if r.levelno >= logging.ERROR and r.exc_info:
                exc = r.exc_info[1]
                out.append(f"{r.name}: {r.getMessage()[:200]} [{type(exc).__name__}: {str(exc)[:200]}]")
        return out


class _FailingStream(io.RawIOBase):
    """A binary file object whose ``read`` fails like a dropped network mount."""

    name = "<failing-stream>"

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        raise OSError(5, "Input/output error (injected)")


class _Harness:
    """Lives in the worker: the detector, the service and servers, and one method per entry."""

    def __init__(self, entries: Sequence[str], workdir: str, threads: int):
        from vidfake.detector import Detector

        self.workdir = Path(workdir)
        self.capture = _Capture()
        root = logging.getLogger()
        root.handlers[:] = [logging.StreamHandler()]  # stderr = the worker log; also makes basicConfig a no-op
        root.setLevel(logging.WARNING)
        logging.getLogger("vidfake").addHandler(self.capture)
        needs_detector = bool({"detect", "cli"} & set(entries))
        self.detector = Detector.from_pretrained("tiny", threads=threads) if needs_detector else None
        self.service = self.handlers = self.axon_server = self.validator = None
        if {"miner", "axon"} & set(entries):
            self._start_miner(threads, axon="axon" in entries)

    def _start_miner(self, threads: int, axon: bool) -> None:
        from vidfake.miner.client import free_port
        from vidfake.miner.guard import Guard, GuardConfig, Membership
        from vidfake.miner.server import MinerConfig, MinerServer, detector_factory
        from vidfake.miner.service import MinerService, ServiceConfig

        allow = [FUZZ_HOTKEY]
        wallets = {}
        if axon:
            from vidfake.miner.client import LocalValidator, create_local_wallet

            root = self.workdir / "wallets"
            wallets = {name: create_local_wallet(name, root, overwrite=True) for name in ("miner", "validator")}
            allow.append(wallets["validator"].hotkey.ss58_address)
        service_cfg = ServiceConfig(workers=1)
        self.service = MinerService(detector_factory("tiny", threads=threads), service_cfg).start(calibrate=False)
        guard_cfg = GuardConfig(rate_limit_per_minute=0)
        config = MinerConfig(port=free_port(), ip="127.0.0.1", offline=True, allow_hotkeys=tuple(allow),
                             weights="tiny", guard=guard_cfg, service=service_cfg, summary_s=3600.0)
        guard = Guard(guard_cfg, Membership.offline(allow))
        # Handlers called directly: no axon needed, the service is shared with the served miner below.
        self.handlers = MinerServer(None, guard, self.service, config)
        if axon:
            self.axon_server = MinerServer(wallets["miner"], guard, self.service, config).start()
            self.validator = LocalValidator(wallets["validator"], self.axon_server.axon.info())

    def close(self) -> None:
        if self.axon_server is not None:
            self.axon_server.stop()
        if self.service is not None:
            self.service.close()
        if self.detector is not None:
            self.detector.close()

    # -------------------------------------------------------------------------------- one case
    def run(self, case: Case) -> Outcome:
        out = Outcome(case.id, case.entry, case.recipe)
        try:
            spec = build(case)
        except Exception as e:  # noqa: BLE001 - a recipe bug is reported, not fatal
            out.status, out.detail = "crash", f"building the input failed: {type(e).__name__}: {e}"
            return out
        out.expect, out.note = spec.expect, spec.note
        folder = self.workdir / f"case-{case.entry}-{case.index}"
        folder.mkdir(parents=True, exist_ok=True)
        self.capture.records.clear()
        _reset_peak()
        out.rss_before_mb = rss_mb()[0]
        t0 = time.perf_counter()
        try:
            runner = {"detect": self._detect, "cli": self._cli, "miner": self._miner, "axon": self._axon,
                      "selftest": self._selftest}[case.entry]
            status, detail, answer = runner(case, spec, folder)
        except Exception as e:  # noqa: BLE001 - the harness itself failed: say so
            status, detail, answer = "crash", "harness: " + _exc_detail(e), ""
        out.seconds = round(time.perf_counter() - t0, 4)
        masked = self.capture.tracebacks()
        if status in ("result", "fallback") and masked:
            status, detail = "masked_error", "; ".join(masked)[:1500]
        out.status, out.detail, out.answer = _apply_expectation(status, spec.expect), detail, answer
        out.rss_after_mb, out.rss_peak_mb = rss_mb()
        shutil.rmtree(folder, ignore_errors=True)
        return out

    # -------------------------------------------------------------------------------- detect
    def _detect(self, case: Case, spec: MediaSpec, folder: Path):
        from vidfake.preprocessing.errors import MediaError

        source = f"fuzz:{case.id}"
        kwargs = {"kind": spec.kind} if spec.kind else {}
        if spec.deliver == "path":
            media = source = os.fsdecode(materialize(spec, folder))
        elif spec.deliver == "fileobj":
            media, kwargs["source"] = io.BytesIO(spec.data), source
        elif spec.deliver == "failing-stream":
            media, kwargs["source"] = _FailingStream(), source
        else:  # bytes, array
            media, kwargs["source"] = spec.data, source
        try:
            result = self.detector.detect(media, **kwargs)
        except MediaError as e:
            if not str(e.source).startswith(source):
                return "unnamed_error", f"{type(e).__name__} names {e.source!r}, not {source!r}: {e.problem}", ""
            return "typed_error", f"{type(e).__name__}: {e.problem}"[:500], ""
        except Exception as e:  # noqa: BLE001 - exactly what the fuzz looks for
            return "untyped_error", _exc_detail(e), ""
        problem = result_problem(result)
        if problem:
            return "invalid_result", problem, result.verdict
        failed = [f"{b.name}: {b.status}" for b in result.branches if b.status.startswith("failed")]
        if failed:
            return "masked_error", "; ".join(failed)[:1500], result.verdict
        return "result", "; ".join(result.warnings)[:300], result.verdict

    # -------------------------------------------------------------------------------- CLI
    def _cli(self, case: Case, spec: MediaSpec, folder: Path):
        from vidfake import cli, detector

        path = os.fsdecode(materialize(spec, folder))
        fmt = "text" if np.random.default_rng([case.seed, 7, case.index]).random() < 0.35 else "json"
        argv = ["--weights", "tiny", "--format", fmt, "--quiet", "--", path]
        raw = io.BytesIO()
        stdout = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", write_through=True)  # a UTF-8 terminal
        shared = self.detector
        original = detector.Detector.from_pretrained
        detector.Detector.from_pretrained = classmethod(lambda cls, *a, **k: shared)
        try:
            with contextlib.redirect_stdout(stdout):
                try:
                    code = cli.main(argv)
                except SystemExit as e:
                    code = e.code
        except Exception as e:  # noqa: BLE001 - the command itself died: every input of the batch is lost
            return "crash", "vidfake CLI raised " + _exc_detail(e), ""
        finally:
            detector.Detector.from_pretrained = original
        text = raw.getvalue().decode("utf-8", errors="surrogateescape")  # raw name bytes read back as given
        return classify_cli_output(text, fmt, path, code)

    # -------------------------------------------------------------------------------- supervisor self-tests
    def _selftest(self, case: Case, spec, folder: Path):
        if spec.action == "hang":
            time.sleep(3600)
        elif spec.action == "crash":
            os._exit(3)
        elif spec.action == "memory":
            hog = []
            while True:  # touch every page so it is resident
                hog.append(np.ones(64 << 20, np.uint8))
        return "result", "", ""

    # -------------------------------------------------------------------------------- miner handlers
    def _miner(self, case: Case, spec: WireSpec, folder: Path):
        from vidfake.miner.protocol import ImageSynapse, VideoSynapse, is_valid_prediction

        before = self.service.summary().outcomes.get(spec.modality, {})
        if spec.modality == "image":
            synapse, handler = ImageSynapse(image=spec.payload), self.handlers.forward_image
        else:
            synapse, handler = VideoSynapse(video=spec.payload), self.handlers.forward_video
        synapse.dendrite.hotkey = FUZZ_HOTKEY
        try:
            response = asyncio.run(handler(synapse))
        except Exception as e:  # noqa: BLE001 - the axon would answer 500: what the fuzz looks for
            self._wait_idle()
            return "untyped_error", "the handler raised " + _exc_detail(e), ""
        self._wait_idle()
        after = self.service.summary().outcomes.get(spec.modality, {})
        answer = ",".join(k for k, v in after.items() if v > before.get(k, 0))
        code, message = response.axon.status_code, response.axon.status_message or ""
        if code == 400:
            if not message or "<wire:" not in message:
                return "unnamed_error", f"400 without a message naming the payload: {message!r}", answer
            return "typed_error", message[:500], answer
        if code not in (None, 200):
            return "bad_status", f"{code}: {message}"[:500], answer
        if not is_valid_prediction(response.prediction):
            return "invalid_result", f"prediction {response.prediction!r}", answer
        if getattr(response, spec.modality):
            return "bad_status", "the payload was echoed back in the response", answer
        if answer == "fallback":
            return "fallback", self._fallback_reason(), answer
        return "result", "", answer

    def _fallback_reason(self) -> str:
        return "; ".join(r.getMessage()[:300] for r in self.capture.records if "uninformative" in r.getMessage())

    def _wait_idle(self, limit_s: float = 60.0) -> None:
        """A request answered at its deadline leaves its job running: let it finish inside this case."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit_s:
            s = self.service.summary()
            if not s.busy_workers and not s.queue_depth:
                return
            time.sleep(0.02)

    # -------------------------------------------------------------------------------- axon
    def _axon(self, case: Case, spec: WireSpec, folder: Path):
        from vidfake.miner.client import Challenge
        from vidfake.miner.protocol import ImageSynapse, VideoSynapse

        synapse = ImageSynapse(image=spec.payload) if spec.modality == "image" else VideoSynapse(video=spec.payload)
        before = self.service.summary().outcomes.get(spec.modality, {})
        [r] = self.validator.query_sync([Challenge(synapse, case.id, spec.frames)])
        self._wait_idle()
        after = self.service.summary().outcomes.get(spec.modality, {})
        outcome = ",".join(k for k, v in after.items() if v > before.get(k, 0))
        answer = f"{r.status_code} {outcome}".strip()
        if r.status_code == 400:
            return ("typed_error", (r.status_message or "")[:500], answer) if r.status_message else (
                "unnamed_error", "400 without a reason", answer)
        if r.status_code == 200:
            if not r.valid:
                return "invalid_result", f"prediction {r.prediction}", answer
            return ("fallback", self._fallback_reason(), answer) if outcome == "fallback" else ("result", "", answer)
        return "bad_status", f"{r.status_code}: {r.status_message}"[:500], answer


def _exc_detail(e: BaseException) -> str:
    """The exception in one line (message shortened), then the end of its traceback."""
    message = str(e)
    if len(message) > 300:
        message = message[:200] + " ... " + message[-60:]
    return f"{type(e).__name__}: {message}\n" + "".join(traceback.format_exception(e))[-1200:]


def _apply_expectation(status: str, expect: str) -> str:
    if status == "result" and expect == "error":
        return "unexpected_result"
    if status == "typed_error" and expect == "result":
        return "unexpected_error"
    return status


def result_problem(result) -> str:
    """Why a :class:`~vidfake.result.DetectionResult` is not valid, or ``""``."""
    from vidfake.result import valid_three_class

    if not valid_three_class(result.three_class):
        return f"three_class {result.three_class} is not a valid probability vector"
    p = result.probability_fake
    if not (isinstance(p, float) and math.isfinite(p) and 0.0 <= p <= 1.0):
        return f"probability_fake {p!r} outside [0, 1]"
    for b in result.branches:
        if b.probability is not None and not (math.isfinite(b.probability) and 0.0 <= b.probability <= 1.0):
            return f"branch {b.name} probability {b.probability!r}"
    for item in (*result.clips, *result.frames):
        if not (math.isfinite(item.probability) and 0.0 <= item.probability <= 1.0):
            return f"{type(item).__name__} probability {item.probability!r}"
    if result.verdict != ("fake" if p >= result.threshold else "real"):
        return f"verdict {result.verdict} disagrees with P(fake) {p} at threshold {result.threshold}"
    return ""


def classify_cli_output(text: str, fmt: str, source: str, code) -> tuple[str, str, str]:
    """Status of one input from the ``vidfake`` command's output (one input per invocation)."""
    from vidfake.result import valid_three_class

    if code == 2:
        return "bad_status", f"exit code 2 (usage error) for a plain path: {text[-300:]}", str(code)
    if fmt == "json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            return "bad_status", f"output is not one JSON document: {text[:300]!r}", str(code)
        if doc.get("source") != source:
            return "unnamed_error", f"reported as {doc.get('source')!r}, not {source!r}", str(code)
        if "error" in doc:
            if code != 1:
                return "bad_status", f"an input failed but the exit code is {code}", str(code)
            if _UNTYPED.match(doc["error"]):
                return "untyped_error", doc["error"][:500], str(code)
            return "typed_error", doc["error"][:500], str(code)
        if code != 0:
            return "bad_status", f"result printed but exit code {code}", str(code)
        if not valid_three_class(doc.get("three_class", ())):
            return "invalid_result", f"three_class {doc.get('three_class')}", str(code)
        return "result", "", str(code)
    if not _shown(source, text):
        return "unnamed_error", f"the input's name is not in the output: {text[:300]!r}", str(code)
    if "ERROR" in text:
        if code != 1:
            return "bad_status", f"an input failed but the exit code is {code}", str(code)
        reason = text.split("ERROR", 1)[1].strip()
        return ("untyped_error" if _UNTYPED.match(reason) else "typed_error"), reason[:500], str(code)
    if code != 0 or not re.search(r"\b(REAL|FAKE)\b", text):
        return "bad_status", f"no verdict or exit code {code}: {text[:300]!r}", str(code)
    return "result", "", str(code)


def _shown(source: str, text: str) -> bool:
    """Whether the input's name is in the output, as is or escaped: a name that is not valid UTF-8 (its
    bytes arrive as surrogate escapes) may be printed with backslash escapes rather than raw bytes."""
    return source in text or source.encode("utf-8", "backslashreplace").decode("utf-8") in text


def worker_main(conn, entries: Sequence[str], options: RunOptions, workdir: str) -> None:
    """The worker process: build the harness, then answer cases until told to stop (``None``)."""
    log = open(options.log_path or os.path.join(workdir, "worker.log"), "ab", buffering=0)  # noqa: SIM115
    os.dup2(log.fileno(), 2)  # native libraries (FFmpeg, mediapipe) write here too
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(var, "1")
    try:
        harness = _Harness(entries, workdir, options.threads)
    except Exception as e:  # noqa: BLE001 - reported to the parent, which gives up
        conn.send(("failed", _exc_detail(e)))
        return
    conn.send(("ready", rss_mb()[0]))
    try:
        while True:
            case = conn.recv()
            if case is None:
                break
            conn.send(harness.run(case))
    finally:
        harness.close()


# ------------------------------------------------------------------------------------------ the parent


class _Worker:
    def __init__(self, entries: Sequence[str], options: RunOptions, workdir: str):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker_main, args=(child, tuple(entries), options, workdir),
                                name="vidfake-fuzz-worker")
        self.proc.start()
        child.close()
        t0 = time.monotonic()
        while not self.conn.poll(0.2):
            if not self.proc.is_alive() or time.monotonic() - t0 > options.startup_timeout_s:
                self.kill()
                raise RuntimeError(f"fuzz worker did not start (exit code {self.proc.exitcode}); see {options.log_path}")
        try:
            kind, info = self.conn.recv()
        except (EOFError, OSError):
            kind, info = "failed", f"the worker exited with code {self.proc.exitcode}; see {options.log_path}"
        if kind != "ready":
            self.kill()
            raise RuntimeError(f"fuzz worker failed to start:\n{info}")
        self.ready_rss_mb = float(info)

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(10)

    def stop(self) -> float:
        rss = rss_mb(self.proc.pid)[0]
        with contextlib.suppress(OSError, BrokenPipeError):
            self.conn.send(None)
        self.proc.join(60)
        self.kill()
        return rss


def run_cases(
    cases: Sequence[Case],
    options: RunOptions | None = None,
    *,
    on_outcome: Callable[[Outcome, int, int], None] | None = None,
) -> RunReport:
    """Run ``cases`` in order in a supervised worker; never raises on a case's behalf.

    Args:
        cases: from :func:`fuzz.cases.generate`.
        options: deadlines, memory cap, log file.
        on_outcome: called after each case with ``(outcome, position, total)`` (progress printing).

    Raises:
        RuntimeError: a worker could not start at all.
    """
    options = options or RunOptions()
    entries = sorted({c.entry for c in cases})
    workdir = tempfile.mkdtemp(prefix="vidfake-fuzz-")
    keep_workdir = options.log_path is None  # the log lives there
    if keep_workdir:
        options = RunOptions(**{**asdict(options), "log_path": os.path.join(workdir, "worker.log")})
    t_start = time.perf_counter()
    outcomes: list[Outcome] = []
    ready: list[float] = []
    worker: _Worker | None = None
    end_rss = 0.0
    try:
        for pos, case in enumerate(cases):
            if worker is None:
                worker = _Worker(entries, options, workdir)
                ready.append(worker.ready_rss_mb)
            outcome, alive = _supervise(worker, case, options)
            if not alive:
                worker = None
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome, pos, len(cases))
    finally:
        if worker is not None:
            end_rss = worker.stop()
        shutil.rmtree(os.path.join(workdir, "wallets") if keep_workdir else workdir, ignore_errors=True)
    return RunReport(outcomes, len(ready), ready, end_rss, round(time.perf_counter() - t_start, 1),
                     options.log_path)


def _supervise(worker: _Worker, case: Case, options: RunOptions) -> tuple[Outcome, bool]:
    worker.conn.send(case)
    t0 = time.monotonic()
    peak = 0.0
    pid = worker.proc.pid
    while True:
        if worker.conn.poll(0.05):
            try:
                outcome = worker.conn.recv()
            except (EOFError, OSError):
                outcome = None
            if outcome is not None:
                outcome.rss_peak_mb = max(outcome.rss_peak_mb, peak)
                return outcome, True
        elapsed = time.monotonic() - t0
        if not worker.proc.is_alive():
            worker.kill()
            return _lost(case, "crash", f"worker died (exit code {worker.proc.exitcode})", elapsed, peak), False
        rss = rss_mb(pid)[0]
        peak = max(peak, rss)
        if rss - worker.ready_rss_mb > options.rss_cap_mb:
            worker.kill()
            return _lost(case, "memory", f"RSS {rss:.0f} MiB, {rss - worker.ready_rss_mb:.0f} MiB above the "
                         f"worker's ready RSS (cap {options.rss_cap_mb:.0f})", elapsed, peak), False
        if elapsed > options.case_timeout_s:
            worker.kill()
            return _lost(case, "hang", f"no answer after {options.case_timeout_s:.0f} s", elapsed, peak), False


def _lost(case: Case, status: str, detail: str, seconds: float, peak: float) -> Outcome:
    try:
        spec = build(case)
        expect, note = spec.expect, spec.note
    except Exception:  # noqa: BLE001
        expect, note = "", ""
    return Outcome(case.id, case.entry, case.recipe, expect, note, status, detail, "", round(seconds, 2),
                   rss_peak_mb=peak)


# ------------------------------------------------------------------------------------------ summaries


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))
    return values[k]


def summarize(report: RunReport) -> dict:
    """Counts by entry and status, by recipe and status, time and memory figures, and the failures."""
    by_entry: dict[str, Counter] = defaultdict(Counter)
    by_recipe: dict[str, Counter] = defaultdict(Counter)
    times: dict[str, list[float]] = defaultdict(list)
    answers: dict[str, Counter] = defaultdict(Counter)
    for o in report.outcomes:
        by_entry[o.entry][o.status] += 1
        by_recipe[o.recipe][o.status] += 1
        times[o.entry].append(o.seconds)
        if o.entry in ("miner", "axon") and o.answer:
            answers[o.entry][o.answer] += 1
    growth = [o.rss_peak_mb - o.rss_before_mb for o in report.outcomes if o.rss_before_mb and o.rss_peak_mb]
    return {
        "cases": len(report.outcomes),
        "ok": sum(o.ok for o in report.outcomes),
        "failures": len(report.failures()),
        "by_entry": {e: dict(c) for e, c in sorted(by_entry.items())},
        "by_recipe": {r: dict(c) for r, c in sorted(by_recipe.items())},
        "miner_answers": {e: dict(c) for e, c in answers.items()},
        "seconds": {e: {"median": round(_pct(v, 50), 3), "p99": round(_pct(v, 99), 3), "max": round(max(v), 3)}
                    for e, v in sorted(times.items())},
        "memory_mb": {
            "ready": [round(r) for r in report.ready_rss_mb],
            "end": round(report.end_rss_mb),
            "max_case_peak": round(max((o.rss_peak_mb for o in report.outcomes), default=0.0)),
            "max_case_growth": round(max(growth, default=0.0)),
        },
        "slowest": [_brief(o, "seconds") for o in sorted(report.outcomes, key=lambda o: -o.seconds)[:8]],
        "largest_rss_rises": [
            {**_brief(o, "seconds"), "rise_mb": round(o.rss_peak_mb - o.rss_before_mb)}
            for o in sorted(report.outcomes, key=lambda o: -(o.rss_peak_mb - o.rss_before_mb))[:5]
        ],
        # RSS before every twentieth case: a leak shows as a trend within an entry's stretch of cases.
        "rss_trajectory_mb": [(o.id, round(o.rss_before_mb)) for o in report.outcomes[:: max(1, len(report.outcomes) // 20)]],
        "worker_starts": report.worker_starts,
        "wall_s": report.wall_s,
        "failure_cases": [asdict(o) for o in report.failures()],
    }


def _brief(o: Outcome, *extra: str) -> dict:
    return {"id": o.id, "recipe": o.recipe, "note": o.note[:120], "status": o.status,
            **{k: getattr(o, k) for k in extra}}


def format_summary(summary: dict) -> str:
    """A table of the counts by entry point, and the figures under it."""
    cols = (*OK_STATUSES, *FAILURE_STATUSES)
    used = [c for c in cols if any(c in counts for counts in summary["by_entry"].values())]
    head = f"{'entry':<8}{'cases':>7}" + "".join(f"{c:>18}" for c in used)
    lines = [head, "-" * len(head)]
    for entry, counts in summary["by_entry"].items():
        lines.append(f"{entry:<8}{sum(counts.values()):>7}" + "".join(f"{counts.get(c, 0):>18}" for c in used))
    total = Counter()
    for counts in summary["by_entry"].values():
        total.update(counts)
    lines.append(f"{'all':<8}{sum(total.values()):>7}" + "".join(f"{total.get(c, 0):>18}" for c in used))
    lines.append("")
    for entry, s in summary["seconds"].items():
        lines.append(f"{entry:<8} seconds per case: median {s['median']:.3f}, p99 {s['p99']:.3f}, max {s['max']:.3f}")
    m = summary["memory_mb"]
    lines.append(f"worker RSS MiB: ready {m['ready']}, end {m['end']}, highest case peak {m['max_case_peak']}, "
                 f"largest rise within a case {m['max_case_growth']}; worker starts {summary['worker_starts']}; "
                 f"wall {summary['wall_s']:.0f} s")
    for entry, c in summary.get("miner_answers", {}).items():
        lines.append(f"{entry:<8} service outcomes: {dict(sorted(c.items()))}")
    slow = summary.get("slowest", [])[:3]
    if slow:
        lines.append("slowest: " + "; ".join(f"{o['id']} {o['seconds']:.1f} s ({o['note'][:50]})" for o in slow))
    return "\n".join(lines)
