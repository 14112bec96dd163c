"""Reading ahead: a store's reads run in background threads while the consumer trains on what was read before."""

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor


def prefetch(load: Callable, items: Iterable, pool: ThreadPoolExecutor, *, ahead: int = 2) -> Iterator:
    """load(item) for each item in order, up to `ahead` items loaded in the background ahead of the consumer. The
    first loads start on this call, not on the first request: a caller can set up while they run."""
    items = iter(items)
    pending = deque(pool.submit(load, item) for item in itertools.islice(items, ahead + 1))

    def results() -> Iterator:
        while pending:
            yield pending.popleft().result()
            pending.extend(pool.submit(load, item) for item in itertools.islice(items, 1))  # once the consumer is back
    return results()
