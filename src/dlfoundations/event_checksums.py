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

from types import ModuleType

import google_crc32c

from dlfoundations.hidden_imports import hidden_in_this_thread

MASK = 0xFFFFFFFF
#: TFRecord's mask: the CRC rotated right by 15 bits plus this constant
MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data``: rotr(crc, 15) + 0xA282EAD8, modulo 2^32."""
    crc = google_crc32c.value(bytes(data))
    return ((((crc >> 15) | (crc << 17)) & MASK) + MASK_DELTA) & MASK


#: what TensorBoard's file layer imports for its own ``s3://`` support, where installed
S3_CLIENT = ("botocore", "boto3")


def record_writer_module() -> ModuleType:
    """TensorBoard's record writer, imported with boto3 and botocore hidden from this thread
    (``hidden_in_this_thread``) where they are not yet imported: its import took 35 ms
    instead of 88 ms on the 2-core CPU, in every process that writes a run. TensorBoard's file
    layer then leaves out its own S3 support and reaches ``s3://`` through fsspec, which
    Lightning's logger needs (with s3fs) for such a folder in any case."""
    with hidden_in_this_thread(S3_CLIENT):
        from tensorboard.summary.writer import record_writer
    return record_writer


def use_fast_checksums() -> bool:
    """Make TensorBoard's record writer (``record_writer_module``) use ``masked_crc32c``;
    whether it now does."""
    record_writer = record_writer_module()
    if google_crc32c.implementation != "c" or not hasattr(record_writer, "masked_crc32c"):
        return False
    record_writer.masked_crc32c = masked_crc32c
    return True
