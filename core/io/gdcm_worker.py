"""Decode DICOM pixel data with GDCM in a child process: python -m core.io.gdcm_worker < file.dcm > pixels.npy

GDCM is the fallback decoder for transfer syntaxes pylibjpeg cannot handle, but on some
damaged files it aborts the whole process (an uncaught C++ exception, found by the fuzz
test). Run here, such a crash only ends this child; the parent reports a clear error.
"""
import io
import sys
import warnings

import numpy as np


def main() -> int:
    import pydicom

    data = sys.stdin.buffer.read()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        ds.pixel_array_options(decoding_plugin="gdcm")
        arr = ds.pixel_array
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    sys.stdout.buffer.write(buf.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
