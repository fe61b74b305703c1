"""Connecting to Ray and the Ray Data settings every curate run uses."""

from __future__ import annotations

import contextlib
import logging
import os
import threading

from curate.errors import UserError


# Ray Data settings read from the environment when ``ray.data`` is imported (set before it is; a user's
# own value wins). Both are documented switches of Ray Data's (see their modules):
# * RAY_DATA_METADATA_PREFETCH_ON_THREAD=0: the streaming executor fetches a finished task's block
#   metadata inline (``ray.get`` of a few bytes on this node) instead of handing it to a background
#   thread that polls every 0.1 s; the thread delayed each next task by ~0.1-0.15 s (a 2-core machine,
#   20 tasks of 0.3 s: 5.0-5.2 s -> 3.9-4.1 s, per-task gap 0.14-0.17 s -> 0.04 s).
# * RAY_DATA_USAGE_DISABLED=1: Ray Data's usage-stats actor (a detached Python process importing ray.data,
#   ~1 CPU s on a cluster's first job) is not started; curate reports nothing to Ray's usage stats.
RAY_DATA_ENV = {"RAY_DATA_METADATA_PREFETCH_ON_THREAD": "0", "RAY_DATA_USAGE_DISABLED": "1"}


def env_defaults() -> None:
    """Put :data:`RAY_DATA_ENV` into the environment (keeping values already set); call before the
    first ``import ray.data`` of the process."""
    for key, value in RAY_DATA_ENV.items():
        os.environ.setdefault(key, value)


def connect(address: str | None = None, *, quiet: bool = False, preload: tuple[str, ...] = (),
            **init_kwargs) -> None:
    """Connect to ``address`` (or ``$RAY_ADDRESS``); with neither, start a local Ray instance.

    ``ray.data`` and the modules named in ``preload`` are imported in a thread while ``ray.init``
    runs: ``ray.init`` mostly waits for the processes it starts (GCS, raylet, agents), so the
    driver's imports (~1-2 s of CPU: ray.data with pandas, the stage's modules) overlap it instead
    of coming before it. A session that is already connected (tests, notebooks) is reused as it is."""
    env_defaults()
    import ray

    imports = _Preload(("ray.data", *preload))
    if not ray.is_initialized():
        # no address: a new local instance ("local"), never whatever Ray instance happens to run here
        address = address or os.environ.get("RAY_ADDRESS") or "local"
        if address == "local":
            init_kwargs = local_instance_kwargs(**init_kwargs)
            _own_local_instance()
        _check_reachable(address)
        if quiet:  # -q: Ray's notice that the instance it starts uses token authentication is not printed
            logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
        try:
            with lean_local_instance(address == "local"):
                ray.init(address=address, include_dashboard=False, log_to_driver=not quiet,
                         configure_logging=False, **init_kwargs)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = "a new local instance" if address == "local" else address
            hint = ""
            if address != "local" and not os.environ.get("RAY_AUTH_MODE"):
                # Ray sends its auth token to an explicitly named cluster only with RAY_AUTH_MODE=token
                hint = " (a cluster started with token authentication also needs RAY_AUTH_MODE=token here)"
            raise UserError(f"cannot connect to Ray at {where}: {str(exc).splitlines()[0]}{hint}") from None
    imports.join()
    configure()
    lean_ray_data()


def release() -> None:
    """``ray.shutdown()`` now, when the process ends with the command (``curate.cli.main`` sets
    ``PROCESS_ENDS_WITH_COMMAND``; never in tests or notebooks, whose session goes on) and is still
    connected; else nothing (``cli._exit`` shuts Ray down as the process ends). A command calls it
    once its last Ray work is done, with what is left (the clean's quarantine and report) running
    in another thread meanwhile: Ray's shutdown (~0.55 s of a 1M-row clean) is mostly waiting for
    its processes to exit. Called from the thread that made the Ray calls: a Ray object freed in
    another thread while the core worker shuts down ends the process."""
    import ray

    if _process_ends_with_command() and ray.is_initialized():
        ray.shutdown()


