"""The user's own SMPL model as a `Body` (the optional real-SMPL path).

Licence: the smplx package's code is under MPI's non-commercial licence, so it is an optional extra
(`pip install 'genmo-live[smpl]'`) imported only inside `load_smpl_body`, never on the default path,
and the SMPL model files always come from the user (registration at smpl.is.tue.mpg.de).

Model files are read without chumpy (the official pickles hold chumpy objects, and chumpy no longer
imports on current Python and numpy) and handed to `smplx.SMPL` as a data struct, which sidesteps
both smplx's file-naming rules and its plain `pickle.load`. See ../shared/design/BODY.md §3.
"""
from __future__ import annotations

import functools
import pickle
from pathlib import Path

import numpy as np
import scipy.sparse
import torch

from engine.body.body_model import Body
from engine.body.skeleton import NUM_JOINTS, SMPL_PARENTS

GENDERS = ("neutral", "male", "female")
NUM_VERTICES = 6890
NUM_POSE_BASIS = 9 * (NUM_JOINTS - 1)  # one 3×3 rotation per non-root joint

INSTALL_HINT = "install the optional extra: pip install 'genmo-live[smpl]'"

# Names of the official downloads, which users often keep instead of renaming to SMPL_*.pkl.
# v1.0.0 shipped only male and female; its neutral model came with SMPLify.
_OFFICIAL_NAMES = {
    "neutral": ("basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl",
                "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl"),
    "male": ("basicmodel_m_lbs_10_207_0_v1.1.0.pkl", "basicmodel_m_lbs_10_207_0_v1.0.0.pkl"),
    "female": ("basicmodel_f_lbs_10_207_0_v1.1.0.pkl", "basicModel_f_lbs_10_207_0_v1.0.0.pkl"),
}

# The other MPI body models, by vertex count and by joint count, to name the mix-up when one of
# them is given instead of SMPL (SMPL-H shares SMPL's mesh, so only its joints tell it apart).
_OTHER_MODELS_BY_VERTICES = {10475: "SMPL-X", 778: "MANO", 5023: "FLAME"}
_OTHER_MODELS_BY_JOINTS = {52: "SMPL-H", 55: "SMPL-X", 16: "MANO"}

# Arrays a SMPL file must hold, with the dtype we hand to smplx.
_REQUIRED = {
    "v_template": np.float32, "f": np.int64, "weights": np.float32, "shapedirs": np.float32,
    "posedirs": np.float32, "J_regressor": np.float32, "kintree_table": np.int64,
}

# smplx keeps at most this many shape components of a file that lacks its full 300.
_SMPLX_SHORT_FILE_BETAS = 10
_SMPLX_FULL_SHAPE_SPACE = 300


class SmplModelError(Exception):
    """A SMPL model cannot be found, read or used; the message says what to do about it."""


# --- finding the file -----------------------------------------------------------------------------

def model_file_names(gender: str = "neutral") -> tuple[str, ...]:
    """File names accepted for `gender` inside a model folder, in order of preference."""
    gender = _check_gender(gender)
    return (f"SMPL_{gender.upper()}.pkl", f"SMPL_{gender.upper()}.npz") + _OFFICIAL_NAMES[gender]


def resolve_smpl_path(path: Path | str, gender: str = "neutral") -> Path:
    """The SMPL model file that `path` designates.

    path: a model file (.pkl or .npz, used whatever its gender), or a folder holding the model for
    `gender` either in an `smpl/` sub-folder or directly, under one of `model_file_names(gender)`
    (compared case-insensitively).
    """
    gender = _check_gender(gender)
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if not path.exists():
        raise SmplModelError(f"SMPL model not found: {path} does not exist. "
                             f"{_expected_layouts(gender)}")
    folders = [f for f in (path / "smpl", path) if f.is_dir()]
    for folder in folders:
        files = {p.name.lower(): p for p in sorted(folder.iterdir()) if p.is_file()}
        for name in model_file_names(gender):
            if name.lower() in files:
                return files[name.lower()]
    present = sorted(str(p.relative_to(path)) for f in folders for p in f.iterdir()
                     if p.suffix.lower() in (".pkl", ".npz"))
    found = ", ".join(present) or "no .pkl or .npz files"
    raise SmplModelError(f"no {gender} SMPL model in {path} (found: {found}). "
                         f"{_expected_layouts(gender)}")


