/* dreamer report: minimal GLB viewer (plain WebGL, no dependencies).
 * Usage: a container element with data-glb-source="ID" holding a canvas, plus a script element
 * of type application/octet-stream with id ID whose text is the base64-encoded GLB.
 * Sets data-status on the container to "ok", "nowebgl" or "error"; failures go to console.error.
 * A material's baseColorTexture (PNG / JPEG inside the GLB, TEXCOORD_0) is drawn once decoded; the container then
 * gets data-texture="loaded" (or "error"). */
(function () {
  'use strict';

  var GL_TYPES = {5120: Int8Array, 5121: Uint8Array, 5122: Int16Array, 5123: Uint16Array,
                  5125: Uint32Array, 5126: Float32Array};
  var NORM_MAX = {5120: 127, 5121: 255, 5122: 32767, 5123: 65535, 5125: 4294967295};
  var WIDTH = {SCALAR: 1, VEC2: 2, VEC3: 3, VEC4: 4, MAT4: 16};
  var CHUNK_JSON = 0x4E4F534A, CHUNK_BIN = 0x004E4942, GLB_MAGIC = 0x46546C67;

  function base64ToBytes(b64) {
    var s = atob(b64.replace(/\s+/g, '')), out = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }

  /* GLB container -> {json, bin}: a 12-byte header followed by JSON and BIN chunks. */
  function parseGLB(bytes) {
    var dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes.byteLength < 20 || dv.getUint32(0, true) !== GLB_MAGIC) throw new Error('not a GLB file (bad magic)');
    if (dv.getUint32(4, true) !== 2) throw new Error('unsupported glTF version ' + dv.getUint32(4, true));
    var end = Math.min(dv.getUint32(8, true), bytes.byteLength), off = 12, json = null, bin = null;
    while (off + 8 <= end) {
      var len = dv.getUint32(off, true), type = dv.getUint32(off + 4, true);
      var body = bytes.subarray(off + 8, off + 8 + len);
      if (type === CHUNK_JSON) json = JSON.parse(new TextDecoder('utf-8').decode(body));
      else if (type === CHUNK_BIN && !bin) bin = body;
      off += 8 + len;
    }
    if (!json) throw new Error('GLB has no JSON chunk');
    return {json: json, bin: bin};
  }

  /* Accessor -> tightly packed typed array (handles byteStride / offsets). */
  function readAccessor(g, index) {
    var acc = (g.json.accessors || [])[index];
    if (!acc) throw new Error('missing accessor ' + index);
    if (acc.sparse) throw new Error('sparse accessors are not supported');
    var Typed = GL_TYPES[acc.componentType], n = WIDTH[acc.type];
    if (!Typed || !n) throw new Error('unsupported accessor ' + acc.type + '/' + acc.componentType);
    var out = new Typed(acc.count * n);
    if (acc.bufferView === undefined) return {data: out, n: n, acc: acc};
    var view = g.json.bufferViews[acc.bufferView];
    if ((view.buffer || 0) !== 0 || !g.bin) throw new Error('only the embedded GLB buffer is supported');
    var elem = n * Typed.BYTES_PER_ELEMENT, stride = view.byteStride || elem;
    var base = (view.byteOffset || 0) + (acc.byteOffset || 0);
    if (acc.count > 0 && base + (acc.count - 1) * stride + elem > g.bin.byteLength) throw new Error('accessor ' + index + ' out of bounds');
    var dst = new Uint8Array(out.buffer);
    if (stride === elem) dst.set(g.bin.subarray(base, base + acc.count * elem));
    else for (var i = 0; i < acc.count; i++) dst.set(g.bin.subarray(base + i * stride, base + i * stride + elem), i * elem);
    return {data: out, n: n, acc: acc};
  }

  function toFloat(a) {
    if (a.data instanceof Float32Array) return a.data;
    var out = new Float32Array(a.data.length), s = a.acc.normalized ? 1 / NORM_MAX[a.acc.componentType] : 1;
    for (var i = 0; i < out.length; i++) out[i] = a.data[i] * s;
    return out;
  }

  /* 4x4 matrices are column-major arrays, as in glTF and WebGL. */
  function mul(a, b) {
    var o = new Array(16);
    for (var c = 0; c < 4; c++) for (var r = 0; r < 4; r++) {
      var s = 0;
      for (var k = 0; k < 4; k++) s += a[k * 4 + r] * b[c * 4 + k];
      o[c * 4 + r] = s;
    }
    return o;
  }
  var IDENTITY = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];

  function nodeMatrix(node) {
    if (node.matrix) return node.matrix.slice();
    var t = node.translation || [0, 0, 0], q = node.rotation || [0, 0, 0, 1], s = node.scale || [1, 1, 1];
    var x = q[0], y = q[1], z = q[2], w = q[3];
    return [(1 - 2 * (y * y + z * z)) * s[0], 2 * (x * y + z * w) * s[0], 2 * (x * z - y * w) * s[0], 0,
            2 * (x * y - z * w) * s[1], (1 - 2 * (x * x + z * z)) * s[1], 2 * (y * z + x * w) * s[1], 0,
            2 * (x * z + y * w) * s[2], 2 * (y * z - x * w) * s[2], (1 - 2 * (x * x + y * y)) * s[2], 0,
            t[0], t[1], t[2], 1];
  }

  function xform(M, A, i, w) {  // point (w=1) or direction (w=0) i of flat vec3 array A
    var x = A[3 * i], y = A[3 * i + 1], z = A[3 * i + 2];
    return [M[0] * x + M[4] * y + M[8] * z + M[12] * w,
            M[1] * x + M[5] * y + M[9] * z + M[13] * w,
            M[2] * x + M[6] * y + M[10] * z + M[14] * w];
  }

  function normalize(v) {
    var l = Math.hypot(v[0], v[1], v[2]) || 1;
    return [v[0] / l, v[1] / l, v[2] / l];
  }

  /* Walk the default scene; de-index every triangle primitive into flat position/normal/colour arrays. */
  function buildGeometry(g) {
    var json = g.json, pos = [], nrm = [], col = [], uvs = [], image = null;
    function addMesh(meshIndex, M) {
      json.meshes[meshIndex].primitives.forEach(function (prim) {
        if (prim.mode !== undefined && prim.mode !== 4) return;  // triangles only
        var at = prim.attributes;
        var P = toFloat(readAccessor(g, at.POSITION)), nv = P.length / 3;
        var N = at.NORMAL !== undefined ? toFloat(readAccessor(g, at.NORMAL)) : null;
        var C = null, cn = 3, base = [0.8, 0.8, 0.8], T = null;
        var mat = prim.material !== undefined ? (json.materials || [])[prim.material] || {} : {};
        var tex = (mat.pbrMetallicRoughness || {}).baseColorTexture;
        if (tex && (tex.texCoord || 0) === 0 && at.TEXCOORD_0 !== undefined && !image) {
          var img = (json.images || [])[(json.textures[tex.index] || {}).source];
          if (img && img.bufferView !== undefined) {
            var bv = json.bufferViews[img.bufferView], o = bv.byteOffset || 0;
            image = {bytes: g.bin.slice(o, o + bv.byteLength), mime: img.mimeType || 'image/png'};
            T = toFloat(readAccessor(g, at.TEXCOORD_0));
            var f = (mat.pbrMetallicRoughness || {}).baseColorFactor;
            base = f ? f.slice(0, 3) : [1, 1, 1];
          }
        }
        if (T) {
          // textured: colours are the base colour factor, the texture multiplies them in the shader
        } else if (at.COLOR_0 !== undefined) {
          var ca = readAccessor(g, at.COLOR_0);
          C = toFloat(ca); cn = ca.n;
        } else if (prim.material !== undefined) {
          var pbr = (json.materials[prim.material] || {}).pbrMetallicRoughness || {};
          if (pbr.baseColorFactor) base = pbr.baseColorFactor.slice(0, 3);
        }
        var idx = prim.indices !== undefined ? readAccessor(g, prim.indices).data : null;
        var count = idx ? idx.length : nv;
        for (var t = 0; t + 2 < count; t += 3) {
          var tri = idx ? [idx[t], idx[t + 1], idx[t + 2]] : [t, t + 1, t + 2];
          if (tri[0] >= nv || tri[1] >= nv || tri[2] >= nv) throw new Error('vertex index out of range');
          var p = tri.map(function (v) { return xform(M, P, v, 1); });
          var fn = null;
          if (!N) {  // flat face normal from the cross product of two edges
            var e1 = [p[1][0] - p[0][0], p[1][1] - p[0][1], p[1][2] - p[0][2]];
            var e2 = [p[2][0] - p[0][0], p[2][1] - p[0][1], p[2][2] - p[0][2]];
            fn = normalize([e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0]]);
          }
          for (var k = 0; k < 3; k++) {
            var v = tri[k], n = N ? normalize(xform(M, N, v, 0)) : fn;
            pos.push(p[k][0], p[k][1], p[k][2]);
            nrm.push(n[0], n[1], n[2]);
            if (C) col.push(C[v * cn], C[v * cn + 1], C[v * cn + 2]); else col.push(base[0], base[1], base[2]);
            if (T) uvs.push(T[2 * v], T[2 * v + 1]); else uvs.push(-1, -1);  // -1: untextured vertex
          }
        }
      });
    }
    function visit(i, parentM) {
      var node = json.nodes[i], M = mul(parentM, nodeMatrix(node));
      if (node.mesh !== undefined) addMesh(node.mesh, M);
      (node.children || []).forEach(function (c) { visit(c, M); });
    }
    var scene = (json.scenes || [])[json.scene || 0];
    if (scene && scene.nodes) scene.nodes.forEach(function (i) { visit(i, IDENTITY); });
    else (json.meshes || []).forEach(function (_, i) { addMesh(i, IDENTITY); });
    if (!pos.length) throw new Error('GLB contains no triangles');
    var lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
    for (var i = 0; i < pos.length; i++) {
      lo[i % 3] = Math.min(lo[i % 3], pos[i]); hi[i % 3] = Math.max(hi[i % 3], pos[i]);
    }
    var center = [0, 1, 2].map(function (a) { return (lo[a] + hi[a]) / 2; });
    var radius = Math.max(1e-6, 0.5 * Math.hypot(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]));
    return {position: new Float32Array(pos), normal: new Float32Array(nrm), color: new Float32Array(col),
            uv: new Float32Array(uvs), image: image, count: pos.length / 3, center: center, radius: radius};
  }

  var VS = 'attribute vec3 aPos; attribute vec3 aNormal; attribute vec3 aColor; attribute vec2 aUV;' +
    'uniform mat4 uMVP; uniform mat3 uViewRot; varying vec3 vN; varying vec3 vC; varying vec2 vUV;' +
    'void main() { vN = uViewRot * aNormal; vC = aColor; vUV = aUV; gl_Position = uMVP * vec4(aPos, 1.0); }';
  var FS = 'precision mediump float; varying vec3 vN; varying vec3 vC; varying vec2 vUV;' +
    'uniform sampler2D uTex; uniform float uHasTex;' +
    'void main() { vec3 n = normalize(vN); if (!gl_FrontFacing) n = -n;' +
    '  float d = max(dot(n, normalize(vec3(0.4, 0.6, 0.7))), 0.0);' +  // Lambert, light fixed to the camera
    '  vec3 c = (uHasTex > 0.5 && vUV.x >= 0.0) ? vC * texture2D(uTex, vUV).rgb : vC;' +  // glTF UV: v down
    '  gl_FragColor = vec4(c * (0.45 + 0.65 * d), 1.0); }';

  function compile(gl, type, src) {
    var s = gl.createShader(type);
    gl.shaderSource(s, src); gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error('shader: ' + gl.getShaderInfoLog(s));
    return s;
  }

  function perspective(fovy, aspect, near, far) {
    var f = 1 / Math.tan(fovy / 2), nf = 1 / (near - far);
    return [f / aspect, 0, 0, 0, 0, f, 0, 0, 0, 0, (far + near) * nf, -1, 0, 0, 2 * far * near * nf, 0];
  }

  function lookAt(eye, target) {  // world Y is up
    var z = normalize([eye[0] - target[0], eye[1] - target[1], eye[2] - target[2]]);
    var x = normalize([z[2], 0, -z[0]]);  // up x z with up = (0,1,0)
    var y = [z[1] * x[2] - z[2] * x[1], z[2] * x[0] - z[0] * x[2], z[0] * x[1] - z[1] * x[0]];
    var d = function (a) { return -(a[0] * eye[0] + a[1] * eye[1] + a[2] * eye[2]); };
    return [x[0], y[0], z[0], 0, x[1], y[1], z[1], 0, x[2], y[2], z[2], 0, d(x), d(y), d(z), 1];
  }

  function fallback(box, text) {
    var msg = document.createElement('div');
    msg.className = 'viewer-msg';
    msg.textContent = text;
    box.appendChild(msg);
  }

  function initViewer(box) {
    var canvas = box.querySelector('canvas');
    var src = document.getElementById(box.getAttribute('data-glb-source'));
    var gl = canvas.getContext('webgl', {antialias: true, preserveDrawingBuffer: true}) ||
             canvas.getContext('experimental-webgl', {preserveDrawingBuffer: true});
    if (!gl) {
      box.setAttribute('data-status', 'nowebgl');
      canvas.style.display = 'none';
      fallback(box, 'WebGL is unavailable in this browser, so the 3D preview cannot be shown (the .glb is still embedded).');
      return;
    }
    var geo = buildGeometry(parseGLB(base64ToBytes(src.textContent)));
    var prog = gl.createProgram();
    gl.attachShader(prog, compile(gl, gl.VERTEX_SHADER, VS));
    gl.attachShader(prog, compile(gl, gl.FRAGMENT_SHADER, FS));
    gl.linkProgram(prog);
    if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error('link: ' + gl.getProgramInfoLog(prog));
    gl.useProgram(prog);
    [['aPos', geo.position], ['aNormal', geo.normal], ['aColor', geo.color]].forEach(function (a) {
      var loc = gl.getAttribLocation(prog, a[0]);
      gl.bindBuffer(gl.ARRAY_BUFFER, gl.createBuffer());
      gl.bufferData(gl.ARRAY_BUFFER, a[1], gl.STATIC_DRAW);
      gl.enableVertexAttribArray(loc);
      gl.vertexAttribPointer(loc, 3, gl.FLOAT, false, 0, 0);
    });
    var uvLoc = gl.getAttribLocation(prog, 'aUV');
    gl.bindBuffer(gl.ARRAY_BUFFER, gl.createBuffer());
    gl.bufferData(gl.ARRAY_BUFFER, geo.uv, gl.STATIC_DRAW);
    gl.enableVertexAttribArray(uvLoc);
    gl.vertexAttribPointer(uvLoc, 2, gl.FLOAT, false, 0, 0);
    var uHasTex = gl.getUniformLocation(prog, 'uHasTex');
    gl.uniform1f(uHasTex, 0);
    if (geo.image) {  // decode the embedded image (blob: URL, allowed by the page's CSP), then upload it
      var url = URL.createObjectURL(new Blob([geo.image.bytes], {type: geo.image.mime}));
      var im = new Image();
      im.onload = function () {
        var t = gl.createTexture();
        gl.bindTexture(gl.TEXTURE_2D, t);
        gl.pixelStorei(gl.UNPACK_FLIP_Y_WEBGL, false);  // first image row at v = 0, as glTF
        gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGB, gl.RGB, gl.UNSIGNED_BYTE, im);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.LINEAR);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
        gl.uniform1i(gl.getUniformLocation(prog, 'uTex'), 0);
        gl.uniform1f(uHasTex, 1);
        URL.revokeObjectURL(url);
        box.setAttribute('data-texture', 'loaded');
        draw();
      };
      im.onerror = function () {
        box.setAttribute('data-texture', 'error');
        console.error('dreamer viewer: the GLB texture could not be decoded');
      };
      im.src = url;
    }
    var uMVP = gl.getUniformLocation(prog, 'uMVP'), uViewRot = gl.getUniformLocation(prog, 'uViewRot');
    gl.enable(gl.DEPTH_TEST);

    var cam = {yaw: 0.6, pitch: 0.35, zoom: 1, spin: true}, fov = Math.PI / 4;
    function draw() {
      var dpr = window.devicePixelRatio || 1;
      var w = Math.max(1, Math.round(canvas.clientWidth * dpr)), h = Math.max(1, Math.round(canvas.clientHeight * dpr));
      if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
      gl.viewport(0, 0, w, h);
      gl.clearColor(0.93, 0.94, 0.96, 1);
      gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
      var dist = geo.radius / Math.sin(fov / 2) * 1.05 * cam.zoom, c = geo.center;
      var eye = [c[0] + dist * Math.cos(cam.pitch) * Math.sin(cam.yaw), c[1] + dist * Math.sin(cam.pitch),
                 c[2] + dist * Math.cos(cam.pitch) * Math.cos(cam.yaw)];
      var view = lookAt(eye, c);
      var proj = perspective(fov, w / h, dist * 0.05, dist + 3 * geo.radius);
      gl.uniformMatrix4fv(uMVP, false, new Float32Array(mul(proj, view)));
      gl.uniformMatrix3fv(uViewRot, false, new Float32Array([view[0], view[1], view[2], view[4], view[5], view[6], view[8], view[9], view[10]]));
      gl.drawArrays(gl.TRIANGLES, 0, geo.count);
    }

    var drag = null;
    canvas.addEventListener('pointerdown', function (e) {
      drag = {x: e.clientX, y: e.clientY}; cam.spin = false; canvas.setPointerCapture(e.pointerId);
    });
    canvas.addEventListener('pointermove', function (e) {
      if (!drag) return;
      cam.yaw -= (e.clientX - drag.x) * 0.01;
      cam.pitch = Math.max(-1.5, Math.min(1.5, cam.pitch + (e.clientY - drag.y) * 0.01));
      drag = {x: e.clientX, y: e.clientY};
    });
    canvas.addEventListener('pointerup', function () { drag = null; });
    canvas.addEventListener('wheel', function (e) {
      e.preventDefault();
      cam.zoom = Math.max(0.2, Math.min(5, cam.zoom * Math.exp(e.deltaY * 0.001)));
    }, {passive: false});
    canvas.addEventListener('dblclick', function () { cam.spin = !cam.spin; });

    var last = null;
    function frame(t) {
      if (last !== null && cam.spin) cam.yaw += Math.min(t - last, 100) * 0.0005;
      last = t;
      draw();
      requestAnimationFrame(frame);
    }
    draw();
    var err = gl.getError();
    if (err !== gl.NO_ERROR) throw new Error('WebGL error 0x' + err.toString(16));
    box.setAttribute('data-status', 'ok');
    box.setAttribute('data-triangles', String(geo.count / 3));
    requestAnimationFrame(frame);
  }

  Array.prototype.forEach.call(document.querySelectorAll('[data-glb-source]'), function (box) {
    try {
      initViewer(box);
    } catch (e) {
      box.setAttribute('data-status', 'error');
      fallback(box, 'Could not show the 3D preview: ' + e.message);
      console.error('dreamer viewer: ' + e.message);
    }
  });
})();
