"""Export for serving: SavedModel (TF Serving) and TFLite (LiteRT).

>>> from tf_vqvae.export import export_saved_model, export_tflite, verify
>>> export_saved_model(model, "models", "vqvae", version=1)
>>> export_tflite(model, "models/vqvae_tflite", representative_images=images)
>>> verify("models/vqvae/1")

Both exporters take the image size from the model (`model.example_shape`)
and use only the `tf_vqvae.contracts` members of the model and the prior.
"""

from tf_vqvae.export.manifest import VerificationError
from tf_vqvae.export.saved_model import export_saved_model
from tf_vqvae.export.tflite import export_tflite
from tf_vqvae.export.verification import verify

__all__ = [
    "VerificationError",
    "export_saved_model",
    "export_tflite",
    "verify",
]
