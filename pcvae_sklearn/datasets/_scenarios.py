"""A named family of simulated datasets with the nuisances of real data.

Each scenario is one simulator (2D pores, 3D pores, tetrahedra) with a few
keywords changed from its defaults to add one flaw of real data (linkage
error, PAINT-like counts, heavy background, tilt, far outliers, no precision
field, ring twist, a large picking offset, low labelling) or one shape of
the structural heterogeneity (two states, Gaussian). The family serves to
check that defaults chosen on some scenarios hold on the others: about a
third are marked ``held_out`` and are meant to be looked at only after a
choice is made.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from ._common import distribution_mean
from ._npc import make_npc_2d, make_npc_3d
from ._tetrahedron import make_tetrahedron

__all__ = ["Scenario", "SCENARIOS", "list_scenarios", "make_scenario"]

#: the simulator of every structure
SIMULATORS = MappingProxyType({"npc_2d": make_npc_2d, "npc_3d": make_npc_3d, "tetrahedron": make_tetrahedron})

#: the keywords of each simulator that describe the structure (drawn per
#: particle); ``homogeneous=True`` fixes all of them at their mean
STRUCTURE_PARAMETERS = MappingProxyType(
    {"npc_2d": ("radius",), "npc_3d": ("radius", "height", "ring_twist"), "tetrahedron": ("height", "edge")}
)

# structure parameters that may be zero or negative
_SIGNED = frozenset({"ring_twist"})


def _defaults(structure: str) -> dict:
    sig = inspect.signature(SIMULATORS[structure])
    return {k: p.default for k, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


@dataclass(frozen=True)
class Scenario:
    """One simulated dataset of the family: a simulator and its keywords.

    Parameters
    ----------
    name : str
        Identifier, ``<structure prefix>_<nuisance>``.
    structure : {"npc_2d", "npc_3d", "tetrahedron"}
        Which simulator: :func:`make_npc_2d`, :func:`make_npc_3d` or
        :func:`make_tetrahedron`.
    description : str
        What the scenario adds to the simulator's defaults, and why.
    params : mapping
        Keywords passed to the simulator (besides ``n_particles`` and
        ``random_state``); every other keyword keeps its default.
    varying : tuple of str
        The truth columns that vary from particle to particle by design:
        the structure parameters to recover.
    held_out : bool
        True for scenarios kept aside: a default of the library must be
        chosen without looking at them, so that they test it afterwards.
    """

    name: str
    structure: str
    description: str
    params: Mapping[str, Any] = field(default_factory=dict)
    varying: tuple = ()
    held_out: bool = False

    def __post_init__(self):
        if self.structure not in SIMULATORS:
            raise ValueError(f"scenario {self.name!r}: structure must be one of {list(SIMULATORS)}, got {self.structure!r}.")
        defaults = _defaults(self.structure)
        unknown = sorted(set(self.params) - set(defaults))
        if unknown:
            raise ValueError(
                f"scenario {self.name!r}: {unknown} are not keywords of {SIMULATORS[self.structure].__name__}."
            )
        not_structure = sorted(set(self.varying) - set(STRUCTURE_PARAMETERS[self.structure]))
        if not self.varying or not_structure:
            raise ValueError(
                f"scenario {self.name!r}: varying must name structure parameters of {self.structure} "
                f"{STRUCTURE_PARAMETERS[self.structure]}, got {self.varying!r}."
            )
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        object.__setattr__(self, "varying", tuple(self.varying))

    @property
    def simulator(self):
        """The simulator function."""
        return SIMULATORS[self.structure]

    @property
    def nuisances(self) -> dict:
        """The keywords set by the scenario that are not structure parameters."""
        return {k: v for k, v in self.params.items() if k not in STRUCTURE_PARAMETERS[self.structure]}

    def homogeneous_params(self) -> dict:
        """The scenario's keywords with every structure parameter fixed at the mean of its distribution."""
        defaults = _defaults(self.structure)
        out = dict(self.params)
        for key in STRUCTURE_PARAMETERS[self.structure]:
            value = self.params.get(key, defaults[key])
            out[key] = distribution_mean(value, key, positive=key not in _SIGNED)
        return out

    def make(self, n_particles=1000, *, random_state=None, homogeneous=False):
        """Simulate the scenario; see :func:`make_scenario`."""
        params = self.homogeneous_params() if homogeneous else dict(self.params)
        return self.simulator(n_particles, random_state=random_state, **params)


