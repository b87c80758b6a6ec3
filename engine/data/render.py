"""Render the default body through a synthetic webcam, for running the real MediaPipe on pixels.

OpenGL with the fixed-function pipeline, through PyOpenGL: OSMesa (Mesa's software rasteriser) on
a CPU, EGL on a GPU (`platform="egl"`). No window, no display. One `Renderer` per process, because
the GL platform is chosen when PyOpenGL is first imported (PYOPENGL_PLATFORM).

The camera is engine.data.camera.Camera (OpenCV axes, pixels from the top-left); what the renderer
draws lands exactly where `Camera.project` says (tests/data/test_render.py checks it).
"""
from __future__ import annotations

import importlib
import logging
import os

import numpy as np

from engine.body.skeleton import SMPL_JOINT_NAMES
from engine.data.camera import Camera

# Which SMPL joints each clothing region covers (a vertex belongs to its most-weighted joint).
REGIONS = {
    "skin": ("head", "neck", "left_wrist", "right_wrist", "left_hand", "right_hand"),
    "top": ("spine1", "spine2", "spine3", "left_collar", "right_collar", "left_shoulder",
            "right_shoulder", "left_elbow", "right_elbow"),
    "trousers": ("pelvis", "left_hip", "right_hip", "left_knee", "right_knee"),
    "shoes": ("left_ankle", "right_ankle", "left_foot", "right_foot"),
}
NEAR_M, FAR_M = 0.05, 100.0
# PyOpenGL announces at INFO level that its optional C accelerator is not installed.
logging.getLogger("OpenGL.acceleratesupport").setLevel(logging.WARNING)