def _process_ends_with_command() -> bool:
    """Whether this process is ``curate.cli.main``'s (the ``curate`` script, or ``python -m
    curate.cli``, whose module is ``__main__``), which ends with the command."""
    import sys

    return any(getattr(sys.modules.get(name), "PROCESS_ENDS_WITH_COMMAND", False) for name in ("curate.cli", "__main__"))


def _own_local_instance() -> None:
    """In a CLI process (one that ends with the command) about to start a local instance: every
    process of the instance ends with the command, however it ends. A Ctrl-C reaches the whole
    foreground process group, Ray's GCS and raylet included; interrupted while ``ray.init`` still
    starts them, the driver never gets to ``ray.shutdown`` them, and the raylet's dashboard and
    runtime-env agents (the raylet's children) then outlive the command for ~60 s: each one, seeing
    its raylet gone, reports it to the GCS, which is gone too, and retries for Ray's GCS reconnect
    timeout before exiting (measured: 60-64 s after a Ctrl-C 1.5-3 s into a cold clean). So this
    process becomes a child subreaper (Linux ``prctl``): the instance's processes orphaned by the
    raylet's death are re-parented to it, not to init, and at exit (:func:`_end_local_instance`, an
    atexit hook: after ``ray.shutdown``, or in place of it when ``ray.init`` was interrupted) those
    of its descendants still running, only ever processes of the instance it started, are killed."""
    import atexit
    import sys

    if not _process_ends_with_command() or not sys.platform.startswith("linux"):
        return
    import ctypes

    PR_SET_CHILD_SUBREAPER = 36
    with contextlib.suppress(OSError, AttributeError):
        if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0:
            atexit.register(_end_local_instance)


def _end_local_instance() -> None:
    """Shut Ray down if still connected, then SIGKILL every descendant of this process still
    running (:func:`_own_local_instance`): the processes of the local instance it started."""
    import signal
    import time

    import ray

    with contextlib.suppress(Exception):
        if ray.is_initialized():
            ray.shutdown()
    # again until none is left (for up to a second): a process orphaned meanwhile (its parent killed
    # in this round) is re-parented to this process and found by the next scan
    for _ in range(20):
        left = descendants(os.getpid())
        if not left:
            break
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def descendants(root: int, *, zombies: bool = False) -> list[int]:
    """The processes under ``root`` (from /proc; zombies left out unless ``zombies``): what the exit
    hook kills, and what ``bench/scale.py`` charges a command's CPU to."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if zombies or fields[0] != "Z":
            kids.setdefault(int(fields[1]), []).append(int(d))
    out, todo = [], list(kids.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += kids.get(pid, [])
    return out


def _check_reachable(address: str) -> None:
    """Refuse a ``host:port`` where nothing listens in seconds: ``ray.init`` would retry for minutes
    while Ray's C++ client prints warnings, then time out."""
    import socket

    if address in ("local", "auto") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return  # Ray's own message names what is wrong with it
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=10).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(f"cannot connect to Ray at {address}: nothing answers there ({reason}); start the cluster "
                        "(`ray start --head` prints its address) or fix --ray-address / RAY_ADDRESS, or leave "
                        "both unset to start a local instance") from None


class _Preload(threading.Thread):
    """Import modules in a daemon thread (:func:`connect`); :meth:`join` waits for it and imports
    again, in the caller, any module the thread could not (so an import error is raised where the
    import would have been, as it would have been)."""

    def __init__(self, modules: tuple[str, ...]):
        super().__init__(name="curate-ray-imports", daemon=True)
        self.modules = modules
        self.start()

    def run(self) -> None:
        import importlib

        for name in self.modules:
            try:
                importlib.import_module(name)
            except BaseException:  # noqa: BLE001 - imported again by join, in the caller
                return

    def join(self, timeout: float | None = None) -> None:
        import importlib

        super().join(timeout)
        for name in self.modules:
            importlib.import_module(name)


