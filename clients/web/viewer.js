// The genmo-live viewer: the pose stream of clients/ws.py drawn on the body from /body.json.
// Each binary pose frame (layout: clients/ws.py) is posed by forward kinematics on the rest joints
// and skinned on the CPU (linear blend skinning, four joints per vertex), then drawn with three.js.
// A VRM avatar (`--avatar FILE.vrm`, or a .vrm dropped on the page) replaces the body: three-vrm
// loads it and the frame's rotations drive its normalized humanoid bones.

import {
  BufferAttribute, BufferGeometry, Clock, Color, DirectionalLight, DynamicDrawUsage, HemisphereLight, Line,
  LineBasicMaterial, LineSegments, Mesh, MeshLambertMaterial, OrbitControls, PerspectiveCamera, Scene, Vector3,
  WebGLRenderer,
} from './vendor/three.module.min.js';
import {GLTFLoader, VRMLoaderPlugin, VRMUtils} from './vendor/three-vrm.module.min.js';

const BODY_COLOR = 0xe0783c;        // orange: tests/test_ws_viewer.py looks for it in a screenshot
const TRAIL_COLOR = 0x3cc8e0;
const TRAIL_SECONDS = 5;
const SOURCES = ['estimated', 'generated', 'blended'];
const BINARY = {magic: 'GMLV', floatsOffset: 40, floats: 3 + 24 * 4 + 24 * 3 + 6};

const params = new URLSearchParams(location.search);
const token = params.get('token');
const tokenQuery = token ? `?token=${encodeURIComponent(token)}` : '';
const ui = Object.fromEntries(['scene', 'badge', 'stats', 'status', 'prompt-form', 'prompt', 'prompt-status',
  'preview', 'preview-canvas', 'preview-state', 'limbs', 'avatar'].map(id => [id, document.getElementById(id)]));

// What the page has seen, for a person debugging it and for the tests (read over DevTools).
const viewer = window.viewer = {
  frames: 0, frameId: null, source: null, fps: 0, latencyMs: null, fkErrorMm: null, prompt: null,
  preview: null,  // with the camera preview on: {frames, frameId, width, height, state}
  restPelvisHeight: null,  // the stream's rest skeleton (the hello), which the avatar is scaled against
  avatar: null,  // with an avatar: {name, version ('0' or '1'), bones (humanoid bones driven), hipHeight}
  avatarError: null,  // why the last avatar file was refused
  shownFrameId: null,  // the frame the body or avatar shows now
};

function setStatus(text, isError = false) {
  ui.status.textContent = text;
  ui.status.className = isError ? 'error' : '';
  console.log('genmo-live viewer: ' + text);
}

