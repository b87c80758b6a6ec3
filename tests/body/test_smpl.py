"""The real-SMPL path (engine.body.smpl), exercised with synthetic SMPL-format model files.

The files are generated here with the real shapes, so CI needs no SMPL download. smplx is the
reference: our FK on the loaded rest joints must reproduce its joints, and our skinning its vertices
when the model has no pose correctives.
"""
import contextlib
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse
import torch

from engine.body.body_model import procedural_body
from engine.body.kinematics import forward_kinematics, skin
from engine.body.rotations import axis_angle_to_matrix
from engine.body.skeleton import NUM_JOINTS, SMPL_PARENTS
from engine.body.smpl import (SmplModelError, load_smpl_body, model_file_names, read_smpl_file, resolve_smpl_path,
                              smplx_transl)

NUM_VERTICES, NUM_FACES = 6890, 13776
OFFICIAL_NAMES = {
    "neutral": ["basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl"],
    "male": ["basicmodel_m_lbs_10_207_0_v1.1.0.pkl", "basicmodel_m_lbs_10_207_0_v1.0.0.pkl"],
    "female": ["basicmodel_f_lbs_10_207_0_v1.1.0.pkl", "basicModel_f_lbs_10_207_0_v1.0.0.pkl"],
}


def make_model(seed=0, num_vertices=NUM_VERTICES, num_joints=NUM_JOINTS, num_betas=10,
               pose_correctives=True) -> dict:
    """A random SMPL-format model dict, laid out like the official pickles.

    Vertices form a blob around each joint of a 1.7 m procedural skeleton and the J_regressor
    averages each blob, so the rest joints are spread out like a body's.
    """
    rng = np.random.default_rng(seed)
    centres = procedural_body().rest_joints.numpy().astype(np.float64)
    centres = np.resize(centres, (num_joints, 3))  # other models' joint counts, for error tests
    owner = np.arange(num_vertices) % num_joints
    v_template = centres[owner] + 0.04 * rng.standard_normal((num_vertices, 3))
    regressor = np.zeros((num_joints, num_vertices))
    for j in range(num_joints):
        mine = np.flatnonzero(owner == j)[:30]
        regressor[j, mine] = rng.uniform(0.5, 1.0, len(mine))
    regressor /= regressor.sum(1, keepdims=True)
    weights = rng.uniform(0.0, 0.2, (num_vertices, num_joints))
    weights[np.arange(num_vertices), owner] += 1.0
    weights /= weights.sum(1, keepdims=True)
    # float32 halves the biggest array (smplx casts to float32 anyway); zeros cost nothing to make.
    posedirs_shape = (num_vertices, 3, 9 * (num_joints - 1))
    posedirs = (0.002 * rng.standard_normal(posedirs_shape, dtype=np.float32) if pose_correctives
                else np.zeros(posedirs_shape, np.float32))
    kintree = np.array([[4294967295] + list(np.resize(SMPL_PARENTS[1:], num_joints - 1)),
                        range(num_joints)], dtype=np.uint32)
    return {
        "v_template": v_template,
        "f": rng.integers(0, num_vertices, (NUM_FACES, 3)).astype(np.uint32),
        "weights": weights,
        "shapedirs": 0.02 * rng.standard_normal((num_vertices, 3, num_betas)),
        "posedirs": posedirs,
        "J_regressor": scipy.sparse.csc_matrix(regressor),
        "kintree_table": kintree,
        "bs_type": "lrotmin",  # a non-array entry, as in the official files
    }


def write_pickle(path, model, protocol=2):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(model, protocol=protocol))
    return path


@pytest.fixture(scope="module")
def model():
    return make_model()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, model):
    """models/smpl/SMPL_NEUTRAL.pkl, the layout smplx documents."""
    root = tmp_path_factory.mktemp("models")
    write_pickle(root / "smpl" / "SMPL_NEUTRAL.pkl", model)
    return root


@pytest.fixture
def smplx():
    """The optional smplx package; the tests that need it skip without it."""
    return pytest.importorskip("smplx")