_FAMILY = [
    # ------------------------------------------------------------- 2D pores
    Scenario(
        "npc2d_default",
        "npc_2d",
        "make_npc_2d's defaults: radius uniform 40-60 nm, dSTORM blinking, 6 background localizations, "
        "5 nm picking offset.",
        {},
        ("radius",),
        held_out=False,
    ),
    Scenario(
        "npc2d_paint",
        "npc_2d",
        "PAINT-like counts: a Poisson number of binding events per dye with the default mean 7.5, far less "
        "dispersed than geometric blinking (variance 7.5 against 48.8), and some labelled sites give none.",
        {"blinking": "poisson"},
        ("radius",),
        held_out=False,
    ),
    Scenario(
        "npc2d_linkage",
        "npc_2d",
        "Linkage error of 6 nm per axis (antibody labelling): every dye sits off its site, and all its "
        "localizations share that offset.",
        {"linkage_error": 6.0},
        ("radius",),
        held_out=True,
    ),
    Scenario(
        "npc2d_background",
        "npc_2d",
        "Heavy background: 40 uniform localizations per pick, about a quarter of the particle's.",
        {"background": 40.0},
        ("radius",),
        held_out=False,
    ),
    Scenario(
        "npc2d_two_state",
        "npc_2d",
        "Two states of the radius, 45 and 58 nm, in equal parts (a dilated and a constricted population).",
        {"radius": {"kind": "two_state", "values": (45.0, 58.0), "p": 0.5}},
        ("radius",),
        held_out=False,
    ),
    Scenario(
        "npc2d_low_dol",
        "npc_2d",
        "Low labelling: degree of labelling 0.3, about 78 localizations per particle and gaps in the ring.",
        {"dol": 0.3},
        ("radius",),
        held_out=True,
    ),
    # ------------------------------------------------------------- 3D pores
    Scenario(
        "npc3d_default",
        "npc_3d",
        "make_npc_3d's defaults: radius uniform 45-60 nm and ring distance uniform 40-70 nm, 32 sites, "
        "axial precision 2.5 times the lateral one.",
        {},
        ("radius", "height"),
        held_out=False,
    ),
    Scenario(
        "npc3d_tilt",
        "npc_3d",
        "Pore axes tilted away from z by up to 15 degrees (a nuclear envelope that is not flat).",
        {"tilt": 15.0},
        ("radius", "height"),
        held_out=False,
    ),
    Scenario(
        "npc3d_outliers",
        "npc_3d",
        "Far outliers: a third of the particles have 1-3 localizations 150-300 nm from the centre, as in "
        "real 3D pore data.",
        {"outlier_rate": 1 / 3, "outlier_count": (1, 3), "outlier_distance": (150.0, 300.0)},
        ("radius", "height"),
        held_out=True,
    ),
    Scenario(
        "npc3d_axial20",
        "npc_3d",
        "Real 3D pore imaging: 8 nm lateral and 20 nm axial precision, and files without a precision field.",
        {"precision": 8.0, "precision_z": 20.0, "precision_field": False},
        ("radius", "height"),
        held_out=False,
    ),
    Scenario(
        "npc3d_twist",
        "npc_3d",
        "Nup107-like twist: the two rings turned 7.5 degrees against each other, 32 sites (2 per corner).",
        {"ring_twist": 7.5, "sites_per_corner": 2},
        ("radius", "height"),
        held_out=True,
    ),
    # ----------------------------------------------------------- tetrahedra
    Scenario(
        "tetra_default",
        "tetrahedron",
        "make_tetrahedron's defaults: height uniform 40-100 nm, 5000 DNA-PAINT localizations, 50 background.",
        {},
        ("height",),
        held_out=False,
    ),
    Scenario(
        "tetra_tilt",
        "tetrahedron",
        "Origami axes tilted away from z by up to 20 degrees (not lying flat on the coverslip).",
        {"tilt": 20.0},
        ("height",),
        held_out=False,
    ),
    Scenario(
        "tetra_gaussian",
        "tetrahedron",
        "A Gaussian height, mean 70 nm and standard deviation 12 nm, instead of a uniform one.",
        {"height": {"kind": "normal", "mean": 70.0, "std": 12.0}},
        ("height",),
        held_out=True,
    ),
    Scenario(
        "tetra_pick_offset",
        "tetrahedron",
        "Careless picking: the pick centre 20 nm (per axis) off the true centre.",
        {"picking_offset": 20.0},
        ("height",),
        held_out=False,
    ),
]

