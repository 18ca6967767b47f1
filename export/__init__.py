"""Export for serving: SavedModel (TF Serving) and TFLite (LiteRT).

>>> from tf_vqvae.export import export_saved_model, export_tflite, verify
>>> export_saved_model(model, "models", "vqvae", version=1)
>>> export_tflite(model, "models/vqvae_tflite", image_size=(32, 32),
...               representative_images=images)
>>> verify("models/vqvae/1")
"""

from tf_vqvae.export.manifest import VerificationError, verify
from tf_vqvae.export.saved_model import export_saved_model
from tf_vqvae.export.tflite import export_tflite

__all__ = [
    "VerificationError",
    "export_saved_model",
    "export_tflite",
    "verify",
]