def reference_smplx(smplx, model, num_betas=10):
    """smplx built straight from the model dict: the reference our loader must agree with."""
    data = {k: v for k, v in model.items() if k != "bs_type"}
    data["kintree_table"] = data["kintree_table"].astype(np.int64)
    return smplx.SMPL(model_path="", data_struct=smplx.utils.Struct(**data), num_betas=num_betas)


def random_pose(batch, seed):
    """(batch, 24, 3) axis-angle, up to about 1.7 rad per joint."""
    return torch.randn(batch, NUM_JOINTS, 3, generator=torch.Generator().manual_seed(seed)) * 0.6


def smplx_forward(ref, betas, pose, transl=None):
    flat = pose.reshape(len(pose), -1)
    with torch.no_grad():
        return ref(betas=betas[None].expand(len(pose), -1), global_orient=flat[:, :3],
                   body_pose=flat[:, 3:], transl=transl)


# --- agreement with smplx -------------------------------------------------------------------------

def test_fk_on_loaded_rest_joints_matches_smplx(smplx, model, model_dir):
    betas = torch.randn(10, generator=torch.Generator().manual_seed(1))
    body = load_smpl_body(model_dir, betas=betas)
    pose = random_pose(8, seed=2)
    expected = smplx_forward(reference_smplx(smplx, model), betas, pose).joints[:, :NUM_JOINTS]
    joints, _ = forward_kinematics(axis_angle_to_matrix(pose), body.rest_joints, body.parents,
                                   root_position=expected[:, 0])
    torch.testing.assert_close(joints, expected, atol=1e-5, rtol=0)
    # The shape really moved the joints, so the betas reached smplx.
    assert (body.rest_joints - load_smpl_body(model_dir).rest_joints).abs().max() > 1e-3


def test_smplx_transl_places_the_pelvis_at_root_position(smplx, model, model_dir):
    betas = torch.randn(10, generator=torch.Generator().manual_seed(3))
    body = load_smpl_body(model_dir, betas=betas)
    pose = random_pose(8, seed=4)
    root_position = torch.randn(8, 3, generator=torch.Generator().manual_seed(5))
    transl = smplx_transl(root_position, body)
    out = smplx_forward(reference_smplx(smplx, model), betas, pose, transl=transl)
    joints, _ = forward_kinematics(axis_angle_to_matrix(pose), body.rest_joints, body.parents,
                                   root_position=root_position)
    torch.testing.assert_close(joints, out.joints[:, :NUM_JOINTS], atol=1e-5, rtol=0)
    torch.testing.assert_close(smplx_transl(root_position.numpy(), body),
                               root_position - body.rest_joints[0])


def test_skinning_matches_smplx_vertices_without_pose_correctives(smplx, tmp_path):
    model = make_model(seed=6, pose_correctives=False)
    path = write_pickle(tmp_path / "SMPL_NEUTRAL.pkl", model)
    betas = torch.randn(10, generator=torch.Generator().manual_seed(7))
    body = load_smpl_body(path, betas=betas)
    pose = random_pose(4, seed=8)
    out = smplx_forward(reference_smplx(smplx, model), betas, pose)
    joints, world_rot = forward_kinematics(axis_angle_to_matrix(pose), body.rest_joints,
                                           body.parents, root_position=out.joints[:, 0])
    vertices = skin(body.vertices, body.weights, body.rest_joints, joints, world_rot)
    torch.testing.assert_close(vertices, out.vertices, atol=1e-5, rtol=0)


def test_body_fields(smplx, model, model_dir):
    body = load_smpl_body(model_dir)
    ref = reference_smplx(smplx, model)
    assert body.kind == "smpl"
    assert body.source == str(model_dir / "smpl" / "SMPL_NEUTRAL.pkl")
    assert body.rest_joints.shape == (NUM_JOINTS, 3) and body.rest_joints.dtype == torch.float32
    assert body.vertices.shape == (NUM_VERTICES, 3) and body.vertices.dtype == torch.float32
    assert body.weights.shape == (NUM_VERTICES, NUM_JOINTS) and body.weights.dtype == torch.float32
    assert body.faces.dtype == torch.int64
    np.testing.assert_array_equal(body.faces.numpy(), model["f"])
    torch.testing.assert_close(body.vertices, ref.v_template)  # mean shape: the template itself
    torch.testing.assert_close(body.rest_joints, torch.from_numpy(
        model["J_regressor"].toarray() @ model["v_template"]).float())
    y = model["v_template"][:, 1]
    assert body.stature == pytest.approx(y.max() - y.min(), abs=1e-5)
    assert body.parents == SMPL_PARENTS


