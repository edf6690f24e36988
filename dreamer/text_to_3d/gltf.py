"""Textured mesh files: a glTF 2.0 binary (GLB) with one PBR material, and OBJ + MTL (Y up, 1 unit = 1 metre)."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

FLOAT, UINT32 = 5126, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
LINEAR, CLAMP_TO_EDGE = 9729, 33071


def _pad4(b: bytes, fill: bytes = b"\0") -> bytes:
    return b + fill * (-len(b) % 4)


def textured_glb_bytes(positions: np.ndarray, normals: np.ndarray, uv: np.ndarray, faces: np.ndarray,
                       png: bytes) -> bytes:
    """positions / normals [V,3], uv [V,2] (glTF: v down), faces [F,3], PNG bytes -> GLB with the texture as
    baseColorTexture of a metallic 0, roughness 1 material (glTF 2.0 spec, sections 3.9 and 4.4)."""
    pos = np.ascontiguousarray(positions, np.float32)
    nrm = np.ascontiguousarray(normals, np.float32)
    nrm = nrm / np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
    tex = np.ascontiguousarray(uv, np.float32)
    idx = np.ascontiguousarray(faces, np.uint32).reshape(-1)
    blobs = [pos.tobytes(), nrm.tobytes(), tex.tobytes(), idx.tobytes(), png]
    targets = [ARRAY_BUFFER, ARRAY_BUFFER, ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER, None]
    views, bin_ = [], b""
    for blob, target in zip(blobs, targets):
        view = {"buffer": 0, "byteOffset": len(bin_), "byteLength": len(blob)}
        if target is not None:
            view["target"] = target
        views.append(view)
        bin_ += _pad4(blob)
    accessors = [
        {"bufferView": 0, "componentType": FLOAT, "count": len(pos), "type": "VEC3",
         "min": pos.min(0).tolist(), "max": pos.max(0).tolist()},
        {"bufferView": 1, "componentType": FLOAT, "count": len(nrm), "type": "VEC3"},
        {"bufferView": 2, "componentType": FLOAT, "count": len(tex), "type": "VEC2"},
        {"bufferView": 3, "componentType": UINT32, "count": int(idx.size), "type": "SCALAR"},
    ]
    gltf = {
        "asset": {"version": "2.0", "generator": "dreamer"},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0, "name": "mesh"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "NORMAL": 1, "TEXCOORD_0": 2},
                                    "indices": 3, "material": 0, "mode": 4}]}],
        "materials": [{"name": "baked", "pbrMetallicRoughness": {
            "baseColorTexture": {"index": 0, "texCoord": 0}, "baseColorFactor": [1.0, 1.0, 1.0, 1.0],
            "metallicFactor": 0.0, "roughnessFactor": 1.0}}],
        "textures": [{"sampler": 0, "source": 0}],
        "images": [{"bufferView": 4, "mimeType": "image/png"}],
        "samplers": [{"magFilter": LINEAR, "minFilter": LINEAR, "wrapS": CLAMP_TO_EDGE, "wrapT": CLAMP_TO_EDGE}],
        "accessors": accessors, "bufferViews": views, "buffers": [{"byteLength": len(bin_)}],
    }
    js = _pad4(json.dumps(gltf, separators=(",", ":")).encode(), b" ")
    body = struct.pack("<II", len(js), 0x4E4F534A) + js + struct.pack("<II", len(bin_), 0x004E4942) + bin_
    return struct.pack("<III", 0x46546C67, 2, 12 + len(body)) + body


def write_textured_glb(path: Path, positions, normals, uv, faces, png: bytes) -> Path:
    """Write textured_glb_bytes(...) to path."""
    Path(path).write_bytes(textured_glb_bytes(positions, normals, uv, faces, png))
    return Path(path)


def write_textured_obj(path: Path, vertices: np.ndarray, uv: np.ndarray, faces: np.ndarray, uv_faces: np.ndarray,
                       texture_name: str) -> Path:
    """OBJ (welded vertices [V,3], uv [V',2] glTF-style, faces [F,3] into each) + `stem`.mtl naming the texture;
    OBJ's vt is v up, so vt = (u, 1 - v)."""
    path = Path(path)
    mtl = path.with_suffix(".mtl")
    mtl.write_text(f"newmtl baked\nKa 0 0 0\nKd 1 1 1\nKs 0 0 0\nillum 1\nmap_Kd {texture_name}\n")
    f1, t1 = np.asarray(faces) + 1, np.asarray(uv_faces) + 1
    lines = [f"mtllib {mtl.name}", "o mesh"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in np.asarray(vertices)]
    lines += [f"vt {u:.6f} {1.0 - v:.6f}" for u, v in np.asarray(uv)]
    lines.append("usemtl baked")
    lines += [f"f {a}/{ta} {b}/{tb} {c}/{tc}" for (a, b, c), (ta, tb, tc) in zip(f1, t1)]
    path.write_text("\n".join(lines) + "\n")
    return path
