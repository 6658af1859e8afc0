"""Celery (5.x) on kombu's Redis transport (5.x), read as it is: Celery's keys are never written;
tqmon's memory lives under its own {P}:celery:* keys. One module per concern:

  layout     where kombu keeps queues and bindings, for every layout (sep, priority_steps,
             global_keyprefix), detected or configured; what cannot be read, said on stderr
  listening  the workers' events heard in a window (Celery's workers keep no key)
  memory     workers heard before and silent now: died (pidbox binding left) or stopped
  workers    the worker collector
  seen       the observed waiting age's memory (when a list's head was first seen)
  queues     the queue collector: depth, waiting age, in-flight, running age, orphans
"""

from __future__ import annotations

from .queues import collect_queues
from .workers import collect_workers

__all__ = ["collect_queues", "collect_workers"]