# --- file formats ---------------------------------------------------------------------------------

@contextlib.contextmanager
def fake_chumpy():
    """Classes that pickle as chumpy.ch.Ch and chumpy.reordering.Select, importable only inside."""
    modules = {n: types.ModuleType(n) for n in ("chumpy", "chumpy.ch", "chumpy.reordering")}

    class Ch:
        def __init__(self, x):
            # The attribute dict chumpy pickles for a plain Ch (its caches are dropped).
            self.__dict__.update(x=np.asarray(x, np.float64), _dirty_vars=set(), _itr=None,
                                 _depends_on_deps={}, _make_dense=False, _make_sparse=False)

    class Select:
        def __init__(self, a, idxs, preferred_shape):
            self.__dict__.update(a=a, idxs=idxs, preferred_shape=preferred_shape, _dirty_vars=set())

    for cls, module in ((Ch, "chumpy.ch"), (Select, "chumpy.reordering")):
        cls.__module__, cls.__qualname__ = module, cls.__name__
        setattr(modules[module], cls.__name__, cls)
    sys.modules.update(modules)
    try:
        yield Ch, Select
    finally:
        for name in modules:
            del sys.modules[name]


def chumpy_pickle_bytes(model) -> bytes:
    """The model as the official files store it: chumpy arrays, protocol 2, old SciPy modules."""
    with fake_chumpy() as (Ch, Select):
        reversed_flat = model["posedirs"].ravel()[::-1]  # Select must undo a real reordering
        idxs = np.arange(reversed_flat.size)[::-1]
        wrapped = dict(model, v_template=Ch(model["v_template"]), weights=Ch(model["weights"]),
                       shapedirs=Ch(model["shapedirs"]),
                       posedirs=Select(Ch(reversed_flat), idxs, model["posedirs"].shape))
        data = pickle.dumps(wrapped, protocol=2)
    assert b"chumpy.ch\nCh" in data and b"chumpy.reordering\nSelect" in data
    # SciPy < 1.8 pickled sparse matrices from scipy.sparse.csc, which SciPy 2 removes.
    assert data.count(b"scipy.sparse._csc\n") == 1
    return data.replace(b"scipy.sparse._csc\n", b"scipy.sparse.csc\n")


def assert_same_arrays(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-7, err_msg=key)


@pytest.mark.filterwarnings("error::DeprecationWarning")
def test_chumpy_pickle_loads_without_chumpy(tmp_path, monkeypatch, model):
    path = tmp_path / "basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl"
    path.write_bytes(chumpy_pickle_bytes(model))
    monkeypatch.setitem(sys.modules, "chumpy", None)  # any import of chumpy would now fail
    with pytest.raises(ImportError):
        pickle.loads(path.read_bytes())
    plain = read_smpl_file(write_pickle(tmp_path / "SMPL_NEUTRAL.pkl", model))
    assert_same_arrays(read_smpl_file(path), plain)


def test_read_gives_dense_numpy_arrays_with_a_root_parent_of_minus_one(model_dir):
    arrays = read_smpl_file(model_dir / "smpl" / "SMPL_NEUTRAL.pkl")
    assert set(arrays) == {"v_template", "f", "weights", "shapedirs", "posedirs", "J_regressor",
                           "kintree_table"}
    assert all(type(a) is np.ndarray for a in arrays.values())
    assert arrays["J_regressor"].shape == (NUM_JOINTS, NUM_VERTICES)
    assert tuple(arrays["kintree_table"][0]) == (-1,) + SMPL_PARENTS[1:]


