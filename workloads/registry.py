"""Extension points as tables: one Registry per kind of component (optimizers,
schedules, losses, activations, initialisations, normalisations, augmentations,
test-time views). Adding a kind of thing is one `add` and one test.

A config names a component with a spec string, `name` or `name:key=value:...`:

    OPTIMIZERS.add("sgd", torch.optim.SGD, params={"momentum": 0.0, "nesterov": False})
    spec = OPTIMIZERS.parse("sgd:momentum=0.9")     # Spec("sgd", {"momentum": 0.9, "nesterov": False})
    OPTIMIZERS.canonical("sgd:nesterov=false")      # 'sgd': parameters at their defaults drop out
    spec.entry.fn(params, lr=0.1, **spec.params)     # a torch.optim.SGD

Parameter types come from the defaults (int, float, bool, str, or a tuple written
`5/10`); an unknown name, an unknown parameter, a wrong type or a value the
entry's `check` refuses is a one-line ConfigError when the config is built. The
canonical form (defaults left out, the registry's parameter order) is what configs
store, so two spellings of one component are one config (and one trial).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


class ConfigError(ValueError):
    """Bad user input: reported as one line, exit code 2."""


class DataError(RuntimeError):
    """Data missing or corrupt: reported as one line, exit code 2 (workloads.data raises it;
    defined here, with ConfigError, so that the command line catches both without torch)."""


@dataclass(frozen=True)
class Entry:
    name: str
    fn: Callable
    params: dict = field(default_factory=dict)     # name -> default value (its type is the parameter's)
    check: Callable[[dict], str | None] | None = None  # all params -> None, or why they are refused
    meta: dict = field(default_factory=dict)       # what the kind's users ask of an entry


@dataclass(frozen=True)
class Spec:
    entry: Entry
    params: dict                                   # every parameter, defaults filled in

    @property
    def name(self) -> str:
        return self.entry.name

    def __getattr__(self, key):                    # spec.gamma: a parameter, or the entry's meta
        if key in ("entry", "params"):
            raise AttributeError(key)
        if key in self.params:
            return self.params[key]
        if key in self.entry.meta:
            return self.entry.meta[key]
        raise AttributeError(key)


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self.entries: dict[str, Entry] = {}

    def add(self, name: str, fn: Callable, params: dict | None = None,
            check: Callable[[dict], str | None] | None = None, **meta) -> Callable:
        if name in self.entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self.entries[name] = Entry(name, fn, dict(params or {}), check, meta)
        return fn

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def __iter__(self):
        return iter(self.entries)

    def __getitem__(self, name: str) -> Entry:
        return self.entries[name]

    def parse(self, text: str) -> Spec:
        name, *args = [part.strip() for part in str(text).strip().split(":")]
        if name not in self.entries:
            raise ConfigError(f"{self.kind} {name!r} is unknown; choose from {', '.join(self.entries)}")
        entry = self.entries[name]
        params = dict(entry.params)
        for arg in args:
            key, sep, raw = arg.partition("=")
            key = key.strip()
            if not sep or key not in entry.params:
                known = ", ".join(entry.params) or "none"
                raise ConfigError(f"{self.kind} {name}: {arg!r} is not a parameter (known: {known}); "
                                  f"write {name}:key=value")
            params[key] = _typed(f"{self.kind} {name}:{key}", raw.strip(), entry.params[key])
        why = entry.check(params) if entry.check else None
        if why:
            raise ConfigError(f"{self.kind} {text}: {why}")
        return Spec(entry, params)

    def canonical(self, text: str) -> str:
        spec = self.parse(text)
        changed = [f"{k}={_text(v)}" for k, v in spec.params.items() if v != spec.entry.params[k]]
        return ":".join([spec.name, *changed])

    def canonical_list(self, text: str) -> str:
        """A comma-separated list of specs (augmentations), each made canonical."""
        return ",".join(self.canonical(t) for t in split_list(text))


def split_list(text: str) -> list[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]


def _typed(where: str, raw: str, default: Any):
    try:
        if isinstance(default, bool):
            low = raw.lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return low in ("true", "1", "yes")
        if isinstance(default, tuple):
            return tuple(float(v) for v in raw.split("/") if v.strip())
        return type(default)(raw)
    except ValueError:
        kind = "numbers separated by /" if isinstance(default, tuple) else type(default).__name__
        raise ConfigError(f"{where}: expected {kind}, got {raw!r}") from None


def _text(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return "/".join(_text(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    return str(value)