def _check_gender(gender: str) -> str:
    if not isinstance(gender, str) or gender.lower() not in GENDERS:
        raise SmplModelError(f"gender must be one of {', '.join(GENDERS)}, got {gender!r}")
    return gender.lower()


def _expected_layouts(gender: str) -> str:
    names = model_file_names(gender)
    return (f"Expected a .pkl/.npz model file, or a folder holding smpl/{names[0]}, {names[0]}, or "
            f"the official download {' or '.join(names[2:])}.")


# --- reading it without chumpy --------------------------------------------------------------------

class _ChumpyObject:
    """Stands in for a chumpy class while unpickling, keeping the pickled state.

    chumpy pickles an object's attribute dict. A plain `Ch` keeps its array under 'x'; a `Select`
    keeps its input under 'a' and picks `a.ravel()[idxs]`, reshaped to 'preferred_shape' if given.
    """

    chumpy_class = "chumpy"

    def __setstate__(self, state: dict):
        self.state = state

    def array(self) -> np.ndarray:
        s = self.state
        if "x" in s:
            return _to_numpy(s["x"])
        if "a" in s and "idxs" in s:
            picked = _to_numpy(s["a"]).ravel()[np.asarray(s["idxs"])]
            return picked.reshape(s["preferred_shape"]) if "preferred_shape" in s else picked
        raise SmplModelError(f"cannot convert a {self.chumpy_class} object without chumpy; convert "
                             "the file to plain numpy arrays (smplx's tools/clean_ch.py)")


@functools.lru_cache(maxsize=None)
def _chumpy_stub(qualified_name: str) -> type:
    name = qualified_name.rsplit(".", 1)[-1]
    return type(name, (_ChumpyObject,), {"chumpy_class": qualified_name})


# What a SMPL pickle may name besides chumpy and scipy.sparse matrices: numpy arrays and the
# helpers Python 2's protocol-2 pickles use to rebuild plain objects. Anything else is refused, so a
# model file cannot run code when it is loaded.
_SAFE_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("copyreg", "_reconstructor"), ("_codecs", "encode"),
    ("builtins", "object"), ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice"),
}
# Python 2 spelled two of those modules differently; the base class maps the names on loading.
_SAFE_GLOBALS |= {({"copyreg": "copy_reg", "builtins": "__builtin__"}.get(m, m), n)
                  for m, n in _SAFE_GLOBALS}


class _ChumpyFreeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module == "chumpy" or module.startswith("chumpy."):
            return _chumpy_stub(f"{module}.{name}")
        # Old pickles name private SciPy modules (scipy.sparse.csc), deprecated and gone in SciPy 2.
        if module.startswith("scipy.sparse") and name.endswith(("_matrix", "_array")) \
                and hasattr(scipy.sparse, name):
            return getattr(scipy.sparse, name)
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a SMPL model file holds "
                                     "only numpy arrays, scipy sparse matrices and chumpy objects")


def _to_numpy(value) -> np.ndarray:
    """A chumpy stand-in, a scipy.sparse matrix or anything array-like -> a dense numpy array."""
    if isinstance(value, _ChumpyObject):
        return value.array()
    if scipy.sparse.issparse(value):
        return value.toarray()
    return np.asarray(value)


def _read_pickle(path: Path):
    with open(path, "rb") as f:
        # latin1: the official files were pickled by Python 2, numpy arrays included.
        return _ChumpyFreeUnpickler(f, encoding="latin1").load()


def _read_npz(path: Path) -> dict:
    # np.savez of a SMPL dict stores a sparse J_regressor as a 0-d object array, hence allow_pickle.
    with np.load(path, allow_pickle=True) as data:
        return {k: data[k].item() if data[k].dtype == object and data[k].ndim == 0 else data[k]
                for k in data.files}