@contextlib.contextmanager
def lean_local_instance(on: bool = True):
    """While ``ray.init`` starts a local instance: without the three head processes a one-command,
    one-machine instance has no use for. ``ray.init`` has no switch for them (``ray start`` has
    some), so the node's parameters are set the way ``ray start --no-monitor`` and Ray's own
    ``include_log_monitor`` set them:

    * the autoscaler monitor (``no_monitor``): nothing to scale on a single local node;
    * the log monitor (``include_log_monitor=False``): it tails every worker's log files to send
      their lines to the driver; curate's workers print nothing it reads (errors come back as
      exceptions), and the files stay in Ray's session directory;
    * the dashboard's API server (started even with ``include_dashboard=False``, and waited for
      until it has written its address: ~1.3 s of ``ray.init``): the job, state and metrics APIs
      no curate command calls.

    Measured (2 cores, load 2-6): ``ray.init`` 6.6 -> 4.4 s, ~3 CPU s fewer at start-up, and the
    three processes' polling during the run (1.5-4 CPU s of a 1M-row clean) gone. ``CURATE_RAY_LEAN=0``
    starts Ray's usual set. Ray internals (``RayParams``, ``Node``): with a Ray whose internals
    differ, the instance starts as usual."""
    if not on or os.environ.get("CURATE_RAY_LEAN", "1") == "0":
        yield
        return
    try:
        from ray._private import node as ray_node, parameter

        base_params, base_node = parameter.RayParams, ray_node.Node
        if not hasattr(base_node, "start_api_server"):
            raise AttributeError("start_api_server")

        class LeanParams(base_params):
            def __init__(self, *args, **kwargs):
                kwargs.setdefault("no_monitor", True)
                kwargs.setdefault("include_log_monitor", False)
                super().__init__(*args, **kwargs)

        class LeanNode(base_node):
            curate_lean = True  # this process started the instance lean: see is_lean_instance

            def start_api_server(self, *args, **kwargs):
                return None
    except (ImportError, AttributeError, TypeError):
        yield
        return
    parameter.RayParams, ray_node.Node = LeanParams, LeanNode
    try:
        yield
    finally:
        parameter.RayParams, ray_node.Node = base_params, base_node


def is_lean_instance() -> bool:
    """Whether this process is connected to a lean local instance it started itself
    (:func:`lean_local_instance`): one node, one driver, no dashboard."""
    import ray

    node = getattr(getattr(ray, "_private", None) and ray._private.worker, "_global_node", None)
    return ray.is_initialized() and getattr(type(node), "curate_lean", False)


