"""Scenarios: the devices, links and weights of one planning problem, read from YAML.

A scenario is what a user writes by hand (see ``scenarios/``). It is validated by pydantic and
every error names the field and the line of the YAML file. The paper's symbols, for reference:

======================  ==========  =====================================================
field                   paper       unit
======================  ==========  =====================================================
``memory_mb``           m-bar_i     10^6 bytes (Eq. 13)
``speed_gmacs``         e(i)        10^9 multiplications per second (Eq. 9)
``compute_limit_gmac``  c-bar_i     10^9 multiplications per time step (Eq. 14)
``energy_j``            e-bar_i     joules available in a time step (Eq. 17)
``compute_w``           P_c         watts while computing (Eq. 19)
``transmit_w``          P_t         watts while transmitting (Eq. 19)
``rates_mbps``          rho(i,k)    10^6 bits per second
``requests``            R           requests per time step
======================  ==========  =====================================================
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from adaptive_resnet.config_errors import validation_message
from adaptive_resnet.errors import UserInputError


class Strict(BaseModel):
    # Every number finite: an infinite speed or a NaN memory would pass a "> 0" check and
    # surface later as a TypeError or a wrong plan deep inside a solver.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ModelSpec(Strict):
    arch: str = "resnet50"
    input_size: int = Field(224, gt=0)
    num_classes: int = Field(1000, gt=1)
    stem: Literal["imagenet", "cifar"] = "imagenet"
    base_channels: int = Field(64, gt=0)
    profile: str | None = None  # a profile JSON (``adaptive-resnet profile --format json``) instead


class Power(Strict):
    compute_w: float = Field(8.0, gt=0)  # P_c
    transmit_w: float = Field(10.0, gt=0)  # P_t


class Device(Strict):
    name: str = Field(min_length=1)
    memory_mb: float = Field(gt=0)
    speed_gmacs: float = Field(gt=0)
    compute_limit_gmac: float = Field(gt=0)
    energy_j: float = Field(gt=0)


class Rates(Strict):
    """Link rates in Mb/s, symmetric: a full matrix, named pairs, a default, or a random range."""

    default: float | None = Field(None, gt=0)
    matrix: list[list[float]] | None = None
    pairs: dict[str, float] = {}  # "a,b": rate
    range: tuple[float, float] | None = None  # U[lo, hi] per link (the paper: [7.2, 72.2])
    seed: int = 0

    @field_validator("range")
    @classmethod
    def _range_ok(cls, v):
        if v is not None and not 0 < v[0] <= v[1]:
            raise ValueError("range must be [low, high] with 0 < low <= high")
        return v


NORMALISATIONS = ("fastest-device", "slowest-device", "printed-eq5")  # Eq. 5's (Scenario.objective_normalisation)

# The paper's readings an experiment runs side by side (`experiment --reading`), each a change
# to the scenario; ours is the first. docs/planner.md and docs/simulation.md say what each does.
READINGS: dict[str, dict] = {
    "fastest-device": {"objective_normalisation": "fastest-device", "admission": "refuse"},
    "slowest-device": {"objective_normalisation": "slowest-device"},
    "printed-eq5": {"objective_normalisation": "printed-eq5"},
    "downsize": {"admission": "downsize"},
}


class Scenario(Strict):
    """One planning problem: model, accuracy source, weights, constraints, devices, links."""

    _lines: dict = PrivateAttr(default_factory=dict)  # YAML line of each field, when read from a file
    _source: str = PrivateAttr(default="<scenario>")  # the file it was read from, for later errors

    name: str = "scenario"
    model: ModelSpec = ModelSpec()
    accuracy: str = "paper"  # "paper" or a study table path (relative to the scenario file)
    alpha: float = Field(0.5, ge=0, le=1)
    beta: float = Field(0.5, ge=0, le=1)
    accuracy_threshold: float = Field(0.8, ge=0, le=1)
    allow_estimates: bool = False  # let the planner use estimated (unmeasured) drop sets
    memory_mode: Literal["shared-weights", "paper"] = "shared-weights"
    # Eq. 5's latency term, alpha * latency / L_ref (docs/planner.md): L_ref is the full
    # network's compute time on the fastest device (ours), or on the slowest; "printed-eq5"
    # reads Eq. 5 as printed, alpha * T_L / R with T_L the mean normalised latency, so the
    # latency term shrinks as a step's requests grow.
    objective_normalisation: Literal[NORMALISATIONS] = "fastest-device"
    # What a step does with requests that do not fit at the threshold (docs/planner.md):
    # "refuse" them (ours), or "downsize" them first: serve them on what is left with any drop
    # set the accuracy source knows, below the threshold too, measured or estimated from singles
    # and pairs up to ``downsize_max_drops`` blocks; refused only when even that does not fit.
    admission: Literal["refuse", "downsize"] = "refuse"
    downsize_max_drops: int = Field(4, ge=1, le=8)
    power: Power = Power()
    requests: int = Field(3, ge=1)
    devices: list[Device] = Field(min_length=1)
    rates_mbps: Rates

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        if abs(self.alpha + self.beta - 1.0) > 1e-9:
            raise ValueError(f"alpha + beta must be 1 (Eq. 5), got {self.alpha} + {self.beta}")
        names = [d.name for d in self.devices]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"device named twice: {', '.join(dupes)}")
        self.rate_matrix()  # raises on a missing pair or a bad matrix
        return self

    @property
    def reading(self) -> str:
        """The name of the paper's reading this scenario follows (:data:`READINGS`):
        ``fastest-device`` for ours, else what differs, joined by ``+``."""
        parts = [self.objective_normalisation] if self.objective_normalisation != "fastest-device" else []
        parts += ["downsize"] if self.admission == "downsize" else []
        return "+".join(parts) or "fastest-device"

    @property
    def device_names(self) -> list[str]:
        return [d.name for d in self.devices]

    def where(self, *path: str | int) -> str:
        """``file:line: field`` of a field, for errors found after parsing (against the
        accuracy source, the profile, ...)."""
        line = self._lines.get(tuple(path))
        field = ".".join(str(p) for p in path)
        return f"{self._source}:{line}: {field}" if line else f"{self._source}: {field}"

    def rate_matrix(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """rho(i, k) in Mb/s as an N x N array (diagonal: inf, a device talks to itself for free).

        The one place link rates are drawn: with a ``range``, each call with a generator draws
        new rates (a simulated round, a runtime step); without one, the scenario's own seed
        gives the same draw every time. A matrix, a default or pairs are fixed rates."""
        n, names = len(self.devices), self.device_names
        r = self.rates_mbps
        rates = np.full((n, n), np.nan)
        if r.range is not None:
            rng = rng or np.random.default_rng(r.seed)
            draws = rng.uniform(r.range[0], r.range[1], (n, n))
            rates = np.triu(draws, 1) + np.triu(draws, 1).T
        elif r.default is not None:
            rates[:] = r.default
        if r.matrix is not None:
            m = np.asarray(r.matrix, dtype=float)
            if m.shape != (n, n):
                raise ValueError(f"rates_mbps.matrix must be {n}x{n} (one row and column per device), got {m.shape}")
            off = ~np.eye(n, dtype=bool)
            if (m[off] <= 0).any():
                raise ValueError("rates_mbps.matrix: rates must be positive off the diagonal")
            rates = m.copy()
        for key, value in r.pairs.items():
            parts = [p.strip() for p in key.split(",")]
            if len(parts) != 2 or not all(p in names for p in parts):
                raise ValueError(f"rates_mbps.pairs: {key!r} must be 'a,b' with a and b device names ({', '.join(names)})")
            if value <= 0:
                raise ValueError(f"rates_mbps.pairs: rate for {key!r} must be positive, got {value}")
            i, k = names.index(parts[0]), names.index(parts[1])
            rates[i, k] = rates[k, i] = value
        for i, k in itertools.combinations(range(n), 2):
            if np.isnan(rates[i, k]) or np.isnan(rates[k, i]):
                raise ValueError(f"rates_mbps: no rate for the pair {names[i]},{names[k]} (give a default, a matrix or the pair)")
        np.fill_diagonal(rates, np.inf)
        return rates


def _line_map(text: str) -> dict[tuple, int]:
    """Line number (1-based) of every key and list item in a YAML document, by path."""
    lines: dict[tuple, int] = {}

    def walk(node, path):
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                p = path + (key.value,)
                lines[p] = key.start_mark.line + 1
                walk(value, p)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[path + (i,)] = item.start_mark.line + 1
                walk(item, path + (i,))

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Validate scenario YAML; errors are one line naming ``source:line: field: problem``."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise UserInputError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise UserInputError(f"{source}: a scenario must be a YAML mapping of fields")
    lines = _line_map(text)
    # Duplicate device names are reported at the second occurrence's line.
    seen: dict[str, int] = {}
    for i, dev in enumerate(data.get("devices") or []):
        if isinstance(dev, dict) and "name" in dev:
            if dev["name"] in seen:
                raise UserInputError(f"{source}:{lines.get(('devices', i, 'name'), '?')}: devices.{i}.name: "
                                     f"device {dev['name']!r} named twice (first as devices.{seen[dev['name']]})")
            seen[dev["name"]] = i
    try:
        scenario = Scenario(**data)
    except ValidationError as exc:
        raise UserInputError(validation_message(exc, lines, source)) from None
    except TypeError as exc:
        raise UserInputError(f"{source}: {exc}") from None
    scenario._lines = lines  # for errors found later (e.g. against the accuracy source)
    scenario._source = source
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; relative paths inside it resolve against its folder.

    Most callers want :func:`adaptive_resnet.planning.load_problem`, which also reads the
    model's profile and the accuracy source and checks the scenario against them.
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"scenario file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise UserInputError(f"{path}:{line}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})") from None
    scenario = parse_scenario(text, str(path))
    base = path.parent
    if scenario.accuracy != "paper" and not Path(scenario.accuracy).is_absolute():
        scenario.accuracy = str(base / scenario.accuracy)
    if scenario.model.profile and not Path(scenario.model.profile).is_absolute():
        scenario.model.profile = str(base / scenario.model.profile)
    return scenario