def read_smpl_file(path: Path | str) -> dict[str, np.ndarray]:
    """Read and check a SMPL model file (.pkl, chumpy or not, or .npz) without chumpy.

    Returns plain numpy arrays: v_template (6890, 3) float32 metres, f (F, 3) int64,
    weights (6890, 24) float32, shapedirs (6890, 3, K) float32, posedirs (6890, 3, 207) float32,
    J_regressor (24, 6890) float32 (dense), kintree_table (2, 24) int64 with [0, 0] = -1 (root).
    Other keys in the file are dropped.
    """
    path = Path(path)
    if path.suffix.lower() not in (".pkl", ".npz"):
        raise SmplModelError(f"{path} is not a SMPL model file: expected a .pkl or .npz file")
    try:
        raw = _read_npz(path) if path.suffix.lower() == ".npz" else _read_pickle(path)
    except SmplModelError:
        raise
    except Exception as e:  # unpickling has no closed set of failures (see the pickle docs)
        raise SmplModelError(f"could not read SMPL model {path}: {type(e).__name__}: {e}") from e
    if not isinstance(raw, dict):
        raise SmplModelError(f"{path} does not hold a SMPL model (a dict of arrays) but a "
                             f"{type(raw).__name__}")
    arrays = {key: _required_array(raw, key, dtype, path) for key, dtype in _REQUIRED.items()}
    _check_model(arrays, path)
    # Stored as uint32 4294967295 (-1 wrapped) in the official files: the root has no parent.
    arrays["kintree_table"][0, 0] = -1
    return arrays


def _required_array(raw: dict, key: str, dtype, path: Path) -> np.ndarray:
    if key not in raw:
        raise SmplModelError(f"{path} has no {key!r} array, so it is not a SMPL model file "
                             f"(keys: {', '.join(sorted(map(str, raw)))})")
    try:
        return np.array(_to_numpy(raw[key]), dtype=dtype)
    except (TypeError, ValueError) as e:
        raise SmplModelError(f"{path}: {key!r} is not a numeric array ({e})") from e


def _check_model(a: dict[str, np.ndarray], path: Path) -> None:
    """Raise SmplModelError naming the first array that does not fit SMPL."""
    num_vertices = a["v_template"].shape[0] if a["v_template"].ndim else 0
    num_joints = a["J_regressor"].shape[0] if a["J_regressor"].ndim else 0
    counts = ((num_vertices, NUM_VERTICES, _OTHER_MODELS_BY_VERTICES, "vertices"),
              (num_joints, NUM_JOINTS, _OTHER_MODELS_BY_JOINTS, "joints"))
    for count, expected, others, what in counts:
        if count != expected:
            hint = f": it looks like a {others[count]} model" if count in others else ""
            raise SmplModelError(f"{path} has {count} {what} where SMPL has {expected}{hint}; "
                                 "give the SMPL model file (SMPL_NEUTRAL.pkl or basicmodel_*.pkl)")
    expected_shapes = {
        "v_template": (NUM_VERTICES, 3), "f": (None, 3), "weights": (NUM_VERTICES, NUM_JOINTS),
        "shapedirs": (NUM_VERTICES, 3, None), "posedirs": (NUM_VERTICES, 3, NUM_POSE_BASIS),
        "J_regressor": (NUM_JOINTS, NUM_VERTICES), "kintree_table": (2, NUM_JOINTS),
    }
    for key, shape in expected_shapes.items():
        actual = a[key].shape
        if len(actual) != len(shape) or any(e not in (None, n) for e, n in zip(shape, actual)):
            wanted = "(" + ", ".join("N" if e is None else str(e) for e in shape) + ")"
            raise SmplModelError(f"{path}: {key!r} has shape {actual}, expected {wanted}")
    if a["f"].size and (a["f"].min() < 0 or a["f"].max() >= NUM_VERTICES):
        raise SmplModelError(f"{path}: 'f' indexes vertices outside 0..{NUM_VERTICES - 1}")
    if tuple(a["kintree_table"][0, 1:]) != SMPL_PARENTS[1:]:
        raise SmplModelError(f"{path}: 'kintree_table' does not hold SMPL's 24-joint tree")