def lean_ray_data() -> None:
    """In the driver, while it is connected to a lean local instance (:func:`is_lean_instance`):
    Ray Data's two detached helper actors are not started. Each is a Python worker process of its
    own that imports ``ray.data`` (pandas included): ~2-2.5 CPU s each at start-up on this 2-core
    machine, and each took one of the workers the raylet had prestarted for curate's tasks, so one
    more worker had to boot. In an instance one curate command starts and stops:

    * the stats actor (``datasets_stats_actor``) only collects each dataset's metrics for the
      dashboard (there is none) and its Prometheus gauges (nothing scrapes them): its calls are
      dropped;
    * the autoscaling coordinator (``AutoscalingCoordinator``) shares the cluster's resources
      among the drivers and asks Ray's autoscaler for more: one node, one driver, no autoscaler.
      Ray Data's own coordinator class runs in the driver instead (the same reservations: the
      whole node to this command), with nothing sent to the autoscaler.

    Any other instance (a cluster given with ``--ray-address``, ``CURATE_RAY_LEAN=0``) keeps Ray
    Data's actors: the replacements hand over to Ray Data's own functions. With a Ray Data whose
    internals differ (the two functions or the coordinator class not found), nothing is replaced.
    Idempotent."""
    if not is_lean_instance():
        return
    try:
        from ray.data._internal import stats
        from ray.data._internal.cluster_autoscaler import default_autoscaling_coordinator as coord

        stats_original = stats.get_or_create_stats_actor
        coord_original = coord.get_or_create_autoscaling_coordinator
        coordinator_cls = coord._AutoscalingCoordinatorActor
    except (ImportError, AttributeError):
        return
    if getattr(stats_original, "curate_lean", False):
        return  # already in place

    def get_or_create_stats_actor():
        return _DROPPED_CALLS if is_lean_instance() else stats_original()

    in_driver: dict = {}  # the node -> its coordinator, made on first use

    def get_or_create_autoscaling_coordinator():
        if not is_lean_instance():
            return coord_original()
        import ray

        node = ray._private.worker._global_node
        if in_driver.get("node") is not node:
            # nothing is sent to Ray's autoscaler (there is none in a lean instance)
            # its tick thread (every 20 s, for the life of the process) asks for the nodes: none
            # once this instance is shut down, instead of a warning every tick
            try:
                made = coordinator_cls(send_resources_request=lambda *args, **kwargs: None,
                                       get_cluster_nodes=lambda: ray.nodes() if ray.is_initialized() else [])
            except TypeError:  # a Ray Data whose coordinator takes other arguments: Ray's own actor
                return coord_original()
            in_driver.update(node=node, handle=_InDriver(made))
        return in_driver["handle"]

    get_or_create_stats_actor.curate_lean = True
    stats.get_or_create_stats_actor = get_or_create_stats_actor
    coord.get_or_create_autoscaling_coordinator = get_or_create_autoscaling_coordinator


class _DroppedCall:
    """``handle.method.remote(...)`` of an actor that does not exist: nothing done, nothing returned
    (Ray Data sends the stats actor's calls without waiting for them), except a new id for
    ``gen_dataset_id`` (only called with ``use_legacy_dataset_ids``), as Ray Data's fallback does."""

    def __init__(self, name: str):
        self.name = name

    def remote(self, *args, **kwargs):
        if self.name == "gen_dataset_id":
            import uuid

            import ray

            return ray.put(uuid.uuid4().hex)
        return None


class _DroppedCalls:
    def __getattr__(self, name: str) -> _DroppedCall:
        return _DroppedCall(name)


_DROPPED_CALLS = _DroppedCalls()


class _InDriver:
    """An object called as an actor handle is (``handle.method.remote(...)``): the call runs now, in
    this process, and its result comes back as a ready object reference."""

    def __init__(self, obj):
        self._obj = obj

    def __getattr__(self, name: str):
        method = getattr(self._obj, name)

        class _Call:
            @staticmethod
            def remote(*args, **kwargs):
                import ray

                return ray.put(method(*args, **kwargs))

        return _Call


# Ray's socket-connect retries (``ray::ConnectSocketRetry``: a failed attempt sleeps the timeout): 200
# attempts 50 ms apart, the 10 s in all of Ray's defaults (10 x 1000 ms); the raylet's object manager
# asks for 300 attempts itself (15 s)
CONNECT_RETRY = {"raylet_client_connect_timeout_milliseconds": 50, "raylet_client_num_connect_attempts": 200}


