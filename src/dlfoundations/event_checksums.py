"""TensorBoard's event records checksummed in C.

TensorBoard's writer (``tensorboard.summary.writer.record_writer``) frames every record with
two masked CRC-32C checksums that it computes in pure Python, about 0.1 ms a kilobyte while
holding the GIL: a run's two test images (about 90 KB) took about 10 ms, and every logged
scalar about 20 us. ``google-crc32c`` computes the same checksum in C. ``use_fast_checksums``
puts it in the writer's place; where TensorBoard no longer has that function, or
``google-crc32c`` has no C code for this machine, the writer is left as it is (the tests say
so loudly).
"""

from __future__ import annotations

import google_crc32c

MASK = 0xFFFFFFFF
#: TFRecord's mask: the CRC rotated right by 15 bits plus this constant
MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data``: rotr(crc, 15) + 0xA282EAD8, modulo 2^32."""
    crc = google_crc32c.value(bytes(data))
    return ((((crc >> 15) | (crc << 17)) & MASK) + MASK_DELTA) & MASK


def use_fast_checksums() -> bool:
    """Make TensorBoard's record writer use ``masked_crc32c``; whether it now does."""
    from tensorboard.summary.writer import record_writer

    if google_crc32c.implementation != "c" or not hasattr(record_writer, "masked_crc32c"):
        return False
    record_writer.masked_crc32c = masked_crc32c
    return True
