"""The text-to-3D application: a scene (Gaussians or NeRF) optimised by the shared guidance step, then exported
(meshes, splats, turntable, report). Entry points: loop.generate, outputs.export_run."""
