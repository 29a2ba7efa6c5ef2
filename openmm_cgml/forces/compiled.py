"""The compiled forces: a C++ OpenMM plugin (``openmm_cgml/_plugin``).

``CGPairTableForce`` sums one natural cubic spline per bead-type pair over the non-excluded pairs within the
cutoff, the same energies as the ``CustomNonbondedForce`` layouts of
:class:`~openmm_cgml.forces.tabulated.TabulatedPairPotential`, with its own Verlet list (cells and a skin), so
its cost per bead stays flat with the system size.

``CGSchNetForce`` evaluates a trained :class:`~openmm_cgml.models.CGSchNet` network (inference: energy and
analytic forces, in the model's precision) from its weights, with the filters as cubic Hermite tables (or exact per
pair), on the same Verlet list: :class:`~openmm_cgml.forces.neural.NeuralForceTerm`'s ``"compiled"`` backend.
Its XML holds the weights as numbers, so a System with it is self-contained and loads without running code.

``CGSchNetForce`` is a ``CustomCPPForceImpl``: one C++ kernel that runs on every platform (on a GPU platform the
positions travel to the host each step, so there TorchForce is the faster choice).  ``CGPairTableForce`` has a
device kernel too, written once against OpenMM's common compute API (``CGPairTableCommon.cpp``): where OpenMM has
an OpenCL or CUDA platform, a second library is built against that platform's OpenMM library (with the OpenCL
headers, or CUDA's ``cuda.h``) and registered with it when this module loads the plugin, and a Context on that
platform evaluates the pair sum as one more interaction of OpenMM's nonbonded kernel (its tiles and neighbour list;
:func:`runs_on_device` says which ran).  That kernel requires every interaction in it to agree on the cutoff,
the periodicity and the exclusions, so where another ``NonbondedForce`` or ``CustomNonbondedForce`` in the System
disagrees the force runs on the host (:func:`host_reason`).  A platform whose kernels cannot be built runs the host kernel, with the
reason in :func:`device_kernels`; ``CGML_DEVICE_KERNELS=0`` skips them.

The library is compiled against the installed OpenMM on first use (a few seconds), or at install time, and
cached under a name that records the OpenMM version and the sources' hash, so an OpenMM upgrade rebuilds it.
Where it lives: ``$CGML_PLUGIN_DIR`` if set, else the package's ``_plugin/lib`` when it is writable (an editable
install) or holds a matching build (a wheel or conda package built it), else ``~/.cache/openmm_cgml/plugin``.
``python -m openmm_cgml.forces.compiled`` builds it and prints where.

Loading the library registers the forces' XML serialization proxies, so a System that holds one serialises and
deserialises like any other once ``openmm_cgml`` has loaded it (:func:`load`); a script that reads such a
``system.xml`` without ``openmm_cgml`` first loads it with ``openmm.Platform.loadPluginLibrary(path)``.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from ..exceptions import ConfigurationError

__all__ = ["available", "unavailable_reason", "build", "build_device", "device_kernels", "runs_on_device", "host_reason",
           "library_path", "load", "make_pair_force",
           "is_pair_force", "set_tables", "num_list_builds", "update_in_context", "make_schnet_force",
           "is_schnet_force", "set_schnet_parameters", "simd", "SOURCE_DIR", "DEFAULT_SKIN"]

SOURCE_DIR = Path(__file__).resolve().parent.parent / "_plugin"
_SOURCES = ("CGPluginCommon.h", "CGVerletList.h", "CGPairTableForce.h", "CGPairTableKernels.h", "CGPairTableForce.cpp",
            "CGSchNetForce.h", "CGSchNetEval.inc", "CGSchNetForce.cpp")
#: The device kernels (common compute API), one library per GPU platform, loaded after the main library.
_DEVICE_SOURCES = ("CGPluginCommon.h", "CGPairTableForce.h", "CGPairTableKernels.h", "CGPairTableCommon.cpp")
#: platform -> (the define that selects it, its OpenMM plugin library, a header its API needs, where that header is)
_DEVICE_PLATFORMS = {"OpenCL": ("CGML_OPENCL", "libOpenMMOpenCL.so", "CL/cl.h", ("/usr/include", "/usr/local/include")),
                     "CUDA": ("CGML_CUDA", "libOpenMMCUDA.so", "cuda.h", ("/usr/local/cuda/include", "/usr/include"))}
_FLAGS = ("-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd", "-std=c++17", "-shared", "-fPIC")
#: Verlet-list skin (nm): pairs within cutoff + skin are listed; the list is rebuilt once a bead moved skin/2.
DEFAULT_SKIN = 0.1

_lib: ctypes.CDLL | None = None
_failure: str | None = None
_device: dict[str, str | None] = {}   # platform -> None (its kernels registered) or why not


def _openmm_dirs() -> tuple[Path, Path, str]:
    import openmm
    import openmm.version

    lib = Path(openmm.version.openmm_library_path)
    return lib, lib.parent / "include", openmm.__version__


def _key(sources: Sequence[str] = _SOURCES, flavour: str = "") -> str:
    _, _, version = _openmm_dirs()
    h = hashlib.sha256()
    for name in sources:
        h.update((SOURCE_DIR / name).read_bytes())
    h.update(" ".join(_FLAGS).encode())
    h.update(os.environ.get("CGML_CXXFLAGS", "").encode())
    return f"libcgmlpairs{flavour}-openmm{version}-{h.hexdigest()[:12]}.so"


def _candidate_dirs() -> list[Path]:
    if os.environ.get("CGML_PLUGIN_DIR"):
        return [Path(os.environ["CGML_PLUGIN_DIR"])]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "openmm_cgml" / "plugin"
    return [SOURCE_DIR / "lib", cache]


def library_path(name: str | None = None) -> Path:
    """Where the library for this OpenMM and these sources is (or will be built)."""
    name = name or _key()
    dirs = _candidate_dirs()
    for d in dirs:
        if (d / name).is_file():
            return d / name
    for d in dirs:
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(d, os.W_OK):
            return d / name
    raise ConfigurationError(f"no writable directory for the compiled pair force among {[str(d) for d in dirs]}; "
                             "set CGML_PLUGIN_DIR to one")


def build(*, force: bool = False) -> Path:
    """Compile the plugin against the installed OpenMM (under a lock, written atomically); returns its path."""
    lib_dir, include_dir, _ = _openmm_dirs()
    if not (include_dir / "openmm" / "internal" / "CustomCPPForceImpl.h").is_file():
        raise ConfigurationError(f"OpenMM's C++ headers are not at {include_dir}: the compiled pair force needs an "
                                 "OpenMM that ships them (the pip wheel and conda-forge's both do)")
    return _compile(library_path(), _SOURCES, [f"-I{include_dir}", f"-L{lib_dir}", "-lOpenMM", f"-Wl,-rpath,{lib_dir}"],
                    "libcgmlpairs-openmm", force=force)


def _compile(target: Path, sources: Sequence[str], args: Sequence[str], stale_prefix: str, *, force: bool) -> Path:
    if target.is_file() and not force:
        return target
    cxx = os.environ.get("CXX", "c++")
    with open(target.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file() and not force:
            return target
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        cmd = [cxx, *_FLAGS, *shlex.split(os.environ.get("CGML_CXXFLAGS", "")), f"-I{SOURCE_DIR}",
               *(str(SOURCE_DIR / name) for name in sources if name.endswith(".cpp")), *args, "-o", str(tmp)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True)
        except FileNotFoundError as exc:
            raise ConfigurationError(f"no C++ compiler ({cxx!r}; set CXX) to build the compiled pair force") from exc
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise ConfigurationError(f"building the compiled pair force failed ({' '.join(cmd)}):\n"
                                     f"{proc.stderr[-3000:]}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
        for stale in target.parent.glob(f"{stale_prefix}*.so"):  # builds of older sources or OpenMMs
            if stale != target:
                stale.unlink(missing_ok=True)  # (a process that has one loaded keeps it)
    return target


def build_device(platform: str, *, force: bool = False) -> Path:
    """Compile the device kernels for ``platform`` ("OpenCL" or "CUDA") against OpenMM's library for it."""
    if platform not in _DEVICE_PLATFORMS:
        raise ConfigurationError(f"no device kernels for platform {platform!r}; expected one of {sorted(_DEVICE_PLATFORMS)}")
    define, plugin, header, places = _DEVICE_PLATFORMS[platform]
    lib_dir, include_dir, _ = _openmm_dirs()
    plugin_dir = lib_dir / "plugins"
    if not (plugin_dir / plugin).is_file():
        raise ConfigurationError(f"OpenMM's {platform} platform library is not at {plugin_dir / plugin}")
    extra = [Path(p) for p in os.environ.get("CGML_DEVICE_INCLUDE", "").split(os.pathsep) if p]
    found = [d for d in (*extra, *map(Path, places)) if (d / header).is_file()]
    if not found:
        raise ConfigurationError(f"the {platform} headers ({header}) are not installed (looked in "
                                 f"{[str(d) for d in (*extra, *places)]}; set CGML_DEVICE_INCLUDE)")
    name = _key(_DEVICE_SOURCES, f"-{platform.lower()}")
    args = [f"-D{define}", f"-I{include_dir}", f"-I{found[0]}", f"-L{plugin_dir}", f"-l:{plugin}", f"-L{lib_dir}",
            "-lOpenMM", f"-Wl,-rpath,{plugin_dir}", f"-Wl,-rpath,{lib_dir}"]
    return _compile(library_path(name), _DEVICE_SOURCES, args, f"libcgmlpairs-{platform.lower()}-openmm", force=force)


