"""The worker process: hosts one trainable at a time and runs trials the driver sends it.

Started by the local executor as ``python -m tunesmith._internal.worker <fd>``,
where ``fd`` is its end of a socket pair to the driver, or forked from a fork
server (``python -m tunesmith._internal.worker --fork-server <ctl> <fds>``): a
warm process that has imported tunesmith and loaded the trainable, so that a
new worker costs a ``fork()`` rather than a fresh interpreter.
"""
from __future__ import annotations

import inspect
import numbers
import os
import shutil
import signal
import sys
import traceback
import weakref
from multiprocessing.connection import Connection
from typing import Any

from tunesmith._internal import process_state
from tunesmith._internal import protocol as P
from tunesmith._internal import trial_hooks
from tunesmith._internal.exit import flush_and_exit, fork_for_the_driver, leave_stop_signals_to_the_driver
from tunesmith._internal.fsutil import ensure_dir, wait_readable


def _pickle_exception(exc: BaseException) -> bytes | None:
    import cloudpickle

    try:
        data = cloudpickle.dumps(exc)
        cloudpickle.loads(data)
        return data
    except Exception:
        return None


_INTERNAL_DIR = os.path.dirname(os.path.abspath(__file__))


def format_user_traceback(exc: BaseException) -> str:
    """The traceback of a trial's error, without the worker's own frames.

    ``RAY_AIR_FULL_TRACEBACKS=1`` keeps every frame.
    """
    te = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    if os.environ.get("RAY_AIR_FULL_TRACEBACKS", "0") != "1":
        user = [f for f in te.stack if not os.path.abspath(f.filename).startswith(_INTERNAL_DIR + os.sep)]
        if user:
            te.stack = traceback.StackSummary.from_list(user)
    return "".join(te.format())


def _is_class_trainable(obj: Any) -> bool:
    if not inspect.isclass(obj):
        return False
    from tunesmith.tune.trainable.trainable import Trainable

    return issubclass(obj, Trainable)


