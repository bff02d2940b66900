"""TensorBoard's event records checksummed in C.

TensorBoard's writer (``tensorboard.summary.writer.record_writer``) frames every record with
two masked CRC-32C checksums that it computes in pure Python, about 0.1 ms a kilobyte while
holding the GIL: a run's two test images (about 90 KB) took about 10 ms, and every logged
scalar about 20 us. ``google-crc32c`` computes the same checksum in C. ``use_fast_checksums``
puts it in the writer's place; where TensorBoard no longer has that function, or
``google-crc32c`` has no C code for this machine, the writer is left as it is (the tests say
so loudly).

The writer is imported without TensorBoard's S3 client (``record_writer_module``).
"""

from __future__ import annotations

import sys
from types import ModuleType

import google_crc32c

MASK = 0xFFFFFFFF
#: TFRecord's mask: the CRC rotated right by 15 bits plus this constant
MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data``: rotr(crc, 15) + 0xA282EAD8, modulo 2^32."""
    crc = google_crc32c.value(bytes(data))
    return ((((crc >> 15) | (crc << 17)) & MASK) + MASK_DELTA) & MASK


#: what TensorBoard's file layer imports for ``s3://`` paths, where installed
S3_CLIENT = ("botocore", "boto3")


def record_writer_module(remote: bool = False) -> ModuleType:
    """TensorBoard's record writer. For a run that logs into a local folder (not
    ``remote``), imported with boto3 and botocore hidden where they are installed but not yet
    imported: TensorBoard's file layer then leaves out its ``s3://`` support, and its import
    took 35 ms instead of 88 ms on the 2-core CPU, in every process that writes a run.
    Imported elsewhere later, boto3 loads as usual."""
    hidden = [] if remote else [name for name in S3_CLIENT if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        from tensorboard.summary.writer import record_writer
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return record_writer


def use_fast_checksums(remote: bool = False) -> bool:
    """Make TensorBoard's record writer use ``masked_crc32c`` (imported as
    ``record_writer_module`` imports it); whether it now does."""
    record_writer = record_writer_module(remote)
    if google_crc32c.implementation != "c" or not hasattr(record_writer, "masked_crc32c"):
        return False
    record_writer.masked_crc32c = masked_crc32c
    return True