#: the scenarios by name (read-only)
SCENARIOS = MappingProxyType({s.name: s for s in _FAMILY})


def list_scenarios(*, structure=None, held_out=None) -> list:
    """Names of the scenarios, in the family's order.

    Parameters
    ----------
    structure : {"npc_2d", "npc_3d", "tetrahedron"} or None, default=None
        Only the scenarios of that simulator.
    held_out : bool or None, default=None
        Only the held-out scenarios (True) or only the others (False).

    Returns
    -------
    list of str

    Examples
    --------
    >>> from pcvae_sklearn.datasets import list_scenarios
    >>> list_scenarios(structure="npc_3d", held_out=False)
    ['npc3d_default', 'npc3d_tilt', 'npc3d_axial20']
    """
    if structure is not None and structure not in SIMULATORS:
        raise ValueError(f"structure must be None or one of {list(SIMULATORS)}, got {structure!r}.")
    if held_out is not None and not isinstance(held_out, bool):
        raise TypeError(f"held_out must be None, True or False, got {held_out!r}.")
    return [
        name
        for name, s in SCENARIOS.items()
        if (structure is None or s.structure == structure) and (held_out is None or s.held_out == held_out)
    ]


def make_scenario(name, n_particles=1000, *, random_state=None, homogeneous=False):
    """Simulate one scenario of the family :data:`SCENARIOS`.

    Parameters
    ----------
    name : str
        A name from :func:`list_scenarios`.
    n_particles : int, default=1000
        Number of particles.
    random_state : int, numpy.random.Generator or None, default=None
        Seed or generator, passed to the simulator.
    homogeneous : bool, default=False
        Fix every structure parameter (radius, height, ring twist, edge) at
        the mean of the scenario's distribution, keeping every nuisance: the
        matched homogeneous dataset, for false-positive tests.

    Returns
    -------
    particles : awkward.Array
        As returned by the scenario's simulator.
    truth : numpy structured array of shape (n_particles,)
        As returned by the simulator; ``SCENARIOS[name].varying`` names the
        columns to recover.

    See Also
    --------
    list_scenarios : the names, by structure and held-out flag.
    make_npc_2d, make_npc_3d, make_tetrahedron : the simulators.

    Examples
    --------
    >>> import numpy as np
    >>> from pcvae_sklearn.datasets import SCENARIOS, make_scenario
    >>> particles, truth = make_scenario("npc2d_two_state", 100, random_state=0)
    >>> SCENARIOS["npc2d_two_state"].varying
    ('radius',)
    >>> sorted(set(truth["radius"].tolist()))
    [45.0, 58.0]
    >>> _, flat = make_scenario("npc2d_two_state", 100, random_state=0, homogeneous=True)
    >>> np.unique(flat["radius"]).tolist()
    [51.5]
    """
    if not isinstance(name, str) or name not in SCENARIOS:
        close = difflib.get_close_matches(str(name), list(SCENARIOS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown scenario {name!r}.{hint} The scenarios are {list(SCENARIOS)}.")
    if not isinstance(homogeneous, bool):
        raise TypeError(f"homogeneous must be True or False, got {homogeneous!r}.")
    return SCENARIOS[name].make(n_particles, random_state=random_state, homogeneous=homogeneous)