class _TrialEnvironment:
    """Sets up a trial's process state, and puts back what the trial changed when it ends.

    A worker process runs one trial after another (unless ``reuse_actors=False``). So that a
    trial starts as it would in a new process, as on Ray, what a trial commonly changes in its
    process is undone when it ends: environment variables, the working directory, handlers added
    to the root logger (``logging.basicConfig(filename=...)`` works again in the next trial),
    torch's thread count, the settings ``process_state.ProcessSettings`` holds (warning filters,
    logger levels, the umask, signal handlers, numpy's error handling, torch's default dtype...); a
    later trial gets fresh random generators (``random``, numpy's and torch's global ones) and sees
    each warning again. Module globals a trial changes, and ``sys.path``, stay. The trial's
    ``OMP_NUM_THREADS`` (its CPU count, unless the driver's environment sets it) also sets torch's
    thread count.
    """

    def __init__(self, spec: P.TrialSpec, reused: bool = False):
        self.spec = spec
        self._reused = reused
        self._env_before: dict[str, str] = {}
        self._cwd_before: str | None = None
        self._saved_fds: list[tuple[int, int]] = []
        self._files = []
        self._root_handlers: list | None = None
        self._root_level = 0
        self._torch_threads: int | None = None
        self._streams: tuple = ()
        self._recursion_limit = 0
        self._ray_before = False
        self._settings: process_state.ProcessSettings | None = None
        # Set when the trial's instance is kept for the next trial (reuse_actors): what the process is
        # then stays (environment, settings, logging), as in a reused Ray actor.
        self.keeps_process = False

    def __enter__(self):
        spec = self.spec
        self._env_before = os.environ.copy()
        self._streams = (sys.stdout, sys.stderr)
        self._recursion_limit = sys.getrecursionlimit()
        self._ray_before = _ray_running()
        # The worker may run another trial after this one.
        self._settings = process_state.ProcessSettings()
        for key, value in spec.env.items():
            os.environ[key] = value
        process_state.omp_from_cpus = "OMP_NUM_THREADS" in spec.env
        try:
            self._cwd_before = os.getcwd()
        except OSError:  # the directory is gone: the trial's own is where it returns to
            self._cwd_before = None
        logging = sys.modules.get("logging")
        if logging is not None:
            root = logging.getLogger()
            self._root_handlers, self._root_level = list(root.handlers), root.level
        torch = sys.modules.get("torch")
        if torch is not None and hasattr(torch, "get_num_threads"):
            self._torch_threads = torch.get_num_threads()
        process_state.apply_thread_count()
        if self._reused:
            _fresh_randomness_and_warnings()
        trial_dir = spec.trial_info.trial_dir
        ensure_dir(trial_dir)
        if spec.chdir:
            os.chdir(trial_dir)
        out, err = spec.log_to_file
        if out or err:
            sys.stdout.flush()
            sys.stderr.flush()
            opened: dict[str, Any] = {}
            for fd, name in ((1, out), (2, err)):
                if not name:
                    continue
                path = name if os.path.isabs(name) else os.path.join(trial_dir, name)
                if path not in opened:
                    opened[path] = open(path, "ab", buffering=0)
                    self._files.append(opened[path])
                self._saved_fds.append((fd, os.dup(fd)))
                os.dup2(opened[path].fileno(), fd)
        return self

    def __exit__(self, *exc):
        if self._saved_fds:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, saved in self._saved_fds:
                os.dup2(saved, fd)
                os.close(saved)
            for f in self._files:
                f.close()
        _put_back_streams(self._streams)
        if not self._ray_before and _ray_running():
            _say_private_ray()
        if sys.getrecursionlimit() != self._recursion_limit:
            sys.setrecursionlimit(self._recursion_limit)
        if self._cwd_before is not None:
            try:
                os.chdir(self._cwd_before)
            except OSError:
                pass
        if not self.keeps_process:
            self.undo_process_changes()
        return False

    def start_over_from(self, kept: "_TrialEnvironment") -> None:
        """The kept instance this trial was to go on with is gone: undoes what the process kept for it
        (``kept`` is the environment of its first trial), and applies this trial's settings again, as in
        a new process; this trial's end then puts the process back to what it was before ``kept``."""
        kept.undo_process_changes()
        self._env_before, self._settings = kept._env_before, kept._settings
        self._root_handlers, self._root_level = kept._root_handlers, kept._root_level
        self._torch_threads = kept._torch_threads
        for key, value in self.spec.env.items():
            os.environ[key] = value
        process_state.apply_thread_count()
        _fresh_randomness_and_warnings()

    def undo_process_changes(self) -> None:
        """Puts back the process-wide state the trial (and, when it was kept, later trials) changed."""
        before, environ = self._env_before, os.environ
        for key in [k for k in environ if k not in before]:
            environ.pop(key, None)
        for key, value in before.items():
            if environ.get(key) != value:
                environ[key] = value
        if self._root_handlers is not None:
            root = sys.modules["logging"].getLogger()
            for handler in [h for h in root.handlers if h not in self._root_handlers]:
                root.removeHandler(handler)
                try:
                    handler.close()
                except Exception:
                    pass
            root.handlers[:] = self._root_handlers
            root.setLevel(self._root_level)
        torch = sys.modules.get("torch")
        if self._torch_threads is not None and torch is not None:
            try:
                if torch.get_num_threads() != self._torch_threads:
                    torch.set_num_threads(self._torch_threads)
            except Exception:
                pass
        if self._settings is not None:
            self._settings.restore()


def _ray_running() -> bool:
    """Whether this process has Ray imported and initialised (never imports it)."""
    ray = sys.modules.get("ray")
    try:
        return bool(ray is not None and ray.is_initialized())
    except Exception:
        return False


_said_private_ray = False


def _say_private_ray() -> None:
    """Once per worker: a trial started Ray in it (ray.init or a ray.remote call), a Ray of its own."""
    global _said_private_ray
    if _said_private_ray:
        return
    _said_private_ray = True
    sys.stderr.write(
        "This trial started Ray in its worker process (ray.init(), or a first ray.remote/ray.get call): each "
        "worker then runs a Ray instance of its own, with all of the machine's CPUs, and trials share no "
        "objects. To run the trials' Ray tasks on one Ray, call ray.init() in the script before "
        "Tuner.fit(): the trials then run on that Ray.\n"
    )


def _put_back_streams(streams: tuple) -> None:
    """``sys.stdout``/``sys.stderr`` as they were before the trial: a stream the trial put in their
    place is dropped, and one it closed is opened again on its file descriptor."""
    for name, fd, before in zip(("stdout", "stderr"), (1, 2), streams):
        if getattr(sys, name) is not before:
            setattr(sys, name, before)
        if before is not None and getattr(before, "closed", False):
            try:
                os.fstat(fd)
                import io

                setattr(sys, name, io.TextIOWrapper(open(fd, "wb", closefd=False), line_buffering=True,
                                                    encoding=getattr(before, "encoding", None) or "utf-8",
                                                    errors="backslashreplace"))
            except (OSError, ValueError):
                pass  # the descriptor itself is gone: the stream stays closed


def _fresh_randomness_and_warnings() -> None:
    """What a new process would have: reseeded global generators, and no warning shown yet."""
    process_state.reseed_all()
    warnings = sys.modules.get("warnings")
    if warnings is not None:
        warnings.onceregistry.clear()
        mutated = getattr(warnings, "_filters_mutated", None)
        if mutated is not None:  # makes every module's record of shown warnings out of date
            mutated()


