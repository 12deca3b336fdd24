"""Where int8 loses the Keras model's answers: per-layer error, with and without the batch-norm fold.

    PYTHONPATH=. python benchmarks/int8_debug.py --model_dir D --data_dir D [--exp tuned]
        [--calibration 300]

For a model trained by ``benchmarks/litert_latency.py`` (or ``train``): converts it to int8 the way
``export --format litert --quantize int8`` does, once with the backward batch-norm fold
(``lenet_keras.serving.batch_norm_fold``) and once leaving the BN to the converter, and prints for
each: test accuracy, top-1 agreement with Keras, and TensorFlow's
``tf.lite.experimental.QuantizationDebugger`` per-layer error (RMSE of each quantized tensor
against its float twin, in units of that tensor's quantization step: about 0.29 is pure rounding).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import tempfile

import lenet_keras  # noqa: F401  (first: it turns oneDNN on before TensorFlow is imported)


def layer_errors(model, calibration, images) -> list:
    """[(tensor name, op, RMSE / scale)] of the int8 conversion of ``model``, worst first."""
    import numpy as np
    import tensorflow as tf

    from lenet_keras.serving import litert

    with tempfile.TemporaryDirectory() as folder:
        litert._write_conversion_saved_model(model, folder, int8=True)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        litert.calibrate_int8(converter, calibration)
        debug_images = images.astype(np.float32)
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter,
            debug_dataset=lambda: ([i[np.newaxis]] for i in debug_images))
        debugger.run()
        dump = io.StringIO()
        debugger.layer_statistics_dump(dump)
    rows = []
    for row in csv.DictReader(io.StringIO(dump.getvalue())):
        scale = float(row["scale"])
        if scale:
            rows.append((row["tensor_name"], row["op_name"],
                         float(row["mean_squared_error"]) ** 0.5 / scale))
    return sorted(rows, key=lambda r: -r[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exp", default="tuned")
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--calibration", type=int, default=300)
    parser.add_argument("--debug_images", type=int, default=500)
    args = parser.parse_args()

    import numpy as np

    from lenet_keras import experiments, models
    from lenet_keras.serving import batch_norm_fold, export, litert
    from lenet_keras.serving import litert_export as lx

    path = os.path.join(args.model_dir, args.exp, "model.keras")
    model, names = export.load_trained(path)
    config = lx.run_config(path, experiments.get_config(args.exp))
    calibration, test_images, test_labels = lx.experiment_images(config, args.data_dir,
                                                                 args.calibration)
    model = models.with_precision(model, "float32")
    folded, note = batch_norm_fold.checked_fold(model, calibration)
    print(f"{args.exp}: {note}")
    for label, candidate in (("converter's fold", model), ("backward fold", folded)):
        with tempfile.TemporaryDirectory() as base:
            if candidate is model:  # the conversion as it was before the fold
                litert.checked_fold = lambda m, images: (m, "")
            try:
                _, parity = lx.export_litert(candidate, names, base, "m", None, "int8",
                                             calibration, test_images, test_labels,
                                             allow_below_floor=True)
            finally:
                litert.checked_fold = batch_norm_fold.checked_fold
        print(f"\n{label}: {parity.summary()}")
        worst = layer_errors(candidate, calibration, test_images[:args.debug_images])
        print("  largest per-layer RMSE in quantization steps:")
        for name, op, error in worst[:6]:
            print(f"    {error:6.2f}  {op:18s} {name}")
        print(f"  median over {len(worst)} tensors: {np.median([e for *_, e in worst]):.2f}")


if __name__ == "__main__":
    main()
