"""The budgets of an LLM stage on Ray, held once for every actor of the pool.

Each actor runs its own :class:`~curate.llm.engine.Engine`; what must hold for the whole run lives in
one small Ray actor, :class:`_Counters` (no CPU reserved; every call is a few integer operations,
run one at a time, so each is atomic):

* the retry/fix-up budget (``--extra-budget``, at least its minimum): a share of the first-round
  requests of *every* engine, counted against the extra requests of every engine (an engine asks
  before each retry or fix-up, and tells its first round when its block starts);
* ``--max-requests``: requests are granted in leases of the engine's concurrency, and an engine gives
  back what it did not send when its block ends.

So the run sends no more extra requests, and no more requests, than one local engine would be
allowed. An actor that dies loses at most its unsent lease (the run may then send fewer requests than
``--max-requests``, never more).
"""

from __future__ import annotations

from typing import Any

from curate.llm.engine import extra_allowance


class _Counters:
    def __init__(self, share: float | None, minimum: int, max_requests: int | None):
        self.share, self.minimum, self.max_requests = share, minimum, max_requests
        self.first_round = self.extra = self.leased = 0

    def add_first_round(self, n: int) -> None:
        self.first_round += n

    def take_extra(self, n: int) -> tuple[bool, float]:
        self.first_round += n
        allowed = extra_allowance(self.share, self.minimum, self.first_round)
        if self.extra < allowed:
            self.extra += 1
            return True, allowed
        return False, allowed

    def lease(self, n: int) -> int:
        if self.max_requests is None:
            return n
        got = max(0, min(n, self.max_requests - self.leased))
        self.leased += got
        return got

    def give_back(self, n: int) -> None:
        self.leased -= n

    def state(self) -> dict[str, Any]:
        return {"first_round": self.first_round, "extra": self.extra, "leased": self.leased,
                "allowed": extra_allowance(self.share, self.minimum, self.first_round)}


class RayBudget:
    """A :class:`~curate.llm.engine.SharedBudget` over a :class:`_Counters` actor (picklable: it is
    sent to every actor of the pool)."""

    def __init__(self, actor):
        self.actor = actor

    async def add_first_round(self, n: int) -> None:
        await self.actor.add_first_round.remote(n)

    async def take_extra(self, first_round: int) -> tuple[bool, float]:
        return await self.actor.take_extra.remote(first_round)

    async def lease(self, n: int) -> int:
        return await self.actor.lease.remote(n)

    async def give_back(self, n: int) -> None:
        await self.actor.give_back.remote(n)

    def state(self) -> dict[str, Any]:
        import ray

        return ray.get(self.actor.state.remote())

    def close(self) -> None:
        import ray

        ray.kill(self.actor)


def start(config) -> RayBudget:
    """The counters of one engine configuration (``EngineConfig``) for a run."""
    import ray

    actor = ray.remote(num_cpus=0, max_restarts=0)(_Counters).remote(
        config.extra_budget, config.extra_min, config.max_requests)
    return RayBudget(actor)