def _register_devices() -> None:
    """Build and load the device kernels of every GPU platform OpenMM has here; a platform whose kernels cannot be
    built keeps the host kernel (its reason in :func:`device_kernels`)."""
    import openmm

    names = {openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())}
    for platform in _DEVICE_PLATFORMS:
        if platform not in names or platform in _device:
            continue
        try:
            lib = ctypes.CDLL(str(build_device(platform)), mode=ctypes.RTLD_GLOBAL)
            if lib.cgml_register_device_kernels() != 0:  # its errors are kept by the main library
                raise ConfigurationError(_lib.cgml_last_error().decode())
            _device[platform] = None
        except (ConfigurationError, OSError) as exc:
            _device[platform] = str(exc).splitlines()[0]


def device_kernels(*, retry: bool = False) -> dict[str, str | None]:
    """Each GPU platform OpenMM has here -> None when the compiled pair force runs on its device, else why it runs
    on the host there (positions copied each step).  ``retry``: try again the platforms that failed, and any
    platform loaded since (e.g. after installing its runtime or headers)."""
    load()
    if retry:
        for platform in [p for p, why in _device.items() if why is not None]:
            del _device[platform]
        _register_devices()
    return dict(_device)


def runs_on_device(force, context) -> bool:
    """Whether ``context`` evaluates the compiled pair ``force`` with its platform's device kernel."""
    rc = load().cgml_pair_force_on_device(_pointer(force), _pointer(context))
    _check(0 if rc >= 0 else -1)
    return bool(rc)


