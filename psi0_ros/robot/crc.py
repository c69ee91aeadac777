"""Unitree's CRC32 for unitree_hg LowCmd_ / LowState_ (the G1 ignores a LowCmd_ whose crc is wrong).

The message is packed as the C struct the robot sees (little-endian, 4-byte aligned), read as
32-bit little-endian words without the final crc word, and each word is fed most significant bit
first into CRC-32 with polynomial 0x04C11DB7, initial value 0xFFFFFFFF and no final xor. That is
CRC-32/MPEG-2 over the words written big-endian, which is how crc32_words() computes it. Struct
layouts follow unitree_sdk2py's IDL (unitree_hg::msg::dds_). Works on any object with those
field names: psi0_ros.robot.unitree_idl's types or unitree_sdk2py's.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

NUM_MOTOR_SLOTS = 35
# LowCmd_: mode_pr, mode_machine (+2 pad) | 35 x MotorCmd_ (mode +3 pad, q dq tau kp kd, reserve) |
# reserve[4], crc. 1004 bytes.
LOW_CMD_FORMAT = "<2B2x" + "B3x5fI" * NUM_MOTOR_SLOTS + "5I"
# LowState_: version[2], mode_pr, mode_machine (+2 pad), tick | IMUState_ (quaternion[4], gyroscope[3],
# accelerometer[3], rpy[3], temperature int16 +2 pad) | 35 x MotorState_ (mode +3 pad, q dq ddq tau_est,
# temperature int16[2], vol, sensor[2], motorstate, reserve[4]) | wireless_remote[40], reserve[4], crc.
# 2092 bytes.
LOW_STATE_FORMAT = "<2I2B2xI" + "13fh2x" + "B3x4f2hf7I" * NUM_MOTOR_SLOTS + "40B5I"


def _table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else (crc << 1)
            crc &= 0xFFFFFFFF
        table.append(crc)
    return table


_TABLE = _table()


def crc32_mpeg2(data: bytes, crc: int = 0xFFFFFFFF) -> int:
    """CRC-32/MPEG-2 of a byte string (check value: b"123456789" -> 0x0376E6E7)."""
    table = _TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ byte]
    return crc


def crc32_words(words: Sequence[int]) -> int:
    """Unitree's crc32_core over 32-bit words (each word most significant bit first)."""
    return crc32_mpeg2(struct.pack(f">{len(words)}I", *words))


def _crc_of_packed(packed: bytes) -> int:
    count = len(packed) // 4 - 1  # every word but the crc itself
    return crc32_words(struct.unpack_from(f"<{count}I", packed))


def pack_low_cmd(cmd: Any) -> bytes:
    values: list[Any] = [cmd.mode_pr, cmd.mode_machine]
    for motor in cmd.motor_cmd:
        values += [motor.mode, motor.q, motor.dq, motor.tau, motor.kp, motor.kd, motor.reserve]
    values += list(cmd.reserve) + [cmd.crc]
    return struct.pack(LOW_CMD_FORMAT, *values)


def pack_low_state(state: Any) -> bytes:
    imu = state.imu_state
    values: list[Any] = list(state.version) + [state.mode_pr, state.mode_machine, state.tick]
    values += list(imu.quaternion) + list(imu.gyroscope) + list(imu.accelerometer) + list(imu.rpy)
    values.append(imu.temperature)
    for motor in state.motor_state:
        values += [motor.mode, motor.q, motor.dq, motor.ddq, motor.tau_est, *motor.temperature, motor.vol]
        values += [*motor.sensor, motor.motorstate, *motor.reserve]
    values += list(state.wireless_remote) + list(state.reserve) + [state.crc]
    return struct.pack(LOW_STATE_FORMAT, *values)


def low_cmd_crc(cmd: Any) -> int:
    """The crc field a LowCmd_ must carry."""
    return _crc_of_packed(pack_low_cmd(cmd))


def low_state_crc(state: Any) -> int:
    """The crc field a LowState_ carries when intact."""
    return _crc_of_packed(pack_low_state(state))


assert struct.calcsize(LOW_CMD_FORMAT) == 1004 and struct.calcsize(LOW_STATE_FORMAT) == 2092