async function fetchJson(path) {
  const response = await fetch(path + tokenQuery);
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status} ${await response.text()}`);
  return response.json();
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

// --- Pose maths. Quaternions are [w, x, y, z], as in the pose frames. ------------------------

function quatMultiply(a, b) {
  return [
    a[0] * b[0] - a[1] * b[1] - a[2] * b[2] - a[3] * b[3],
    a[0] * b[1] + a[1] * b[0] + a[2] * b[3] - a[3] * b[2],
    a[0] * b[2] - a[1] * b[3] + a[2] * b[0] + a[3] * b[1],
    a[0] * b[3] + a[1] * b[2] - a[2] * b[1] + a[3] * b[0],
  ];
}

function quatConjugate([w, x, y, z]) {
  return [w, -x, -y, -z];
}

// The 3x3 rotation matrix of a unit quaternion, row-major.
function quatToMatrix([w, x, y, z]) {
  return [
    1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
    2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
    2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
  ];
}

function rotate(m, v) {
  return [m[0] * v[0] + m[1] * v[1] + m[2] * v[2], m[3] * v[0] + m[4] * v[1] + m[5] * v[2],
          m[6] * v[0] + m[7] * v[1] + m[8] * v[2]];
}

// Forward kinematics: each joint's world rotation (3x3) and position (metres) from the frame's
// local rotations (joint 0: the pelvis in the world) and pelvis position, on the rest skeleton.
function forwardKinematics(body, quat, root) {
  const rotations = [], positions = [];
  for (let j = 0; j < body.parents.length; j++) {
    const local = [quat[4 * j], quat[4 * j + 1], quat[4 * j + 2], quat[4 * j + 3]];
    const p = body.parents[j];
    if (p < 0) {
      rotations.push(local);
      positions.push([root[0], root[1], root[2]]);
      continue;
    }
    const offset = [0, 1, 2].map(k => body.rest[3 * j + k] - body.rest[3 * p + k]);
    const step = rotate(quatToMatrix(rotations[p]), offset);
    rotations.push(quatMultiply(rotations[p], local));
    positions.push([0, 1, 2].map(k => positions[p][k] + step[k]));
  }
  return {rotations: rotations.map(quatToMatrix), positions};
}

// Linear blend skinning into `out` (V*3): v' = sum_k w_k (R_k (v - r_k) + p_k), i.e. each joint's
// 3x4 transform [R | p - R r] blended by the vertex's weights, then applied to the rest vertex.
function skin(body, pose, out) {
  const transforms = pose.rotations.map((m, j) => {
    const t = rotate(m, [body.rest[3 * j], body.rest[3 * j + 1], body.rest[3 * j + 2]]);
    const p = pose.positions[j];
    return [m[0], m[1], m[2], p[0] - t[0], m[3], m[4], m[5], p[1] - t[1], m[6], m[7], m[8], p[2] - t[2]];
  });
  const {vertices, skinIndex, skinWeight} = body.mesh;
  const blended = new Float64Array(12);
  for (let v = 0; v < vertices.length / 3; v++) {
    blended.fill(0);
    for (let k = 0; k < 4; k++) {
      const w = skinWeight[4 * v + k];
      if (w === 0) continue;
      const t = transforms[skinIndex[4 * v + k]];
      for (let i = 0; i < 12; i++) blended[i] += w * t[i];
    }
    const x = vertices[3 * v], y = vertices[3 * v + 1], z = vertices[3 * v + 2];
    for (let r = 0; r < 3; r++) {
      out[3 * v + r] = blended[4 * r] * x + blended[4 * r + 1] * y + blended[4 * r + 2] * z + blended[4 * r + 3];
    }
  }
}

// A binary pose message (clients/ws.py's layout) -> the fields the viewer uses.
function decodePose(buffer) {
  const view = new DataView(buffer);
  const magic = String.fromCharCode(...new Uint8Array(buffer, 0, 4));
  if (magic !== BINARY.magic) throw new Error(`not a pose frame (magic ${JSON.stringify(magic)})`);
  // little-endian floats, viewed in place: every browser host is little-endian
  const floats = new Float32Array(buffer, BINARY.floatsOffset, BINARY.floats);
  return {
    source: SOURCES[view.getUint8(5)],
    frameId: Number(view.getBigUint64(8, true)),
    tCapture: view.getFloat64(16, true),
    tEmit: view.getFloat64(24, true),
    confidence: view.getFloat32(32, true),
    root: floats.subarray(0, 3),
    quat: floats.subarray(3, 99),
    joints: floats.subarray(99, 171),
  };
}

// --- The avatar -------------------------------------------------------------------------------

const GLB_MAGIC = 'glTF';

// Why a file cannot be an avatar (null if it may be): the server's own check
// (configs.config.check_avatar) for files dropped on the page. `head`: its first bytes.
function avatarFileError(name, size, head, maxBytes) {
  if (size > maxBytes) {
    return `${name} is ${(size / 2 ** 20).toFixed(1)} MB; an avatar may be at most ${maxBytes / 2 ** 20} MB`;
  }
  if (String.fromCharCode(...head.subarray(0, 4)) !== GLB_MAGIC) {
    return `${name} is not a VRM file (a VRM is a binary glTF, which starts with 'glTF')`;
  }
  return null;
}

// A .vrm file's bytes -> the avatar: its three-vrm VRM, turned to face +z like our body, and for
// each SMPL joint that drives one of its humanoid bones, that bone's normalized node and the
// nearest ancestor joint that drives one too (a VRM may lack optional bones: upperChest, neck,
// toes; the bones they would carry then take their rotation too).
async function parseAvatar(body, buffer, name) {
  const loader = new GLTFLoader();
  loader.register(parser => new VRMLoaderPlugin(parser));
  const gltf = await loader.parseAsync(buffer, '');
  const vrm = gltf.userData.vrm;
  if (!vrm) throw new Error(`${name} is a glTF file but no VRM avatar (no VRM humanoid and meta)`);
  VRMUtils.rotateVRM0(vrm);
  const node = j => body.humanoid[j] && vrm.humanoid.getNormalizedBoneNode(body.humanoid[j]);
  const bones = [];
  body.parents.forEach((p, j) => {
    if (!node(j)) return;
    while (p >= 0 && !node(p)) p = body.parents[p];
    bones.push({joint: j, parent: p, node: node(j)});
  });
  vrm.scene.traverse(object => { object.frustumCulled = false; });  // bounds are the rest pose's
  vrm.scene.visible = false;  // until its first pose
  const version = vrm.meta.metaVersion;
  return {
    vrm, bones, version,
    name: (version === '0' ? vrm.meta.title : vrm.meta.name) || name,
    hips: vrm.humanoid.getNormalizedBoneNode('hips'),
    // the normalized rig's nodes sit at the rest pose's positions, from the scene's origin
    hipHeight: vrm.humanoid.getNormalizedBoneNode('hips').position.y,
  };
}

async function showAvatar(view, body, buffer, name) {
  const avatar = await parseAvatar(body, buffer, name);
  if (view.avatar) {
    view.scene.remove(view.avatar.vrm.scene);
    VRMUtils.deepDispose(view.avatar.vrm.scene);
  }
  view.scene.add(avatar.vrm.scene);
  view.avatar = avatar;
  viewer.avatar = {name: avatar.name, version: avatar.version, bones: avatar.bones.length,
                   hipHeight: avatar.hipHeight};
  ui.avatar.textContent = `avatar: ${avatar.name} (VRM ${avatar.version === '0' ? '0.x' : '1.0'}) · ` +
    'drop another .vrm to change';
  setStatus(`avatar ${avatar.name} loaded`);
}

// The frame on the avatar. Its normalized bones rest in a T-pose with world-aligned frames, as
// our rest body does, so a bone's local rotation is its joint's world rotation relative to its
// parent bone's joint. The root is scaled by the avatar's hip height over our rest pelvis height,
// so its own legs reach the floor. VRM 0.x faces -z: rotateVRM0 turned its scene half round
// about y, so rotations and the root go into that scene's frame (x and z negated).
function poseAvatar(avatar, body, frame, restPelvisHeight) {
  const world = body.parents.map(() => null);  // parents come first
  body.parents.forEach((p, j) => {
    const local = [frame.quat[4 * j], frame.quat[4 * j + 1], frame.quat[4 * j + 2], frame.quat[4 * j + 3]];
    world[j] = p < 0 ? local : quatMultiply(world[p], local);
  });
  const flip = avatar.version === '0' ? -1 : 1;
  for (const {joint, parent, node} of avatar.bones) {
    const [w, x, y, z] = parent < 0 ? world[joint] : quatMultiply(quatConjugate(world[parent]), world[joint]);
    node.quaternion.set(flip * x, y, flip * z, w);
  }
  const scale = avatar.hipHeight / restPelvisHeight;
  avatar.hips.position.set(flip * scale * frame.root[0], scale * frame.root[1], flip * scale * frame.root[2]);
  avatar.vrm.scene.visible = true;
}

// --- The scene --------------------------------------------------------------------------------

// A floor grid of `cells` x `cells` squares of `cell` metres around the origin, one segment per
// cell edge. (three's GridHelper draws whole lines, and software WebGL (SwiftShader) drops a line
// that passes behind the camera, so the grid lines running away from us went missing.)
function floorGrid(cells, cell, color) {
  const half = cells * cell / 2, points = [];
  for (let i = 0; i <= cells; i++) {
    for (let k = 0; k < cells; k++) {
      const a = -half + i * cell, b = -half + k * cell;
      points.push(a, 0, b, a, 0, b + cell, b, 0, a, b + cell, 0, a);
    }
  }
  const geometry = new BufferGeometry();
  geometry.setAttribute('position', new BufferAttribute(new Float32Array(points), 3));
  return new LineSegments(geometry, new LineBasicMaterial({color}));
}

function buildScene(body) {
  const renderer = new WebGLRenderer({antialias: true});
  renderer.setPixelRatio(window.devicePixelRatio);
  ui.scene.appendChild(renderer.domElement);
  const scene = new Scene();
  scene.background = new Color(0x1c1f24);
  // The webcam looks along +z; the viewer starts behind it, so the person faces us as in the camera.
  const camera = new PerspectiveCamera(45, 1, 0.05, 100);
  camera.position.set(0, 1.4, -4.2);
  const controls = new OrbitControls(camera, renderer.domElement);
  controls.target.set(0, 0.9, 0);
  controls.update();
  scene.add(new HemisphereLight(0xffffff, 0x404040, 2.2));
  const sun = new DirectionalLight(0xffffff, 1.6);
  sun.position.set(-2, 4, -3);
  scene.add(sun);
  scene.add(floorGrid(20, 0.5, 0x4a4e56));

  let figure;
  if (body.mesh) {
    const geometry = new BufferGeometry();
    const positions = new BufferAttribute(new Float32Array(body.mesh.vertices), 3);
    positions.setUsage(DynamicDrawUsage);
    geometry.setAttribute('position', positions);
    geometry.setIndex(body.mesh.faces);
    geometry.computeVertexNormals();
    figure = new Mesh(geometry, new MeshLambertMaterial({color: BODY_COLOR}));
  } else {  // a skeleton-only body: one line per bone
    const geometry = new BufferGeometry();
    geometry.setAttribute('position', new BufferAttribute(new Float32Array(6 * body.parents.length), 3));
    figure = new LineSegments(geometry, new LineBasicMaterial({color: BODY_COLOR}));
  }
  figure.visible = false;  // until the first pose: the rest pose would look like a live one
  figure.frustumCulled = false;  // its bounding sphere is the rest pose's, not the moving body's
  scene.add(figure);

  const trailGeometry = new BufferGeometry();
  trailGeometry.setAttribute('position', new BufferAttribute(new Float32Array(3 * 60 * TRAIL_SECONDS), 3));
  trailGeometry.getAttribute('position').setUsage(DynamicDrawUsage);
  const trail = new Line(trailGeometry, new LineBasicMaterial({color: TRAIL_COLOR}));
  trail.frustumCulled = false;
  scene.add(trail);

  function resize() {
    renderer.setSize(window.innerWidth, window.innerHeight);
    camera.aspect = window.innerWidth / window.innerHeight;
    camera.updateProjectionMatrix();
  }
  window.addEventListener('resize', resize);
  resize();
  return {renderer, scene, camera, controls, figure, trail, trailPoints: [], avatar: null};
}

function showPose(view, body, frame, now) {
  const pose = forwardKinematics(body, frame.quat, frame.root);
  // where the shown figure's root is, over the stream's: the avatar's path scales with its legs
  let scale = 1;
  if (view.avatar) {
    poseAvatar(view.avatar, body, frame, viewer.restPelvisHeight);
    scale = view.avatar.hipHeight / viewer.restPelvisHeight;
    view.figure.visible = false;
  } else {
    const positions = view.figure.geometry.getAttribute('position');
    if (body.mesh) {
      skin(body, pose, positions.array);
      view.figure.geometry.computeVertexNormals();
    } else {
      body.parents.forEach((p, j) => {
        positions.array.set(pose.positions[j], 6 * j);
        positions.array.set(pose.positions[Math.max(p, 0)], 6 * j + 3);
      });
    }
    positions.needsUpdate = true;
    view.figure.visible = true;
  }
  viewer.shownFrameId = frame.frameId;
  // the engine's own FK in the frame against ours: a check on the quaternion conventions above
  viewer.fkErrorMm = 1000 * Math.max(...pose.positions.map((p, j) => Math.hypot(
    p[0] - frame.joints[3 * j], p[1] - frame.joints[3 * j + 1], p[2] - frame.joints[3 * j + 2])));

  // the root's ground track over the last few seconds
  const points = view.trailPoints;
  points.push({t: now, x: scale * frame.root[0], z: scale * frame.root[2]});
  while (points.length && (now - points[0].t > TRAIL_SECONDS * 1000 || points.length > 60 * TRAIL_SECONDS)) {
    points.shift();
  }
  const trail = view.trail.geometry.getAttribute('position');
  points.forEach((q, i) => trail.array.set([q.x, 0.005, q.z], 3 * i));
  trail.needsUpdate = true;
  view.trail.geometry.setDrawRange(0, points.length);

  // the camera follows the person, slowly, keeping the angle the user chose
  const goal = new Vector3(scale * frame.root[0], 0.9, scale * frame.root[2]);
  const step = goal.sub(view.controls.target).multiplyScalar(0.05);
  view.controls.target.add(step);
  view.camera.position.add(step);
}

// --- The camera preview -----------------------------------------------------------------------

const PREVIEW_POINT = '#3cff6e', PREVIEW_FAINT = '#ff5050', PREVIEW_BOX = '#ffd23c';
// What the preview says of the person, by the newest pose's source: generated poses are not the
// person's, whatever the picture shows.
const PREVIEW_STATES = {estimated: 'seen', generated: 'not seen: generating', blended: 'seen again: blending back'};

// One preview of clients/viewer.py's preview_json: the picture, the landmarks (present ones in
// green with the bones between them, found but faint ones in red), the box, the limbs' confidence.
async function drawPreview(preview, bones) {
  const bytes = Uint8Array.from(atob(preview.jpeg), c => c.charCodeAt(0));
  const picture = await createImageBitmap(new Blob([bytes], {type: 'image/jpeg'}));
  const canvas = ui['preview-canvas'], ctx = canvas.getContext('2d');
  canvas.width = picture.width;
  canvas.height = picture.height;
  ui.preview.style.width = `${picture.width}px`;  // the limbs' list wraps under the picture
  ctx.drawImage(picture, 0, 0);
  picture.close();
  const scale = canvas.width / preview.width;  // landmarks are in the camera picture's pixels
  const at = i => [preview.landmarks[i][0] * scale, preview.landmarks[i][1] * scale];
  ctx.lineWidth = 2;
  ctx.strokeStyle = PREVIEW_POINT;
  ctx.beginPath();
  for (const [a, b] of bones) {
    if (!preview.present[a] || !preview.present[b]) continue;
    ctx.moveTo(...at(a));
    ctx.lineTo(...at(b));
  }
  ctx.stroke();
  preview.landmarks.forEach((landmark, i) => {
    if (!landmark) return;
    ctx.fillStyle = preview.present[i] ? PREVIEW_POINT : PREVIEW_FAINT;
    ctx.beginPath();
    ctx.arc(...at(i), 3, 0, 2 * Math.PI);
    ctx.fill();
  });
  if (preview.box) {
    const [x0, y0, x1, y1] = preview.box.map(v => v * scale);
    ctx.strokeStyle = PREVIEW_BOX;
    ctx.setLineDash([6, 4]);
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    ctx.setLineDash([]);
  }
  ui.limbs.replaceChildren(...Object.entries(preview.limbs).map(([limb, confidence]) => {
    const item = document.createElement('li');
    item.textContent = `${limb} ${(100 * confidence).toFixed(0)} %`;
    item.className = confidence < 0.5 ? 'low' : '';
    return item;
  }));
}

// Poll preview.json at the preview's rate; each new preview is drawn once (`have`: the one shown).
async function showPreviews(settings) {
  ui.preview.hidden = false;
  viewer.preview = {frames: 0, frameId: null, width: 0, height: 0, state: ui['preview-state'].textContent};
  let have = -1;
  for (;;) {
    const started = performance.now();
    try {
      const query = new URLSearchParams({have});
      if (token) query.set('token', token);
      const response = await fetch(`preview.json?${query}`);
      if (response.status === 200) {
        const preview = await response.json();
        have = preview.seq;
        await drawPreview(preview, settings.bones);
        Object.assign(viewer.preview, {frames: viewer.preview.frames + 1, frameId: preview.frame_id,
                                       width: ui['preview-canvas'].width, height: ui['preview-canvas'].height});
      } else if (response.status !== 204) {
        throw new Error(`HTTP ${response.status} ${await response.text()}`);
      }
    } catch (e) {
      setStatus('camera preview: ' + (e && e.message ? e.message : e), true);
      await sleep(1000);
    }
    await sleep(Math.max(0, 1000 / settings.fps - (performance.now() - started)));
  }
}

function showPreviewState(source) {
  ui['preview-state'].textContent = viewer.preview.state = PREVIEW_STATES[source];
  ui.preview.className = source;
}

// --- The stream -------------------------------------------------------------------------------

// The pose stream and the control messages: one WebSocket at a time, reopened a second after it
// drops (the engine restarting), except when the server refused the token.
class PoseStream {
  constructor(url, onPose) {
    this.url = url;
    this.onPose = onPose;
    this.requestId = 0;
    this.open();
  }

  open() {
    const ws = this.ws = new WebSocket(this.url);
    ws.binaryType = 'arraybuffer';
    ws.addEventListener('open', () => {
      if (token) ws.send(JSON.stringify({type: 'auth', token}));
      setStatus(`connected to ${this.url.host}`);
    });
    ws.addEventListener('message', event => {
      if (event.data instanceof ArrayBuffer) this.onPose(decodePose(event.data));
      else this.onMessage(JSON.parse(event.data));
    });
    ws.addEventListener('close', event => {
      if (event.code === 1008) {
        setStatus(`refused: ${event.reason || 'wrong token'}`, true);
        return;
      }
      setStatus(`disconnected (code ${event.code}); reconnecting`, true);
      setTimeout(() => this.open(), 1000);
    });
  }

  // Send a control message; false when not connected.
  send(message) {
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify({...message, id: ++this.requestId}));
    return true;
  }

  onMessage(msg) {
    if (msg.type === 'hello') {
      viewer.restPelvisHeight = msg.skeleton.rest_pelvis_height;
      this.send({type: 'state'});
    } else if (msg.type === 'ack' && msg.state) {
      viewer.prompt = msg.state.prompt;
      if (msg.command === 'set_prompt') ui['prompt-status'].textContent = `prompt set: “${msg.state.prompt}”`;
      else if (msg.state.prompt) ui.prompt.placeholder = `prompt: ${msg.state.prompt}`;
    } else if (msg.type === 'error') {
      ui['prompt-status'].textContent = `error: ${msg.message}`;
    }
  }
}

// The avatar the server was given (`config`: config.json's avatar), then any .vrm dropped on the
// page; a file that is no avatar leaves the one shown, and says why on the status line.
function acceptAvatars(view, body, config) {
  const refuse = e => {
    viewer.avatarError = `avatar: ${e && e.message ? e.message : e}`;
    setStatus(viewer.avatarError, true);
  };
  const show = (buffer, name) => showAvatar(view, body, buffer, name).catch(refuse);
  window.addEventListener('dragover', event => event.preventDefault());
  window.addEventListener('drop', async event => {
    event.preventDefault();
    const file = event.dataTransfer.files[0];
    if (!file) return;
    // the size before reading: a file too big is never read
    const error = avatarFileError(file.name, file.size, new Uint8Array(await file.slice(0, 4).arrayBuffer()),
                                  config.max_bytes);
    if (error) refuse(error);
    else show(await file.arrayBuffer(), file.name);
  });
  if (config.url) {
    fetch(config.url + tokenQuery).then(async response => {
      if (!response.ok) throw new Error(`${config.name}: HTTP ${response.status} ${await response.text()}`);
      return show(await response.arrayBuffer(), config.name);
    }).catch(refuse);
  }
}

// For the tests and for debugging: the avatar's humanoid bones where the mesh follows them (world
// positions, metres; null for a joint with no bone on this avatar), the frame they show, and the
// avatar's scale against the stream's rest skeleton.
function avatarPose(view, body) {
  if (!view.avatar) return null;
  const humanoid = view.avatar.vrm.humanoid, position = new Vector3();
  return {
    frameId: viewer.shownFrameId, scale: view.avatar.hipHeight / viewer.restPelvisHeight,
    joints: body.humanoid.map(name => {
      const node = name && humanoid.getRawBoneNode(name);
      return node ? node.getWorldPosition(position).toArray() : null;
    }),
  };
}

async function main() {
  const [config, data] = await Promise.all([fetchJson('config.json'), fetchJson('body.json')]);
  const body = {parents: data.parents, humanoid: data.humanoid, rest: Float32Array.from(data.rest_joints),
                mesh: data.mesh && {
    vertices: Float32Array.from(data.mesh.vertices), faces: data.mesh.faces,
    skinIndex: Uint8Array.from(data.mesh.skin_index), skinWeight: Float32Array.from(data.mesh.skin_weight),
  }};
  if (config.preview) showPreviews(config.preview);
  const view = buildScene(body);
  acceptAvatars(view, body, config.avatar);
  viewer.avatarPose = () => avatarPose(view, body);

  let latest = null;
  const arrivals = [], latencies = [];
  const url = new URL(params.get('ws') || config.ws);
  url.searchParams.set('format', 'binary');
  const stream = new PoseStream(url, frame => {
    latest = frame;
    const now = performance.now();
    arrivals.push(now);
    while (now - arrivals[0] > 1000) arrivals.shift();
    latencies.push((frame.tEmit - frame.tCapture) * 1000);  // both on the server's clock
    if (latencies.length > 30) latencies.shift();
    viewer.frames += 1;
    viewer.frameId = frame.frameId;
    viewer.source = frame.source;
    viewer.fps = arrivals.length;
    viewer.latencyMs = latencies.reduce((a, b) => a + b, 0) / latencies.length;
  });

  ui['prompt-form'].addEventListener('submit', event => {
    event.preventDefault();
    const text = ui.prompt.value.trim();
    if (!text) return;
    const sent = stream.send({type: 'set_prompt', text});
    ui['prompt-status'].textContent = sent ? 'sending…' : 'not connected';
  });

  let shown = null;
  const clock = new Clock();
  function render() {
    if (latest !== shown) {
      shown = latest;
      showPose(view, body, shown, performance.now());
      if (viewer.preview && PREVIEW_STATES[shown.source] !== viewer.preview.state) showPreviewState(shown.source);
      ui.badge.textContent = shown.source;
      ui.badge.className = shown.source;
      ui.stats.textContent = `${viewer.fps} fps received · capture→pose ${viewer.latencyMs.toFixed(0)} ms · ` +
        `frame ${shown.frameId} · seen ${(100 * shown.confidence).toFixed(0)} %`;
    }
    // the normalized bones onto the avatar's own (and its spring bones, which move between poses)
    if (view.avatar) view.avatar.vrm.update(clock.getDelta());
    view.controls.update();
    view.renderer.render(view.scene, view.camera);
    requestAnimationFrame(render);
  }
  render();
}

main().catch(e => setStatus('error: ' + (e && e.message ? e.message : e), true));