class Worker:
    """The loop of one worker process."""

    def __init__(self, conn: Connection, trainables: dict[str, Any] | None = None,
                 payloads: dict[str, bytes] | None = None):
        self.conn = conn
        self.trainables: dict[str, Any] = dict(trainables or {})
        # Each trainable as it was sent: a trial after the first of a trainable gets its own copy, as in a
        # new process (a callable object's attributes, a class's class attributes and the globals of a
        # function from the user's script do not carry over from the trial before). One that holds large
        # data (up to gigabytes in with_parameters() objects) is not copied again for every trial.
        self._payloads: dict[str, bytes] = {
            key: payload for key, payload in (payloads or {}).items() if len(payload) <= _COPIED_AFRESH_BYTES}
        self._keys_run: set[str] = set()
        self._last_copy: weakref.ref | None = None  # the last copy made, while it lives
        # A class trainable instance kept for reuse by the next trial (reset_config).
        self._cached_instance = None
        self._cached_key: str | None = None
        self._cached_cwd: str | None = None  # where its trial ran: its cleanup() runs there
        self._cached_resources = None  # what its trial asked for
        # The environment of the first trial of a kept instance: what the process was like before its
        # setup() changed it, put back when the instance goes (see _end_kept_instance).
        self._kept_environment: _TrialEnvironment | None = None
        self._environment: _TrialEnvironment | None = None  # the running trial's
        self._ready_sent = False
        self._trials_run = 0  # trials this process has run (the next one is "reused" after the first)

    def serve(self) -> None:
        conn = self.conn
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            kind = msg[0]
            if kind == P.START:
                self._run_trial(msg[1])
            elif kind == P.LOAD:
                self._load(msg[1], msg[2])
            elif kind == P.EXIT:
                break
        self._drop_cached()
        _close_services()
        _end_leftover_children()

    def _load(self, key: str, payload: bytes) -> None:
        import cloudpickle

        if len(payload) <= _COPIED_AFRESH_BYTES:
            self._payloads[key] = payload
        self._keys_run.discard(key)
        try:
            self.trainables[key] = cloudpickle.loads(payload)
        except BaseException as exc:  # reported when a trial of this trainable starts
            self.trainables[key] = _LoadFailure(exc, traceback.format_exc())

    def _trainable_afresh(self, key: str, loaded: Any) -> Any:
        """The trainable ``key`` for a trial: the loaded one for its first trial here, a copy of its own
        (unpickled again) for each later one."""
        payload = self._payloads.get(key)
        if key not in self._keys_run or payload is None:
            self._keys_run.add(key)
            return loaded
        import cloudpickle

        earlier = self._last_copy() if self._last_copy is not None else None
        if earlier is not None:
            # The last trial's copy outlived it: it refers to itself (a function that names itself, a
            # closure over its own cell), and with what it holds it would wait for a garbage collection.
            earlier = None
            import gc

            gc.collect()
        try:
            copy = cloudpickle.loads(payload)
        except BaseException:  # it loaded once: the trial runs with that
            return loaded
        try:
            self._last_copy = weakref.ref(copy)
        except TypeError:  # (a callable object that cannot be weakly referenced)
            self._last_copy = None
        return copy

    def _drop_cached(self) -> None:
        instance, cwd = self._cached_instance, self._cached_cwd
        self._cached_instance = self._cached_key = self._cached_cwd = None
        if instance is None:
            return
        # Its cleanup() runs where its trials ran (the trial's directory), as on Ray.
        try:
            before = os.getcwd()
        except OSError:
            before = None
        try:
            if cwd is not None and os.path.isdir(cwd):
                os.chdir(cwd)
            instance.stop()
        except Exception:
            pass
        finally:
            if before is not None:
                try:
                    os.chdir(before)
                except OSError:
                    pass

    def _send_error(self, exc: BaseException, phase: str | None = None) -> None:
        trial_hooks.run_trial_end_hooks(trial_hooks.FAILED)
        message = (P.ERROR, format_user_traceback(exc), _pickle_exception(exc))
        self.conn.send(message + (phase,) if phase else message)

    def _run_trial(self, spec: P.TrialSpec) -> None:
        if not self._ready_sent:
            # Once per process: from here on a death is the trial's, not the process start's.
            self._ready_sent = True
            self.conn.send((P.READY,))
        trainable = self.trainables.get(spec.trainable_key)
        if isinstance(trainable, _LoadFailure):
            self.conn.send((P.ERROR, trainable.traceback, _pickle_exception(trainable.exc)))
            return
        if isinstance(spec.config, P.ByValue):
            try:
                spec.config = spec.config.load()
            except BaseException as exc:  # a class the config needs cannot be found here
                self._send_error(exc)
                return
        reused, self._trials_run = self._trials_run > 0, self._trials_run + 1
        # A class instance kept by the last trial (reuse_actors with reset_config) goes on in the process
        # it made, as a reused Ray actor does: its random generators are not reseeded. One that cannot
        # (another trainable or resources, or its reset_config() says no) is cleaned up as itself, and the
        # process goes back to what it was before it: the new instance starts as in a new process.
        continues = self._cached_instance is not None and self._may_take_over(spec)
        if not continues:
            self._end_kept_instance()
            trainable = self._trainable_afresh(spec.trainable_key, trainable)
        environment = self._environment = _TrialEnvironment(spec, reused=reused and not continues)
        with environment:
            if _is_class_trainable(trainable):
                self._run_class(trainable, spec)
            else:
                self._run_function(trainable, spec)
            # Kept for the next trial: the process stays as its setup() made it.
            environment.keeps_process = self._cached_instance is not None
        if environment.keeps_process and self._kept_environment is None:
            self._kept_environment = environment
        elif not environment.keeps_process and self._kept_environment is not None:
            # The kept instance ended in this trial (it failed, or was not kept): its changes go too.
            kept, self._kept_environment = self._kept_environment, None
            kept.undo_process_changes()

    def _end_kept_instance(self) -> None:
        """Cleans the kept instance up (as itself, in its trial's directory) and undoes what the process
        kept for it."""
        self._drop_cached()
        kept, self._kept_environment = self._kept_environment, None
        if kept is not None:
            kept.undo_process_changes()

    # -- function trainables ---------------------------------------------------
    def _run_function(self, fn, spec: P.TrialSpec) -> None:
        from tunesmith._internal import session as S
        from tunesmith.train._checkpoint import Checkpoint

        checkpoint = _start_checkpoint(spec)
        sess = S._Session(self.conn, spec, spec.trial_info, checkpoint)
        S._set_session(sess)
        try:
            try:
                value = _call_function(fn, spec.config, checkpoint)
            except (StopIteration, SystemExit) as exc:
                if not S.ends_normally(exc):
                    raise
                if sess._stopped:  # the trainable ended that way when told to stop or pause
                    raise S.TrialStopped(pause=sess._stop_pauses) from None
                value = None
            # As on Ray, a falsy return value ({}, 0) adds no result.
            if isinstance(value, dict):
                if value:
                    sess.report(value)
                value = None
            elif isinstance(value, numbers.Number) and not isinstance(value, bool) and value:
                from tunesmith.tune.result import DEFAULT_METRIC

                sess.report({DEFAULT_METRIC: value})  # a returned number is the trial's metric
            final = sess.final_checkpoint()
            trial_hooks.run_trial_end_hooks(trial_hooks.FINISHED)
            sess.end()
            self.conn.send((P.DONE, _safe_value(value), final))
        except S.TrialStopped as stopped:
            sess.end()
            if stopped.pause:
                trial_hooks.run_trial_end_hooks(trial_hooks.PAUSED)
                self.conn.send((P.PAUSED, None))
            else:
                trial_hooks.run_trial_end_hooks(trial_hooks.FINISHED)
                self.conn.send((P.DONE, None, None))
        except BaseException as exc:
            sess.end()
            self._send_error(exc)
        finally:
            S._set_session(None)
            S.note_threads_at_trial_end()

    # -- class trainables --------------------------------------------------------
    def _run_class(self, cls, spec: P.TrialSpec) -> None:
        from tunesmith._internal import session as S
        from tunesmith.tune.result import CHECKPOINT_DIR_FORMAT

        conn = self.conn
        index = spec.checkpoint_index
        saved_at = None  # the iteration of the trial's last checkpoint in this run

        def save() -> str:
            nonlocal index, saved_at
            target = os.path.join(spec.trial_info.trial_dir, CHECKPOINT_DIR_FORMAT.format(index))
            index += 1
            saved_at = instance.iteration
            path = _save_class_checkpoint(instance, target)
            name = os.path.basename(os.path.normpath(path))
            if spec.storage is not None:  # straight to remote storage, then the local copy goes
                from tunesmith._internal.session import upload_checkpoint

                upload_checkpoint(spec.storage, spec.trial_info, path, name)
                shutil.rmtree(path, ignore_errors=True)
            return name

        instance = None
        S.class_trial = cls
        try:
            instance = self._instance_for(cls, spec)
            if spec.checkpoint_path:
                try:
                    instance.restore(_start_checkpoint(spec) if spec.storage is not None else spec.checkpoint_path)
                except Exception as exc:
                    self._send_error(exc, P.RESTORE_PHASE)
                    instance.stop()
                    return
            freq = spec.checkpoint_frequency
            if conn.poll(0):
                # Told to stop or pause while setup() ran (a time budget, the end of the experiment): no
                # step is started, as on Ray. There is no new state to save.
                reply = conn.recv()
                if reply == P.PAUSE or (type(reply) is tuple and reply[0] == P.STOP):
                    paused = reply == P.PAUSE
                    self._finish_instance(instance, spec, keep=False)
                    trial_hooks.run_trial_end_hooks(trial_hooks.PAUSED if paused else trial_hooks.FINISHED)
                    conn.send((P.PAUSED, None) if paused else (P.DONE, None, None))
                    return
                raise RuntimeError(f"Unexpected message from the driver: {reply!r}")
            while True:
                result = instance.train()
                name = None
                if "torch" in sys.modules:
                    P.plain_metrics(result)
                if result.get("__duplicate__"):
                    pass  # the trainable ended and repeated its last result: nothing new to save
                elif result.get("should_checkpoint") or (freq and instance.iteration % freq == 0):
                    try:
                        name = save()
                    except Exception:
                        # The step's result stays (Ray logs it before it saves); the failed save is the error.
                        conn.send((P.RESULT, result, None))
                        raise
                conn.send((P.RESULT, result, name))
                while True:
                    reply = conn.recv()
                    if reply == P.CONTINUE:
                        break
                    if reply == P.SAVE:
                        conn.send((P.SAVED, save()))
                        continue
                    # A pause or a final checkpoint right after a step that saved one (its
                    # checkpoint frequency) keeps that checkpoint rather than saving the same state again.
                    if reply == P.PAUSE:
                        name = save() if saved_at != instance.iteration else None
                        self._finish_instance(instance, spec, keep=False)
                        trial_hooks.run_trial_end_hooks(trial_hooks.PAUSED)
                        conn.send((P.PAUSED, name))
                        return
                    if type(reply) is tuple and reply[0] == P.STOP:
                        name = save() if reply[1] and saved_at != instance.iteration else None
                        if getattr(spec, "export_formats", ()):
                            instance.export_model(list(spec.export_formats))  # as on Ray, when the trial ends
                        # Kept only if a later trial can take it over (reset_config); else cleaned up now.
                        self._finish_instance(instance, spec, keep=spec.reuse and instance._overrides("reset_config"))
                        trial_hooks.run_trial_end_hooks(trial_hooks.FINISHED)
                        conn.send((P.DONE, None, name))
                        return
                    raise RuntimeError(f"Unexpected message from the driver: {reply!r}")
        except BaseException as exc:
            self._cached_instance = None
            self._send_error(exc)
            if instance is not None:
                try:
                    instance.stop()  # give the trainable its cleanup even after a failure
                except Exception:
                    pass
        finally:
            S.class_trial = None

    def _instance_for(self, cls, spec: P.TrialSpec):
        from tunesmith.tune.trainable.trainable import hosted_trial

        cached = self._cached_instance
        if cached is not None:
            # Its reset_config() runs in the trial's environment (its directory, its log files).
            error = None
            try:
                if cached.reset(spec.config, trial_info=spec.trial_info):
                    self._cached_instance = None
                    return cached
            except BaseException as exc:
                error = exc
            # It cannot take the trial over: it is cleaned up as itself, and the process goes back to what
            # it was before it, then gets this trial's settings, as a new process would.
            self._drop_cached()
            kept, self._kept_environment = self._kept_environment, None
            if kept is not None:
                self._environment.start_over_from(kept)
            if error is not None:
                raise error
            cls = self._trainable_afresh(spec.trainable_key, cls)  # its class attributes start over too
        # The trial's information reaches Trainable.__init__ aside from the call's arguments: a subclass
        # may define __init__(self, config=None, logger_creator=None) as the older API documents it.
        with hosted_trial(spec.trial_info):
            return cls(config=spec.config)

    def _may_take_over(self, spec: P.TrialSpec) -> bool:
        """Whether the kept instance may run the trial ``spec`` (reuse_actors): the same trainable, and,
        as on Ray, the same resources (its setup() may have sized itself to them)."""
        return bool(spec.reuse) and self._cached_key == spec.trainable_key and \
            self._cached_resources == spec.trial_info.resources

    def _finish_instance(self, instance, spec: P.TrialSpec, keep: bool) -> None:
        if keep:
            self._cached_instance = instance
            self._cached_key = spec.trainable_key
            self._cached_resources = spec.trial_info.resources
            try:
                self._cached_cwd = os.getcwd()
            except OSError:
                self._cached_cwd = None
            return
        try:
            instance.stop()
        except Exception:
            # The trial's work is done and saved: a failing cleanup() is said, not a trial failure (as on Ray).
            sys.stderr.write(f"{type(instance).__name__}.cleanup() failed after the trial ended; the trial's "
                             f"results and checkpoints are kept:\n{traceback.format_exc()}")