def local_instance_kwargs(num_cpus: int | None = None, **init_kwargs) -> dict:
    """``ray.init`` settings of a Ray instance curate starts itself (``address="local"``).

    Ray Data runs plain tasks, shuffle-map tasks and shuffle-reduce tasks in three separate worker
    pools (the shuffles' tasks get their own ``runtime_env``), and Ray keeps only as many idle
    workers as there are CPUs: every pass that follows a shuffle killed the idle workers of the other
    pools and started new Python processes (a few seconds each on a busy machine; most of the Ray
    overhead of a clean). Keeping three pools' worth of idle workers alive removes that churn. On a
    cluster you connect to, its operator sets this (``RAY_num_workers_soft_limit``).

    The raylet connects to its own object store's socket as it starts, while the store's thread
    may not have bound it yet; a failed attempt sleeps ``raylet_client_connect_timeout_milliseconds``
    (Ray's default 1000) before the next, so about every other cold start here waited one second
    more (the raylet's log: the store up at t, its object manager at t + 1.00 s). Retried every
    50 ms instead, for as long (:data:`CONNECT_RETRY`: the same 10 s for the default callers).

    The raylet starts one worker process per CPU as soon as it is up (``enable_worker_prestart``;
    Ray's default: only when the first driver has connected), so the workers boot while ``ray.init``
    still waits for the raylet's agents and the driver imports; a job's tasks run in them (they
    take the driver's code path when given its first task). A cold 20k-row clean (start-up bound),
    5 alternated pairs at load 2.3-4.0: 4.65-4.80 s against 4.80-5.39 s without, faster in each pair."""
    cpus = num_cpus or os.cpu_count() or 1
    system = {"num_workers_soft_limit": 3 * cpus, "enable_worker_prestart": True, **CONNECT_RETRY,
              **init_kwargs.pop("_system_config", {})}
    out = {**init_kwargs, "_system_config": system}
    if num_cpus is not None:
        out["num_cpus"] = num_cpus
    return out


def configure() -> None:
    """Ray Data settings: blocks come out in input order (results equal the local executor's
    order), no progress bars or INFO chatter in the terminal (curate prints its own summary)."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    # curate shuffles hashes (exact-duplicate keys, MinHash band keys): incompressible, so zstd only
    # costs CPU
    ctx.shuffle_compression = "none"
    # a stage function's own error (StageStopped: the endpoint is down) comes back as itself, not as
    # a UserCodeException that has lost it: see user_error_in
    ctx.raise_original_map_exception = True
    # nothing curate reads: a thread in every map task polling the worker's memory (for Ray Data's
    # stats), and the driver's periodic issue detectors (hash-shuffle aggregator and memory warnings
    # no curate run acts on); both documented DataContext fields
    ctx.memory_usage_poll_interval_s = None
    # no per-operator reservations: every curate pass is one map over blocks (a shuffle the exception),
    # and the reservation gave a pass's one operator half the CPUs until its first tasks had finished
    # (measured: 10 tasks of 0.3 s on 2 CPUs ran one at a time for their first ~1 s: 2.5 s instead of
    # 1.65 s); a documented DataContext field
    ctx.op_resource_reservation_enabled = False
    if hasattr(ctx, "issue_detectors_config"):  # older Ray versions have no issue detectors
        ctx.issue_detectors_config.detectors = []
    for name in ("ray.data", "ray.data._internal.execution.streaming_executor"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"
    logging.getLogger("ray.data._internal.util").setLevel(logging.ERROR)
    # Ray Data warns that "the Dataset job will hang" when no CPU is free the instant a job starts:
    # that is curate's own warm-up tasks (one per CPU, a few seconds), which the job then waits for
    dataset_log = logging.getLogger("ray.data.dataset")
    if not any(isinstance(f, _NoFreeCpuWarning) for f in dataset_log.filters):
        dataset_log.addFilter(_NoFreeCpuWarning())


class _NoFreeCpuWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "does not have any available CPUs" not in str(record.msg)


def num_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def user_error_in(exc: BaseException) -> UserError | None:
    """The curate error (e.g. :class:`~curate.errors.StageStopped`: the endpoint is down) that a
    Ray task raised, found in the chain of Ray's wrapping exceptions; None for anything else."""
    from ray.exceptions import RayError

    todo, seen = [exc], set()
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, UserError) and not isinstance(e, RayError):  # RayTaskError(StageStopped): its cause
            return e
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]
    return None
