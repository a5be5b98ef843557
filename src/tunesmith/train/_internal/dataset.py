"""Each worker's share of a trainer's ``datasets``: what ``train.get_dataset_shard(name)`` returns."""
from __future__ import annotations

import itertools
import os
import sys
from typing import Any, Iterator


def shard(data: Any, rank: int, world_size: int) -> Any:
    """Returns worker ``rank``'s share of ``data``: every ``world_size``-th item from ``rank`` on.

    Every worker gets as many items as the others (the last ``len(data) % world_size``
    items are left out, as Ray Train's ``DataConfig`` splits with ``equal=True``): workers
    that step together (a DDP all-reduce per batch) must have the same number of batches.
    Sliceable sequences (lists, tuples, ranges, numpy arrays) and pandas
    objects keep their type; other indexable datasets (a ``torch`` ``Dataset``)
    become a :class:`ShardView`; any other iterable becomes a
    :class:`IterableShard` that can be iterated again and again (one pass per epoch;
    its length is not known, so its shares may differ by one item).

    Example:
        >>> shard(list(range(10)), 1, 3)
        [1, 4, 7]
        >>> shard(list(range(10)), 0, 3)
        [0, 3, 6]
        >>> list(shard(iter("abcdef"), 0, 2))
        ['a', 'c', 'e']
    """
    if world_size == 1:
        return data
    if hasattr(data, "iloc"):  # pandas DataFrame / Series
        return data.iloc[rank:_equal_end(len(data), world_size):world_size]
    if isinstance(data, (list, tuple, range, str, bytes)) or type(data).__name__ == "ndarray":
        return data[rank:_equal_end(len(data), world_size):world_size]
    if hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        return ShardView(data, rank, world_size)
    if hasattr(data, "__iter__"):
        torch_data = sys.modules.get("torch.utils.data")
        if torch_data is not None and isinstance(data, torch_data.IterableDataset):
            return _torch_iterable_shard()(data, rank, world_size)  # a DataLoader reads it as the iterable it is
        return IterableShard(data, rank, world_size)
    raise TypeError(
        f"A trainer's dataset must be iterable (a list, an array, a DataFrame, a torch Dataset, ...); "
        f"got {type(data).__name__}."
    )


def _equal_end(length: int, world_size: int) -> int:
    """Where the items that every worker gets one of end."""
    return length - length % world_size


def check_datasets(datasets: Any, where: str) -> None:
    """Raises a clear error for what a trainer cannot split among its workers: a Ray Data ``Dataset``,
    a path (read the file first) or a dict of columns (a DataFrame holds them)."""
    for name, data in (datasets or {}).items():
        if type(data).__module__.startswith("ray.data"):
            raise TypeError(
                f"{where}: the dataset {name!r} is a Ray Data {type(data).__name__}, which tunesmith's trainers "
                "do not read. Pass the data itself (a list, a numpy array, a pandas DataFrame or a torch "
                "Dataset, e.g. ds.to_pandas()): each worker gets its share through train.get_dataset_shard()."
            )
        if isinstance(data, (str, bytes, os.PathLike, dict)):
            kind = "a dict" if isinstance(data, dict) else "a path"
            hint = ("pandas.DataFrame(...) of its columns" if isinstance(data, dict)
                    else "the data read from it (pandas.read_csv(...), numpy.load(...))")
            raise TypeError(
                f"{where}: the dataset {name!r} is {kind} ({type(data).__name__}), which cannot be split among "
                f"the workers. Pass {hint}: each worker gets its share through train.get_dataset_shard()."
            )


class ShardView:
    """Items ``rank, rank + world_size, ...`` of an indexable dataset, without copying it.

    Example:
        >>> view = ShardView({0: "a", 1: "b", 2: "c", 3: "d"}, 0, 2)
        >>> len(view), list(view)
        (2, ['a', 'c'])
    """

    def __init__(self, data: Any, rank: int, world_size: int):
        self.dataset = data
        self.indices = range(rank, _equal_end(len(data), world_size), world_size)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[self.indices[i]]

    def __iter__(self) -> Iterator[Any]:
        for i in self.indices:
            yield self.dataset[i]


class IterableShard:
    """Every ``world_size``-th item of an iterable, from ``rank`` on; iterating again starts over.

    An iterator (which can be read once) is read once in all.
    """

    def __init__(self, data: Any, rank: int, world_size: int):
        self.dataset = data
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[Any]:
        return itertools.islice(iter(self.dataset), self.rank, None, self.world_size)


def _torch_iterable_shard() -> type:
    """``TorchIterableShard``: an :class:`IterableShard` of a torch ``IterableDataset``, itself one. Made
    when first needed (this module does not import torch); pickled by name as any class of this module."""
    made = globals().get("TorchIterableShard")
    if made is None:
        from torch.utils.data import IterableDataset

        made = type("TorchIterableShard", (IterableShard, IterableDataset), {"__module__": __name__})
        globals()["TorchIterableShard"] = made
    return made


def __getattr__(name: str) -> Any:
    if name == "TorchIterableShard":
        return _torch_iterable_shard()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