def _child_pids() -> set[int]:
    """This process's child processes (Linux; empty elsewhere)."""
    pids: set[int] = set()
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as f:
                pids.update(int(p) for p in f.read().split())
    except (OSError, ValueError):
        return set()
    return pids


def _close_services() -> None:
    """Lets libraries that keep a service process of their own shut it down as they would at exit.

    W&B's service writes a run's last records when it is told to stop; ended by a signal (as
    leftover children are), the run of a trial's ``setup_wandb`` could be left empty. A forked
    worker leaves without the interpreter's exit handlers, so this is done here.
    """
    wandb = sys.modules.get("wandb")
    teardown = getattr(wandb, "teardown", None)
    if teardown is not None:
        try:
            teardown()
        except Exception:  # a library's own shutdown failing must not keep the worker alive
            traceback.print_exc()


def _end_leftover_children(grace_s: float = 1.0) -> None:
    """Ends the processes that trials started and left running, as the worker leaves.

    Without this they would outlive the experiment (the worker's children are handed to
    init when it exits): its children, and the processes of its process group (those the
    trials' own processes started, a trainer's workers' children). They get SIGTERM, and
    SIGKILL after ``grace_s``.
    """
    from tunesmith._internal.backend._leftovers import LeftoverReaper

    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        # What the interpreter's exit would do (a worker leaves through os._exit): pools a trial
        # left open are terminated, so that their threads do not replace the workers ended below.
        try:
            util._run_finalizers(0)
        except Exception:
            pass
        _stop_multiprocessing_helpers()
    reaper = LeftoverReaper(grace_s)
    reaper.end_group(os.getpid(), "trials of this worker", also=_child_pids())
    reaper.close()
    while True:  # the children among them are reaped here (the others by init)
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break


