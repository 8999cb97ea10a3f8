"""Slices and overload: a big audience is written a slice per event-loop turn, in order.

A stream with more than ``chunk`` clients is written in slices (at most ``chunk`` clients, or
``slice_time`` seconds checked every 16 clients); the driver runs the next slice on the next
loop turn (a :class:`~gateway.policy.state.Step`). One message per stream is in flight at a
time and each runs to its last client before the next starts, so every client sees a stream's
messages in publication order however the slices fall. More than ``max_waiting`` messages
waiting behind it: the oldest waiting one whose kind may be shed is (``overload``).
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable

from gateway.policy.limits import Limits
from gateway.policy.observer import Observer
from gateway.policy.probes import Probes
from gateway.policy.state import Action, Client, Job, Step
from gateway.policy.writer import Writer

__all__ = ["TIME_CHECK_EVERY", "Slicer"]

TIME_CHECK_EVERY = 16
"""Clients written between two looks at the clock in a slice: a clock read costs about a write's 1%."""


class Slicer:
    """Per stream, the messages going out in slices, oldest first.

    Args:
        limits: ``chunk``, ``slice_time``, ``max_waiting``, ``max_age``.
        writer: The write rule.
        probes: Counts each message whose fan-out starts (None: probes are off).
        observer: Told of each slice written, each fan-out ended and each drop.
        clock: Wall clock (capture times are Unix time).
        timer: High-resolution clock for slice budgets and the fan-out's own timing.
        actions: Where :class:`~gateway.policy.state.Step` actions are queued.
    """

    def __init__(
        self,
        limits: Limits,
        *,
        writer: Writer,
        probes: Probes | None,
        observer: Observer,
        clock: Callable[[], float],
        timer: Callable[[], float],
        actions: list[Action],
    ) -> None:
        self._chunk = limits.chunk
        self._slice_time = limits.slice_time
        self._max_waiting = limits.max_waiting
        self._max_age = limits.max_age
        # Audiences up to this size are written in one go: slicing costs a loop turn and a copy
        # of the membership, which a hundred writes (about a millisecond) do not justify.
        self._whole = self._chunk or (TIME_CHECK_EVERY if self._slice_time else 0)
        self._writer = writer
        self._probes = probes
        self._observer = observer
        self._clock = clock
        self._timer = timer
        self._actions = actions
        self.queues: dict[str, collections.deque[Job]] = {}

    def fan(self, clients: dict[Client, None], job: Job) -> None:
        """A message for the live ``clients`` of its stream: written now, or its first slice now."""
        stream = job.slot[0]
        queued = self.queues.get(stream)
        if queued is not None:
            # An earlier message of this stream is still going out in slices: a newer one must
            # not overtake it at any client, so it waits its turn whatever its audience.
            job.members = list(clients)
            if len(queued) > self._max_waiting:
                self._shed(queued)
            queued.append(job)
            return
        if self._whole and len(clients) > self._whole:
            job.members = list(clients)
            self.queues[stream] = collections.deque([job])
            self.step(stream)
            return
        if self._probes is not None:
            self._probes.carried(job)
        started = self._timer()
        self._writer.write(clients, job)
        job.spent = self._timer() - started
        self._writer.report(job)
        self._finish(job)

    def step(self, stream: str) -> None:
        """A slice's turn came: write the next slice of the oldest sliced message of ``stream``.

        Queues a :class:`~gateway.policy.state.Step` while more remain.
        """
        queue = self.queues.get(stream)
        if not queue:
            return
        job = queue[0]
        # A message that waited behind others: is it still fresh enough to be worth sending?
        # Checked when its fan-out starts only: once some clients have it, the rest of its
        # audience gets it too (its slices follow within milliseconds), all or none.
        if (
            job.index == 0
            and job.captured is not None
            and self._max_age
            and self._clock() - job.captured > self._max_age
        ):
            self._observer.dropped("stale", len(job.members))
            queue.popleft()
            self._next(stream, queue)
            return
        if job.index == 0 and self._probes is not None:
            self._probes.carried(job)
        started = self._timer()
        mark = self._writer.mark(job)
        # Membership may have changed since the message arrived: leave() takes leavers out of
        # every message still going out, so the audience needs no look-up per client here.
        members = job.members
        index = job.index
        stop = min(index + self._chunk, len(members)) if self._chunk else len(members)
        budget = started + self._slice_time if self._slice_time else None
        write = self._writer.write
        while index < stop:
            end = min(index + TIME_CHECK_EVERY, stop)
            write(members[index:end], job)
            index = end
            if budget is not None and self._timer() >= budget:
                break
        job.index = index
        job.spent += self._timer() - started
        self._writer.report(job, mark)
        if index >= len(members):
            queue.popleft()
            self._finish(job)
        self._next(stream, queue)

    def leave(self, stream: str, client: Client) -> None:
        """``client`` left ``stream``: out of the audience of its messages still going out.

        If it comes back (and goes live) before their slices reach it, they must not arrive
        after newer ones.
        """
        for job in self.queues.get(stream, ()):
            audience = job.members
            with contextlib.suppress(ValueError):
                del audience[audience.index(client, job.index)]

    def in_flight(self) -> int:
        """Messages still going out in slices or waiting behind one, over every stream."""
        return sum(len(queue) for queue in self.queues.values())

    def _finish(self, job: Job) -> None:
        self._observer.fanned_out(job.kind, job.spent, job.age, job.sent)

    def _next(self, stream: str, queue: collections.deque[Job]) -> None:
        if queue:
            self._actions.append(Step(stream=stream))
        else:
            del self.queues[stream]

    def _shed(self, queue: collections.deque[Job]) -> None:
        """Drop the oldest waiting message that may be shed (never the one in flight).

        Messages arrive faster than they can be written to the stream's audience: like a lagging
        client, the stream as a whole skips to the present rather than fall ever further behind,
        and memory stays bounded. Status and gateway notices are never shed.
        """
        for position in range(1, len(queue)):
            if queue[position].delivery.sheds:
                shed = queue[position]
                del queue[position]
                self._observer.dropped("overload", len(shed.members))
                return