def host_reason(force, context) -> str | None:
    """Why ``context`` runs the compiled pair ``force`` on the host although its platform has the device kernel:
    another force of OpenMM's nonbonded kernel (a ``NonbondedForce``, a ``CustomNonbondedForce`` without interaction
    groups, another pair force) disagrees on the cutoff, the periodicity or the exclusions, which that kernel
    requires to be the same.  None when it runs on the device or the platform has no device kernel."""
    reason = load().cgml_pair_force_host_reason(_pointer(force), _pointer(context))
    if reason is None:
        _check(-1)
    return reason.decode() or None


def load() -> ctypes.CDLL:
    """Load the plugin (building it when needed); this registers its XML serialization proxy."""
    global _lib, _failure
    if _lib is not None:
        return _lib
    if _failure is not None:
        raise ConfigurationError(_failure)
    try:
        path = build()
        lib = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    except (ConfigurationError, OSError) as exc:
        _failure = f"the compiled pair force is not available: {exc}"
        raise ConfigurationError(_failure) from exc
    lib.cgml_last_error.restype = ctypes.c_char_p
    lib.cgml_pair_force_set_table.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                              ctypes.POINTER(ctypes.c_double), ctypes.c_int]
    lib.cgml_pair_force_update_in_context.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.cgml_pair_force_is.argtypes = [ctypes.c_void_p]
    lib.cgml_pair_force_num_list_builds.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.cgml_pair_force_num_list_builds.restype = ctypes.c_longlong
    lib.cgml_schnet_force_is.argtypes = [ctypes.c_void_p]
    lib.cgml_schnet_force_set_parameter.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                                    ctypes.POINTER(ctypes.c_double), ctypes.c_int]
    lib.cgml_schnet_force_update_in_context.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.cgml_schnet_force_num_list_builds.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.cgml_schnet_force_num_list_builds.restype = ctypes.c_longlong
    lib.cgml_pair_force_on_device.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.cgml_pair_force_host_reason.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.cgml_pair_force_host_reason.restype = ctypes.c_char_p
    lib.cgml_schnet_simd.restype = ctypes.c_char_p
    lib.cgml_schnet_ssp_float.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    _lib = lib
    if os.environ.get("CGML_DEVICE_KERNELS", "1") != "0":
        _register_devices()
    return lib