# --- building the body ----------------------------------------------------------------------------

def _import_smplx():
    try:
        import smplx
    except ImportError as e:
        raise SmplModelError(f"loading a SMPL model needs the smplx package; {INSTALL_HINT}") from e
    return smplx


def _usable_shape_components(file_components: int) -> int:
    """How many of a file's shape components smplx lets us use (SMPL v1.0.0 has 10, v1.1.0 300)."""
    if file_components < _SMPLX_FULL_SHAPE_SPACE:
        return min(file_components, _SMPLX_SHORT_FILE_BETAS)
    return _SMPLX_FULL_SHAPE_SPACE


def _check_betas(betas, usable: int, path: Path) -> np.ndarray:
    betas = np.zeros(usable, np.float32) if betas is None else np.asarray(betas, dtype=np.float32)
    if betas.ndim != 1:
        raise SmplModelError(f"betas must be one shape vector (K,), got shape {betas.shape}")
    if len(betas) > usable:
        raise SmplModelError(f"betas has {len(betas)} values but {path} has only {usable} usable "
                             "shape components")
    return betas


def load_smpl_body(path: Path | str, gender: str = "neutral", betas=None) -> Body:
    """The user's SMPL model, shaped by `betas`, as a `Body` in its rest T-pose.

    path: see `resolve_smpl_path`. gender: "neutral", "male" or "female" (ignored for a file).
    betas: (K,) shape coefficients, K at most the model's shape components (10 or 300); None: mean.
    Returns Body(kind="smpl") with rest_joints (24, 3) = J_regressor @ v_shaped exactly as smplx
    computes them, vertices = v_shaped (6890, 3) metres, faces (13776, 3), weights (6890, 24),
    stature = the rest mesh's height. `engine.body.kinematics.forward_kinematics` on these rest joints
    gives smplx's `joints[:, :24]` for any pose, with root_position = smplx's pelvis (see
    `smplx_transl`).

    Skinning this body (engine.body.kinematics.skin) is plain LBS, without SMPL's learned pose blend
    shapes (posedirs): the default path never uses them (BODY.md §3.4), and every body shares one
    skinning path. Joints are unaffected; posed vertices differ from smplx's by those correctives.
    """
    gender = _check_gender(gender)
    smplx = _import_smplx()
    file = resolve_smpl_path(path, gender)
    arrays = read_smpl_file(file)
    betas = _check_betas(betas, _usable_shape_components(arrays["shapedirs"].shape[2]), file)
    model = smplx.SMPL(model_path="", data_struct=smplx.utils.Struct(**arrays), gender=gender,
                       num_betas=len(betas))
    with torch.no_grad():
        v_shaped = model.forward_shape(betas=torch.from_numpy(betas)[None]).v_shaped
        rest_joints = smplx.lbs.vertices2joints(model.J_regressor, v_shaped)
    vertices = v_shaped[0].contiguous()
    return Body(
        kind="smpl",
        rest_joints=rest_joints[0].contiguous(),
        stature=float(vertices[:, 1].max() - vertices[:, 1].min()),
        source=str(file),
        vertices=vertices,
        faces=torch.from_numpy(arrays["f"]),
        weights=torch.from_numpy(arrays["weights"]),
    )


def smplx_transl(root_position, body: Body) -> torch.Tensor:
    """smplx's `transl` that puts the pelvis of `body` at `root_position`.

    root_position: (..., 3) pelvis world position, metres (our pose convention, engine.body.kinematics).
    smplx poses the body about its shaped rest pelvis and adds `transl` afterwards, so
    transl = root_position - rest pelvis. Returns (..., 3) float32 metres.
    """
    return torch.as_tensor(root_position, dtype=body.rest_joints.dtype) - body.rest_joints[0]