def vertex_regions(weights: np.ndarray) -> dict[str, np.ndarray]:
    """(V, 24) skinning weights -> region name -> (V,) bool mask (every vertex in one region)."""
    dominant = weights.argmax(-1)
    return {name: np.isin(dominant, [SMPL_JOINT_NAMES.index(j) for j in joints])
            for name, joints in REGIONS.items()}


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) positions, (F, 3) triangles -> (V, 3) unit area-weighted normals."""
    tri = vertices[faces]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_n)
    return normals / np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)


def projection_matrix(camera: Camera) -> np.ndarray:
    """(4, 4) OpenGL projection of an OpenCV pinhole camera, for eye coordinates with y up and
    the camera looking down -z; image row 0 at the top once the read-back is flipped."""
    K, w, h = camera.K, camera.width, camera.height
    n, f = NEAR_M, FAR_M
    return np.array([
        [2 * K[0, 0] / w, 0.0, 1 - 2 * K[0, 2] / w, 0.0],
        [0.0, 2 * K[1, 1] / h, 2 * K[1, 2] / h - 1, 0.0],
        [0.0, 0.0, -(f + n) / (f - n), -2 * f * n / (f - n)],
        [0.0, 0.0, -1.0, 0.0],
    ])


def modelview_matrix(camera: Camera) -> np.ndarray:
    """(4, 4) world -> OpenGL eye coordinates (OpenCV camera axes with y and z flipped)."""
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = camera.R, camera.t
    return np.diag([1.0, -1.0, -1.0, 1.0]) @ m


class Renderer:
    """An off-screen OpenGL context of a fixed maximum size that draws lit, vertex-coloured meshes.
    Use it as a context manager (or call close()) so that its context is freed.

    platform: "osmesa" (CPU) or "egl" (GPU). Frames are (H, W, 4) uint8 RGBA, C-contiguous, with
    alpha 0 where nothing was drawn, so the caller composites any background behind the body.
    """

    def __init__(self, width: int, height: int, platform: str = "osmesa"):
        current = os.environ.setdefault("PYOPENGL_PLATFORM", platform)
        if current != platform:
            raise RuntimeError(f"PyOpenGL is set up for {current!r}; one platform per process")
        try:
            self.gl = importlib.import_module("OpenGL.GL")
        except (ImportError, AttributeError) as e:  # PyOpenGL's AttributeError: the platform's library is missing
            raise RuntimeError(f"no OpenGL through {platform}: {e} (for osmesa, install Debian's libosmesa6)") from e
        self.width, self.height = width, height
        self._osmesa = None
        if platform == "osmesa":
            self._osmesa = importlib.import_module("OpenGL.osmesa")
            self._ctx = self._osmesa.OSMesaCreateContextExt(self._osmesa.OSMESA_RGBA, 24, 0, 0, None)
            if not self._ctx:
                raise RuntimeError("OSMesa could not create a context (is libosmesa6 installed?)")
            self._buffer = (self.gl.GLubyte * (width * height * 4))()
            self._make_current()
        elif platform == "egl":
            self._make_egl_context(width, height)
        else:
            raise ValueError(f"unknown GL platform {platform!r}; expected osmesa or egl")
        self._setup_state()

    def close(self) -> None:
        """Free the GL context (OSMesa: before its buffer goes; a context left pointing at a freed
        buffer aborts the next one made)."""
        if self._osmesa is not None and self._ctx:
            self._osmesa.OSMesaDestroyContext(self._ctx)
            self._ctx = None

    def __enter__(self) -> "Renderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _make_current(self) -> None:
        """OSMesa: draw into this renderer's buffer (another Renderer may have been current)."""
        if not self._osmesa.OSMesaMakeCurrent(self._ctx, self._buffer, self.gl.GL_UNSIGNED_BYTE,
                                              self.width, self.height):
            raise RuntimeError("OSMesaMakeCurrent failed")

    def _make_egl_context(self, width: int, height: int) -> None:
        egl = importlib.import_module("OpenGL.EGL")
        display = egl.eglGetDisplay(egl.EGL_DEFAULT_DISPLAY)
        egl.eglInitialize(display, None, None)
        attrs = [egl.EGL_SURFACE_TYPE, egl.EGL_PBUFFER_BIT, egl.EGL_RED_SIZE, 8, egl.EGL_GREEN_SIZE, 8,
                 egl.EGL_BLUE_SIZE, 8, egl.EGL_ALPHA_SIZE, 8, egl.EGL_DEPTH_SIZE, 24,
                 egl.EGL_RENDERABLE_TYPE, egl.EGL_OPENGL_BIT, egl.EGL_NONE]
        config, count = egl.EGLConfig(), egl.EGLint()
        egl.eglChooseConfig(display, attrs, config, 1, count)
        surface = egl.eglCreatePbufferSurface(display, config, [egl.EGL_WIDTH, width, egl.EGL_HEIGHT,
                                                                height, egl.EGL_NONE])
        egl.eglBindAPI(egl.EGL_OPENGL_API)
        ctx = egl.eglCreateContext(display, config, egl.EGL_NO_CONTEXT, None)
        if not egl.eglMakeCurrent(display, surface, surface, ctx):
            raise RuntimeError("EGL could not make a context current")

    def _setup_state(self) -> None:
        gl = self.gl
        gl.glEnable(gl.GL_DEPTH_TEST)
        gl.glEnable(gl.GL_LIGHTING)
        gl.glEnable(gl.GL_LIGHT0)
        gl.glEnable(gl.GL_NORMALIZE)
        gl.glEnable(gl.GL_COLOR_MATERIAL)
        gl.glColorMaterial(gl.GL_FRONT_AND_BACK, gl.GL_AMBIENT_AND_DIFFUSE)
        gl.glLightModeli(gl.GL_LIGHT_MODEL_TWO_SIDE, gl.GL_TRUE)
        gl.glShadeModel(gl.GL_SMOOTH)
        gl.glEnableClientState(gl.GL_VERTEX_ARRAY)
        gl.glEnableClientState(gl.GL_NORMAL_ARRAY)
        gl.glEnableClientState(gl.GL_COLOR_ARRAY)

    def render(self, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray, camera: Camera,
               light_dir: np.ndarray = np.array([0.3, 1.0, 0.6]), light: float = 0.8,
               ambient: float = 0.35) -> np.ndarray:
        """Draw one mesh: vertices (V, 3) world metres, faces (F, 3), colors (V, 3) in [0, 1].

        light_dir: direction towards the light, world (directional light, no shadows).
        Returns (camera.height, camera.width, 4) uint8 RGBA, row 0 at the top."""
        gl, w, h = self.gl, camera.width, camera.height
        if w > self.width or h > self.height:
            raise ValueError(f"camera image {w}x{h} is larger than the renderer's {self.width}x{self.height}")
        if self._osmesa is not None:
            self._make_current()
        gl.glViewport(0, 0, w, h)
        gl.glClearColor(0.0, 0.0, 0.0, 0.0)
        gl.glClear(gl.GL_COLOR_BUFFER_BIT | gl.GL_DEPTH_BUFFER_BIT)
        gl.glMatrixMode(gl.GL_PROJECTION)
        gl.glLoadMatrixd(projection_matrix(camera).T)
        gl.glMatrixMode(gl.GL_MODELVIEW)
        gl.glLoadMatrixd(modelview_matrix(camera).T)
        # A directional light given in world coordinates: w = 0, transformed by the modelview.
        gl.glLightfv(gl.GL_LIGHT0, gl.GL_POSITION, [*np.asarray(light_dir, float), 0.0])
        gl.glLightfv(gl.GL_LIGHT0, gl.GL_DIFFUSE, [light, light, light, 1.0])
        gl.glLightModelfv(gl.GL_LIGHT_MODEL_AMBIENT, [ambient, ambient, ambient, 1.0])
        v = np.ascontiguousarray(vertices, np.float32)
        n = np.ascontiguousarray(vertex_normals(np.asarray(vertices, np.float64), faces), np.float32)
        c = np.ascontiguousarray(colors, np.float32)
        gl.glVertexPointer(3, gl.GL_FLOAT, 0, v)
        gl.glNormalPointer(gl.GL_FLOAT, 0, n)
        gl.glColorPointer(3, gl.GL_FLOAT, 0, c)
        gl.glDrawElements(gl.GL_TRIANGLES, faces.size, gl.GL_UNSIGNED_INT,
                          np.ascontiguousarray(faces, np.uint32))
        gl.glFinish()
        pixels = gl.glReadPixels(0, 0, w, h, gl.GL_RGBA, gl.GL_UNSIGNED_BYTE)
        return np.ascontiguousarray(np.frombuffer(pixels, np.uint8).reshape(h, w, 4)[::-1])


def composite(rgba: np.ndarray, background: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 body over (H, W, 3) uint8 background -> (H, W, 3) uint8 RGB, C-contiguous."""
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    out = rgba[..., :3].astype(np.float32) * a + background.astype(np.float32) * (1 - a)
    return np.ascontiguousarray(out.round().astype(np.uint8))