def _stop_multiprocessing_helpers(timeout_s: float = 2.0) -> None:
    """Stops the forkserver and resource tracker that a trial's spawn or forkserver pools started, as
    their own ends do at the interpreter's exit (they are not among the processes a trial left running)."""
    import threading

    for module, name in (("multiprocessing.forkserver", "_forkserver"),
                         ("multiprocessing.resource_tracker", "_resource_tracker")):
        stop = getattr(getattr(sys.modules.get(module), name, None), "_stop", None)
        if stop is None:
            continue
        # Each waits for its process: one that does not end (stopped, stuck) is left to the reaper below.
        stopping = threading.Thread(target=stop, daemon=True)
        stopping.start()
        stopping.join(timeout_s)


def _start_checkpoint(spec: P.TrialSpec):
    """The checkpoint a trial starts from, on the experiment's store (None for none)."""
    if not spec.checkpoint_path:
        return None
    from tunesmith.train._checkpoint import Checkpoint

    remote = spec.storage
    if remote is not None and not os.path.isabs(spec.checkpoint_path):
        return Checkpoint(spec.checkpoint_path, remote.filesystem)
    return Checkpoint(spec.checkpoint_path)


class _LoadFailure:
    def __init__(self, exc: BaseException, tb: str):
        self.exc = exc
        self.traceback = tb