def test_npz_with_sparse_regressor_reads_like_the_pickle(tmp_path, model, model_dir):
    path = tmp_path / "SMPL_NEUTRAL.npz"
    np.savez(path, **model)  # stores the sparse J_regressor as a 0-d object array
    pkl = model_dir / "smpl" / "SMPL_NEUTRAL.pkl"
    assert_same_arrays(read_smpl_file(path), read_smpl_file(pkl))
    pytest.importorskip("smplx")
    torch.testing.assert_close(load_smpl_body(path).vertices, load_smpl_body(pkl).vertices)
    torch.testing.assert_close(load_smpl_body(path).rest_joints, load_smpl_body(pkl).rest_joints)


# --- finding the file -----------------------------------------------------------------------------

OFFICIAL = [name for names in OFFICIAL_NAMES.values() for name in names]
LAYOUTS = [("smpl", "SMPL_NEUTRAL.pkl"), ("", "SMPL_NEUTRAL.pkl"), ("", "SMPL_NEUTRAL.npz"),
           ("", "smpl_neutral.pkl")]
LAYOUTS += [(folder, name) for folder in ("", "smpl") for name in OFFICIAL]


@pytest.mark.parametrize("folder, name", LAYOUTS)
def test_folder_layouts(tmp_path, folder, name):
    gender = next((g for g, names in OFFICIAL_NAMES.items() if name in names), "neutral")
    target = tmp_path / folder / name
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(b"")
    (tmp_path / "notes.txt").write_text("other files are ignored")
    assert resolve_smpl_path(tmp_path, gender) == target
    assert resolve_smpl_path(target, gender) == target  # a direct file


def test_gender_selects_its_file(tmp_path):
    files = {g: write_pickle(tmp_path / "smpl" / f"SMPL_{g.upper()}.pkl", make_model(seed=i))
             for i, g in enumerate(("neutral", "male", "female"))}
    for gender, path in files.items():
        assert resolve_smpl_path(tmp_path, gender) == path
        assert resolve_smpl_path(tmp_path, gender.upper()) == path
    pytest.importorskip("smplx")
    male, female = load_smpl_body(tmp_path, "male"), load_smpl_body(tmp_path, gender="female")
    assert male.source == str(files["male"]) and female.source == str(files["female"])
    assert (male.rest_joints - female.rest_joints).abs().max() > 1e-3


def test_file_names_prefer_smplx_names_then_official_ones():
    assert model_file_names("female") == ("SMPL_FEMALE.pkl", "SMPL_FEMALE.npz",
                                          "basicmodel_f_lbs_10_207_0_v1.1.0.pkl",
                                          "basicModel_f_lbs_10_207_0_v1.0.0.pkl")


# --- errors ---------------------------------------------------------------------------------------

