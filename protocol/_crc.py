"""CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor): binascii does the work."""

from __future__ import annotations

import binascii

CRC_INIT = 0xFFFF


def crc16(data: bytes | bytearray | memoryview) -> int:
    return binascii.crc_hqx(data, CRC_INIT)
