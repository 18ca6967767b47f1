"""What a model dir holds: one name for each file (no TensorFlow here).

Layout:

    MODEL_DIR/config.json           the `TrainConfig` of `vqvae train`
    MODEL_DIR/checkpoints/          `tf.train.CheckpointManager` checkpoints
    MODEL_DIR/logs/                 TensorBoard
    MODEL_DIR/model.keras           the trained `VQVAE`
    MODEL_DIR/calibration.npy       up to 256 uint8 training images spread
                                    over the split, for int8 export (audio:
                                    float32 segments (n, samples, 1))
    MODEL_DIR/reconstructions.png   originals beside reconstructions
    MODEL_DIR/reconstructions.wav   audio: each original segment, then its
                                    reconstruction, with silence between
    MODEL_DIR/speakers.json         audio: the dataset's speaker names in id
                                    order (the decoder's ids when it is
                                    speaker-conditioned)
    MODEL_DIR/codebook_health.json  `CodebookHealth`'s verdict per epoch
    MODEL_DIR/prior/                the prior's run: config.json,
                                    checkpoints/, logs/, prior.keras
                                    (and classes.json, class-conditional)
    MODEL_DIR/samples.png           `vqvae sample`
    MODEL_DIR/samples-NNN.wav       `vqvae sample` of an audio model
    MODEL_DIR/evaluation.json       `vqvae evaluate`
    MODEL_DIR/codes/                `vqvae inspect`: usage.png,
                                    top_codes.png, bottom_codes.png,
                                    usage.json
    MODEL_DIR/export/               `vqvae export`
    MODEL_DIR/workers/TYPE-ID/      each non-chief worker's own copy
                                    (`--strategy multi-worker`)
    MODEL_DIR/LOCK                  while `vqvae train` runs: who holds
                                    the model dir (`training/locking.py`);
                                    also in prior/, workers/TYPE-ID/ and an
                                    export's output directory
"""

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
LOGS_DIR = "logs"
MODEL_FILE = "model.keras"
CALIBRATION_FILE = "calibration.npy"
RECONSTRUCTIONS_FILE = "reconstructions.png"
RECONSTRUCTIONS_AUDIO_FILE = "reconstructions.wav"
SPEAKERS_FILE = "speakers.json"
CODEBOOK_HEALTH_FILE = "codebook_health.json"
PRIOR_DIR = "prior"
PRIOR_FILE = "prior.keras"
CLASSES_FILE = "classes.json"
SAMPLES_FILE = "samples.png"
AUDIO_SAMPLES_FILE = "samples.wav"
EVALUATION_FILE = "evaluation.json"
CODES_DIR = "codes"
EXPORT_DIR = "export"
WORKERS_DIR = "workers"
LOCK_FILE = "LOCK"