def _safe_value(value: Any) -> Any:
    import pickle

    if value is None:
        return None
    try:
        pickle.dumps(value)
        return value
    except Exception:
        return repr(value)


# Held weakly: each trial may get a copy of its own of the trainable (see Worker._trainable_afresh), and
# the copies of those before it, with what they hold, must go.
_CALL_FORMS: "weakref.WeakKeyDictionary[Any, tuple[str, bool]]" = weakref.WeakKeyDictionary()


def _call_form(fn) -> tuple[str, bool]:
    """How a function trainable is called (``"checkpoint_dir"``, ``"reporter"``, ``"none"``
    or ``"config"``) and whether it is a generator; worked out once per function."""
    try:
        form = _CALL_FORMS.get(fn)
    except TypeError:  # a callable object that cannot be hashed or weakly referenced: each time
        form, fn_key = None, None
    else:
        fn_key = fn
    if form is not None:
        return form
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    names = [p.name for p in params]
    if "checkpoint_dir" in names:
        kind = "checkpoint_dir"
    elif "reporter" in names or len(positional) >= 2 and positional[1].default is inspect.Parameter.empty:
        kind = "reporter"
    elif not positional and not any(p.kind == p.VAR_POSITIONAL for p in params):
        kind = "none"
    else:
        kind = "config"
    form = (kind, inspect.isgeneratorfunction(inspect.unwrap(fn)))
    if fn_key is not None:
        try:
            _CALL_FORMS[fn_key] = form
        except TypeError:
            pass
    return form