def available() -> bool:
    """Whether the compiled pair force can be used here (builds it on the first call)."""
    try:
        load()
    except ConfigurationError:
        return False
    return True


def unavailable_reason() -> str | None:
    return None if available() else _failure


def simd() -> str:
    """The instruction set the compiled network (``CGSchNetForce``) evaluates with in Contexts created now:
    ``"avx2"`` (AVX2 + FMA, where the CPU has them and the plugin was built by GCC for x86-64) or ``"generic"``.
    ``CGML_SIMD`` (``auto``, ``generic``, ``avx2``), read when a Context is created, overrides the choice."""
    name = load().cgml_schnet_simd()
    if name is None:
        _check(-1)
    return name.decode()


def _check(rc: int) -> None:
    if rc != 0:
        raise ConfigurationError(f"compiled pair force: {load().cgml_last_error().decode()}")


def _pointer(obj) -> int:
    return int(obj.this)


def is_pair_force(force) -> bool:
    """Whether ``force`` (an openmm.Force) is a ``CGPairTableForce``."""
    return _lib is not None and bool(_lib.cgml_pair_force_is(_pointer(force)))


def make_pair_force(types: Sequence[int], n_types: int, tables: Mapping[tuple[int, int], np.ndarray],
                    exclusions: np.ndarray, *, cutoff: float, periodic: bool, skin: float = DEFAULT_SKIN,
                    name: str = "CGPairTableForce"):
    """A ``CGPairTableForce`` (an ``openmm.Force``).

    ``types``: each particle's type index; ``tables``: ``{(t1, t2): values}`` on a uniform grid 0 .. cutoff (all
    of one length); type pairs without a table do not interact; ``exclusions``: (n, 2) particle pairs.
    """
    import openmm

    load()
    types = np.asarray(types, dtype=int)
    lengths = {len(v) for v in tables.values()}
    if len(lengths) > 1:
        raise ConfigurationError(f"every table must have the same length, got {sorted(lengths)}")
    parts = [f'<Force type="CGPairTableForce" version="1" forceGroup="0" name={quoteattr(name)} '
             f'cutoff="{cutoff!r}" skin="{skin!r}" periodic="{int(bool(periodic))}" numTypes="{int(n_types)}">',
             "<Particles>", *(f'<Particle t="{t}"/>' for t in types.tolist()), "</Particles>", "<Exclusions>",
             *(f'<Exclusion p1="{a}" p2="{b}"/>' for a, b in np.asarray(exclusions, dtype=int).reshape(-1, 2).tolist()),
             "</Exclusions>", "<Tables>"]
    for (a, b), values in sorted(tables.items()):
        parts.append(f'<Table type1="{int(a)}" type2="{int(b)}">')
        parts.extend(f'<V v="{float(v)!r}"/>' for v in np.asarray(values, dtype=float))
        parts.append("</Table>")
    parts.append("</Tables></Force>")
    try:
        return openmm.XmlSerializer._deserializeForce("\n".join(parts))
    except Exception as exc:
        raise ConfigurationError(f"could not create the compiled pair force: {exc}") from exc


def set_tables(force, tables: Mapping[tuple[int, int], np.ndarray]) -> None:
    """Replace table values in ``force`` (same type pairs and lengths)."""
    lib = load()
    ptr = _pointer(force)
    for (a, b), values in tables.items():
        v = np.ascontiguousarray(values, dtype=np.float64)
        _check(lib.cgml_pair_force_set_table(ptr, int(a), int(b), v.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
                                             len(v)))


def update_in_context(force, context) -> None:
    """Copy ``force``'s tables (or network parameters) into ``context`` without rebuilding it."""
    lib = load()
    if is_schnet_force(force):
        _check(lib.cgml_schnet_force_update_in_context(_pointer(force), _pointer(context)))
    else:
        _check(lib.cgml_pair_force_update_in_context(_pointer(force), _pointer(context)))