def test_missing_path_says_what_was_looked_for(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(SmplModelError) as e:
        resolve_smpl_path(missing)
    for part in (str(missing), "smpl/SMPL_NEUTRAL.pkl", OFFICIAL_NAMES["neutral"][0]):
        assert part in str(e.value)


def test_folder_without_the_gender_lists_what_is_there(tmp_path):
    write_pickle(tmp_path / "smpl" / "SMPL_NEUTRAL.pkl", {})
    write_pickle(tmp_path / "SMPLX_MALE.pkl", {})
    with pytest.raises(SmplModelError) as e:
        resolve_smpl_path(tmp_path, "male")
    message = str(e.value)
    for part in ("no male SMPL model", str(tmp_path), "smpl/SMPL_NEUTRAL.pkl", "SMPLX_MALE.pkl",
                 "SMPL_MALE.pkl", "basicmodel_m_lbs_10_207_0_v1.1.0.pkl"):
        assert part in message


def test_empty_folder(tmp_path):
    with pytest.raises(SmplModelError, match=r"found: no \.pkl or \.npz files"):
        resolve_smpl_path(tmp_path)


def test_unknown_gender():
    with pytest.raises(SmplModelError, match="gender must be one of neutral, male, female"):
        model_file_names("other")


def test_missing_smplx_says_how_to_install(monkeypatch, model_dir):
    monkeypatch.setitem(sys.modules, "smplx", None)
    with pytest.raises(SmplModelError, match=r"pip install 'genmo-live\[smpl\]'"):
        load_smpl_body(model_dir)


@pytest.mark.parametrize("content, message", [
    (b"\x80\x02garbage", "could not read SMPL model"),
    (pickle.dumps([1, 2, 3]), "does not hold a SMPL model"),
])
def test_unreadable_file(tmp_path, content, message):
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    path.write_bytes(content)
    with pytest.raises(SmplModelError, match=message) as e:
        read_smpl_file(path)
    assert str(path) in str(e.value)


def test_not_a_model_file(tmp_path):
    path = tmp_path / "model.txt"
    path.write_text("hello")
    with pytest.raises(SmplModelError, match=r"expected a \.pkl or \.npz"):
        read_smpl_file(path)


def corrupt(model, key, value):
    """The model with `key` replaced by `value`, or removed when value is None."""
    out = {k: v for k, v in model.items() if k != key}
    return out if value is None else dict(out, **{key: value})


@pytest.mark.parametrize("key, value, message", [
    ("shapedirs", None, "no 'shapedirs' array"),
    ("weights", np.ones((NUM_VERTICES, 23)) / 23, r"'weights' has shape \(6890, 23\), expected "
                                                  r"\(6890, 24\)"),
    ("posedirs", np.zeros((NUM_VERTICES, 3, 10)), r"'posedirs' has shape .* \(6890, 3, 207\)"),
    ("f", np.full((NUM_FACES, 3), NUM_VERTICES), "'f' indexes vertices outside"),
    ("kintree_table", np.array([[4294967295] + [0] * 23, range(24)], np.uint32), "'kintree_table'"),
    ("v_template", np.array(["a", "b"]), "'v_template' is not a numeric array"),
])
def test_wrong_arrays_name_the_key(tmp_path, model, key, value, message):
    path = write_pickle(tmp_path / "SMPL_NEUTRAL.pkl", corrupt(model, key, value))
    with pytest.raises(SmplModelError, match=message):
        read_smpl_file(path)


@pytest.mark.parametrize("num_vertices, num_joints, name", [
    (10475, 55, "SMPL-X"), (NUM_VERTICES, 52, "SMPL-H"), (778, 16, "MANO")])
def test_other_body_models_are_named(tmp_path, num_vertices, num_joints, name):
    model = make_model(num_vertices=num_vertices, num_joints=num_joints, pose_correctives=False)
    path = write_pickle(tmp_path / f"{name}.pkl", model)
    with pytest.raises(SmplModelError, match=f"looks like a {name} model"):
        read_smpl_file(path)


def test_too_many_betas(smplx, model_dir):
    with pytest.raises(SmplModelError, match="betas has 11 values but .* only 10 usable"):
        load_smpl_body(model_dir, betas=np.zeros(11))
    with pytest.raises(SmplModelError, match="one shape vector"):
        load_smpl_body(model_dir, betas=np.zeros((1, 10)))


def test_fewer_betas_than_components_is_fine(smplx, model_dir):
    betas = torch.tensor([0.5, -1.0, 2.0])
    body = load_smpl_body(model_dir, betas=betas)
    expected = load_smpl_body(model_dir, betas=torch.cat([betas, torch.zeros(7)]))
    torch.testing.assert_close(body.rest_joints, expected.rest_joints)


class _RunsCode:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    path.write_bytes(pickle.dumps({"v_template": _RunsCode()}, protocol=2))
    with pytest.raises(SmplModelError, match=r"refusing to load (posix|os)\.system"):
        read_smpl_file(path)


def test_config_selects_the_smpl_body_and_info_reports_it(smplx, model_dir):
    from clients.cli.export import info_report
    from configs.config import load_config

    cfg = load_config(overrides={"body.model": "smpl", "body.smpl_path": str(model_dir),
                                 "body.betas": [0.5, -0.2]})
    body = info_report(cfg)["body"]
    assert body["model"] == "smpl" and body["joints"] == 24 and body["vertices"] == 6890
    assert body["source"].endswith("SMPL_NEUTRAL.pkl")