def _call_function(fn, config: dict, checkpoint) -> Any:
    """Calls a function trainable in whichever form it was written."""
    from tunesmith._internal import session as S

    kind, is_generator = _call_form(fn)
    if kind == "checkpoint_dir":
        if checkpoint is not None and not checkpoint._local:
            # The older API hands over a local directory: fetch a remote checkpoint first.
            value = fn(config, checkpoint_dir=checkpoint.to_directory())
        else:
            value = fn(config, checkpoint_dir=checkpoint.path if checkpoint else None)
    elif kind == "reporter":
        value = fn(config, S.StatusReporter())
    elif kind == "none":
        value = fn()
    else:
        value = fn(config)
    if inspect.iscoroutine(value) or inspect.isasyncgen(value):  # an async function behind a wrapper
        value.close()  # never run: no "never awaited" warning
        from tunesmith.tune._run import async_trainable_message

        raise TypeError(async_trainable_message(fn))
    if is_generator or inspect.isgenerator(value):
        for item in value:
            if item is None or (isinstance(item, (dict, numbers.Number)) and not item):
                continue  # as on Ray, a falsy item (None, {}, 0) adds no result
            if not isinstance(item, (dict, numbers.Number)):
                raise ValueError(
                    f"The trainable yielded {item!r} ({type(item).__name__}): yield a dict of metrics, or a "
                    "single number (reported as the metric '_metric')."
                )
            S.report(item if isinstance(item, dict) else {"_metric": item})
        return None
    return value


def lead_own_process_group() -> None:
    """Makes this worker the leader of a process group, which the processes its trials start join.

    When the worker dies or is killed, the driver ends what is left of its group
    (``backend._leftovers``). Ctrl+C in a terminal no longer reaches the group, which
    ignored it anyway (see ``exit.leave_stop_signals_to_the_driver``).
    """
    try:
        os.setpgid(0, 0)
    except (AttributeError, OSError):
        pass


def _save_class_checkpoint(instance, target: str) -> str:
    """Saves a class trainable's checkpoint as ``target``; returns it.

    ``save_checkpoint()`` writes into a directory of its own, as on Ray, which becomes the stored
    checkpoint whole: what a save that died part-way left is gone, a symbolic link it wrote is
    stored as the file it points to, and what the trainable does to its directory afterwards
    (deleting it, writing into it) cannot touch the stored copy.
    """
    from tunesmith._internal.fsutil import copy_tree

    scratch = target + ".tmp"
    for stale in (target, scratch):  # left by a process that died while saving
        shutil.rmtree(stale, ignore_errors=True)
    try:
        instance.save(scratch)
        if _holds_links(scratch):
            copy_tree(scratch, target)
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            os.replace(scratch, target)
    except BaseException:
        for partial in (target, scratch):  # no half checkpoint is left
            shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


def _holds_links(root: str) -> bool:
    for directory, dirs, files in os.walk(root):
        if any(os.path.islink(os.path.join(directory, name)) for name in dirs + files):
            return True
    return False


# The largest trainable (as sent) that each trial gets a copy of its own of: unpickled again in a few
# milliseconds, at most.
_COPIED_AFRESH_BYTES = 16 << 20