def num_list_builds(force, context) -> int:
    """How many times ``force`` (either compiled force) built its Verlet list in ``context`` (a diagnostic)."""
    lib = load()
    count = lib.cgml_schnet_force_num_list_builds if is_schnet_force(force) else lib.cgml_pair_force_num_list_builds
    n = count(_pointer(force), _pointer(context))
    _check(0 if n >= 0 else -1)
    return int(n)


def is_schnet_force(force) -> bool:
    """Whether ``force`` (an openmm.Force) is a ``CGSchNetForce``."""
    return _lib is not None and bool(_lib.cgml_schnet_force_is(_pointer(force)))


def _numbers(values) -> str:
    return " ".join(repr(float(v)) for v in np.asarray(values, dtype=np.float64).reshape(-1))


def make_schnet_force(spec: Mapping, *, periodic: bool, table_spacing: float = 0.001, skin: float = DEFAULT_SKIN,
                      double_precision: bool = False, name: str = "network"):
    """A ``CGSchNetForce`` (an ``openmm.Force``) from ``spec``, what
    :meth:`~openmm_cgml.models.CGSchNet.compiled_parameters` returns: ``architecture`` (num_types, hidden, num_rbf,
    num_interactions, intra_cutoff, inter_cutoff), ``types`` and ``molecules`` per bead, and ``parameters``
    (name: float64 array; the names are listed in ``CGSchNetForce.h``).  ``table_spacing``: nm of the filter
    tables, 0 for the exact filter networks per pair.  ``double_precision``: features, weights and tables in
    float64 (else float32, as PyTorch's float32 models; pair derivatives, energies and forces are summed in double
    either way)."""
    import openmm

    load()
    arch = spec["architecture"]
    if table_spacing < 0 or skin < 0:
        raise ConfigurationError(f"table_spacing and skin must be >= 0 nm, got {table_spacing!r} and {skin!r}")
    types = np.asarray(spec["types"], dtype=int)
    molecules = np.asarray(spec["molecules"], dtype=int)
    if types.shape != molecules.shape:
        raise ConfigurationError(f"types ({types.shape}) and molecules ({molecules.shape}) differ in shape")
    parts = [f'<Force type="CGSchNetForce" version="1" forceGroup="0" name={quoteattr(name)} '
             f'numTypes="{int(arch["num_types"])}" hidden="{int(arch["hidden"])}" numRbf="{int(arch["num_rbf"])}" '
             f'numInteractions="{int(arch["num_interactions"])}" intraCutoff="{float(arch["intra_cutoff"])!r}" '
             f'interCutoff="{float(arch["inter_cutoff"])!r}" tableSpacing="{float(table_spacing)!r}" '
             f'skin="{float(skin)!r}" periodic="{int(bool(periodic))}" double="{int(bool(double_precision))}">',
             "<Particles>", *(f'<Particle t="{t}" m="{m}"/>' for t, m in zip(types.tolist(), molecules.tolist())),
             "</Particles>", "<Parameters>",
             *(f'<P name={quoteattr(key)} v="{_numbers(v)}"/>' for key, v in sorted(spec["parameters"].items())),
             "</Parameters></Force>"]
    try:
        return openmm.XmlSerializer._deserializeForce("\n".join(parts))
    except Exception as exc:
        raise ConfigurationError(f"could not create the compiled network force: {exc}") from exc


def set_schnet_parameters(force, parameters: Mapping[str, np.ndarray]) -> None:
    """Replace named parameters of a ``CGSchNetForce`` (same architecture; :func:`update_in_context` copies them
    into a Context)."""
    lib = load()
    ptr = _pointer(force)
    for key, values in parameters.items():
        v = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
        _check(lib.cgml_schnet_force_set_parameter(ptr, key.encode(), v.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
                                                   len(v)))


if __name__ == "__main__":  # python -m openmm_cgml.forces.compiled [--force]
    try:
        print(build(force="--force" in sys.argv[1:]))
        for _platform, _why in device_kernels().items():
            print(f"{_platform}: " + ("device kernel registered" if _why is None else f"host kernel ({_why})"),
                  file=sys.stderr)
    except ConfigurationError as exc:
        print(exc, file=sys.stderr)
        sys.exit(1)