def _die_with_parent() -> None:
    """On Linux, asks the kernel to kill this worker when the driver dies, even mid-trial."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the driver died before the request took effect
        os._exit(1)


# -- the fork server ----------------------------------------------------------------------
# driver -> server over the control connection; the descriptors of a FORK travel first, as
# one datagram on the descriptor socket (the child's socket, its stdout and stderr pipes).
FS_LOAD = "load"        # (FS_LOAD, key, payload): load a trainable now; children inherit it
FS_FORK = "fork"        # (FS_FORK, cuda_visible_devices, has_pipes): fork one worker
# server -> driver
FS_LOADED = "loaded"    # (FS_LOADED, key, unsafe_reason or None)
FS_FORKED = "forked"    # (FS_FORKED, pid)
FS_EXITED = "exited"    # (FS_EXITED, pid, returncode as Popen gives it: -signal when killed)


def fork_unsafe_reason() -> str | None:
    """Why forking workers from this process would be unsafe, or None when it is safe.

    A forked child gets only the forking thread, so a process that runs other Python
    threads (which may hold locks) or has initialised CUDA (whose driver state does
    not survive ``fork()``) must not be forked: workers are spawned instead.
    """
    import threading

    others = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
    if others:
        return f"the trainable started threads while it was loaded ({', '.join(sorted(others))})"
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    try:
        if cuda is not None and cuda.is_initialized():
            return "the trainable initialised CUDA while it was loaded"
    except Exception:
        pass
    return None


def _preload() -> None:
    """Imports what every trial needs, once, in the fork server."""
    import cloudpickle  # noqa: F401

    from tunesmith._internal import session  # noqa: F401
    from tunesmith.train import _checkpoint  # noqa: F401
    from tunesmith.tune.trainable import trainable  # noqa: F401


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1


def _run_forked_child(ctl: Connection, fd_sock, wake_r: int, wake_w: int, fds: list[int],
                      env_key: str, has_pipes: bool, trainables: dict[str, Any],
                      payloads: dict[str, bytes]) -> None:
    """The first moments of a forked worker: its own descriptors, environment and seeds."""
    code = 0
    try:
        lead_own_process_group()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        ctl.close()
        fd_sock.close()
        os.close(wake_r)
        os.close(wake_w)
        sock_fd = fds[0]
        if has_pipes:
            os.dup2(fds[1], 1)
            os.dup2(fds[2], 2)
            os.close(fds[1])
            os.close(fds[2])
            # As PYTHONUNBUFFERED does for a spawned worker: a print reaches the console at once.
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.reconfigure(line_buffering=True, write_through=True)
                except (AttributeError, ValueError):
                    pass
        else:
            os.close(fds[1])
            os.close(fds[2])
        os.environ["CUDA_VISIBLE_DEVICES"] = env_key
        process_state.restore_variables(_server_variables)
        _die_with_parent()  # the fork server; it dies with the driver
        leave_stop_signals_to_the_driver()
        if "numpy" in sys.modules:  # every worker draws its own numbers, as a spawned one would
            try:
                sys.modules["numpy"].random.seed()
            except Exception:
                pass
        process_state.reseed_torch()
        Worker(P.PlainConnection(sock_fd), trainables, payloads).serve()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        flush_and_exit(code)


# The environment variables the fork server changed for itself, put back in each forked worker.
_server_variables: dict[str, str | None] = {}


def serve_forks(ctl: Connection, fd_sock) -> None:
    """The fork server's loop: loads trainables, forks workers, reports their exits."""
    global _server_variables
    _server_variables = process_state.single_threaded_openmp()

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the select below through the pipe
    trainables: dict[str, Any] = {}
    payloads: dict[str, bytes] = {}  # as sent: a worker's later trials get copies of their own
    children: set[int] = set()

    def reap() -> None:
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            children.discard(pid)
            ctl.send((FS_EXITED, pid, _exit_code(status)))

    try:
        while True:
            try:
                ready = wait_readable([ctl.fileno(), wake_r])
            except InterruptedError:
                continue
            if wake_r in ready:
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
                reap()
            if ctl.fileno() not in ready:
                continue
            msg = ctl.recv()
            if msg[0] == FS_LOAD:
                try:
                    import cloudpickle

                    payloads[msg[1]] = msg[2]
                    trainables[msg[1]] = cloudpickle.loads(msg[2])
                    process_state.preload_pool_control()
                except BaseException as exc:  # reported when a trial of this trainable starts
                    trainables[msg[1]] = _LoadFailure(exc, traceback.format_exc())
                ctl.send((FS_LOADED, msg[1], fork_unsafe_reason()))
            elif msg[0] == FS_FORK:
                import socket

                _, fds, _, _ = socket.recv_fds(fd_sock, 1, 3)
                pid = fork_for_the_driver()
                if pid == 0:
                    _run_forked_child(ctl, fd_sock, wake_r, wake_w, fds, msg[1], msg[2], trainables, payloads)
                try:  # as the child does itself: whichever runs first, the group exists before it forks
                    os.setpgid(pid, pid)
                except OSError:
                    pass
                for fd in fds:
                    os.close(fd)
                children.add(pid)
                ctl.send((FS_FORKED, pid))
                reap()
    except (EOFError, OSError):
        pass  # the driver is gone or closed us: the children die with this process


def main() -> None:
    from tunesmith._internal.debug import stacks_on_request

    _die_with_parent()
    leave_stop_signals_to_the_driver()
    stacks_on_request()
    sys.path[:0] = [p for p in os.environ.get("TUNESMITH_DRIVER_SYS_PATH", "").split(os.pathsep) if p]
    if sys.argv[1] == "--fork-server":
        import socket

        _preload()
        fd_sock = socket.socket(fileno=int(sys.argv[3]))
        serve_forks(Connection(int(sys.argv[2])), fd_sock)
        return
    lead_own_process_group()
    Worker(P.PlainConnection(int(sys.argv[1]))).serve()


if __name__ == "__main__":
    main()
